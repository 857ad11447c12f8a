//! The Qdrant vector store against a real server. The tests that need one
//! are compiled as ignored unless QDRANT_URL was set when they were built
//! (`QDRANT_URL=http://127.0.0.1:6334 cargo test -p indexer --test
//! qdrant_store`; QDRANT_API_KEY is used if set), so a run without a
//! server says "ignored", never "passed".
#![allow(clippy::unwrap_used)]

use indexer::embed::{DIM, normalize};
use indexer::vector::qdrant::{QdrantStore, QdrantTarget, collection_name};
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

fn points(n: u32) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            chunk_id: format!("c-{i}"),
            source: if i % 2 == 0 { "a" } else { "b" }.into(),
            path: format!("d{}/f{}.rs", i % 3, i % 6),
            tier: (i % 4 + 1) as u8,
            vector: vector(i),
            text: None,
        })
        .collect()
}

fn url() -> String {
    std::env::var("QDRANT_URL").expect("QDRANT_URL (set when this test was built)")
}

fn target<'a>(
    url: &'a str,
    key: Option<&'a str>,
    prefix: &'a str,
    model: &'a str,
    dep: &'a str,
) -> QdrantTarget<'a> {
    QdrantTarget {
        url,
        api_key: key,
        prefix,
        model_id: model,
        deployment: dep,
        shards: 1,
        replication: 1,
    }
}

fn all(sources: &[&str]) -> VectorFilter {
    VectorFilter {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        max_tier: 4,
        path_prefix: None,
    }
}

#[test]
fn an_unreachable_server_is_an_error_never_zero_vectors() {
    // A port nothing listens on: connecting fails with a message naming
    // Qdrant, for readers and writers alike.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{free}");
    for create in [false, true] {
        let e = QdrantStore::connect(&target(&url, None, "ctxplane", "m1", "dep"), create).unwrap_err();
        assert!(e.to_string().contains("qdrant"), "{e}");
    }
    let e = QdrantStore::connect(&target(&url, None, "ctxplane", "m1", ""), true).unwrap_err();
    assert!(e.to_string().contains("deployment"), "{e}");
}

#[test]
#[cfg_attr(
    not(qdrant_configured),
    ignore = "needs a Qdrant server: set QDRANT_URL when building the tests"
)]
fn qdrant_store_filters_deletes_and_lists_like_the_embedded_one() {
    let (url, key) = (url(), std::env::var("QDRANT_API_KEY").ok());
    let prefix = format!("t{}", std::process::id());
    let mut s = QdrantStore::connect(&target(&url, key.as_deref(), &prefix, "m1", "dep"), true).unwrap();
    s.upsert(points(60)).unwrap();
    s.commit().unwrap();
    assert_eq!(s.len().unwrap(), 60);
    assert_eq!(s.search(&vector(10), &all(&["a", "b"]), 3).unwrap()[0].0, "c-10");
    let narrow = VectorFilter {
        sources: ["b".to_string()].into(),
        max_tier: 2,
        path_prefix: None,
    };
    for (id, _) in s.search(&vector(10), &narrow, 20).unwrap() {
        let n: u32 = id[2..].parse().unwrap();
        assert!(n % 2 == 1 && n % 4 < 2, "{id}");
    }
    assert_eq!(s.count(&narrow).unwrap(), 15);
    // Path prefixes: at a directory boundary (in Qdrant) and inside a name
    // (checked here, paging on): k results either way when they exist.
    for prefix in ["d1/", "d1/f1"] {
        let f = VectorFilter {
            path_prefix: Some(prefix.into()),
            ..all(&["a", "b"])
        };
        let hits = s.search(&vector(3), &f, 5).unwrap();
        assert_eq!(hits.len(), 5, "{prefix}: {hits:?}");
        for (id, _) in hits {
            let n: u32 = id[2..].parse().unwrap();
            assert_eq!(n % 3, 1, "{prefix} {id}");
        }
    }
    s.delete_file("a", "d0/f0.rs").unwrap();
    s.delete_source("b").unwrap();
    s.commit().unwrap();
    assert_eq!(s.len().unwrap(), 20);
    assert_eq!(s.file_chunks().unwrap().len(), 2);
    s.drop_collection().unwrap();
}

#[test]
#[cfg_attr(
    not(qdrant_configured),
    ignore = "needs a Qdrant server: set QDRANT_URL when building the tests"
)]
fn deployments_and_models_never_mix_and_readers_never_create() {
    let (url, key) = (url(), std::env::var("QDRANT_API_KEY").ok());
    let prefix = format!("s{}", std::process::id());
    let key = key.as_deref();
    // A reader before any writer: an error, and no collection appears.
    let e = QdrantStore::connect(&target(&url, key, &prefix, "m1", "one"), false).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let mut one = QdrantStore::connect(&target(&url, key, &prefix, "m1", "one"), true).unwrap();
    let mut two = QdrantStore::connect(&target(&url, key, &prefix, "m1", "two"), true).unwrap();
    assert_eq!(one.collection(), two.collection());
    assert_eq!(one.collection(), collection_name(&prefix, "m1"));
    one.upsert(points(10)).unwrap();
    one.commit().unwrap();
    two.upsert(points(4)).unwrap();
    two.commit().unwrap();
    assert_eq!((one.len().unwrap(), two.len().unwrap()), (10, 4));
    // Each deletes only its own; each lists and searches only its own.
    two.delete_source("a").unwrap();
    two.commit().unwrap();
    assert_eq!((one.len().unwrap(), two.len().unwrap()), (10, 2));
    assert_eq!(
        one.file_chunks()
            .unwrap()
            .values()
            .map(|c| c.len())
            .sum::<usize>(),
        10
    );
    assert!(two.search(&vector(8), &all(&["a", "b"]), 10).unwrap().len() <= 2);
    // Another model is another collection: nothing of m1's is visible.
    let other = QdrantStore::connect(&target(&url, key, &prefix, "m2", "one"), true).unwrap();
    assert_ne!(other.collection(), one.collection());
    assert_eq!(other.len().unwrap(), 0);
    // A reader of the existing collection sees the writer's points.
    let reader = QdrantStore::connect(&target(&url, key, &prefix, "m1", "one"), false).unwrap();
    assert_eq!(reader.len().unwrap(), 10);
    // Called from inside an async runtime (an HTTP handler), it works.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(async { reader.len().unwrap() }), 10);
    other.drop_collection().unwrap();
    one.drop_collection().unwrap();
}

