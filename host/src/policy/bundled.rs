//! The policy modules built into the binary by `host/build.rs` from `example-policies/`.

/// What the bundled module is called in logs and in [`super::ModuleIdentity`].
pub const DEFAULT_POLICY_NAME: &str = "default-policy (bundled)";

/// The bundled default policy module (SPEC §2), configured by the mail policy table.
pub static DEFAULT_POLICY_WASM: &[u8] = include_bytes!(env!("POSTERN_DEFAULT_POLICY_WASM"));

/// Where the build left the `by-header` example module; for tests, not for a released binary.
pub const EXAMPLE_BY_HEADER_PATH: &str = env!("POSTERN_EXAMPLE_BY_HEADER_WASM");

/// Where the build left the module that misbehaves on request (see
/// `example-policies/test-guests/misbehave`); for tests.
pub const TEST_GUEST_MISBEHAVE_PATH: &str = env!("POSTERN_TEST_GUEST_MISBEHAVE_WASM");
