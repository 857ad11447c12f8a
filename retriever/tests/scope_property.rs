//! Query-time scope, as a property over random registries and corpora: a
//! principal never receives a chunk from a source outside its grant, from a
//! source that is not approved, or above its tier ceiling, in any mode
//! (lexical, dense, hybrid); a topic package is served, or even named, only
//! when every source it cites is within the grant; and every result carries
//! a complete provenance tag. Uses the real indexer, vector store and model.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use indexer::embed::{Embedder, find_model_dir};
use indexer::vector::VectorStore;
use indexer::vector::embedded::EmbeddedStore;
use indexer::{Indexer, PassOptions};
use proptest::prelude::*;
use registry::{Clock, FixedClock, Registry, SourceId, Status};
use retriever::{Caller, GroupBy, Mode, Options, Retriever};

const WORDS: &[&str] = &[
    "payment",
    "ledger",
    "retry",
    "backoff",
    "invoice",
    "token",
    "cluster",
    "failover",
    "postgres",
    "runbook",
    "deploy",
    "canary",
    "latency",
    "budget",
    "salary",
    "review",
    "incident",
    "schema",
    "migration",
    "cache",
];

fn embedder() -> Arc<Embedder> {
    static E: OnceLock<Arc<Embedder>> = OnceLock::new();
    E.get_or_init(|| {
        let dir = find_model_dir(None).expect("run scripts/setup-model.sh first");
        Arc::new(Embedder::load(&dir, 1).unwrap())
    })
    .clone()
}

#[derive(Debug, Clone)]
struct Src {
    tier: u8,
    status: usize,
    files: Vec<Vec<usize>>,
}

#[derive(Debug, Clone)]
struct Who {
    ceiling: u8,
    grant: Vec<bool>,
    all: bool,
}

fn arb_world() -> impl Strategy<Value = (Vec<Src>, Vec<Who>, Vec<usize>)> {
    let src = (
        1u8..=4,
        0usize..4,
        prop::collection::vec(prop::collection::vec(0..WORDS.len(), 3..12), 1..4),
    )
        .prop_map(|(tier, status, files)| Src { tier, status, files });
    (prop::collection::vec(src, 1..5), 1usize..4).prop_flat_map(|(sources, n_who)| {
        let n = sources.len();
        let who = (1u8..=4, prop::collection::vec(any::<bool>(), n), any::<bool>())
            .prop_map(|(ceiling, grant, all)| Who { ceiling, grant, all });
        (
            Just(sources),
            prop::collection::vec(who, n_who),
            prop::collection::vec(0..WORDS.len(), 1..4),
        )
    })
}

fn registry_text(sources: &[Src], who: &[Who]) -> String {
    let mut t = String::from("version = 1\n");
    for (i, s) in sources.iter().enumerate() {
        let status = ["approved", "proposed", "revoked", "approved"][s.status];
        t.push_str(&format!(
            "[[sources]]\nid = \"s{i}\"\nkind = \"dir\"\nlocation = \"src/s{i}\"\nowner = \"team-{i}\"\ntier = {}\nstatus = \"{status}\"\n",
            s.tier
        ));
    }
    for (i, w) in who.iter().enumerate() {
        let grant: Vec<String> = if w.all {
            vec!["\"*\"".into()]
        } else {
            w.grant
                .iter()
                .enumerate()
                .filter(|(_, g)| **g)
                .map(|(j, _)| format!("\"s{j}\""))
                .collect()
        };
        t.push_str(&format!(
            "[[principals]]\nname = \"p{i}\"\nrole = \"agent\"\ntoken_hash = \"{}\"\ntier_ceiling = {}\nsources = [{}]\n",
            registry::ContentHash::of(format!("token-{i}").as_bytes()),
            w.ceiling,
            grant.join(", ")
        ));
    }
    t
}

