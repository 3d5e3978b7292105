//! Builds the policy modules in `example-policies/` for `wasm32-wasip2` and exports their paths.
//!
//! The bundled default policy is embedded with `include_bytes!(env!("POSTERN_DEFAULT_POLICY_WASM"))`;
//! the other modules (the `by-header` example, the misbehaving test guest) are exported the same
//! way for tests. Modelled on wasmtime's `crates/test-programs/artifacts/build.rs`: a nested
//! `cargo build` with its own target directory, with the outer build's flags kept out of it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (cargo package, artifact stem, environment variable with the `.wasm` path)
const MODULES: &[(&str, &str, &str)] = &[
    (
        "default-policy",
        "default_policy",
        "POSTERN_DEFAULT_POLICY_WASM",
    ),
    ("by-header", "by_header", "POSTERN_EXAMPLE_BY_HEADER_WASM"),
    (
        "test-guest-misbehave",
        "test_guest_misbehave",
        "POSTERN_TEST_GUEST_MISBEHAVE_WASM",
    ),
];

fn main() {
    let host_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = host_dir.parent().expect("host/ sits in the workspace root");
    let policies = root.join("example-policies");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join("policies");

    for path in [
        root.join("wit"),
        root.join("guest-sdk/src"),
        root.join("guest-sdk/Cargo.toml"),
        policies.join("Cargo.toml"),
        policies.join("Cargo.lock"),
        policies.join("default-policy"),
        policies.join("by-header"),
        policies.join("test-guests"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    require_target();
    build(&policies, &target_dir);

    for (_, stem, var) in MODULES {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{stem}.wasm"));
        if !wasm.is_file() {
            fail(&format!(
                "the policy build finished but {} is missing",
                wasm.display()
            ));
        }
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Settings meant for the host build would change (or break) the guest build: flags for
    // another target, a wrapper, the outer target directory, the outer profile's overrides.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = matches!(
            key,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "CARGO_BUILD_RUSTFLAGS"
                | "CARGO_MAKEFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CARGO_LLVM_COV"
                | "CARGO_LLVM_COV_TARGET_DIR"
        ) || key.starts_with("CARGO_PROFILE_")
            || (key.starts_with("CARGO_TARGET_") && key.ends_with("_RUSTFLAGS"))
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_");
        if leaks {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn require_target() {
    let sysroot = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output();
    let installed = match sysroot {
        Ok(out) if out.status.success() => {
            let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Path::new(&sysroot)
                .join("lib/rustlib")
                .join(TARGET)
                .is_dir()
        }
        // Cannot tell: let the nested build report what is wrong.
        _ => true,
    };
    if !installed {
        fail(&format!(
            "the Rust target {TARGET} is not installed; it is needed to build the bundled \
             policy module. Install it with:\n\n    rustup target add {TARGET}\n"
        ));
    }
}

fn build(policies: &Path, target_dir: &Path) {
    let mut cmd = cargo();
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(policies.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--locked");
    for (package, _, _) in MODULES {
        cmd.arg("-p").arg(package);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo: {e}")));
    if !status.success() {
        fail(&format!(
            "building the policy modules failed ({status}); run `cargo build --release --target \
             {TARGET}` in {} to see why",
            policies.display()
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
