//! Tests of the policy engine with the bundled module, the by-header example and a module that
//! misbehaves on request.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::config::defaults::{POLICY_DEADLINE, POLICY_MEMORY_LIMIT};
use crate::config::{
    FailurePolicy, MailPolicy, MailPolicyTable, MatchMode, PolicyConfig, TdcSetting,
};
use crate::envelope::{Direction, Mid};

fn policy_config(failure: FailurePolicy, deadline: Duration) -> PolicyConfig {
    PolicyConfig {
        module: None,
        module_config: String::new(),
        watch_directory: None,
        memory_limit_bytes: POLICY_MEMORY_LIMIT,
        deadline,
        failure,
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(&policy_config(
        FailurePolicy::DefaultIntake,
        POLICY_DEADLINE,
    ))
    .unwrap()
}

fn input(sender: &str, recipients: &[&str]) -> PolicyInput {
    PolicyInput {
        mid: Mid(7),
        listener: "Inbound".to_string(),
        direction: Direction::Incoming,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        helo: "mx.example.org".to_string(),
        tls: None,
        sender: sender.to_string(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        headers: vec![("Subject".to_string(), b" hello".to_vec())],
        size: 1234,
    }
}

fn with_header(mut input: PolicyInput, name: &str, value: &str) -> PolicyInput {
    input
        .headers
        .push((name.to_string(), value.as_bytes().to_vec()));
    input
}

fn mail_policy(name: &str, recipients: &[&str], tdc: Option<TdcSetting>) -> MailPolicy {
    MailPolicy {
        name: name.to_string(),
        direction: Direction::Incoming,
        senders: vec![],
        senders_not: vec![],
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        match_mode: MatchMode::Either,
        tdc,
    }
}

fn group(policy: &str, recipients: &[u32], decision: Decision) -> Group {
    Group {
        policy: policy.to_string(),
        recipients: recipients.to_vec(),
        decision,
    }
}

fn misbehave(engine: &PolicyEngine, config: &str) -> Result<LoadedModule, LoadError> {
    let wasm = std::fs::read(bundled::TEST_GUEST_MISBEHAVE_PATH).unwrap();
    engine.load("misbehave", &wasm, config.to_string())
}

#[test]
fn the_bundled_module_decides_by_the_table() {
    let mut sales = mail_policy("SALES", &["@sales.example.com"], Some(TdcSetting::Default));
    sales.senders_not = vec!["@spam.example".to_string()];
    let table = MailPolicyTable {
        policies: vec![
            mail_policy(
                "EXEC",
                &["ceo@example.com"],
                Some(TdcSetting::Custom("vip@tdc.example".into())),
            ),
            sales,
            mail_policy("INHERIT", &["@.example.com"], None),
            mail_policy("QUIET", &["@example.com"], Some(TdcSetting::Disabled)),
        ],
        default_tdc: TdcSetting::Custom("all@tdc.example".into()),
    };
    let module = engine().bundled(&table).unwrap();
    assert_eq!(module.identity().name, bundled::DEFAULT_POLICY_NAME);
    assert_eq!(module.identity().sha256.len(), 64);

    let message = input(
        "a@partner.example",
        &[
            "x@sales.example.com",
            "CEO@Example.com",
            "y@eu.example.com",
            "z@example.com",
            "w@else.example",
        ],
    );
    let evaluation = module.evaluate(&message);
    assert_eq!(evaluation.failure, None);
    assert_eq!(
        evaluation.groups,
        [
            group("SALES", &[0], Decision::DefaultIntake),
            group(
                "EXEC",
                &[1],
                Decision::CustomIntake("vip@tdc.example".into())
            ),
            group(
                "INHERIT",
                &[2],
                Decision::CustomIntake("all@tdc.example".into())
            ),
            group("QUIET", &[3], Decision::NoScan),
            group(
                "DEFAULT",
                &[4],
                Decision::CustomIntake("all@tdc.example".into())
            ),
        ]
    );

    // `@.example.com` matches subdomains only, so sales (excluded by sender) falls to INHERIT.
    let evaluation = module.evaluate(&input("b@spam.example", &["x@sales.example.com"]));
    assert_eq!(
        evaluation.groups,
        [group(
            "INHERIT",
            &[0],
            Decision::CustomIntake("all@tdc.example".into())
        )]
    );
}

#[test]
fn the_bundled_module_takes_every_recipient_on_a_sender_match_and_skips_outgoing_tdc() {
    let mut partner = mail_policy("PARTNER", &[], Some(TdcSetting::Default));
    partner.senders = vec!["@partner.example".to_string()];
    let mut outgoing = mail_policy("OUT", &["*"], Some(TdcSetting::Default));
    outgoing.direction = Direction::Outgoing;
    let table = MailPolicyTable {
        policies: vec![
            mail_policy("FIRST", &["a@x.example"], Some(TdcSetting::Disabled)),
            partner,
            outgoing,
        ],
        default_tdc: TdcSetting::Disabled,
    };
    let module = engine().bundled(&table).unwrap();
    let evaluation = module.evaluate(&input(
        "boss@partner.example",
        &["a@x.example", "b@y.example", "a@x.example"],
    ));
    assert_eq!(
        evaluation.groups,
        [
            group("FIRST", &[0], Decision::NoScan),
            group("PARTNER", &[1, 2], Decision::DefaultIntake)
        ]
    );
    let mut out = input("me@example.com", &["you@far.example"]);
    out.direction = Direction::Outgoing;
    assert_eq!(
        module.evaluate(&out).groups,
        [group("OUT", &[0], Decision::NoScan)]
    );
}

#[test]
fn the_bundled_module_refuses_a_table_it_cannot_use() {
    let table = MailPolicyTable {
        policies: vec![mail_policy("BAD", &["not-a-pattern"], None)],
        default_tdc: TdcSetting::Default,
    };
    let error = engine().bundled(&table).err().expect("refused");
    assert!(matches!(error, LoadError::Rejected { .. }), "{error}");
    assert!(error.to_string().contains("not-a-pattern"), "{error}");
}

#[test]
fn the_by_header_example_journals_on_request() {
    let wasm = std::fs::read(bundled::EXAMPLE_BY_HEADER_PATH).unwrap();
    let engine = engine();
    let module = engine
        .load("by-header", &wasm, "scan@tdc.example".to_string())
        .unwrap();
    let plain = input("a@b.example", &["c@d.example", "e@f.example"]);
    assert_eq!(
        module.evaluate(&plain).groups,
        [group("DEFAULT", &[0, 1], Decision::NoScan)]
    );
    let asked = with_header(plain, "X-Scan-Me", " yes");
    assert_eq!(
        module.evaluate(&asked).groups,
        [group(
            "SCAN-ME",
            &[0, 1],
            Decision::CustomIntake("scan@tdc.example".into())
        )]
    );
    let error = engine
        .load("by-header", &wasm, "nonsense".to_string())
        .err()
        .unwrap();
    assert!(error.to_string().contains("intake address"), "{error}");
}

#[test]
fn a_failing_module_gets_the_failure_policy_and_the_relay_carries_on() {
    let engine = PolicyEngine::new(&policy_config(
        FailurePolicy::DefaultIntake,
        Duration::from_millis(50),
    ))
    .unwrap();
    let module = misbehave(&engine, "").unwrap();
    let cases = [
        ("trap", FailureKind::Trap),
        ("loop", FailureKind::Deadline),
        ("oom", FailureKind::Memory),
        ("error", FailureKind::GuestError),
        ("bad-index", FailureKind::InvalidAnswer),
        ("duplicate", FailureKind::InvalidAnswer),
        ("missing", FailureKind::InvalidAnswer),
        ("bad-intake", FailureKind::InvalidAnswer),
        ("empty-name", FailureKind::InvalidAnswer),
        ("many-groups", FailureKind::InvalidAnswer),
        ("long-name", FailureKind::InvalidAnswer),
    ];
    let before = engine.failures();
    for (fault, kind) in cases {
        let message = with_header(
            input("a@b.example", &["c@d.example", "e@f.example"]),
            "X-Misbehave",
            fault,
        );
        let evaluation = module.evaluate(&message);
        let failure = evaluation
            .failure
            .unwrap_or_else(|| panic!("{fault}: no failure"));
        assert_eq!(failure.kind, kind, "{fault}: {}", failure.reason);
        assert!(!failure.reason.is_empty());
        assert_eq!(
            evaluation.groups,
            [group(POLICY_FAILURE, &[0, 1], Decision::DefaultIntake)],
            "{fault}"
        );
        // The instance is gone with its store: the next message is answered normally.
        let evaluation = module.evaluate(&input("a@b.example", &["c@d.example"]));
        assert_eq!(evaluation.failure, None, "after {fault}");
    }
    assert_eq!(engine.failures() - before, cases.len() as u64);
}

#[test]
fn the_failure_policy_may_be_no_scan() {
    let engine = PolicyEngine::new(&policy_config(FailurePolicy::NoScan, POLICY_DEADLINE)).unwrap();
    let module = misbehave(&engine, "").unwrap();
    let message = with_header(
        input("a@b.example", &["c@d.example"]),
        "X-Misbehave",
        "trap",
    );
    assert_eq!(
        module.evaluate(&message).groups,
        [group(POLICY_FAILURE, &[0], Decision::NoScan)]
    );
}

/// SPEC §3: messages cannot influence each other through module state. The guest counts its
/// calls in a static and leaves a heap block behind; every evaluation starts from scratch, even
/// though the instance's memory stays resident between evaluations (it is zeroed, not unmapped).
#[test]
fn every_evaluation_starts_from_fresh_module_state() {
    let module = misbehave(&engine(), "").unwrap();
    let message = with_header(
        input("a@b.example", &["c@d.example"]),
        "X-Misbehave",
        "count",
    );
    for _ in 0..3 {
        assert_eq!(
            module.evaluate(&message).groups,
            [group("CALL1-LEFT0", &[0], Decision::NoScan)]
        );
    }
}

/// SPEC §3: no WASI capability that reaches outside is granted.
#[test]
fn a_module_sees_no_files_environment_or_arguments() {
    let module = misbehave(&engine(), "").unwrap();
    let message = with_header(
        input("a@b.example", &["c@d.example"]),
        "X-Misbehave",
        "probe",
    );
    assert_eq!(
        module.evaluate(&message).groups,
        [group(
            "FILE-DENIED-DIR-DENIED-ENV0-ARGS0",
            &[0],
            Decision::NoScan
        )]
    );
}

/// The cut and the line budget are [`super::sandbox`]'s tests; here a 100 kB line goes through
/// the real import and the evaluation still answers.
#[test]
fn a_module_that_logs_a_huge_line_still_answers() {
    let module = misbehave(&engine(), "").unwrap();
    let message = with_header(input("a@b.example", &["c@d.example"]), "X-Misbehave", "log");
    let evaluation = module.evaluate(&message);
    assert_eq!(evaluation.failure, None);
    assert_eq!(evaluation.groups.len(), 1);
}

#[test]
fn load_refuses_what_cannot_serve_and_says_why() {
    let engine = engine();
    let error = engine
        .load("junk", b"not wasm at all", String::new())
        .err()
        .unwrap();
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
    assert!(error.to_string().contains("junk"), "{error}");

    // A core module is Wasm, but not a component of the policy world.
    let core = b"\0asm\x01\0\0\0";
    let error = engine.load("core", core, String::new()).err().unwrap();
    assert!(
        matches!(
            error,
            LoadError::Compile { .. } | LoadError::Interface { .. }
        ),
        "{error}"
    );

    let error = misbehave(&engine, "reject").err().unwrap();
    assert!(matches!(error, LoadError::Rejected { .. }), "{error}");
    assert!(error.to_string().contains("rejected on purpose"), "{error}");

    let error = misbehave(&engine, "fail-always").err().unwrap();
    let LoadError::Canary { failure, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(failure.kind, FailureKind::GuestError);
    assert!(error.to_string().contains("failing on purpose"), "{error}");
}

#[test]
fn a_swap_is_atomic_and_can_be_rolled_back() {
    let engine = engine();
    let table = MailPolicyTable {
        policies: vec![],
        default_tdc: TdcSetting::Default,
    };
    let active = ActivePolicy::new(engine.bundled(&table).unwrap());
    let message = input("a@b.example", &["c@d.example"]);
    assert_eq!(
        active.evaluate(&message).groups,
        [group("DEFAULT", &[0], Decision::DefaultIntake)]
    );

    let held = active.current();
    let old = active.swap(misbehave(&engine, "").unwrap());
    assert_eq!(old.name, bundled::DEFAULT_POLICY_NAME);
    assert_eq!(active.identity().name, "misbehave");
    // An evaluation that took the module before the swap finishes on that version.
    assert_eq!(
        held.evaluate(&message).groups,
        [group("DEFAULT", &[0], Decision::DefaultIntake)]
    );

    let trap = with_header(message.clone(), "X-Misbehave", "trap");
    assert!(active.evaluate(&trap).failure.is_some());
    assert!(active.failures() >= 1);

    assert_eq!(
        active.rollback().unwrap().name,
        bundled::DEFAULT_POLICY_NAME
    );
    assert_eq!(active.identity(), old);
    assert!(active.evaluate(&trap).failure.is_none());
    assert_eq!(active.rollback().unwrap().name, "misbehave");
}

#[test]
fn modules_are_compiled_once_per_engine() {
    let table = MailPolicyTable {
        policies: vec![],
        default_tdc: TdcSetting::Default,
    };
    let first = engine().bundled(&table).unwrap();
    let second = engine().bundled(&table).unwrap();
    assert_eq!(first.identity().sha256, second.identity().sha256);
    assert!(first.shares_compiled_code_with(&second));
}
