//! Vectors in a Qdrant server or cluster, for scaling out: the same layout
//! as the embedded store (one point per chunk, payload `chunk_id`,
//! `source`, `path`, `file_key`, `tier`), plus `deployment` and `dirs`,
//! each payload-indexed so that every filter runs inside Qdrant.
//!
//! - The collection is `<prefix>_<model id>`: vectors of another model are
//!   never mixed in, and a model change starts an empty collection.
//! - Every point carries its deployment's id, and every read, count and
//!   delete is filtered by it: deployments sharing a collection never see
//!   or delete each other's points.
//! - Only a writer creates the collection; a reader opening one that does
//!   not exist is an error that says so.
//! - Writes are buffered in order and applied at commit with `wait`, so a
//!   commit that returns is durable on the server.
//! - Calls block on the store's own runtime; called from inside another
//!   runtime (an async handler) they run on a scoped thread, never on the
//!   caller's worker.

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, PointId, PointStruct, QueryPointsBuilder, Range,
    ScrollPointsBuilder, SearchParamsBuilder, UpsertPointsBuilder, VectorParamsBuilder, value::Kind,
};
use qdrant_client::{Payload, Qdrant};

use super::{FileChunks, Point, VectorFilter, VectorStore};
use crate::embed::DIM;
use crate::error::{IndexError, Result};

enum Op {
    Upsert(Vec<PointStruct>),
    Delete(Filter),
}

/// Where and as whom a store keeps its vectors.
#[derive(Clone, Debug)]
pub struct QdrantTarget<'a> {
    pub url: &'a str,
    pub api_key: Option<&'a str>,
    /// Collection name prefix; the collection is `<prefix>_<model id>`.
    pub prefix: &'a str,
    /// The id of the embedding model the vectors come from.
    pub model_id: &'a str,
    /// This deployment's id: the only points it reads, counts or deletes.
    pub deployment: &'a str,
    /// Shards and copies of each when a writer creates the collection on
    /// a cluster (1 and 1 on a single node).
    pub shards: u32,
    pub replication: u32,
}

pub struct QdrantStore {
    client: Qdrant,
    rt: tokio::runtime::Runtime,
    collection: String,
    deployment: String,
    url: String,
    pending: Vec<Op>,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

fn qerr(url: &str, what: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Layout {
        path: url.into(),
        message: format!("qdrant {what}: {e}"),
    }
}

fn file_key(source: &str, path: &str) -> String {
    format!("{source}\u{1f}{path}")
}

/// Every directory a path is under, each with its trailing `/` (`a/b/c.rs`:
/// `a/`, `a/b/`): what a directory prefix filter matches in Qdrant.
fn dirs(path: &str) -> Vec<String> {
    path.match_indices('/')
        .map(|(i, _)| path[..=i].to_string())
        .collect()
}

/// The collection for `prefix` and `model_id`: lowercase letters, digits,
/// `_` and `-` only.
pub fn collection_name(prefix: &str, model_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}_{}", clean(prefix), clean(model_id))
}

