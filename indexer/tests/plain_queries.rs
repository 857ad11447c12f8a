//! A query is plain text: no word or character acts as an operator, in
//! any case. And BM25 statistics of an index built by edits match those
//! of a fresh build of the same documents.
#![allow(clippy::unwrap_used)]

use indexer::lexical::{ChunkDoc, Filter, Lexical, QueryPart};

fn doc(n: usize, path: &str, content: &str) -> ChunkDoc {
    ChunkDoc {
        chunk_id: format!("c-{n}"),
        source: "s".into(),
        tier: 1,
        path: path.into(),
        language: "markdown".into(),
        symbol: None,
        kind: "section".into(),
        start_line: 1,
        end_line: 1,
        content: content.into(),
        file_hash: "h".into(),
        chunk_hash: format!("h{n}"),
        commit: None,
        ingested_at: 0,
    }
}

fn filter() -> Filter {
    Filter {
        sources: vec!["s".into()],
        max_tier: 4,
    }
}

fn ids(lx: &Lexical, q: &str) -> Vec<String> {
    lx.search(q, &filter(), 20)
        .unwrap()
        .into_iter()
        .map(|(_, d)| d.chunk_id)
        .collect()
}

const DOCS: [(&str, &str); 5] = [
    ("docs/blueprints.md", "A blueprint groups routes and templates."),
    (
        "docs/workers.md",
        "The worker pool does the work in the background.",
    ),
    ("docs/flags.md", "Feature flags switch behaviour per tenant."),
    (
        "src/app.py",
        "def register_blueprint(app, bp):\n    app.blueprints[bp.name] = bp",
    ),
    ("docs/misc.md", "Unrelated text about deployment windows."),
];

fn index(dir: &std::path::Path) -> Lexical {
    let lx = Lexical::open(dir).unwrap();
    let mut w = lx.writer().unwrap();
    for (n, (path, text)) in DOCS.iter().enumerate() {
        lx.add(&w, &doc(n, path, text)).unwrap();
    }
    lx.commit(&mut w).unwrap();
    lx
}

#[test]
fn upper_case_words_and_syntax_characters_are_never_operators() {
    let tmp = tempfile::tempdir().unwrap();
    let lx = index(tmp.path());
    // AND would require a word no chunk has: still the blueprint chunks.
    let hits = ids(&lx, "blueprint AND zzzznonexistent");
    assert!(hits.contains(&"c-0".to_string()), "{hits:?}");
    assert!(hits.contains(&"c-3".to_string()), "{hits:?}");
    // NOT would drop every chunk containing "work".
    let hits = ids(&lx, "the worker pool does NOT work");
    assert_eq!(hits.first().map(String::as_str), Some("c-1"), "{hits:?}");
    // OR, a leading minus, field syntax, ranges, quotes and brackets are words or nothing.
    for q in [
        "flags OR tenant",
        "-blueprint flags",
        "path:docs flags",
        "[a TO z] flags",
        "\"flags",
        "flags^10 (tenant",
        "flags IN [tenant]",
        "*flags* +tenant ~2",
    ] {
        let hits = ids(&lx, q);
        assert_eq!(hits.first().map(String::as_str), Some("c-2"), "{q}: {hits:?}");
    }
    // Only punctuation: no tokens, no results and no error.
    assert!(ids(&lx, "() : ^ \" -").is_empty());
    // The identifier matches whole and by its parts.
    assert_eq!(
        ids(&lx, "register_blueprint").first().map(String::as_str),
        Some("c-3")
    );
}

#[test]
fn a_part_with_more_weight_counts_more() {
    let tmp = tempfile::tempdir().unwrap();
    let lx = index(tmp.path());
    let plain = lx
        .search_parts(&[QueryPart::new("flags blueprint", 1.0)], &filter(), 5)
        .unwrap();
    let weighted = lx
        .search_parts(
            &[
                QueryPart::new("flags blueprint", 1.0),
                QueryPart::new("register_blueprint", 8.0),
            ],
            &filter(),
            5,
        )
        .unwrap();
    assert_ne!(plain[0].1.chunk_id, "c-3");
    assert_eq!(weighted[0].1.chunk_id, "c-3");
}

