//! BM25 as sparse vectors, for a lexical tier that lives in a shared
//! engine (Qdrant) instead of the local tantivy index.
//!
//! A chunk becomes one sparse vector over the fields of
//! [`QUERY_FIELDS`]: each (field, term) pair is a dimension, and its value
//! is BM25's term-frequency part, `tf * (k1 + 1) / (tf + k1 * (1 - b + b *
//! len / avg_len))`, with the field's length and average length counted
//! the way tantivy counts them (every token, an identifier's parts
//! included). A query becomes the same dimensions weighted as the tantivy
//! query weighs them (field boost x part weight, [`query_terms`]). The
//! engine multiplies each matching dimension by the term's inverse
//! document frequency (Qdrant's IDF modifier: `ln(1 + (N - n + 0.5) / (n +
//! 0.5))`, tantivy's formula) and sums: BM25 over the same fields, terms
//! and boosts as the local index.
//!
//! What differs from the local index: the IDF and the average lengths are
//! the collection's (the local index counts them within the caller's
//! scope), average lengths are those at the time a chunk was written,
//! lengths are exact (tantivy rounds long ones), and phrases are not
//! matched (their terms still are).

use crate::lexical::{ChunkDoc, Evidence, QUERY_FIELDS, QueryPart, analyzer, query_terms};

/// tantivy's BM25 parameters.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// A sparse vector: dimensions ascending, each once.
pub type Sparse = Vec<(u32, f32)>;

/// The dimension of `term` in the field at `field` of [`QUERY_FIELDS`].
pub fn dimension(field: usize, term: &str) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(QUERY_FIELDS[field].name.as_bytes());
    h.update(&[0]);
    h.update(term.as_bytes());
    let b = h.finalize();
    u32::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1], b.as_bytes()[2], b.as_bytes()[3]])
}

/// The text of field `name` for a chunk, as the local index is given it.
fn field_text<'a>(name: &str, doc: &'a ChunkDoc, evidence: &Evidence<'a>) -> Option<&'a str> {
    match name {
        "content" | "prose" => Some(&doc.content),
        "symbol" => doc.symbol.as_deref(),
        "path" => Some(&doc.path),
        "file_name" => Some(doc.path.rsplit('/').next().unwrap_or(&doc.path)),
        "signature" => evidence.signature,
        "doc" => evidence.doc,
        _ => None,
    }
}

fn merged(mut v: Vec<(u32, f32)>) -> Sparse {
    v.sort_by_key(|(d, _)| *d);
    let mut out: Sparse = Vec::with_capacity(v.len());
    for (d, w) in v {
        match out.last_mut() {
            Some((last, sum)) if *last == d => *sum += w,
            _ => out.push((d, w)),
        }
    }
    out.retain(|(_, w)| *w > 0.0);
    out
}

/// A chunk's sparse vector, with `avg_lengths` the average token count of
/// each field (from [`crate::lexical::Lexical::average_lengths`]).
pub fn document(doc: &ChunkDoc, evidence: &Evidence<'_>, avg_lengths: &[f32; QUERY_FIELDS.len()]) -> Sparse {
    let mut analyzers = [analyzer(true), analyzer(false)];
    let mut out = Vec::new();
    for (i, field) in QUERY_FIELDS.iter().enumerate() {
        let Some(text) = field_text(field.name, doc, evidence) else {
            continue;
        };
        let mut counts: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut len = 0u32;
        let mut stream = analyzers[usize::from(!field.code)].token_stream(text);
        stream.process(&mut |t| {
            len += 1;
            *counts.entry(t.text.clone()).or_default() += 1;
        });
        if len == 0 {
            continue;
        }
        let avg = if avg_lengths[i] > 0.0 {
            avg_lengths[i]
        } else {
            len as f32
        };
        let norm = K1 * (1.0 - B + B * len as f32 / avg);
        for (term, tf) in counts {
            let tf = tf as f32;
            out.push((dimension(i, &term), tf * (K1 + 1.0) / (tf + norm)));
        }
    }
    merged(out)
}

/// A query's sparse vector: the terms the local index's query is made of,
/// with the same weights. Empty when the query has no term.
pub fn query(parts: &[QueryPart]) -> Sparse {
    let terms = query_terms(parts);
    merged(
        terms
            .weights
            .into_iter()
            .map(|((field, term), w)| (dimension(field, &term), w))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, symbol: Option<&str>, content: &str) -> ChunkDoc {
        ChunkDoc {
            chunk_id: "c".into(),
            source: "s".into(),
            tier: 1,
            path: path.into(),
            language: "rust".into(),
            symbol: symbol.map(String::from),
            kind: "function".into(),
            start_line: 1,
            end_line: 3,
            content: content.into(),
            file_hash: String::new(),
            chunk_hash: String::new(),
            commit: None,
            ingested_at: 0,
        }
    }

    fn dot(a: &Sparse, b: &Sparse) -> f32 {
        a.iter()
            .filter_map(|(d, w)| b.iter().find(|(e, _)| e == d).map(|(_, v)| w * v))
            .sum()
    }

    #[test]
    fn vectors_are_sorted_unique_and_positive() {
        let d = doc(
            "src/refund.rs",
            Some("validate_refund"),
            "fn validate_refund(amount: u64) { amount }",
        );
        let v = document(&d, &Evidence::default(), &[10.0; QUERY_FIELDS.len()]);
        assert!(!v.is_empty());
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(v.iter().all(|(_, w)| *w > 0.0));
        let q = query(&[QueryPart::new("validate_refund amount", 1.0)]);
        assert!(q.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_field_is_its_own_dimension() {
        // The same word in content and in the path are different terms.
        assert_ne!(dimension(0, "refund"), dimension(3, "refund"));
        assert_eq!(dimension(0, "refund"), dimension(0, "refund"));
    }

    #[test]
    fn term_frequency_saturates_and_length_normalises() {
        let avg = [8.0; QUERY_FIELDS.len()];
        let q = query(&[QueryPart::new("refund", 1.0)]);
        let once = document(&doc("a.rs", None, "refund limit"), &Evidence::default(), &avg);
        let twice = document(
            &doc("a.rs", None, "refund refund limit"),
            &Evidence::default(),
            &avg,
        );
        let long = document(
            &doc("a.rs", None, &format!("refund {}", "other ".repeat(60))),
            &Evidence::default(),
            &avg,
        );
        let (s1, s2, sl) = (dot(&q, &once), dot(&q, &twice), dot(&q, &long));
        assert!(s2 > s1 && s2 < 2.0 * s1, "{s1} {s2}");
        assert!(sl < s1, "{sl} {s1}");
    }

    #[test]
    fn short_queries_leave_definitions_out() {
        let avg = [8.0; QUERY_FIELDS.len()];
        let e = Evidence {
            signature: Some("fn acquire(timeout: u64) -> Conn"),
            doc: None,
        };
        let d = document(&doc("pool.rs", None, "body"), &e, &avg);
        let with = query(&[QueryPart::new("acquire", 1.0)]);
        let without = query(&[QueryPart::new("acquire", 1.0).without_definitions()]);
        assert!(dot(&with, &d) > 0.0);
        assert_eq!(dot(&without, &d), 0.0);
    }
}
