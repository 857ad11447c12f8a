//! The audit chain: tampering is always detected, crashes lose nothing
//! acknowledged.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

use jiff::Timestamp;
use proptest::prelude::*;
use registry::audit::{AuditLog, Event};

fn now() -> Timestamp {
    "2026-11-20T10:00:00Z".parse().unwrap()
}

fn write_log(dir: &Path, n: usize) -> AuditLog {
    let log = AuditLog::open(dir.join("audit"));
    for i in 0..n {
        log.append(
            now(),
            vec![
                Event::new("alice", "source.approve", &format!("src-{i}"))
                    .detail("reason", format!("r{i} ✓")),
            ],
        )
        .unwrap();
    }
    log
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 5);
    let r = log.verify().unwrap();
    assert!(r.intact, "{r:?}");
    assert_eq!(r.entries, 5);
    assert_eq!(
        log.tail_entries(2)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [4, 5]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn changing_any_byte_is_detected(n in 1usize..6, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), n);
        let mut bytes = std::fs::read(log.log_path()).unwrap();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        std::fs::write(log.log_path(), &bytes).unwrap();
        let r = log.verify().unwrap();
        prop_assert!(!r.intact, "flipping byte {} went unnoticed", i);
        prop_assert!(r.first_bad.is_some());
    }

    #[test]
    fn removing_or_reordering_entries_is_detected(n in 2usize..7, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), remove in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), n);
        let text = std::fs::read_to_string(log.log_path()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let i = a.index(n);
        if remove {
            lines.remove(i);
        } else {
            let j = b.index(n);
            prop_assume!(i != j);
            lines.swap(i, j);
        }
        let mut out = lines.join("\n");
        if !out.is_empty() { out.push('\n'); }
        std::fs::write(log.log_path(), out).unwrap();
        let r = log.verify().unwrap();
        prop_assert!(!r.intact);
    }
}

#[test]
fn the_first_bad_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 4);
    let text = std::fs::read_to_string(log.log_path()).unwrap();
    std::fs::write(log.log_path(), text.replacen("src-2", "src-9", 1)).unwrap();
    let r = log.verify().unwrap();
    assert_eq!(r.first_bad.unwrap().line, 3);
}

#[test]
fn a_deleted_head_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 2);
    std::fs::remove_file(dir.path().join("audit/head.json")).unwrap();
    assert!(!log.verify().unwrap().intact);
    assert!(
        log.append(now(), vec![Event::new("a", "b", "c")]).is_err(),
        "appends refuse a headless log"
    );
}

#[test]
fn a_torn_unacknowledged_write_is_discarded_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 3);
    // A crash mid-write: half a line after the last acknowledged entry.
    let mut bytes = std::fs::read(log.log_path()).unwrap();
    bytes.extend_from_slice(b"{\"seq\":4,\"ts\":\"2026-11-2");
    std::fs::write(log.log_path(), &bytes).unwrap();
    let r = log.verify().unwrap();
    assert!(r.intact, "{r:?}");
    assert!(r.notes.iter().any(|n| n.contains("torn write")));
    let written = log
        .append(now(), vec![Event::new("bob", "source.deny", "x")])
        .unwrap();
    assert_eq!(written[0].seq, 4);
    assert_eq!(written[0].details["recovered_torn_tail_bytes"], 24);
    assert!(log.verify().unwrap().intact);
}

#[test]
fn entries_written_before_the_head_moved_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 2);
    let head = std::fs::read(dir.path().join("audit/head.json")).unwrap();
    log.append(now(), vec![Event::new("a", "x", "y")]).unwrap();
    // Simulate a crash between fsyncing entry 3 and replacing the head.
    std::fs::write(dir.path().join("audit/head.json"), head).unwrap();
    let r = log.verify().unwrap();
    assert!(r.intact && r.entries == 3, "{r:?}");
    let next = log.append(now(), vec![Event::new("a", "x", "z")]).unwrap();
    assert_eq!(next[0].seq, 4);
    assert!(log.verify().unwrap().intact);
}

#[test]
fn cutting_acknowledged_entries_from_the_end_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 3);
    let text = std::fs::read_to_string(log.log_path()).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(log.log_path(), cut).unwrap();
    let r = log.verify().unwrap();
    assert!(!r.intact);
    assert!(r.first_bad.unwrap().reason.contains("removed"));
    assert!(log.append(now(), vec![Event::new("a", "b", "c")]).is_err());
}

#[test]
fn concurrent_appends_and_verifies_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let log = AuditLog::open(root.join("audit"));
                for i in 0..40 {
                    log.append(now(), vec![Event::new("agent", "query", &format!("t{t}-{i}"))])
                        .unwrap();
                }
            })
        })
        .collect();
    // Verifying while others append sees a consistent prefix every time.
    let log = AuditLog::open(root.join("audit"));
    for _ in 0..20 {
        let r = log.verify().unwrap();
        assert!(r.intact, "{r:?}");
        assert!(r.notes.iter().all(|n| n == "no audit log yet"), "{r:?}");
    }
    for w in writers {
        w.join().unwrap();
    }
    let r = log.verify().unwrap();
    assert!(r.intact, "{r:?}");
    assert_eq!(r.entries, 160);
    assert!(r.notes.is_empty(), "{r:?}");
}

