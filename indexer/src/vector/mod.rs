//! Dense vectors: one [`VectorStore`] trait, an exact embedded store (the
//! default) and a Qdrant client, plus the embedding cache and the step that
//! brings the vectors in line with the lexical index.

pub mod cache;
pub mod embedded;
mod kernels;
pub mod qdrant;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;

/// One chunk's vector and the fields queries filter on.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub chunk_id: String,
    pub source: String,
    pub path: String,
    pub tier: u8,
    pub vector: Vec<f32>,
    /// The chunk itself and its BM25 term vector, for a store that also
    /// serves the lexical tier ([`VectorStore::keeps_text`]); `None` for
    /// the others.
    pub text: Option<Box<PointText>>,
}

/// A chunk as a shared index keeps it: what a result shows, and its term
/// vector ([`crate::terms::document`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PointText {
    pub doc: crate::lexical::ChunkDoc,
    pub terms: crate::terms::Sparse,
}

/// What a query may see. Empty `sources` sees nothing; `path_prefix`
/// narrows to paths starting with it.
#[derive(Clone, Debug, Default)]
pub struct VectorFilter {
    pub sources: BTreeSet<String>,
    pub max_tier: u8,
    pub path_prefix: Option<String>,
}

impl VectorFilter {
    pub fn admits(&self, source: &str, tier: u8, path: &str) -> bool {
        tier >= 1
            && tier <= self.max_tier
            && self.sources.contains(source)
            && self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// Chunk ids per (source, path) held by a store.
pub type FileChunks = BTreeMap<(String, String), BTreeSet<String>>;

/// A place to keep vectors and search them with exact filters. Writes take
/// effect at [`VectorStore::commit`], which makes them durable.
pub trait VectorStore: Send + Sync + std::fmt::Debug {
    /// Which backend, for status output (`embedded`, `qdrant`).
    fn kind(&self) -> &'static str;
    /// Whether points must carry their chunk and term vector
    /// ([`Point::text`]): the store is also the lexical index of replicas
    /// that have none of their own.
    fn keeps_text(&self) -> bool {
        false
    }
    /// Picks up what another process committed since this store was
    /// opened (a reader following a writer). A no-op where the backend is
    /// shared already.
    fn refresh(&mut self) -> Result<()> {
        Ok(())
    }
    fn upsert(&mut self, points: Vec<Point>) -> Result<()>;
    fn delete_file(&mut self, source: &str, path: &str) -> Result<()>;
    fn delete_source(&mut self, source: &str) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    /// Commits, then physically drops deleted records where the backend
    /// keeps them until compaction (the embedded log is rewritten).
    fn expunge(&mut self) -> Result<()> {
        self.commit()
    }
    /// Deleted records still stored (0 once expunged).
    fn dead_records(&self) -> usize {
        0
    }
    /// The best `k` chunks by cosine similarity among those `filter` admits.
    fn search(&self, vector: &[f32], filter: &VectorFilter, k: usize) -> Result<Vec<(String, f32)>>;
    /// [`VectorStore::search`] returning the chunks themselves (with their
    /// cosine similarity), where the store keeps them (one request instead
    /// of a search and a lookup); `None` where it does not.
    fn search_chunks(
        &self,
        _vector: &[f32],
        _filter: &VectorFilter,
        _k: usize,
    ) -> Result<Option<Vec<(f32, crate::lexical::ChunkDoc)>>> {
        Ok(None)
    }
    /// Vectors held (for a shared backend: this deployment's). An
    /// unreachable backend is an error, never 0.
    fn len(&self) -> Result<usize>;
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Vectors `filter` admits (what a caller may see), for counts shown
    /// to that caller.
    fn count(&self, filter: &VectorFilter) -> Result<usize>;
    /// Every file's chunk ids, to reconcile against the manifests.
    fn file_chunks(&self) -> Result<FileChunks>;
    /// For a store replicas read ([`VectorStore::keeps_text`]): the
    /// manifests published to it, by source, with their versions.
    fn published_manifests(&self) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }
    /// Publishes a source's manifest (`json`, whose hash is `version`) for
    /// replicas; durable when it returns.
    fn publish_manifest(&mut self, _source: &str, _json: &[u8], _version: &str) -> Result<()> {
        Ok(())
    }
    /// Gives every point of `source` the tier `tier` (a tier change
    /// re-processes files without changing chunk ids, so a store that
    /// keeps the tier in its points must be told).
    fn retier(&mut self, _source: &str, _tier: u8) -> Result<()> {
        Ok(())
    }
    /// Withdraws a source's published manifest.
    fn unpublish_manifest(&mut self, _source: &str) -> Result<()> {
        Ok(())
    }
}
