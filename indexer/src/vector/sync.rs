//! Bringing the vector store in line with the lexical index: files whose
//! chunks changed get new vectors (from the cache when the text was seen
//! before, else from the model), files and sources that are gone lose
//! theirs. Idempotent, so an interrupted sync is finished by the next one;
//! progress is committed every few thousand vectors; embeddings are
//! durable in the cache after every group of [`EMBED_GROUP`].

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use super::cache::{EmbeddingCache, key};
use super::{FileChunks, Point, PointText, VectorStore};
use crate::embed::Embedder;
use crate::error::{IndexError, Result};
use crate::lexical::{ChunkDoc, Lexical, OwnedEvidence};
use crate::manifest::Manifests;

/// Texts sent to the model at once (it batches them by eight inside).
const EMBED_GROUP: usize = 64;
/// Vectors between durable commits.
const COMMIT_EVERY: usize = 2_000;
/// Cache records beyond twice the live chunks that are tolerated before
/// the cache is cut back to the live texts.
const CACHE_SLACK: u64 = 10_000;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SyncReport {
    pub model_id: String,
    /// Chunks in the lexical index.
    pub chunks: u64,
    /// Vectors in the store after the sync.
    pub vectors: u64,
    /// Chunks the model embedded in this sync.
    pub embedded: u64,
    /// Chunks whose vector came from the cache.
    pub from_cache: u64,
    /// Files whose vectors were removed (gone, changed, purged).
    pub files_removed: u64,
    /// Milliseconds spent in the model.
    pub embed_ms: u64,
    /// Chunks still without a vector when a limited sync stopped (0 when
    /// the store caught up with the index).
    pub remaining: u64,
    /// Embedding-cache records dropped because no live chunk has their
    /// text (edited away, or of a source that is gone).
    pub cache_dropped: u64,
}

impl SyncReport {
    /// Share of chunks that have a vector.
    pub fn coverage(&self) -> f64 {
        if self.chunks == 0 {
            1.0
        } else {
            self.vectors as f64 / self.chunks as f64
        }
    }
}

struct Pending {
    point: Point,
    key: super::cache::Key,
    text: String,
}

/// How far a sync goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncOptions {
    /// Most chunks to embed (cache hits and removals are not counted).
    pub limit: Option<u64>,
    /// A purge is unverified: the cache is cut back to the live texts.
    pub purging: bool,
}

