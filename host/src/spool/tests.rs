use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::envelope::Direction;

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: "sender@example.org".into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        client_ip: "127.0.0.1".parse().unwrap(),
        helo: "client.test".into(),
        listener: "Inbound".into(),
        direction: Direction::Incoming,
        tls: None,
        eight_bit: false,
        smtputf8: false,
        received_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("postern-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .count()
}

#[tokio::test]
async fn stored_messages_come_back_after_a_restart_with_their_progress() {
    let dir = temp_dir("restart");
    let (spool, pending) = Spool::open(&dir, 1 << 20, 0).unwrap();
    assert!(pending.is_empty());
    let m1 = spool.next_mid();
    let m2 = spool.next_mid();
    let loc1 = spool
        .store(
            m1,
            &envelope(&["a@x.test", "b@x.test"]),
            b"Subject: one\r\n\r\n1\r\n",
        )
        .await
        .unwrap();
    let loc2 = spool
        .store(m2, &envelope(&["c@x.test"]), b"Subject: two\r\n\r\n2\r\n")
        .await
        .unwrap();
    assert_eq!(spool.read(loc1).unwrap(), b"Subject: one\r\n\r\n1\r\n");
    let groups = vec![RoutedGroup {
        policy: "DEFAULT".into(),
        recipients: vec![0, 1],
        journal_to: None,
    }];
    spool.record_routed(m1, &groups);
    spool.record_recipient_done(m1, 1);
    spool.record_finished(m2, loc2);
    spool.sync().await.unwrap();
    drop(spool);
    // The writer thread holds the lock file until its channel closes; give it a moment.
    let reopened = (0..50).find_map(|_| match Spool::open(&dir, 1 << 20, 0) {
        Ok(x) => Some(x),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(20));
            None
        }
    });
    let (spool, pending) = reopened.expect("spool reopens");
    assert_eq!(pending.len(), 1);
    let m = &pending[0];
    assert_eq!(m.mid, m1);
    assert_eq!(m.routed.as_deref(), Some(&groups[..]));
    assert_eq!(
        m.recipients_done.iter().copied().collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(
        spool.read(m.location).unwrap(),
        b"Subject: one\r\n\r\n1\r\n"
    );
    assert!(spool.next_mid() > m2, "ids stay unique across restarts");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_second_relay_cannot_open_a_spool_in_use() {
    let dir = temp_dir("lock");
    let (_spool, _) = Spool::open(&dir, 1 << 20, 0).unwrap();
    assert!(matches!(
        Spool::open(&dir, 1 << 20, 0),
        Err(SpoolError::Locked(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn finished_segments_are_deleted_oldest_first() {
    let dir = temp_dir("segments");
    // Tiny segments: every message rolls to a new one.
    let (spool, _) = Spool::open(&dir, 64, 0).unwrap();
    let mut stored = Vec::new();
    for _ in 0..3 {
        let mid = spool.next_mid();
        let loc = spool
            .store(mid, &envelope(&["a@x.test"]), b"Subject: s\r\n\r\nbody\r\n")
            .await
            .unwrap();
        stored.push((mid, loc));
    }
    spool.sync().await.unwrap();
    assert_eq!(segments(&dir), 4, "three full segments and the active one");
    // Finishing the newest first frees nothing: an older segment is still live.
    spool.record_finished(stored[2].0, stored[2].1);
    spool.sync().await.unwrap();
    assert_eq!(segments(&dir), 4);
    spool.record_finished(stored[0].0, stored[0].1);
    spool.record_finished(stored[1].0, stored[1].1);
    spool.sync().await.unwrap();
    assert_eq!(segments(&dir), 1, "only the active segment is left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn room_is_refused_when_free_space_is_below_the_reserve() {
    let dir = temp_dir("room");
    let (spool, _) = Spool::open(&dir, 1 << 20, 0).unwrap();
    assert!(spool.has_room(1024));
    drop(spool);
    std::thread::sleep(Duration::from_millis(50));
    let (spool, _) = Spool::open(&dir, 1 << 20, u64::MAX / 2).unwrap();
    assert!(!spool.has_room(1024));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn many_concurrent_stores_share_commits_and_all_survive() {
    let dir = temp_dir("group");
    let (spool, _) = Spool::open(&dir, 1 << 20, 0).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mid = spool.next_mid();
            let body = format!("Subject: {i}\r\n\r\n{i}\r\n");
            let loc = spool
                .store(mid, &envelope(&["a@x.test"]), body.as_bytes())
                .await
                .unwrap();
            (loc, body)
        }));
    }
    for t in tasks {
        let (loc, body) = t.await.unwrap();
        assert_eq!(spool.read(loc).unwrap(), body.as_bytes());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
