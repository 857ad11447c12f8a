//! BM25 over a caller's scope: documents it cannot see never change how
//! the documents it can see are scored or ranked.
#![allow(clippy::unwrap_used)]

use indexer::lexical::{ChunkDoc, Filter, Lexical};

fn doc(source: &str, tier: u8, n: usize, content: String) -> ChunkDoc {
    ChunkDoc {
        chunk_id: format!("c-{source}-{n}"),
        source: source.into(),
        tier,
        path: format!("docs/{n}.md"),
        language: "markdown".into(),
        symbol: None,
        kind: "section".into(),
        start_line: 1,
        end_line: 1,
        content,
        file_hash: "h".into(),
        chunk_hash: format!("{source}{n}"),
        commit: None,
        ingested_at: 0,
    }
}

fn scores(lx: &Lexical, sources: &[&str], max_tier: u8) -> Vec<(String, f32)> {
    let filter = Filter {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        max_tier,
    };
    lx.search("capture retry idempotency", &filter, 20)
        .unwrap()
        .into_iter()
        .map(|(s, d)| (d.chunk_id, s))
        .collect()
}

#[test]
fn out_of_scope_documents_do_not_move_in_scope_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let lx = Lexical::open(tmp.path()).unwrap();
    let mut w = lx.writer().unwrap();
    let visible = [
        "capture the payment once; retry with the same idempotency key",
        "a retry after a timeout must reuse the capture key",
        "refunds are separate from capture and have their own ledger entry and retry policy and reconciliation",
        "idempotency keys expire after a day",
        "unrelated text about deployment windows",
    ];
    for (n, t) in visible.iter().enumerate() {
        lx.add(&w, &doc("a", 1, n, t.to_string())).unwrap();
    }
    lx.commit(&mut w).unwrap();
    let before = scores(&lx, &["a"], 2);
    assert!(before.len() >= 4, "{before:?}");

    // Out of scope: another source, and a tier above the caller's ceiling,
    // full of the query's terms and of very long text.
    for n in 0..300 {
        let filler = "capture ".repeat(n % 7 + 1) + &"padding words here ".repeat(40);
        lx.add(&w, &doc("b", 1, n, filler.clone())).unwrap();
        lx.add(&w, &doc("a-secret", 3, n, filler)).unwrap();
    }
    lx.commit(&mut w).unwrap();
    let after = scores(&lx, &["a"], 2);
    assert_eq!(before, after, "hidden documents changed visible scores");

    // The statistics are real: a caller who sees more gets other scores.
    let wider: Vec<(String, f32)> = scores(&lx, &["a", "b"], 2)
        .into_iter()
        .filter(|(id, _)| id.starts_with("c-a-"))
        .collect();
    assert_ne!(before, wider);
}
