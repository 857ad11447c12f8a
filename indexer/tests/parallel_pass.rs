//! A pass reads, redacts and chunks files on several threads and commits
//! them in order: the result must be what one file at a time gives. A
//! secret found in one file is redacted where it is copied in a later one,
//! in the same batch or a later batch, and two passes over the same tree
//! store the same manifests.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use indexer::{Indexer, PassOptions};
use registry::{Clock, FixedClock, Registry};

const VALUE: &str = "vR7qT2mLx9Zp4Wk8Qe3N";

fn tree(root: &Path) {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..150 {
        let body = match i {
            2 => format!("# config notes\n\npassword = \"{VALUE}\"\n"),
            // Copies where no rule fires: same batch, and a later one.
            10 | 140 => format!("# rotation {i}\n\nThe old one was {VALUE} and must not be reused.\n"),
            _ => format!("# note {i}\n\nNothing secret here, just note number {i} about deploys.\n"),
        };
        std::fs::write(src.join(format!("f{i:03}.md")), body).unwrap();
    }
    std::fs::write(
        root.join("registry.toml"),
        "version = 1\n\n[[sources]]\nid = \"notes\"\nkind = \"dir\"\nlocation = \"src\"\nowner = \"ops\"\ntier = 1\nstatus = \"approved\"\n",
    )
    .unwrap();
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn index(root: &Path, data: &Path, now: jiff::Timestamp) -> indexer::PassReport {
    let reg = Registry::parse(
        &std::fs::read_to_string(root.join("registry.toml")).unwrap(),
        root,
    )
    .unwrap();
    let clock = FixedClock(now);
    let idx = Indexer::open(data, indexer::redact::RuleSet::builtin(), PassOptions::default()).unwrap();
    idx.run_pass(&reg, &reg.policy(&clock), clock.now(), &mut |_, _, _| {})
        .unwrap()
}

#[test]
fn a_parallel_pass_redacts_copies_across_batches_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tree(root);
    let now = jiff::Timestamp::now();
    let (a, b) = (root.join("data-a"), root.join("data-b"));
    let ra = index(root, &a, now);
    let rb = index(root, &b, now);
    let s = &ra.sources[0];
    assert_eq!((s.files_seen, s.indexed), (150, 150), "{s:?}");
    assert!(s.redactions >= 3, "the value and both copies: {s:?}");
    for data in [&a, &b] {
        let mut files = Vec::new();
        files_under(data, &mut files);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
                "{} holds the secret",
                f.display()
            );
        }
    }
    // The stored (compressed) documents hold no copy either.
    for data in [&a, &b] {
        let lexical = indexer::lexical::Lexical::open(&data.join("index/lexical")).unwrap();
        let docs = lexical.stored_documents().unwrap();
        assert_eq!(docs.len() as u64, ra.total_chunks);
        assert!(docs.iter().all(|d| !d.contains(VALUE)));
        assert!(docs.iter().any(|d| d.contains("rotation 140")));
    }
    // Same tree, same instant: the same chunks and manifests.
    assert_eq!(ra, rb);
    let manifest = |d: &Path| std::fs::read(d.join("index/manifests/notes.json")).unwrap();
    assert_eq!(manifest(&a), manifest(&b));
}