pub fn sync(
    manifests: &Manifests,
    lexical: &Lexical,
    store: &mut dyn VectorStore,
    cache: &mut EmbeddingCache,
    embedder: &Embedder,
    options: SyncOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyncReport> {
    let SyncOptions { limit, purging } = options;
    let mut report = SyncReport {
        model_id: embedder.model_id().to_string(),
        chunks: lexical.total_chunks(),
        ..Default::default()
    };
    let mut desired = FileChunks::new();
    // A store replicas read also gets each source's manifest (without the
    // skipped files, which only the indexer needs), after the chunks.
    let mut published: Vec<(String, Vec<u8>)> = Vec::new();
    for source in manifests.sources()? {
        let mut m = manifests.load(&source)?;
        if store.keeps_text() {
            m.skipped.clear();
            let json = serde_json::to_vec(&m).map_err(|e| IndexError::Layout {
                path: manifests.path_of(&source),
                message: e.to_string(),
            })?;
            published.push((source.clone(), json));
        }
        for (path, e) in m.files {
            if !e.chunk_ids.is_empty() {
                desired.insert((source.clone(), path), e.chunk_ids.into_iter().collect());
            }
        }
    }
    let have = store.file_chunks()?;
    let desired_sources: BTreeSet<&String> = desired.keys().map(|(s, _)| s).collect();
    let mut gone_sources = BTreeSet::new();
    for ((source, path), ids) in &have {
        if !desired_sources.contains(source) {
            gone_sources.insert(source.clone());
        } else if desired.get(&(source.clone(), path.clone())) != Some(ids) {
            store.delete_file(source, path)?;
        }
        if desired.get(&(source.clone(), path.clone())) != Some(ids) {
            report.files_removed += 1;
        }
    }
    for s in &gone_sources {
        store.delete_source(s)?;
    }
    let todo: Vec<(&(String, String), &BTreeSet<String>)> = desired
        .iter()
        .filter(|(k, ids)| have.get(*k) != Some(*ids))
        .collect();
    let total: u64 = todo.iter().map(|(_, ids)| ids.len() as u64).sum();
    let mut done = 0u64;
    let mut queue: Vec<Pending> = Vec::new();
    let mut since_commit = 0usize;
    // With a limit, stop once that many chunks were embedded (cache hits
    // are cheap and do not count); what is left waits for the next call.
    let within = |report: &SyncReport| limit.is_none_or(|l| report.embedded < l);
    // A store that is also replicas' lexical index gets each chunk and
    // its term vector, normalised by the index's field lengths now.
    let keeps_text = store.keeps_text();
    let avg_lengths = lexical.average_lengths();
    'files: for ((source, path), ids) in todo {
        if !within(&report) {
            break 'files;
        }
        let docs: Vec<(ChunkDoc, OwnedEvidence)> = if keeps_text {
            lexical.docs_for_file_with_evidence(source, path)?
        } else {
            lexical
                .docs_for_file(source, path)?
                .into_iter()
                .map(|d| (d, OwnedEvidence::default()))
                .collect()
        };
        for (doc, evidence) in docs {
            if !ids.contains(&doc.chunk_id) {
                continue;
            }
            let k = key(embedder.model_id(), &doc.content);
            let text = keeps_text.then(|| {
                Box::new(PointText {
                    terms: crate::terms::document(&doc, &evidence.as_evidence(), &avg_lengths),
                    doc: doc.clone(),
                })
            });
            let point = Point {
                chunk_id: doc.chunk_id,
                source: doc.source,
                path: doc.path,
                tier: doc.tier,
                vector: Vec::new(),
                text,
            };
            match cache.get(&k)? {
                Some(v) => {
                    report.from_cache += 1;
                    store.upsert(vec![Point { vector: v, ..point }])?;
                    since_commit += 1;
                    done += 1;
                }
                None => queue.push(Pending {
                    point,
                    key: k,
                    text: doc.content,
                }),
            }
            if queue.len() >= EMBED_GROUP {
                done += embed_queue(&mut queue, store, cache, embedder, &mut report)?;
                since_commit += EMBED_GROUP;
                progress(done, total);
            }
            if since_commit >= COMMIT_EVERY {
                cache.flush()?;
                store.commit()?;
                since_commit = 0;
            }
        }
    }
    done += embed_queue(&mut queue, store, cache, embedder, &mut report)?;
    progress(done, total);
    cache.flush()?;
    store.commit()?;
    if store.keeps_text() {
        // The tier lives in each point: a source whose tier changed keeps
        // its chunk ids, so its points are re-tiered from the index.
        for source in &desired_sources {
            let first = desired.keys().find(|(s, _)| s == *source);
            if let Some((s, p)) = first
                && let Some(doc) = lexical.docs_for_file(s, p)?.first()
            {
                store.retier(s, doc.tier)?;
            }
        }
        // Manifests only once their chunks are all there (a limited sync
        // that stopped early publishes them on a later call); those of
        // sources that are gone, at once.
        let caught_up = done >= total;
        publish_manifests(store, &published, caught_up)?;
    }
    // The cache keeps every text ever embedded; a watcher re-embedding
    // edits would grow it (on disk and its in-memory key index) forever,
    // and a purged source's vectors would stay in it. Past twice the live
    // chunks (plus slack), when a source is gone, or while a purge is
    // unverified (`purging`: the source may never have had vectors in the
    // store, yet have cached ones), it keeps only the texts the index
    // holds now.
    if purging || !gone_sources.is_empty() || cache.len() as u64 > 2 * report.chunks + CACHE_SLACK {
        report.cache_dropped = cache.retain(&live_keys(lexical, embedder.model_id())?)? as u64;
    }
    report.vectors = store.len()? as u64;
    report.remaining = total.saturating_sub(done);
    Ok(report)
}

/// Publishes the manifests that changed since last published and
/// withdraws those of sources that are gone.
fn publish_manifests(
    store: &mut dyn VectorStore,
    manifests: &[(String, Vec<u8>)],
    changed: bool,
) -> Result<()> {
    let mut before = store.published_manifests()?;
    for (source, json) in manifests {
        let version = blake3::hash(json).to_hex().to_string();
        if before.remove(source).as_deref() != Some(version.as_str()) && changed {
            store.publish_manifest(source, json, &version)?;
        }
    }
    for gone in before.keys() {
        store.unpublish_manifest(gone)?;
    }
    Ok(())
}

/// The cache keys of every text the index holds now.
pub fn live_keys(lexical: &Lexical, model_id: &str) -> Result<std::collections::HashSet<super::cache::Key>> {
    let mut keep = std::collections::HashSet::new();
    lexical.each_live_document(&mut |doc| {
        keep.insert(key(model_id, &doc.content));
    })?;
    Ok(keep)
}

fn embed_queue(
    queue: &mut Vec<Pending>,
    store: &mut dyn VectorStore,
    cache: &mut EmbeddingCache,
    embedder: &Embedder,
    report: &mut SyncReport,
) -> Result<u64> {
    if queue.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    let texts: Vec<&str> = queue.iter().map(|p| p.text.as_str()).collect();
    let vectors = embedder.embed_documents(&texts).map_err(|e| IndexError::Layout {
        path: embedder.dir().to_path_buf(),
        message: e.to_string(),
    })?;
    report.embed_ms += started.elapsed().as_millis() as u64;
    let n = queue.len() as u64;
    report.embedded += n;
    let mut points = Vec::with_capacity(queue.len());
    for (p, v) in queue.drain(..).zip(vectors) {
        cache.put(p.key, &v);
        points.push(Point { vector: v, ..p.point });
    }
    // Each group's embeddings are durable at once (one fsync per group): a
    // pass killed mid-way re-embeds at most one group, the rest come back
    // from the cache.
    cache.flush()?;
    registry::fsutil::crash_point("embed.group");
    store.upsert(points)?;
    Ok(n)
}
