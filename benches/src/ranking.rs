//! Ranking metrics shared by the retrieval benchmarks: graded nDCG,
//! reciprocal rank and hits at a cut-off, over ranked ids.

use std::collections::HashMap;

/// nDCG at `k`: `rel` maps an id to its grade (0 = not relevant).
pub fn ndcg_at(ranked: &[String], rel: &HashMap<String, u32>, k: usize) -> f64 {
    let gain = |g: u32, i: usize| f64::from(g) / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| gain(*rel.get(d).unwrap_or(&0), i))
        .sum();
    let mut ideal: Vec<u32> = rel.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| gain(*g, i)).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// 1 / rank of the first relevant id, 0 if none is ranked.
pub fn reciprocal_rank(ranked: &[String], rel: &HashMap<String, u32>) -> f64 {
    ranked
        .iter()
        .position(|d| rel.get(d).is_some_and(|g| *g > 0))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Whether a relevant id is among the first `k`.
pub fn hit_at(ranked: &[String], rel: &HashMap<String, u32>, k: usize) -> bool {
    ranked.iter().take(k).any(|d| rel.get(d).is_some_and(|g| *g > 0))
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_on_a_small_ranking() {
        let rel = HashMap::from([("b".to_string(), 1), ("z".to_string(), 1)]);
        let r = ids(&["a", "b", "c"]);
        assert!((reciprocal_rank(&r, &rel) - 0.5).abs() < 1e-12);
        assert!(!hit_at(&r, &rel, 1) && hit_at(&r, &rel, 2));
        // DCG 1/log2(3); ideal 1 + 1/log2(3).
        let want = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&r, &rel, 10) - want).abs() < 1e-12);
        assert_eq!(ndcg_at(&r, &HashMap::new(), 10), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
    }
}