#[test]
fn grouped_appends_return_each_caller_its_own_contiguous_entries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let log = AuditLog::open(root.join("audit"));
                let mut mine = Vec::new();
                for i in 0..30 {
                    let written = log
                        .append(
                            now(),
                            vec![
                                Event::new("agent", "query", &format!("t{t}-{i}-a")),
                                Event::new("agent", "query", &format!("t{t}-{i}-b")),
                            ],
                        )
                        .unwrap();
                    // Exactly this call's events, in its order, back to back.
                    assert_eq!(written.len(), 2);
                    assert_eq!(written[0].subject, format!("t{t}-{i}-a"));
                    assert_eq!(written[1].subject, format!("t{t}-{i}-b"));
                    assert_eq!(written[1].seq, written[0].seq + 1);
                    assert_eq!(written[1].prev, written[0].hash);
                    mine.push(written[0].seq);
                }
                mine
            })
        })
        .collect();
    let mut seqs: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 240, "an append was lost or duplicated");
    let log = AuditLog::open(root.join("audit"));
    let r = log.verify().unwrap();
    assert!(r.intact, "{r:?}");
    assert_eq!(r.entries, 480);
    // Each durable entry is where its caller was told it is.
    let entries = log.tail_entries(480).unwrap();
    for e in entries.iter().filter(|e| e.subject.ends_with("-a")) {
        assert!(seqs.binary_search(&e.seq).is_ok(), "{e:?}");
    }
}

#[test]
fn recorded_events_do_not_wait_for_the_data_directory_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An indexing pass (say) holds the data directory.
    let held = registry::fsutil::DirLock::acquire(&data).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let store = registry::RegistryStore::new(
        dir.path().join("registry.toml"),
        &data,
        std::sync::Arc::new(registry::FixedClock(now())),
    );
    std::thread::spawn(move || {
        tx.send(
            store
                .record(vec![Event::new("agent", "query", "q")])
                .map(|e| e.len()),
        )
        .unwrap();
    });
    let recorded = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("recording a query waited for the data directory lock");
    assert_eq!(recorded.unwrap(), 1);
    drop(held);
}

#[test]
fn entries_since_finds_exactly_the_entries_from_an_instant_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path().join("audit"));
    // Several hundred KB of log, one group a minute, so the search has
    // something to halve.
    for minute in 0..300i64 {
        let at = now() + jiff::SignedDuration::from_mins(minute);
        let events = (0..10)
            .map(|i| Event::new("t", "query", &format!("m{minute}-{i}")).detail("pad", "x".repeat(100)))
            .collect();
        log.append(at, events).unwrap();
    }
    for (since, expected) in [(0i64, 3000usize), (1, 2990), (150, 1500), (299, 10), (300, 0)] {
        let got = log
            .entries_since(now() + jiff::SignedDuration::from_mins(since))
            .unwrap();
        assert_eq!(got.len(), expected, "since minute {since}");
        if let Some(first) = got.first() {
            assert_eq!(first.subject, format!("m{since}-0"));
        }
    }
    let early = log
        .entries_since(now() - jiff::SignedDuration::from_hours(1))
        .unwrap();
    assert_eq!(early.len(), 3000);
}

#[test]
fn sidecar_records_go_out_in_the_same_group_as_the_entries_that_vouch_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path().join("audit"));
    let side = dir.path().join("snapshots/day.jsonl");
    let record = b"{\"id\":\"a\"}\n".to_vec();
    let hash = blake3::hash(&record).to_hex().to_string();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (log, side, record, hash) = (log.clone(), side.clone(), record.clone(), hash.clone());
            std::thread::spawn(move || {
                log.append_with(
                    now(),
                    vec![Event::new("t", "query", &format!("q{i}")).detail("record_hash", hash)],
                    vec![registry::audit::Sidecar {
                        path: side,
                        bytes: record,
                    }],
                )
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().len(), 1);
    }
    let text = std::fs::read_to_string(&side).unwrap();
    assert_eq!(text.lines().count(), 8);
    assert!(
        text.lines()
            .all(|l| blake3::hash(format!("{l}\n").as_bytes()).to_hex().as_str() == hash)
    );
    assert_eq!(log.tail_entries(100).unwrap().len(), 8);
    assert!(log.verify().unwrap().intact);
    // A torn tail is closed off before the next record.
    std::fs::write(&side, format!("{text}{{\"id\":\"tor")).unwrap();
    log.append_with(
        now(),
        vec![],
        vec![registry::audit::Sidecar {
            path: side.clone(),
            bytes: record.clone(),
        }],
    )
    .unwrap();
    let text = std::fs::read_to_string(&side).unwrap();
    assert!(text.ends_with("{\"id\":\"tor\n{\"id\":\"a\"}\n"), "{text}");
}
