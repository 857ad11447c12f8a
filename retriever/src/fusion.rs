//! Weighted reciprocal-rank fusion: a chunk's score is the sum over the
//! engines that found it of `weight / (k + rank)`. Ranks, not raw scores,
//! so BM25 and cosine need no calibration against each other.

use std::collections::HashMap;

use indexer::lexical::ChunkDoc;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Fusion {
    /// The RRF constant: larger flattens the head of each list.
    pub k: f32,
    /// Weight of a BM25 rank when the chunk is code. Natural-language
    /// questions share few words with code, so BM25 ranks code poorly.
    pub lexical_weight: f32,
    /// Weight of a BM25 rank when the chunk is prose (Markdown, RST, text),
    /// where word overlap is good evidence.
    pub lexical_weight_prose: f32,
    pub dense_weight: f32,
    /// Candidates fetched from each engine.
    pub candidates: usize,
}

impl Default for Fusion {
    /// `k` and the code weight are tuned on CoSQA's dev split
    /// (`retrieval_eval --tune`): a small `k` trusts the head of each list,
    /// and BM25 ranks of code count for a third of dense ones. Prose keeps
    /// the plain RRF weight of 1.
    fn default() -> Self {
        Fusion {
            k: 10.0,
            lexical_weight: 0.3,
            lexical_weight_prose: 1.0,
            dense_weight: 1.0,
            candidates: 50,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Fused {
    pub doc: ChunkDoc,
    pub score: f32,
    /// 1-based ranks in each engine's list, when it had the chunk.
    pub lexical_rank: Option<usize>,
    pub dense_rank: Option<usize>,
}

impl Fusion {
    pub(crate) fn fuse(&self, lexical: &[ChunkDoc], dense: &[ChunkDoc]) -> Vec<Fused> {
        let mut by_id: HashMap<&str, Fused> = HashMap::new();
        for (list, is_lexical) in [(lexical, true), (dense, false)] {
            for (i, doc) in list.iter().enumerate() {
                let rank = i + 1;
                let weight = if !is_lexical {
                    self.dense_weight
                } else if is_prose(&doc.language) {
                    self.lexical_weight_prose
                } else {
                    self.lexical_weight
                };
                let e = by_id.entry(doc.chunk_id.as_str()).or_insert_with(|| Fused {
                    doc: doc.clone(),
                    score: 0.0,
                    lexical_rank: None,
                    dense_rank: None,
                });
                e.score += weight / (self.k + rank as f32);
                if is_lexical {
                    e.lexical_rank = Some(rank);
                } else {
                    e.dense_rank = Some(rank);
                }
            }
        }
        let mut out: Vec<Fused> = by_id.into_values().collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.doc.chunk_id.cmp(&b.doc.chunk_id))
        });
        out
    }
}

/// Languages whose chunks are prose rather than code.
pub fn is_prose(language: &str) -> bool {
    matches!(language, "markdown" | "rst" | "text")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, language: &str) -> ChunkDoc {
        ChunkDoc {
            chunk_id: id.into(),
            source: "s".into(),
            tier: 1,
            path: format!("{id}.x"),
            language: language.into(),
            symbol: None,
            kind: "window".into(),
            start_line: 1,
            end_line: 1,
            content: id.into(),
            file_hash: String::new(),
            chunk_hash: id.into(),
            commit: None,
            ingested_at: 0,
        }
    }

    #[test]
    fn both_lists_count_and_prose_trusts_bm25_more_than_code() {
        let f = Fusion::default();
        // "a" is first in both lists; "b" only lexical; "c" only dense.
        let out = f.fuse(
            &[doc("a", "python"), doc("b", "python")],
            &[doc("a", "python"), doc("c", "python")],
        );
        assert_eq!(out[0].doc.chunk_id, "a");
        assert_eq!((out[0].lexical_rank, out[0].dense_rank), (Some(1), Some(1)));
        let pos = |id: &str| out.iter().position(|x| x.doc.chunk_id == id).unwrap();
        // Code: the dense-only chunk beats the BM25-only one at the same rank.
        assert!(pos("c") < pos("b"));
        // Prose: a BM25 rank weighs as much as a dense one.
        let out = f.fuse(&[doc("p", "markdown")], &[doc("q", "markdown")]);
        assert!((out[0].score - out[1].score).abs() < 1e-6);
    }
}
