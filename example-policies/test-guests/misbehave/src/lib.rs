//! A policy module that misbehaves on request, so the relay's sandbox can be tested.
//!
//! The first value of an `X-Misbehave` header picks the fault; without it the module answers
//! properly (one `DEFAULT` group, default intake), so it passes the relay's canary evaluation.
//! The configuration `reject` makes `validate` fail and `fail-always` makes every evaluation
//! return an error (so the canary fails).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use postern_guest_sdk::{Decision, Group, Message, Policy, log};

struct Misbehave;

impl Policy for Misbehave {
    fn validate(config: &str) -> Result<(), String> {
        if config == "reject" {
            Err("this configuration is rejected on purpose".to_string())
        } else {
            Ok(())
        }
    }

    fn evaluate(message: &Message, config: &str) -> Result<Vec<Group>, String> {
        if config == "fail-always" {
            return Err("failing on purpose".to_string());
        }
        let everyone = || Group::all("DEFAULT", Decision::DefaultIntake, message);
        let fault = message
            .header("X-Misbehave")
            .and_then(|h| h.value_str())
            .unwrap_or("");
        Ok(match fault {
            "" => vec![everyone()],
            "trap" => panic!("trapping on purpose"),
            "loop" => loop {
                std::hint::black_box(());
            },
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "error" => return Err("an error on purpose".to_string()),
            "bad-index" => vec![Group::new("DEFAULT", Decision::NoScan, vec![u32::MAX])],
            "duplicate" => vec![everyone(), Group::new("AGAIN", Decision::NoScan, vec![0])],
            "missing" => vec![],
            "bad-intake" => {
                vec![Group::all(
                    "DEFAULT",
                    Decision::CustomIntake("not an address".into()),
                    message,
                )]
            }
            "empty-name" => vec![Group::all("", Decision::NoScan, message)],
            "many-groups" => (0..1_000)
                .map(|i| Group::new(format!("G{i}"), Decision::NoScan, vec![]))
                .collect(),
            "long-name" => vec![Group::all("N".repeat(100_000), Decision::NoScan, message)],
            // Module state: a counter in linear memory and a heap allocation left behind. A
            // fresh instance per message sees neither from the message before.
            "count" => {
                static CALLS: AtomicU32 = AtomicU32::new(0);
                static LEFT_BEHIND: AtomicUsize = AtomicUsize::new(0);
                let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                let before = LEFT_BEHIND.swap(
                    Box::leak(vec![0xAB_u8; 4096].into_boxed_slice()).as_ptr() as usize,
                    Ordering::Relaxed,
                );
                vec![Group::all(
                    format!("CALL{calls}-LEFT{}", usize::from(before != 0)),
                    Decision::NoScan,
                    message,
                )]
            }
            // What a module sees of the host: files, environment, arguments. The group name
            // reports it, so the relay's tests can check that nothing is granted.
            "probe" => {
                let file = match std::fs::read("/etc/hostname") {
                    Ok(_) => "READ",
                    Err(_) => "DENIED",
                };
                let dir = match std::fs::read_dir(".") {
                    Ok(_) => "LISTED",
                    Err(_) => "DENIED",
                };
                let name = format!(
                    "FILE-{file}-DIR-{dir}-ENV{}-ARGS{}",
                    std::env::vars_os().count(),
                    std::env::args_os().count()
                );
                vec![Group::all(name, Decision::NoScan, message)]
            }
            "log" => {
                log::info(&"x".repeat(100_000));
                vec![everyone()]
            }
            other => return Err(format!("unknown fault {other:?}")),
        })
    }
}

postern_guest_sdk::export_policy!(Misbehave);
