//! The Qdrant vector store against a real server. Runs when QDRANT_URL is
//! set (e.g. `docker run -p 6334:6334 qdrant/qdrant` then
//! `QDRANT_URL=http://localhost:6334 cargo test -p indexer --test qdrant_store`;
//! QDRANT_API_KEY is used if set); otherwise it says why it did nothing.
#![allow(clippy::unwrap_used)]

use indexer::embed::{DIM, normalize};
use indexer::vector::qdrant::QdrantStore;
use indexer::vector::{Point, VectorFilter, VectorStore};

fn vector(seed: u32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM as u32)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503)))
                % 997) as f32
                - 498.0
        })
        .collect();
    normalize(&mut v);
    v
}

#[test]
fn qdrant_store_filters_deletes_and_lists_like_the_embedded_one() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("skipped: QDRANT_URL is not set (see this file's header to run it)");
        return;
    };
    let key = std::env::var("QDRANT_API_KEY").ok();
    let collection = format!("ctxplane-test-{}", std::process::id());
    let mut s = QdrantStore::connect(&url, key.as_deref(), &collection).unwrap();
    let points = (0..60)
        .map(|i| Point {
            chunk_id: format!("c-{i}"),
            source: if i % 2 == 0 { "a" } else { "b" }.into(),
            path: format!("f{}.rs", i % 6),
            tier: (i % 4 + 1) as u8,
            vector: vector(i),
        })
        .collect();
    s.upsert(points).unwrap();
    s.commit().unwrap();
    assert_eq!(s.len(), 60);
    let all = VectorFilter {
        sources: ["a".to_string(), "b".to_string()].into(),
        max_tier: 4,
        path_prefix: None,
    };
    assert_eq!(s.search(&vector(10), &all, 3).unwrap()[0].0, "c-10");
    let narrow = VectorFilter {
        sources: ["b".to_string()].into(),
        max_tier: 2,
        path_prefix: None,
    };
    for (id, _) in s.search(&vector(10), &narrow, 20).unwrap() {
        let n: u32 = id[2..].parse().unwrap();
        assert!(n % 2 == 1 && n % 4 < 2, "{id}");
    }
    s.delete_file("a", "f0.rs").unwrap();
    s.delete_source("b").unwrap();
    s.commit().unwrap();
    assert_eq!(s.len(), 20);
    assert_eq!(s.file_chunks().unwrap().len(), 2);
    s.drop_collection().unwrap();
}
