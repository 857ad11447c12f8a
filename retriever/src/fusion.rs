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
    pub lexical_weight: f32,
    pub dense_weight: f32,
    /// Candidates fetched from each engine.
    pub candidates: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            k: 60.0,
            lexical_weight: 1.0,
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
        for (list, weight, is_lexical) in [
            (lexical, self.lexical_weight, true),
            (dense, self.dense_weight, false),
        ] {
            for (i, doc) in list.iter().enumerate() {
                let rank = i + 1;
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
