//! SPEC §8's policy goal: a fresh, isolated evaluation of the bundled module with a 20-policy table,
//! instantiation included, in at most 50 µs median.
//!
//! `cargo bench -p postern --bench policy_eval` prints the median and the 90th and 99th percentile
//! of single evaluations, each in a fresh instance as the relay runs them. A measurement, not a test:
//! it asserts nothing about time. `cargo test` runs it once, to check that it still answers rightly.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use postern::config::Config;
use postern::envelope::{Direction, Mid};
use postern::policy::{Decision, LoadedModule, PolicyEngine, PolicyInput};

const WARM_UP: usize = 2_000;
const SAMPLES: usize = 20_000;

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` the benchmark only checks that it runs
    // and answers rightly, as a test does, without the thousands of samples.
    let measure = std::env::args().any(|arg| arg == "--bench");
    let config = Config::from_toml(&twenty_policies()).expect("the benchmark's configuration");
    assert_eq!(config.mail_policies.policies.len(), 20);
    let engine = PolicyEngine::new(&config.policy).expect("policy engine");
    let module = engine
        .bundled(&config.mail_policies)
        .expect("the bundled module");

    let input = message();
    // The last policy matches the last recipient, so every evaluation walks the whole table.
    let evaluation = module.evaluate(&input);
    assert!(evaluation.failure.is_none(), "{:?}", evaluation.failure);
    assert!(
        evaluation
            .groups
            .iter()
            .any(|g| g.policy == "P20" && g.decision == Decision::DefaultIntake),
        "{:?}",
        evaluation.groups
    );

    if !measure {
        return;
    }
    report("20 policies", &module, &input);
    // The same message with DEFAULT alone: what instantiation, the call and its arguments cost
    // whatever the table holds.
    let bare = Config::from_toml("").expect("the empty configuration");
    let bare = engine
        .bundled(&bare.mail_policies)
        .expect("the bundled module");
    report("DEFAULT only", &bare, &input);
}

fn report(table: &str, module: &LoadedModule, input: &PolicyInput) {
    for _ in 0..WARM_UP {
        module.evaluate(input);
    }
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(module.evaluate(std::hint::black_box(input)));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((SAMPLES as f64 * q) as usize).min(SAMPLES - 1)];
    println!(
        "policy evaluation, bundled module, {table}, {} recipients, {} headers: \
         median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs ({SAMPLES} samples)",
        input.recipients.len(),
        input.headers.len(),
        micros(at(0.5)),
        micros(at(0.9)),
        micros(at(0.99)),
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Twenty incoming policies of every pattern kind, then DEFAULT.
fn twenty_policies() -> String {
    let mut toml = String::new();
    for n in 1..=19 {
        toml.push_str(&format!(
            "[[mail_policy]]\nname = \"P{n}\"\n\
             recipients = [\"team{n}@example.com\", \"@dept{n}.example.com\", \"@.branch{n}.example.com\"]\n\
             senders = [\"@partner{n}.example.org\"]\n\
             senders_not = [\"noreply@partner{n}.example.org\"]\n\
             match = \"both\"\n\
             tdc = \"{}\"\n{}\n",
            if n % 2 == 0 { "disabled" } else { "custom" },
            if n % 2 == 0 {
                String::new()
            } else {
                format!("intake_address = \"journal{n}@tdc.example.net\"\n")
            },
        ));
    }
    toml.push_str(
        "[[mail_policy]]\nname = \"P20\"\nrecipients = [\"@.example.com\"]\ntdc = \"default\"\n\n\
         [default_policy]\ntdc = \"default\"\n",
    );
    toml
}

/// A typical incoming message: three recipients, the header fields of a real mail.
fn message() -> PolicyInput {
    let headers = [
        (
            "Received",
            " from mx.example.org (mx.example.org [192.0.2.7]) by relay.example.com",
        ),
        (
            "DKIM-Signature",
            " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from:to:subject:date; bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=AbCdEf0123456789",
        ),
        ("From", " Alice Example <alice@example.org>"),
        (
            "To",
            " Sales <sales@example.com>, Bob <bob@mail.example.com>",
        ),
        ("Cc", " carol@example.com"),
        ("Subject", " Quarterly figures"),
        ("Date", " Thu, 3 Dec 2026 09:15:00 +0000"),
        ("Message-ID", " <20261203091500.1234@example.org>"),
        ("MIME-Version", " 1.0"),
        ("Content-Type", " multipart/mixed; boundary=\"b1\""),
    ];
    PolicyInput {
        mid: Mid(1),
        listener: "Inbound".to_string(),
        direction: Direction::Incoming,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        helo: "mx.example.org".to_string(),
        tls: None,
        sender: "alice@example.org".to_string(),
        recipients: vec![
            "sales@example.com".to_string(),
            "bob@mail.example.com".to_string(),
            "carol@example.com".to_string(),
        ],
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect(),
        size: 4096,
    }
}
