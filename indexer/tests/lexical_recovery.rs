//! The lexical index after a process was killed part-way through a commit.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use indexer::lexical::{ChunkDoc, Lexical};

fn doc(source: &str, path: &str, n: u32) -> ChunkDoc {
    ChunkDoc {
        chunk_id: format!("c-{source}-{path}-{n}"),
        source: source.into(),
        tier: 1,
        path: path.into(),
        language: "markdown".into(),
        symbol: None,
        kind: "section".into(),
        start_line: n,
        end_line: n,
        content: format!("text {n} of {path}"),
        file_hash: "h".into(),
        chunk_hash: format!("ch{n}"),
        commit: None,
        ingested_at: 0,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A kill after tantivy wrote a segment's delete file but before it
/// committed `meta.json` leaves a file that the same delete, replayed by
/// the next pass, would create again. The next writer must not fail with
/// `FileAlreadyExists`, and the delete must take effect.
#[test]
fn a_commit_killed_after_writing_its_delete_file_does_not_wedge_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    {
        let lx = Lexical::open(&live).unwrap();
        let mut w = lx.writer().unwrap();
        for n in 0..20 {
            lx.add(&w, &doc("s", "a.md", n)).unwrap();
            lx.add(&w, &doc("revoked", "secret.md", n)).unwrap();
        }
        lx.commit(&mut w).unwrap();
    }
    // The state before the second commit, as a killed process leaves it...
    let before = tmp.path().join("before");
    copy_dir(&live, &before);
    {
        let lx = Lexical::open(&live).unwrap();
        let mut w = lx.writer().unwrap();
        lx.delete_source(&w, "revoked");
        lx.commit(&mut w).unwrap();
    }
    // ...plus the files that commit wrote before its meta.json.
    let written: Vec<String> = names(&live).into_iter().filter(|n| n.ends_with(".del")).collect();
    assert!(
        !written.is_empty(),
        "the delete wrote no .del file: {:?}",
        names(&live)
    );
    for n in &written {
        std::fs::copy(live.join(n), before.join(n)).unwrap();
    }
    std::fs::copy(live.join(".managed.json"), before.join(".managed.json")).unwrap();

    let lx = Lexical::open(&before).unwrap();
    assert_eq!(
        lx.count_source("revoked"),
        20,
        "the killed commit never took effect"
    );
    let mut w = lx.writer().unwrap();
    lx.delete_source(&w, "revoked");
    lx.commit(&mut w).unwrap();
    drop(w);
    assert_eq!(lx.count_source("revoked"), 0);
    lx.expunge_deletes().unwrap();
    assert_eq!(lx.deleted_docs().unwrap(), 0);
    assert_eq!(lx.count_source("s"), 20);
}