/// Writes the world, indexes every source as if all were approved (so the
/// index holds content the registry later excludes), then applies the real
/// registry for querying.
fn build(root: &Path, sources: &[Src], who: &[Who]) -> (Registry, Retriever) {
    for (i, s) in sources.iter().enumerate() {
        let dir = root.join(format!("src/s{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (j, words) in s.files.iter().enumerate() {
            let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
            std::fs::write(
                dir.join(format!("doc{j}.md")),
                format!("# s{i} doc{j}\n\n{}\n", text.join(" ")),
            )
            .unwrap();
        }
    }
    let everything: Vec<Src> = sources
        .iter()
        .map(|s| Src {
            status: 0,
            ..s.clone()
        })
        .collect();
    let all_approved = Registry::parse(&registry_text(&everything, who), root).unwrap();
    let data = root.join("data");
    let idx = Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default()).unwrap();
    let clock = FixedClock(jiff::Timestamp::now());
    idx.run_pass(
        &all_approved,
        &all_approved.policy(&clock),
        clock.now(),
        &mut |_, _, _| {},
    )
    .unwrap();
    let e = embedder();
    let mut store = EmbeddedStore::open(&Indexer::vectors_dir(&data), e.model_id()).unwrap();
    idx.sync_vectors(&mut store, &e, &mut |_, _| {}).unwrap();
    drop(idx);
    let reg = Registry::parse(&registry_text(sources, who), root).unwrap();
    let store = EmbeddedStore::open_read(&Indexer::vectors_dir(&data), e.model_id())
        .unwrap()
        .unwrap();
    write_topics(root, sources);
    let mut r = Retriever::open(&data, Ok((e, Box::new(store) as Box<dyn VectorStore>)))
        .unwrap()
        .with_topics(&root.join("topics"), 7);
    // Serve the best visible package whatever its score, so every query
    // exercises tier 1's scope check.
    r.topic_match.threshold = f32::MIN;
    r.topic_match.lexical_threshold = f32::MIN;
    (reg, r)
}

/// Per source a package citing its first doc, and one citing it and the
/// next source's first doc.
fn write_topics(root: &Path, sources: &[Src]) {
    let dir = root.join("topics");
    std::fs::create_dir_all(&dir).unwrap();
    let cite = |i: usize| {
        let text = std::fs::read_to_string(root.join(format!("src/s{i}/doc0.md"))).unwrap();
        let hash = packages::topic::span_hash(&text, 3, 3).unwrap();
        let words = text.lines().nth(2).unwrap().to_string();
        (
            format!("[[citations]]\nref = \"s{i}:doc0.md#L3\"\nblake3 = \"{hash}\"\n"),
            words,
        )
    };
    let today = jiff::Zoned::now().date();
    let n = sources.len();
    for i in 0..n {
        let (c, words) = cite(i);
        let (c2, words2) = cite((i + 1) % n);
        for (id, cites, about) in [
            (format!("t{i}"), c.clone(), words.clone()),
            (
                format!("m{i}"),
                if n > 1 { format!("{c}\n{c2}") } else { c.clone() },
                format!("{words} {words2}"),
            ),
        ] {
            std::fs::write(
                dir.join(format!("{id}.md")),
                format!(
                    "+++\nid = \"{id}\"\ntitle = \"{about}\"\nquestions = [\"{about}\"]\nowner = \"team-{i}\"\nreviewed_at = {today}\n\n{cites}+++\n{about} [1]\n"
                ),
            )
            .unwrap();
        }
    }
}