fn scored(lx: &Lexical, q: &str) -> Vec<(String, f32)> {
    lx.search(q, &filter(), 20)
        .unwrap()
        .into_iter()
        .map(|(s, d)| (d.chunk_id, s))
        .collect()
}

/// An index that reached its documents through adds, deletes and
/// re-adds scores exactly as one built fresh with the final documents:
/// deleted documents count in no statistic (document count, document
/// frequency, field lengths), merged away or not.
#[test]
fn incremental_index_scores_like_a_fresh_build() {
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = index(fresh_dir.path());

    let dir = tempfile::tempdir().unwrap();
    let lx = Lexical::open(dir.path()).unwrap();
    let mut w = lx.writer().unwrap();
    // Earlier versions of every file, and files deleted since, full of
    // the query's words, over several commits (several segments).
    for round in 0..3 {
        for (n, (path, _)) in DOCS.iter().enumerate() {
            let old = format!("old blueprint work flags tenant {round} ").repeat(n + 1);
            lx.add(&w, &doc(n, path, &old)).unwrap();
            lx.add(&w, &doc(100 + n, &format!("gone/{round}/{n}.md"), &old))
                .unwrap();
        }
        lx.commit(&mut w).unwrap();
        for (n, (path, _)) in DOCS.iter().enumerate() {
            lx.delete_file(&w, "s", path);
            lx.delete_file(&w, "s", &format!("gone/{round}/{n}.md"));
        }
        lx.commit(&mut w).unwrap();
    }
    // The final documents share a segment with documents deleted after
    // (a segment with only deletes is dropped whole).
    for (n, (path, text)) in DOCS.iter().enumerate() {
        lx.add(&w, &doc(n, path, text)).unwrap();
        lx.add(
            &w,
            &doc(200 + n, &format!("gone/last/{n}.md"), "blueprint work work flags"),
        )
        .unwrap();
    }
    lx.commit(&mut w).unwrap();
    for n in 0..DOCS.len() {
        lx.delete_file(&w, "s", &format!("gone/last/{n}.md"));
    }
    lx.commit(&mut w).unwrap();
    drop(w);
    assert!(
        lx.deleted_docs().unwrap() > 0,
        "the test needs deletes still in segments"
    );
    for q in [
        "blueprint",
        "the worker pool does work",
        "flags tenant blueprint",
        "docs/flags.md",
    ] {
        assert_eq!(scored(&lx, q), scored(&fresh, q), "before expunge: {q}");
    }
    lx.expunge_deletes().unwrap();
    assert_eq!(lx.deleted_docs().unwrap(), 0);
    for q in ["blueprint", "the worker pool does work", "flags tenant blueprint"] {
        assert_eq!(scored(&lx, q), scored(&fresh, q), "after expunge: {q}");
    }
}

#[test]
fn definitions_headers_and_docs_count_only_for_parts_that_ask() {
    use indexer::lexical::Evidence;
    let tmp = tempfile::tempdir().unwrap();
    let lx = Lexical::open(tmp.path()).unwrap();
    let mut w = lx.writer().unwrap();
    // Same text; only c-1's definition has the words in its header and docs.
    let body = "fn run() { step(); step(); }";
    lx.add_with(
        &w,
        &doc(1, "a.rs", body),
        &Evidence {
            signature: Some("pub fn retry_budget(attempts: u32)"),
            doc: Some("Retries spend the budget."),
        },
    )
    .unwrap();
    lx.add(&w, &doc(2, "b.rs", &format!("{body} retry budget")))
        .unwrap();
    lx.commit(&mut w).unwrap();
    let top = |part: QueryPart| {
        lx.search_parts(&[part], &filter(), 5)
            .unwrap()
            .into_iter()
            .map(|(_, d)| d.chunk_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        top(QueryPart::new("retry budget", 1.0))
            .first()
            .map(String::as_str),
        Some("c-1")
    );
    assert_eq!(
        top(QueryPart::new("retry budget", 1.0).without_definitions()),
        vec!["c-2".to_string()],
        "without definitions only the text counts"
    );
}