/// A stable UUID for a chunk id in a deployment (Qdrant ids are integers
/// or UUIDs): two deployments indexing the same chunk keep two points.
fn point_id(deployment: &str, chunk_id: &str) -> PointId {
    let h = blake3::hash(format!("{deployment}\0{chunk_id}").as_bytes()).to_hex();
    PointId::from(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Payload fields and their index types.
const INDEXED: [(&str, FieldType); 7] = [
    ("deployment", FieldType::Keyword),
    ("chunk_id", FieldType::Keyword),
    ("source", FieldType::Keyword),
    ("path", FieldType::Keyword),
    ("dirs", FieldType::Keyword),
    ("file_key", FieldType::Keyword),
    ("tier", FieldType::Integer),
];

impl QdrantStore {
    /// Connects to the collection for `t`. A writer (`create`) creates the
    /// collection and its payload indexes when missing; a reader never
    /// changes the server, and a missing collection is an error.
    pub fn connect(t: &QdrantTarget<'_>, create: bool) -> Result<QdrantStore> {
        if t.deployment.is_empty() {
            return Err(qerr(t.url, "deployment", "a deployment id is required"));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| qerr(t.url, "runtime", e))?;
        let client = Qdrant::from_url(t.url)
            .api_key(t.api_key.map(String::from))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .skip_compatibility_check()
            .build()
            .map_err(|e| qerr(t.url, "client", e))?;
        let store = QdrantStore {
            client,
            rt,
            collection: collection_name(t.prefix, t.model_id),
            deployment: t.deployment.to_string(),
            url: t.url.to_string(),
            pending: Vec::new(),
        };
        let (client, collection, url) = (&store.client, &store.collection, t.url);
        store.run(async {
            let exists = client
                .collection_exists(collection)
                .await
                .map_err(|e| qerr(url, "connect", e))?;
            if !exists && !create {
                return Err(qerr(
                    url,
                    "collection",
                    format!("{collection} does not exist yet; run `ctxplane index` first"),
                ));
            }
            if !exists {
                client
                    .create_collection(
                        CreateCollectionBuilder::new(collection.as_str())
                            .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine))
                            .shard_number(t.shards.max(1))
                            .replication_factor(t.replication.max(1)),
                    )
                    .await
                    .map_err(|e| qerr(url, "create collection", e))?;
            }
            if create {
                // Idempotent: also adds the indexes a collection made by an
                // older version lacks.
                for (field, kind) in INDEXED {
                    client
                        .create_field_index(
                            CreateFieldIndexCollectionBuilder::new(collection.as_str(), field, kind)
                                .wait(true),
                        )
                        .await
                        .map_err(|e| qerr(url, "payload index", e))?;
                }
            }
            Ok::<_, IndexError>(())
        })?;
        Ok(store)
    }

    /// The collection this store uses.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Runs `f` to completion on the store's runtime, off any async worker.
    fn run<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        std::thread::scope(|s| match s.spawn(|| self.rt.block_on(f)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    /// Deletes the whole collection (tests).
    pub fn drop_collection(&self) -> Result<()> {
        self.run(self.client.delete_collection(&self.collection))
            .map_err(|e| qerr(&self.url, "delete collection", e))?;
        Ok(())
    }

    fn mine(&self) -> Condition {
        Condition::matches("deployment", self.deployment.clone())
    }

    /// The filter for `filter`'s scope within this deployment; a path
    /// prefix that ends at a directory boundary is matched in Qdrant too.
    fn filter(&self, filter: &VectorFilter) -> Filter {
        let mut must = vec![
            self.mine(),
            Condition::matches("source", filter.sources.iter().cloned().collect::<Vec<String>>()),
            Condition::range(
                "tier",
                Range {
                    gte: Some(1.0),
                    lte: Some(f64::from(filter.max_tier)),
                    ..Default::default()
                },
            ),
        ];
        if let Some(p) = filter.path_prefix.as_deref().filter(|p| p.ends_with('/')) {
            must.push(Condition::matches("dirs", p.to_string()));
        }
        Filter::must(must)
    }

    fn count_where(&self, filter: Filter) -> Result<usize> {
        let r = self
            .run(
                self.client.count(
                    CountPointsBuilder::new(&self.collection)
                        .filter(filter)
                        .exact(true),
                ),
            )
            .map_err(|e| qerr(&self.url, "count", e))?;
        Ok(r.result.map_or(0, |c| c.count as usize))
    }
}

fn text(payload: &std::collections::HashMap<String, qdrant_client::qdrant::Value>, key: &str) -> String {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Longest one request to Qdrant may take (a server that went away must
/// not hold a query or a readiness probe for long).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a connection attempt may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most points one search reads while looking for `k` under a path
/// prefix Qdrant cannot match (one that ends inside a file name).
const MAX_PREFIX_SCAN: u64 = 10_000;

impl VectorStore for QdrantStore {
    fn kind(&self) -> &'static str {
        "qdrant"
    }

    fn upsert(&mut self, points: Vec<Point>) -> Result<()> {
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            let payload = Payload::try_from(serde_json::json!({
                "deployment": self.deployment,
                "chunk_id": p.chunk_id,
                "source": p.source,
                "path": p.path,
                "dirs": dirs(&p.path),
                "file_key": file_key(&p.source, &p.path),
                "tier": p.tier,
            }))
            .map_err(|e| qerr(&self.url, "payload", e))?;
            structs.push(PointStruct::new(
                point_id(&self.deployment, &p.chunk_id),
                p.vector,
                payload,
            ));
        }
        self.pending.push(Op::Upsert(structs));
        Ok(())
    }

    fn delete_file(&mut self, source: &str, path: &str) -> Result<()> {
        self.pending.push(Op::Delete(Filter::must([
            self.mine(),
            Condition::matches("file_key", file_key(source, path)),
        ])));
        Ok(())
    }

    fn delete_source(&mut self, source: &str) -> Result<()> {
        self.pending.push(Op::Delete(Filter::must([
            self.mine(),
            Condition::matches("source", source.to_string()),
        ])));
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let ops = std::mem::take(&mut self.pending);
        let (client, collection, url) = (&self.client, &self.collection, &self.url);
        self.run(async {
            for op in ops {
                match op {
                    Op::Upsert(points) => {
                        for batch in points.chunks(256) {
                            client
                                .upsert_points(
                                    UpsertPointsBuilder::new(collection, batch.to_vec()).wait(true),
                                )
                                .await
                                .map_err(|e| qerr(url, "upsert", e))?;
                        }
                    }
                    Op::Delete(filter) => {
                        client
                            .delete_points(DeletePointsBuilder::new(collection).points(filter).wait(true))
                            .await
                            .map_err(|e| qerr(url, "delete", e))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn search(&self, vector: &[f32], filter: &VectorFilter, k: usize) -> Result<Vec<(String, f32)>> {
        if k == 0 || filter.sources.is_empty() || vector.len() != DIM {
            return Ok(Vec::new());
        }
        // A prefix Qdrant cannot match is checked here, reading further
        // pages until k are found (or the scan limit).
        let client_side = filter.path_prefix.as_deref().is_some_and(|p| !p.ends_with('/'));
        let page = if client_side {
            (k as u64 * 4).max(64)
        } else {
            k as u64
        };
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let response = self
                .run(
                    self.client.query(
                        QueryPointsBuilder::new(&self.collection)
                            .query(vector.to_vec())
                            .filter(self.filter(filter))
                            .params(SearchParamsBuilder::default().hnsw_ef(256))
                            .limit(page)
                            .offset(offset)
                            .with_payload(true),
                    ),
                )
                .map_err(|e| qerr(&self.url, "query", e))?;
            let got = response.result.len() as u64;
            for p in response.result {
                let tier = match p.payload.get("tier").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(t)) => u8::try_from(*t).unwrap_or(u8::MAX),
                    _ => u8::MAX,
                };
                // The server filtered already; check again, it costs nothing.
                if filter.admits(&text(&p.payload, "source"), tier, &text(&p.payload, "path")) {
                    out.push((text(&p.payload, "chunk_id"), p.score));
                }
            }
            offset += got;
            if !client_side || out.len() >= k || got < page || offset >= MAX_PREFIX_SCAN {
                break;
            }
        }
        out.truncate(k);
        Ok(out)
    }

    fn len(&self) -> Result<usize> {
        self.count_where(Filter::must([self.mine()]))
    }

    fn count(&self, filter: &VectorFilter) -> Result<usize> {
        if filter.sources.is_empty() || filter.max_tier == 0 {
            return Ok(0);
        }
        self.count_where(self.filter(filter))
    }

    fn file_chunks(&self) -> Result<FileChunks> {
        let mut out = FileChunks::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.collection)
                .filter(Filter::must([self.mine()]))
                .limit(1_000)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let page = self
                .run(self.client.scroll(req))
                .map_err(|e| qerr(&self.url, "scroll", e))?;
            for p in &page.result {
                out.entry((text(&p.payload, "source"), text(&p.payload, "path")))
                    .or_default()
                    .insert(text(&p.payload, "chunk_id"));
            }
            match page.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories() {
        assert_eq!(
            collection_name("ctxplane", "all-MiniLM-L6-v2-int8-b2a68b34a45c-w256"),
            "ctxplane_all-minilm-l6-v2-int8-b2a68b34a45c-w256"
        );
        assert_eq!(collection_name("Team A", "m/1"), "team-a_m-1");
        assert_eq!(dirs("a/b/c.rs"), vec!["a/".to_string(), "a/b/".to_string()]);
        assert!(dirs("top.rs").is_empty());
        assert_ne!(point_id("d1", "c-1"), point_id("d2", "c-1"));
    }
}
