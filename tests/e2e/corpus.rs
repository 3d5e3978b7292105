//! Real messages from other projects through the relay with Python's smtplib: each arrives at the
//! next hop byte for byte after the trace header, and its journal copy attaches the same bytes.

use std::path::PathBuf;

use postern_tests::client::smtplib_send;
use postern_tests::corpus::{as_wire_message, eml_files, mail_parser_resources};
use postern_tests::receiver::Receiver;
use postern_tests::relay::{TestRelay, text_of};
use postern_tests::temp::TempDir;

use crate::flow::{attached_original, split_trace};

async fn relay_all(files: Vec<PathBuf>) {
    assert!(!files.is_empty(), "no corpus files found");
    let next_hop = Receiver::accepting().await;
    let intake = Receiver::accepting().await;
    let relay = TestRelay::builder()
        .next_hop(next_hop.addr)
        .intake(intake.addr)
        .set("smtp", "max_data_line_length = \"1MiB\"")
        .start()
        .await;
    let wire = TempDir::new("wire");
    let mut jobs = Vec::new();
    let mut sent = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let bytes = as_wire_message(&std::fs::read(file).unwrap());
        let path = wire.path().join(format!("{i}.eml"));
        std::fs::write(&path, &bytes).unwrap();
        jobs.push((
            format!("sender{i}@example.org"),
            vec![format!("m{i}@corp.test")],
            path,
        ));
        sent.push(bytes);
    }
    let report = tokio::task::spawn_blocking({
        let addr = relay.addr;
        move || smtplib_send(addr, &jobs, None)
    })
    .await
    .unwrap();
    let accepted = report.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(accepted, files.len(), "smtplib report:\n{report}");

    let originals = next_hop.wait_for(files.len()).await;
    let journals = intake.wait_for(files.len()).await;
    for original in &originals {
        let i: usize = original.recipients[0]
            .trim_start_matches('m')
            .trim_end_matches("@corp.test")
            .parse()
            .unwrap();
        let (_, rest) = split_trace(&original.data);
        assert!(
            rest == &sent[i][..],
            "{} arrived altered",
            files[i].display()
        );
        let journal = journals
            .iter()
            .find(|j| {
                String::from_utf8_lossy(&j.data)
                    .contains(&format!("Envelope-Recipients: <m{i}@corp.test>\r\n"))
            })
            .unwrap_or_else(|| panic!("no journal copy for {}", files[i].display()));
        assert!(
            attached_original(&journal.data) == &original.data[..],
            "journal copy of {} differs",
            files[i].display()
        );
    }
    assert_eq!(
        journals.len(),
        files.len(),
        "exactly one journal copy per message"
    );

    // Every message is finished, and the mail log tells its whole story (SPEC §5).
    postern_tests::eventually("every message finished", || {
        let finished = relay
            .log()
            .iter()
            .filter(|l| l.contains("Message finished MID"))
            .count();
        (finished >= files.len()).then_some(())
    })
    .await;
    let log = relay.stop_and_log().await;
    let texts: Vec<&str> = log.iter().map(|l| text_of(l)).collect();
    for (i, file) in files.iter().enumerate() {
        let to = format!(" RID 0 To: <m{i}@corp.test>");
        let mid = texts
            .iter()
            .find_map(|t| t.strip_suffix(to.as_str())?.strip_prefix("MID "))
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("no To: line for {}", file.display()));
        let want = [
            format!("Start MID {mid} ICID "),
            format!("MID {mid} ICID "),
            format!("MID {mid} ready "),
            format!("MID {mid} matched all recipients for per-recipient policy DEFAULT"),
            format!("MID {mid} queued for delivery"),
            "Message done DCID ".to_string(),
            format!("TDC: MID {mid} with Message-ID '"),
            format!("TDC: MID {mid} successfully delivered for scanning with Threat Defense"),
            format!("Message finished MID {mid} done"),
        ];
        for w in &want {
            let found = texts.iter().any(|t| {
                t.starts_with(w.as_str())
                    && (!w.starts_with("Message done")
                        || t.ends_with(&format!(" MID {mid} to RID [0]")))
            });
            assert!(found, "{}: no log line {w:?}", file.display());
        }
    }
    // Nothing was relayed twice.
    assert_eq!(next_hop.messages().len(), files.len());
    assert_eq!(intake.messages().len(), files.len());
}

#[tokio::test]
async fn the_mail_parser_crates_messages_including_malformed_ones() {
    relay_all(eml_files(&mail_parser_resources())).await;
}

/// The shared corpus: `POSTERN_CORPUS` (set by CI), else `shared/corpus` beside the checkout.
#[tokio::test]
async fn the_shared_corpus() {
    let dir = match std::env::var_os("POSTERN_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
            if !beside.is_dir() {
                eprintln!(
                    "no shared corpus beside this checkout and POSTERN_CORPUS unset: CI sets it"
                );
                return;
            }
            beside
        }
    };
    relay_all(eml_files(&dir)).await;
}
