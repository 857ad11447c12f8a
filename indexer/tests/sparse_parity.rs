//! BM25 as sparse vectors (what a shared index in Qdrant scores with)
//! gives the local tantivy index's scores: the document vectors dotted
//! with the query vector, each term weighted by its IDF the way Qdrant's
//! IDF modifier weighs it, rank and score as `Lexical::search_parts` does.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use indexer::lexical::{ChunkDoc, Evidence, Filter, Lexical, QueryPart};
use indexer::terms;

fn doc(n: usize, path: &str, symbol: Option<&str>, content: &str) -> ChunkDoc {
    ChunkDoc {
        chunk_id: format!("c-{n}"),
        // Several sources and tiers: the scope must not score (each
        // source and tier term would add a different IDF).
        source: if n.is_multiple_of(2) { "s" } else { "t" }.into(),
        tier: (n % 3 + 1) as u8,
        path: path.into(),
        language: "rust".into(),
        symbol: symbol.map(String::from),
        kind: "function".into(),
        start_line: 1,
        end_line: 3,
        content: content.into(),
        file_hash: "h".into(),
        chunk_hash: format!("h{n}"),
        commit: None,
        ingested_at: 0,
    }
}

/// Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5)) over the points that
/// have the dimension.
fn idf(vectors: &[terms::Sparse]) -> HashMap<u32, f32> {
    let mut df: HashMap<u32, u32> = HashMap::new();
    for v in vectors {
        for (d, _) in v {
            *df.entry(*d).or_default() += 1;
        }
    }
    let n = vectors.len() as f32;
    df.into_iter()
        .map(|(d, k)| (d, (1.0 + (n - k as f32 + 0.5) / (k as f32 + 0.5)).ln()))
        .collect()
}

#[test]
fn sparse_scores_match_the_local_index() {
    let corpus = [
        (
            "src/refund.rs",
            Some("validate_refund"),
            "pub fn validate_refund(amount: u64, limit: u64) -> Result<(), RefundError> { if amount > limit { return Err(RefundError::OverLimit) } Ok(()) }",
            Some("pub fn validate_refund(amount: u64, limit: u64) -> Result<(), RefundError>"),
            Some("Refunds above the daily limit are refused."),
        ),
        (
            "src/capture.rs",
            Some("capture"),
            "pub fn capture(payment: &Payment) -> Result<Receipt> { retry(|| gateway.capture(payment.id)) }",
            Some("pub fn capture(payment: &Payment) -> Result<Receipt>"),
            None,
        ),
        (
            "docs/refunds.md",
            None,
            "How refunds are limited: every refund is checked against the merchant's daily refund limit before it is sent.",
            None,
            None,
        ),
        (
            "src/ledger.rs",
            Some("LedgerEntry"),
            "struct LedgerEntry { amount: i64, kind: EntryKind } impl LedgerEntry { fn refund(amount: i64) -> Self { todo!() } }",
            None,
            Some("One row of the ledger."),
        ),
        (
            "README.md",
            None,
            "Payments service: capture, refund and reconcile payments. See docs/refunds.md for limits.",
            None,
            None,
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let lx = Lexical::open(tmp.path()).unwrap();
    let mut w = lx.writer().unwrap();
    let mut docs = Vec::new();
    for (n, (path, symbol, content, signature, d)) in corpus.iter().enumerate() {
        let c = doc(n, path, *symbol, content);
        let e = Evidence {
            signature: *signature,
            doc: *d,
        };
        lx.add_with(&w, &c, &e).unwrap();
        docs.push((c, e));
    }
    lx.commit(&mut w).unwrap();
    let avg = lx.average_lengths();
    let vectors: Vec<terms::Sparse> = docs.iter().map(|(c, e)| terms::document(c, e, &avg)).collect();
    let idf = idf(&vectors);
    let filter = Filter {
        sources: vec!["s".into(), "t".into()],
        max_tier: 3,
    };
    let queries = [
        vec![QueryPart::new("How are refunds limited?", 1.0).without_definitions()],
        vec![QueryPart::new("validate_refund amount limit", 1.0)],
        vec![
            QueryPart::new("capture payment retry gateway", 1.0),
            QueryPart::new("capture", 2.0),
        ],
        vec![QueryPart::new("ledger entry refund", 1.0)],
    ];
    for parts in queries {
        let q = terms::query(&parts);
        let mut sparse: Vec<(String, f32)> = vectors
            .iter()
            .zip(&docs)
            .map(|(v, (c, _))| {
                let s: f32 = q
                    .iter()
                    .filter_map(|(d, w)| {
                        v.iter()
                            .find(|(e, _)| e == d)
                            .map(|(_, x)| w * x * idf.get(d).copied().unwrap_or(0.0))
                    })
                    .sum();
                (c.chunk_id.clone(), s)
            })
            .filter(|(_, s)| *s > 0.0)
            .collect();
        sparse.sort_by(|a, b| b.1.total_cmp(&a.1));
        let local: Vec<(String, f32)> = lx
            .search_parts(&parts, &filter, 10)
            .unwrap()
            .into_iter()
            .map(|(s, d)| (d.chunk_id, s))
            .collect();
        assert_eq!(
            sparse.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            local.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            "{parts:?}: sparse {sparse:?} local {local:?}"
        );
        // The scope filters without scoring: the scores are the same.
        for ((_, a), (_, b)) in sparse.iter().zip(&local) {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{parts:?}: sparse {sparse:?} local {local:?}"
            );
        }
    }
}