#[test]
#[cfg_attr(
    not(qdrant_configured),
    ignore = "needs a Qdrant server: set QDRANT_URL when building the tests"
)]
fn the_shared_lexical_tier_ranks_like_the_local_index() {
    use indexer::lexical::{ChunkDoc, ChunkIndex, Evidence, Filter, Lexical, QueryPart};
    use indexer::vector::PointText;
    let (url, key) = (url(), std::env::var("QDRANT_API_KEY").ok());
    let prefix = format!("l{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let lx = Lexical::open(tmp.path()).unwrap();
    let mut w = lx.writer().unwrap();
    let mut sigs: Vec<Option<String>> = Vec::new();
    let words = [
        "refund", "limit", "capture", "payment", "retry", "ledger", "entry", "gateway", "merchant", "daily",
    ];
    for n in 0..40usize {
        let content: Vec<&str> = (0..(5 + n % 9))
            .map(|i| words[(n * 7 + i * i) % words.len()])
            .collect();
        let doc = ChunkDoc {
            chunk_id: format!("c-{n}"),
            source: if n % 2 == 0 { "a" } else { "b" }.into(),
            tier: (n % 3 + 1) as u8,
            path: format!("src/{}/{}.rs", words[n % 4], words[(n + 3) % words.len()]),
            language: "rust".into(),
            symbol: (n % 3 == 0).then(|| format!("{}_{}", words[n % 10], words[(n + 1) % 10])),
            kind: "function".into(),
            start_line: 1,
            end_line: 2,
            content: content.join(" "),
            file_hash: "h".into(),
            chunk_hash: format!("h{n}"),
            commit: Some("abc".into()),
            ingested_at: 1_700_000_000,
        };
        let sig = (n % 4 == 0).then(|| format!("fn {}()", words[(n + 5) % 10]));
        let e = Evidence {
            signature: sig.as_deref(),
            doc: None,
        };
        lx.add_with(&w, &doc, &e).unwrap();
        sigs.push(sig);
    }
    lx.commit(&mut w).unwrap();
    let avg = lx.average_lengths();
    let mut s = QdrantStore::connect(&target(&url, key.as_deref(), &prefix, "m1", "dep"), true).unwrap();
    let mut points = Vec::new();
    for (n, sig) in sigs.iter().enumerate() {
        let d = lx.docs_by_id(&[&format!("c-{n}")]).unwrap().pop().unwrap();
        // The evidence the local index was given (a real sync gets it by
        // chunking the file again).
        let e = Evidence {
            signature: sig.as_deref(),
            doc: None,
        };
        points.push(Point {
            chunk_id: d.chunk_id.clone(),
            source: d.source.clone(),
            path: d.path.clone(),
            tier: d.tier,
            vector: vector(n as u32),
            text: Some(Box::new(PointText {
                terms: indexer::terms::document(&d, &e, &avg),
                doc: d,
            })),
        });
    }
    s.upsert(points).unwrap();
    s.commit().unwrap();
    // Every chunk comes back whole from the payload.
    let ids: Vec<String> = (0..40).map(|n| format!("c-{n}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        ChunkIndex::docs_by_id(&s, &refs).unwrap(),
        lx.docs_by_id(&refs).unwrap()
    );
    // The whole collection in scope: the same ranking as the local index.
    let everything = Filter {
        sources: vec!["a".into(), "b".into()],
        max_tier: 3,
    };
    for q in [
        "refund limit",
        "capture payment gateway retry",
        "ledger_entry daily merchant",
        "merchant",
    ] {
        let parts = [QueryPart::new(q, 1.0)];
        let ranked = |r: Vec<(f32, ChunkDoc)>| r.into_iter().map(|(_, d)| d.chunk_id).collect::<Vec<_>>();
        let l = lx.search_parts(&parts, &everything, 10).unwrap();
        let sh = ChunkIndex::search_parts(&s, &parts, &everything, 10).unwrap();
        let scores = |r: &[(f32, ChunkDoc)]| {
            r.iter()
                .map(|(s, d)| format!("{}={s:.4}", d.chunk_id))
                .collect::<Vec<_>>()
        };
        let (ls, ss) = (scores(&l), scores(&sh));
        let local = ranked(l);
        let shared = ranked(sh);
        assert_eq!(shared, local, "{q}: shared {ss:?} local {ls:?}");
    }
    // A narrower scope is filtered inside Qdrant: nothing outside it.
    let narrow = Filter {
        sources: vec!["b".into()],
        max_tier: 1,
    };
    let hits =
        ChunkIndex::search_parts(&s, &[QueryPart::new("refund capture ledger", 1.0)], &narrow, 40).unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|(_, d)| d.source == "b" && d.tier == 1),
        "{hits:?}"
    );
    assert_eq!(
        ChunkIndex::count_within(&s, &narrow.sources, 1).unwrap(),
        lx.count_within(&narrow.sources, 1)
    );
    s.drop_collection().unwrap();
}
