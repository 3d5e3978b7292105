//! The `postern` command as a user meets it: README command 1 (the demo) and config errors.

use std::process::Command;

use postern_tests::process::binary;
use postern_tests::temp::TempDir;

#[test]
fn the_demo_shows_the_whole_flow() {
    let out = Command::new(binary())
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .output()
        .expect("postern demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "demo summary: 3 sample messages sent, 3 accepted; next hop received 3; intake received 3 journal copies"
        ),
        "{stdout}"
    );
    for line in [
        "matched all recipients for per-recipient policy INTERNAL in the inbound table",
        "TDC: MID 2 with Message-ID '<order-2024-1187@shop.example>' queued for delivery to intake address <sales-journal@intake.demo>",
        "successfully delivered for scanning with Threat Defense",
        "Message finished MID 3 done",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn a_broken_config_is_refused_naming_every_problem_and_its_line() {
    let dir = TempDir::new("badconfig");
    let path = dir.path().join("postern.toml");
    std::fs::write(
        &path,
        "[smtp]\nmax_recipients = 0\n\n[tdc]\nintake_address = \"nobody\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: smtp.max_recipients: must be at least 1"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5: tdc.intake_address:"), "{stderr}");

    std::fs::write(&path, "[smtp]\nmax_recipients = 10\n").unwrap();
    let out = Command::new(binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("policy module default-policy (bundled)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `check-config` loads the policy module as `serve` would: a file that is not a policy
/// component is refused with the reason, a real one is named with its digest.
#[test]
fn check_config_loads_the_policy_module() {
    let dir = TempDir::new("modconfig");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let path = dir.path().join("postern.toml");
    let check = |module: &std::path::Path, config: &str| {
        std::fs::write(
            &path,
            format!(
                "[policy]\nmodule = \"{}\"\nconfig = \"{config}\"\n",
                module.display()
            ),
        )
        .unwrap();
        Command::new(binary())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(&junk, "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("junk"), "{stderr}");

    let out = check(&dir.path().join("missing.wasm"), "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read policy module"), "{stderr}");

    // The module's own validation of its configuration runs too.
    let by_header = std::path::Path::new(postern::policy::bundled::EXAMPLE_BY_HEADER_PATH);
    let out = check(by_header, "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected its configuration"), "{stderr}");

    let out = check(by_header, "scan@tdc.example.net");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("policy module by_header"), "{stdout}");
    assert!(stdout.contains("sha256"), "{stdout}");
}

/// Log rotation: after the file is moved away, SIGHUP makes the relay write to a new one.
#[tokio::test]
async fn sighup_reopens_the_mail_log() {
    use postern_tests::process::RelayProcess;
    use postern_tests::relay::TestRelay;
    let dir = TempDir::new("rotate");
    let log = dir.path().join("mail.log");
    let config = TestRelay::builder()
        .toml(&format!(
            "[log]\nmail_log = \"{}\"\nstdout = true\n",
            log.display()
        ))
        .config_text(&dir.path().join("spool"));
    let relay = RelayProcess::start(&config).await;
    postern_tests::eventually("the log file", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("listening on"))
    })
    .await;
    let rotated = dir.path().join("mail.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    relay.signal("HUP");
    let mut c = postern_tests::client::RawClient::connect(relay.addr).await;
    c.command("QUIT").await;
    let fresh = postern_tests::eventually("lines in the new log file", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ICID 1 close"))
    })
    .await;
    assert!(
        !fresh.contains("listening on"),
        "old lines stay in the rotated file"
    );
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("listening on")
    );
}

/// The configuration example in the README is valid, so it cannot rot.
#[test]
fn the_readme_configuration_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```toml\nhostname = ")
        .expect("the gateway example")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config =
        postern::config::Config::from_toml(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mail_policies.policies.len(), 2);
    assert!(config.tdc.enabled);
}
