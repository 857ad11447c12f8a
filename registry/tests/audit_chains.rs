//! Several writers, one audit directory: each process appends to a chain
//! of its own (no shared lock), every entry names its process inside the
//! hash, reads merge the chains by time, and verification covers them all.

#![allow(clippy::unwrap_used)]

use jiff::Timestamp;
use registry::audit::{AuditLog, Event};

fn at(s: u64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + s as i64).unwrap()
}

#[test]
fn every_chain_is_kept_read_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("audit");
    let main = AuditLog::open(&root);
    let a = AuditLog::for_process(&root, "replica-a").unwrap();
    let b = AuditLog::for_process(&root, "replica-b").unwrap();
    // Concurrent writers: the main chain and two replicas.
    std::thread::scope(|s| {
        for (log, who) in [(&main, "indexer"), (&a, "a"), (&b, "b")] {
            s.spawn(move || {
                for i in 0..20u64 {
                    log.append(at(i), vec![Event::new(who, "query", &format!("q{i}"))])
                        .unwrap();
                }
            });
        }
    });
    assert!(root.join("chains/replica-a/log.jsonl").exists());
    // Reads from any of them see every chain, in time order.
    for log in [&main, &a, &b] {
        let tail = log.tail_entries(9).unwrap();
        assert_eq!(tail.len(), 9);
        assert!(tail.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(tail.iter().all(|e| e.ts >= at(17)), "{tail:?}");
        let since = log.entries_since(at(18)).unwrap();
        assert_eq!(since.len(), 6);
    }
    let by = |p: Option<&str>| {
        main.entries_since(at(0))
            .unwrap()
            .into_iter()
            .filter(|e| e.process.as_deref() == p)
            .count()
    };
    // The main chain also records each process chain's opening.
    assert_eq!(
        (by(None), by(Some("replica-a")), by(Some("replica-b"))),
        (22, 20, 20)
    );
    // Verifying from any chain checks all three.
    for log in [&main, &a] {
        let r = log.verify().unwrap();
        assert!(r.intact, "{r:?}");
        assert_eq!(r.entries, 22);
        let names: Vec<&str> = r.chains.iter().map(|c| c.process.as_str()).collect();
        assert_eq!(names, ["replica-a", "replica-b"]);
        assert!(r.chains.iter().all(|c| c.report.intact && c.report.entries == 20));
    }
}

#[test]
fn tampering_in_any_chain_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("audit");
    let main = AuditLog::open(&root);
    let a = AuditLog::for_process(&root, "replica-a").unwrap();
    for i in 0..3u64 {
        main.append(at(i), vec![Event::new("m", "x", "s")]).unwrap();
        a.append(at(i), vec![Event::new("a", "x", "s")]).unwrap();
    }
    // An entry claimed for another process (the name is inside the hash).
    let log = root.join("chains/replica-a/log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        text.replacen("\"process\":\"replica-a\"", "\"process\":\"replica-b\"", 1),
    )
    .unwrap();
    let r = main.verify().unwrap();
    assert!(!r.intact);
    let bad = r.first_bad.unwrap();
    assert!(bad.reason.starts_with("chains/replica-a:"), "{bad:?}");
    std::fs::write(&log, &text).unwrap();
    assert!(main.verify().unwrap().intact);

    // An entry moved from a replica's chain into the main one: it names
    // its process, which the main chain's entries never do.
    let main_log = root.join("log.jsonl");
    let main_text = std::fs::read_to_string(&main_log).unwrap();
    let last_a = text.lines().last().unwrap();
    std::fs::write(&main_log, format!("{main_text}{last_a}\n")).unwrap();
    let r = main.verify().unwrap();
    assert!(!r.intact, "{r:?}");
    std::fs::write(&main_log, &main_text).unwrap();

    // A chain cut short is caught by its own head.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, format!("{}\n", lines[..2].join("\n"))).unwrap();
    let r = a.verify().unwrap();
    assert!(!r.intact);
    assert!(r.first_bad.unwrap().reason.contains("replica-a"));
}

#[test]
fn a_chain_name_must_be_a_plain_name() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "../main", "a/b", ".hidden", "x y"] {
        assert!(AuditLog::for_process(dir.path(), bad).is_none(), "{bad:?}");
    }
    assert!(AuditLog::for_process(dir.path(), "pod-7.replica_2").is_some());
}

#[test]
fn a_chain_deleted_renamed_or_torn_is_reported_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("audit");
    let main = AuditLog::open(&root);
    for name in ["replica-a", "replica-b"] {
        let log = AuditLog::for_process(&root, name).unwrap();
        for i in 0..3u64 {
            log.append(at(i), vec![Event::new(name, "query", "q")]).unwrap();
        }
    }
    main.append(at(5), vec![Event::new("m", "x", "s")]).unwrap();
    assert!(main.verify().unwrap().intact);

    // A replica killed mid-write leaves a torn last line: every reader
    // goes on, and verify says it is an unacknowledged write.
    let b_log = root.join("chains/replica-b/log.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&b_log).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":4,\"ts\":").unwrap();
    drop(f);
    assert_eq!(main.tail_entries(100).unwrap().len(), 3 + 3 + 2 + 1);
    assert!(main.verify().unwrap().intact);

    // Something else under chains/: reported by verify, ignored by reads.
    std::fs::write(root.join("chains/notes.txt"), "x").unwrap();
    let r = main.verify().unwrap();
    assert!(!r.intact);
    assert!(r.first_bad.unwrap().reason.contains("notes.txt"));
    assert_eq!(main.tail_entries(100).unwrap().len(), 9);
    std::fs::remove_file(root.join("chains/notes.txt")).unwrap();

    // A whole chain renamed: its entries name another process, and the
    // chain the main chain recorded is gone.
    std::fs::rename(root.join("chains/replica-a"), root.join("chains/replica-c")).unwrap();
    assert!(!main.verify().unwrap().intact);
    std::fs::rename(root.join("chains/replica-c"), root.join("chains/replica-a")).unwrap();
    assert!(main.verify().unwrap().intact);

    // A whole chain deleted, checkpoints and all.
    std::fs::remove_dir_all(root.join("chains/replica-a")).unwrap();
    let r = main.verify().unwrap();
    assert!(!r.intact);
    let bad = r.first_bad.unwrap();
    assert!(
        bad.reason.contains("replica-a") && bad.reason.contains("missing"),
        "{bad:?}"
    );
}