/// Whether principal `w` may read source `k`.
fn may_read(reg: &Registry, w: &Who, source: &str) -> bool {
    let k: usize = source[1..].parse().unwrap();
    let src = reg.source(&SourceId::new(source.to_string()).unwrap()).unwrap();
    src.status == Status::Approved && (w.all || w.grant[k]) && src.tier.get() <= w.ceiling
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn no_principal_ever_sees_beyond_its_scope((sources, who, query) in arb_world()) {
        let tmp = tempfile::tempdir().unwrap();
        let (reg, r) = build(tmp.path(), &sources, &who);
        let clock = FixedClock(jiff::Timestamp::now());
        let policy = reg.policy(&clock);
        let text: Vec<&str> = query.iter().map(|w| WORDS[*w]).collect();
        let text = text.join(" ");
        // Not vacuous: with any approved source the operator's dense query
        // finds something, and so does a principal granted it.
        let any_approved = sources.iter().any(|s| s.status == 0 || s.status == 3);
        let dense = Options { mode: Mode::Dense, limit: 50, max_tokens: 100_000, packages: false, ..Options::default() };
        let op = r.query(&Caller::operator(&reg), &text, &dense).unwrap();
        prop_assert_eq!(!op.results.is_empty(), any_approved);
        for (i, w) in who.iter().enumerate() {
            let p = reg.principal(&format!("p{i}")).unwrap();
            let caller = Caller { registry: &reg, scope: policy.scope_for(p) };
            for mode in [Mode::Lexical, Mode::Dense, Mode::Hybrid] {
                let opts = Options { mode, limit: 50, max_tokens: 100_000, packages: true, ..Options::default() };
                let a = r.query(&caller, &text, &opts).unwrap();
                // Tier 1: a package only when all its sources are readable;
                // and one is served whenever one is visible.
                let visible: Vec<String> = (0..sources.len())
                    .flat_map(|k| {
                        let next = (k + 1) % sources.len();
                        [
                            (format!("t{k}"), vec![k]),
                            (format!("m{k}"), vec![k, next]),
                        ]
                    })
                    .filter(|(_, cited)| cited.iter().all(|c| may_read(&reg, w, &format!("s{c}"))))
                    .map(|(id, _)| id)
                    .collect();
                match &a.package {
                    Some(pkg) => {
                        let pp = &pkg.provenance;
                        prop_assert!(visible.contains(&pp.package_id), "p{} got {}", i, pp.package_id);
                        for c in &pp.citations {
                            prop_assert!(may_read(&reg, w, &c.source), "p{} got a citation of {}", i, c.source);
                            prop_assert!(c.tier <= w.ceiling);
                        }
                        prop_assert!(pp.tier <= w.ceiling);
                        prop_assert_eq!(a.served_by.as_str(), "topic_package");
                    }
                    None => prop_assert!(visible.is_empty(), "p{} sees {:?} but got none: {:?}", i, visible, a.topic),
                }
                if let Some(t) = &a.topic
                    && let Some(c) = &t.candidate
                {
                    prop_assert!(visible.contains(c), "p{} was told about {}", i, c);
                }
                prop_assert_eq!(a.topic.as_ref().map_or(0, |t| t.packages_in_scope), visible.len());
                // Tier 2 for the same caller: chunks and, on alternate
                // principals, files (their files list only what is served).
                let group_by = if i % 2 == 0 { GroupBy::Chunk } else { GroupBy::File };
                let a = r.query(&caller, &text, &Options { packages: false, group_by, ..opts.clone() }).unwrap();
                for f in &a.files {
                    prop_assert!(may_read(&reg, w, &f.source), "p{} got file {}:{}", i, f.source, f.path);
                    for id in &f.chunks {
                        prop_assert!(a.results.iter().any(|h| &h.id == id && h.provenance.path == f.path));
                    }
                }
                for h in &a.results {
                    let prov = &h.provenance;
                    let k: usize = prov.source[1..].parse().unwrap();
                    let src = reg.source(&SourceId::new(prov.source.clone()).unwrap()).unwrap();
                    prop_assert!(src.status == Status::Approved, "{} is {:?}", prov.source, src.status);
                    prop_assert!(w.all || w.grant[k], "p{} not granted {}", i, prov.source);
                    prop_assert!(src.tier.get() <= w.ceiling, "p{} ceiling {} got tier {}", i, w.ceiling, src.tier);
                    prop_assert!(prov.tier <= w.ceiling);
                    // A complete provenance tag.
                    prop_assert_eq!(&prov.result_id, &h.id);
                    let owner = format!("team-{}", k);
                    prop_assert_eq!(prov.owner.as_deref(), Some(owner.as_str()));
                    prop_assert!(prov.path.ends_with(".md") && prov.start_line >= 1 && prov.end_line >= prov.start_line);
                    prop_assert_eq!(prov.content_hash.len(), 64);
                    prop_assert_eq!(prov.file_hash.len(), 64);
                    prop_assert!(prov.ingested_at.is_some());
                    prop_assert!(prov.decision_id.as_deref().is_some_and(|d| d.starts_with("dec-")));
                    prop_assert_eq!(&prov.registry_version, &reg.version.to_hex());
                    prop_assert_eq!(prov.freshness.status.as_str(), "fresh");
                    prop_assert!(!prov.served_by.is_empty());
                    prop_assert_eq!(
                        blake3::hash(h.content.as_bytes()).to_hex().to_string(),
                        prov.content_hash.clone()
                    );
                }
            }
        }
    }
}
