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
//! - Each point has two vectors: `dense` (the model's) and `terms` (BM25
//!   term frequencies, [`crate::terms`], with Qdrant's IDF modifier), and
//!   its payload holds the whole chunk: the store is also the lexical
//!   index ([`ChunkIndex`]) of serve replicas that have no local one.
//! - The indexer's manifests are published beside it, in
//!   `<collection>_manifests` (each source's JSON in parts of at most
//!   [`MANIFEST_PART`] bytes, all parts carrying the manifest's hash), so
//!   replicas give the same provenance and verify topic citations.

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, Modifier, NamedVectors, PointId, PointStruct, Query,
    QueryPointsBuilder, Range, ScrollPointsBuilder, SearchParamsBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder,
    VectorsConfigBuilder, value::Kind,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::{FileChunks, Point, VectorFilter, VectorStore};
use crate::embed::DIM;
use crate::error::{IndexError, Result};
use crate::lexical::{ChunkDoc, ChunkIndex, QueryPart};

/// The dense vector's name in a point.
const DENSE: &str = "dense";
/// The BM25 term vector's name.
const TERMS: &str = "terms";

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
    /// A reader (a replica): counts are informational there and kept for
    /// [`COUNT_TTL`]; a writer counts exactly every time (purge proofs).
    reader: bool,
    counts: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, usize)>>,
}

/// How long a reader reuses a count.
const COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(2);

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

/// A failed call to the server: [`IndexError::Unavailable`] when the same
/// call may succeed later (the server cannot be reached, timed out, is
/// overloaded or failed inside), otherwise what [`qerr`] makes (a request
/// the server will refuse again).
fn rpc_err(url: &str, what: &str, e: QdrantError) -> IndexError {
    use tonic::Code;
    let transient = match &e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            // A refused or dropped connection reaches here as `Internal`
            // ("Failed to connect ..."), a timeout as `Cancelled` or
            // `DeadlineExceeded`.
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Internal
                | Code::Unknown
        ),
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
        _ => false,
    };
    if transient {
        IndexError::Unavailable {
            url: url.into(),
            message: format!("qdrant {what}: {e}"),
        }
    } else {
        qerr(url, what, e)
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
            reader: !create,
            counts: Default::default(),
        };
        let (client, collection, url) = (&store.client, &store.collection, t.url);
        store.run(async {
            let exists = client
                .collection_exists(collection)
                .await
                .map_err(|e| rpc_err(url, "connect", e))?;
            if !exists && !create {
                // The indexer has not written it yet: a reader may find it later.
                return Err(IndexError::Unavailable {
                    url: url.into(),
                    message: format!("qdrant collection {collection} does not exist yet; run `ctxplane index` first"),
                });
            }
            if !exists {
                let mut dense = VectorsConfigBuilder::default();
                dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(DIM as u64, Distance::Cosine));
                let mut sparse = SparseVectorsConfigBuilder::default();
                sparse.add_named_vector_params(TERMS, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
                client
                    .create_collection(
                        CreateCollectionBuilder::new(collection.as_str())
                            .vectors_config(dense)
                            .sparse_vectors_config(sparse)
                            .shard_number(t.shards.max(1))
                            .replication_factor(t.replication.max(1)),
                    )
                    .await
                    .map_err(|e| rpc_err(url, "create collection", e))?;
            } else {
                let info = client
                    .collection_info(collection.as_str())
                    .await
                    .map_err(|e| rpc_err(url, "collection info", e))?;
                if !has_layout(&info) {
                    return Err(qerr(
                        url,
                        "collection",
                        format!(
                            "{collection} was made by an older ctxplane (no `{DENSE}` and `{TERMS}` vectors); \
                             delete it so that `ctxplane index` rebuilds it, or set another qdrant_collection"
                        ),
                    ));
                }
            }
            let manifests = format!("{collection}_manifests");
            if create
                && !client
                    .collection_exists(&manifests)
                    .await
                    .map_err(|e| rpc_err(url, "connect", e))?
            {
                client
                    .create_collection(
                        CreateCollectionBuilder::new(manifests.as_str())
                            .vectors_config(VectorParamsBuilder::new(1, Distance::Dot))
                            .shard_number(1)
                            .replication_factor(t.replication.max(1)),
                    )
                    .await
                    .map_err(|e| rpc_err(url, "create collection", e))?;
            }
            if create {
                for (field, kind) in [
                    ("deployment", FieldType::Keyword),
                    ("source", FieldType::Keyword),
                    ("part", FieldType::Integer),
                ] {
                    client
                        .create_field_index(
                            CreateFieldIndexCollectionBuilder::new(manifests.as_str(), field, kind).wait(true),
                        )
                        .await
                        .map_err(|e| rpc_err(url, "payload index", e))?;
                }
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
                        .map_err(|e| rpc_err(url, "payload index", e))?;
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

    /// Deletes the whole collection and its manifests' (tests).
    pub fn drop_collection(&self) -> Result<()> {
        self.run(self.client.delete_collection(&self.collection))
            .map_err(|e| rpc_err(&self.url, "delete collection", e))?;
        self.run(self.client.delete_collection(self.manifests_collection()))
            .map_err(|e| rpc_err(&self.url, "delete collection", e))?;
        Ok(())
    }

    /// Waits until the server has finished optimising (indexing) the
    /// collection, up to `timeout`; whether it has (benchmarks measure a
    /// settled collection).
    pub fn wait_optimized(&self, timeout: std::time::Duration) -> Result<bool> {
        use qdrant_client::qdrant::CollectionStatus;
        let started = std::time::Instant::now();
        loop {
            let info = self
                .run(self.client.collection_info(&self.collection))
                .map_err(|e| rpc_err(&self.url, "collection info", e))?;
            let green = info
                .result
                .is_some_and(|r| r.status == CollectionStatus::Green as i32);
            if green {
                return Ok(true);
            }
            if started.elapsed() > timeout {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    fn manifests_collection(&self) -> String {
        format!("{}_manifests", self.collection)
    }

    /// Payloads of the published-manifest parts `filter` matches (none
    /// when no writer made the collection yet).
    fn manifest_parts(&self, filter: Filter, fields: &[&str]) -> Result<Vec<PayloadMap>> {
        let collection = self.manifests_collection();
        let exists = self
            .run(self.client.collection_exists(&collection))
            .map_err(|e| rpc_err(&self.url, "connect", e))?;
        if !exists {
            return Ok(Vec::new());
        }
        self.scroll(&collection, filter, Some(fields), 64, usize::MAX)
    }

    fn of_source(&self, source: &str) -> Vec<Condition> {
        vec![self.mine(), Condition::matches("source", source.to_string())]
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

    /// The dense search `search` and `search_chunks` share: the nearest
    /// `limit` points to `vector` within `filter`'s scope.
    fn nearest_dense(&self, vector: &[f32], filter: &VectorFilter, limit: u64) -> QueryPointsBuilder {
        QueryPointsBuilder::new(&self.collection)
            .query(vector.to_vec())
            .using(DENSE)
            .filter(self.filter(filter))
            .params(SearchParamsBuilder::default().hnsw_ef(256))
            .limit(limit)
    }

    fn count_where(&self, filter: Filter) -> Result<usize> {
        let key = self.reader.then(|| format!("{filter:?}"));
        if let Some(k) = &key
            && let Some((at, n)) = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(k)
            && at.elapsed() < COUNT_TTL
        {
            return Ok(*n);
        }
        let n = self.count_now(filter)?;
        if let Some(k) = key {
            let mut c = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.len() >= 4_096 {
                c.clear();
            }
            c.insert(k, (std::time::Instant::now(), n));
        }
        Ok(n)
    }

    fn count_now(&self, filter: Filter) -> Result<usize> {
        let r = self
            .run(
                self.client.count(
                    CountPointsBuilder::new(&self.collection)
                        .filter(filter)
                        .exact(true),
                ),
            )
            .map_err(|e| rpc_err(&self.url, "count", e))?;
        Ok(r.result.map_or(0, |c| c.count as usize))
    }
}

type PayloadMap = std::collections::HashMap<String, qdrant_client::qdrant::Value>;

fn text(payload: &PayloadMap, key: &str) -> String {
    opt_text(payload, key).unwrap_or_default()
}

fn opt_text(payload: &PayloadMap, key: &str) -> Option<String> {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(payload: &PayloadMap, key: &str) -> i64 {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(i)) => *i,
        Some(Kind::DoubleValue(d)) => *d as i64,
        _ => 0,
    }
}

/// The chunk a point's payload holds (written by a store that keeps text).
fn chunk_of(payload: &PayloadMap) -> ChunkDoc {
    ChunkDoc {
        chunk_id: text(payload, "chunk_id"),
        source: text(payload, "source"),
        tier: u8::try_from(int(payload, "tier")).unwrap_or(u8::MAX),
        path: text(payload, "path"),
        language: text(payload, "language"),
        symbol: opt_text(payload, "symbol"),
        kind: text(payload, "kind"),
        start_line: u32::try_from(int(payload, "start_line")).unwrap_or(0),
        end_line: u32::try_from(int(payload, "end_line")).unwrap_or(0),
        content: text(payload, "content"),
        file_hash: text(payload, "file_hash"),
        chunk_hash: text(payload, "chunk_hash"),
        commit: opt_text(payload, "commit"),
        ingested_at: int(payload, "ingested_at"),
    }
}

/// Whether a collection has this version's two vectors.
fn has_layout(info: &qdrant_client::qdrant::GetCollectionInfoResponse) -> bool {
    use qdrant_client::qdrant::vectors_config::Config;
    let Some(params) = info
        .result
        .as_ref()
        .and_then(|r| r.config.as_ref())
        .and_then(|c| c.params.as_ref())
    else {
        return false;
    };
    let dense = match params.vectors_config.as_ref().and_then(|v| v.config.as_ref()) {
        Some(Config::ParamsMap(m)) => m.map.get(DENSE).is_some_and(|p| p.size == DIM as u64),
        _ => false,
    };
    let terms = params
        .sparse_vectors_config
        .as_ref()
        .is_some_and(|s| s.map.contains_key(TERMS));
    dense && terms
}

/// Longest one request to Qdrant may take (a server that went away must
/// not hold a query or a readiness probe for long).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a connection attempt may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Most bytes of a manifest's JSON in one point (a big source's manifest
/// is several, so no request comes near gRPC's message limit).
pub const MANIFEST_PART: usize = 512 * 1024;

/// Most points one search reads while looking for `k` under a path
/// prefix Qdrant cannot match (one that ends inside a file name).
const MAX_PREFIX_SCAN: u64 = 10_000;

impl VectorStore for QdrantStore {
    fn kind(&self) -> &'static str {
        "qdrant"
    }

    fn keeps_text(&self) -> bool {
        true
    }

    /// A writer in this deployment committed: counts are asked anew.
    fn refresh(&mut self) -> Result<()> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Ok(())
    }

    fn upsert(&mut self, points: Vec<Point>) -> Result<()> {
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            let mut json = serde_json::json!({
                "deployment": self.deployment,
                "chunk_id": p.chunk_id,
                "source": p.source,
                "path": p.path,
                "dirs": dirs(&p.path),
                "file_key": file_key(&p.source, &p.path),
                "tier": p.tier,
            });
            let mut vectors = NamedVectors::default().add_vector(DENSE, p.vector);
            if let Some(t) = p.text {
                let d = t.doc;
                if let Some(o) = json.as_object_mut() {
                    o.insert("language".into(), d.language.into());
                    o.insert("symbol".into(), d.symbol.into());
                    o.insert("kind".into(), d.kind.into());
                    o.insert("start_line".into(), d.start_line.into());
                    o.insert("end_line".into(), d.end_line.into());
                    o.insert("content".into(), d.content.into());
                    o.insert("file_hash".into(), d.file_hash.into());
                    o.insert("chunk_hash".into(), d.chunk_hash.into());
                    o.insert("commit".into(), d.commit.into());
                    o.insert("ingested_at".into(), d.ingested_at.into());
                }
                if !t.terms.is_empty() {
                    vectors = vectors.add_vector(TERMS, Vector::from(t.terms.as_slice()));
                }
            }
            let payload = Payload::try_from(json).map_err(|e| qerr(&self.url, "payload", e))?;
            structs.push(PointStruct::new(
                point_id(&self.deployment, &p.chunk_id),
                vectors,
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
                                .map_err(|e| rpc_err(url, "upsert", e))?;
                        }
                    }
                    Op::Delete(filter) => {
                        client
                            .delete_points(DeletePointsBuilder::new(collection).points(filter).wait(true))
                            .await
                            .map_err(|e| rpc_err(url, "delete", e))?;
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
                        self.nearest_dense(vector, filter, page)
                            .offset(offset)
                            .with_payload(fields(&["chunk_id", "source", "path", "tier"])),
                    ),
                )
                .map_err(|e| rpc_err(&self.url, "query", e))?;
            let got = response.result.len() as u64;
            for p in response.result {
                let tier = u8::try_from(int(&p.payload, "tier")).unwrap_or(u8::MAX);
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

    fn search_chunks(
        &self,
        vector: &[f32],
        filter: &VectorFilter,
        k: usize,
    ) -> Result<Option<Vec<(f32, ChunkDoc)>>> {
        // Only a plain scope (no path prefix Qdrant cannot match) in one
        // request; anything else through `search`.
        if filter.path_prefix.is_some() {
            return Ok(None);
        }
        if k == 0 || filter.sources.is_empty() || vector.len() != DIM {
            return Ok(Some(Vec::new()));
        }
        let response = self
            .run(
                self.client
                    .query(self.nearest_dense(vector, filter, k as u64).with_payload(true)),
            )
            .map_err(|e| rpc_err(&self.url, "query", e))?;
        let docs: Vec<(f32, ChunkDoc)> = response
            .result
            .iter()
            .map(|p| (p.score, chunk_of(&p.payload)))
            .collect();
        // A point written without its chunk (an older writer) has no text:
        // the caller reads the chunks itself then.
        if docs.iter().any(|(_, d)| d.content.is_empty()) {
            return Ok(None);
        }
        Ok(Some(
            docs.into_iter()
                .filter(|(_, d)| filter.admits(&d.source, d.tier, &d.path))
                .collect(),
        ))
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
        let listed = self.scroll(
            &self.collection,
            Filter::must([self.mine()]),
            Some(&["chunk_id", "source", "path"]),
            1_000,
            usize::MAX,
        )?;
        for p in &listed {
            out.entry((text(p, "source"), text(p, "path")))
                .or_default()
                .insert(text(p, "chunk_id"));
        }
        Ok(out)
    }

    fn published_manifests(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let first = Filter::must([self.mine(), Condition::matches("part", 0)]);
        Ok(self
            .manifest_parts(first, &["source", "version"])?
            .iter()
            .map(|p| (text(p, "source"), text(p, "version")))
            .collect())
    }

    fn publish_manifest(&mut self, source: &str, json: &[u8], version: &str) -> Result<()> {
        let text = String::from_utf8_lossy(json);
        // Parts end on character boundaries.
        let mut parts: Vec<&str> = Vec::new();
        let mut rest: &str = &text;
        while !rest.is_empty() {
            let mut end = rest.len().min(MANIFEST_PART);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            parts.push(&rest[..end]);
            rest = &rest[end..];
        }
        let n = parts.len();
        let mut points = Vec::with_capacity(n);
        for (i, part) in parts.into_iter().enumerate() {
            let payload = Payload::try_from(serde_json::json!({
                "deployment": self.deployment,
                "source": source,
                "part": i,
                "parts": n,
                "version": version,
                "data": part,
            }))
            .map_err(|e| qerr(&self.url, "payload", e))?;
            points.push(PointStruct::new(
                point_id(&self.deployment, &format!("manifest\0{source}\0{i}")),
                vec![1.0_f32],
                payload,
            ));
        }
        let collection = self.manifests_collection();
        let (client, url) = (&self.client, &self.url);
        let mut stale = self.of_source(source);
        stale.push(Condition::range(
            "part",
            Range {
                gte: Some(n as f64),
                ..Default::default()
            },
        ));
        // Part 0 carries the version readers and the next sync go by: it is
        // written last, so a publish cut short is redone, never trusted.
        points.rotate_left(1);
        self.run(async {
            for batch in points.chunks(4) {
                client
                    .upsert_points(UpsertPointsBuilder::new(&collection, batch.to_vec()).wait(true))
                    .await
                    .map_err(|e| rpc_err(url, "upsert manifest", e))?;
            }
            client
                .delete_points(
                    DeletePointsBuilder::new(&collection)
                        .points(Filter::must(stale))
                        .wait(true),
                )
                .await
                .map_err(|e| rpc_err(url, "delete manifest", e))?;
            Ok(())
        })
    }

    fn retier(&mut self, source: &str, tier: u8) -> Result<()> {
        let payload = Payload::try_from(serde_json::json!({ "tier": tier }))
            .map_err(|e| qerr(&self.url, "payload", e))?;
        let stale = Filter {
            must: self.of_source(source),
            must_not: vec![Condition::matches("tier", i64::from(tier))],
            ..Default::default()
        };
        self.run(
            self.client.set_payload(
                qdrant_client::qdrant::SetPayloadPointsBuilder::new(&self.collection, payload)
                    .points_selector(stale)
                    .wait(true),
            ),
        )
        .map_err(|e| rpc_err(&self.url, "set tier", e))?;
        Ok(())
    }

    fn unpublish_manifest(&mut self, source: &str) -> Result<()> {
        let collection = self.manifests_collection();
        let filter = Filter::must(self.of_source(source));
        self.run(
            self.client
                .delete_points(DeletePointsBuilder::new(&collection).points(filter).wait(true)),
        )
        .map_err(|e| rpc_err(&self.url, "delete manifest", e))?;
        Ok(())
    }
}

impl QdrantStore {
    /// Points matching `filter`, their payloads, up to `limit`.
    fn scroll_where(&self, filter: Filter, limit: usize) -> Result<Vec<PayloadMap>> {
        self.scroll(&self.collection, filter, None, 1_000, limit)
    }

    /// Payloads of the points of `collection` that `filter` matches (only
    /// `only`'s fields when given), `page` a request, at most `limit`.
    fn scroll(
        &self,
        collection: &str,
        filter: Filter,
        only: Option<&[&str]>,
        page: u32,
        limit: usize,
    ) -> Result<Vec<PayloadMap>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let req = ScrollPointsBuilder::new(collection)
                .filter(filter.clone())
                .limit(page)
                .with_vectors(false);
            let mut req = match only {
                Some(names) => req.with_payload(fields(names)),
                None => req.with_payload(true),
            };
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let got = self
                .run(self.client.scroll(req))
                .map_err(|e| rpc_err(&self.url, "scroll", e))?;
            out.extend(got.result.into_iter().map(|p| p.payload));
            match got.next_page_offset {
                Some(o) if out.len() < limit => offset = Some(o),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// A payload selector of only `names` (a search or a listing needs a few
/// fields, not the chunk's text).
fn fields(names: &[&str]) -> qdrant_client::qdrant::PayloadIncludeSelector {
    qdrant_client::qdrant::PayloadIncludeSelector::new(
        names.iter().map(|f| f.to_string()).collect::<Vec<String>>(),
    )
}

/// Extra hits a lexical search asks for, to order ties at the cut.
const TIE_SLACK: u64 = 16;

/// Chunk ids read back in one request at most.
const IDS_PER_REQUEST: usize = 256;

/// The store as the lexical index of a replica: BM25 over the points'
/// term vectors, scope filtered inside Qdrant, the chunk from the payload.
impl ChunkIndex for QdrantStore {
    fn search_parts(
        &self,
        parts: &[QueryPart],
        filter: &crate::lexical::Filter,
        limit: usize,
    ) -> Result<Vec<(f32, ChunkDoc)>> {
        if filter.sources.is_empty() || filter.max_tier == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let terms = crate::terms::query(parts);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let scope = VectorFilter {
            sources: filter.sources.iter().cloned().collect(),
            max_tier: filter.max_tier,
            path_prefix: None,
        };
        let response = self
            .run(
                self.client.query(
                    QueryPointsBuilder::new(&self.collection)
                        .query(Query::new_nearest(VectorInput::from(terms.as_slice())))
                        .using(TERMS)
                        .filter(self.filter(&scope))
                        // A few more than asked: equal scores at the cut
                        // are ordered here, as the local index orders them.
                        .limit(limit as u64 + TIE_SLACK)
                        .with_payload(true),
                ),
            )
            .map_err(|e| rpc_err(&self.url, "query", e))?;
        let mut out: Vec<(f32, ChunkDoc)> = response
            .result
            .into_iter()
            .map(|p| (p.score, chunk_of(&p.payload)))
            // The server filtered already; check again, it costs nothing.
            .filter(|(_, d)| scope.admits(&d.source, d.tier, &d.path))
            .collect();
        // Equal scores (to float noise) in the local index's order: by the
        // chunk id's tiebreak, whatever the shards returned.
        let key = |score: f32, id: &str| {
            (
                (f64::from(score) * 1e4).round() as i64,
                crate::lexical::tiebreak_of(id),
            )
        };
        out.sort_by(|a, b| {
            let (ka, kb) = (key(a.0, &a.1.chunk_id), key(b.0, &b.1.chunk_id));
            kb.0.cmp(&ka.0).then(ka.1.cmp(&kb.1))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn docs_by_id(&self, ids: &[&str]) -> Result<Vec<ChunkDoc>> {
        let mut found: std::collections::HashMap<String, ChunkDoc> = std::collections::HashMap::new();
        for batch in ids.chunks(IDS_PER_REQUEST) {
            let wanted: Vec<String> = batch.iter().map(|s| s.to_string()).collect();
            let filter = Filter::must([self.mine(), Condition::matches("chunk_id", wanted)]);
            for payload in self.scroll_where(filter, batch.len())? {
                let d = chunk_of(&payload);
                found.insert(d.chunk_id.clone(), d);
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(*id)).collect())
    }

    fn docs_for_file(&self, source: &str, path: &str) -> Result<Vec<ChunkDoc>> {
        let filter = Filter::must([
            self.mine(),
            Condition::matches("file_key", file_key(source, path)),
        ]);
        let mut docs: Vec<ChunkDoc> = self.scroll_where(filter, 100_000)?.iter().map(chunk_of).collect();
        docs.sort_by(|a, b| {
            a.start_line
                .cmp(&b.start_line)
                .then_with(|| a.chunk_id.cmp(&b.chunk_id))
        });
        Ok(docs)
    }

    fn count_within(&self, sources: &[String], max_tier: u8) -> Result<u64> {
        let scope = VectorFilter {
            sources: sources.iter().cloned().collect(),
            max_tier,
            path_prefix: None,
        };
        Ok(self.count(&scope)? as u64)
    }

    fn total_chunks(&self) -> Result<u64> {
        Ok(self.len()? as u64)
    }

    fn reload(&self) -> Result<()> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Ok(())
    }

    fn shares_manifests(&self) -> bool {
        true
    }

    fn manifest_version(&self, source: &str) -> Result<Option<String>> {
        let mut first = self.of_source(source);
        first.push(Condition::matches("part", 0));
        Ok(self
            .manifest_parts(Filter::must(first), &["version"])?
            .first()
            .map(|p| text(p, "version")))
    }

    fn manifest(&self, source: &str) -> Result<Option<(String, crate::manifest::SourceManifest)>> {
        let mut parts = self.manifest_parts(
            Filter::must(self.of_source(source)),
            &["part", "parts", "version", "data"],
        )?;
        if parts.is_empty() {
            return Ok(None);
        }
        parts.sort_by_key(|p| int(p, "part"));
        let version = text(&parts[0], "version");
        // A manifest being republished while read: parts of two versions,
        // or not all of them yet. The caller keeps what it had.
        let whole = parts.len() as i64 == int(&parts[0], "parts")
            && parts
                .iter()
                .enumerate()
                .all(|(i, p)| int(p, "part") == i as i64 && text(p, "version") == version);
        if !whole {
            return Err(qerr(
                &self.url,
                "manifest",
                format!("{source}'s manifest is being republished"),
            ));
        }
        let json: String = parts.iter().map(|p| text(p, "data")).collect();
        let m = serde_json::from_str(&json).map_err(|e| qerr(&self.url, "manifest", e))?;
        Ok(Some((version, m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_a_retry_may_cure_are_unavailable() {
        let status = |code| QdrantError::ResponseError {
            status: tonic::Status::new(code, "x"),
        };
        let unavailable = |e: IndexError| matches!(e, IndexError::Unavailable { .. });
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Cancelled,
            // How qdrant-client reports a refused connection.
            tonic::Code::Internal,
        ] {
            assert!(unavailable(rpc_err("u", "query", status(code))), "{code:?}");
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::NotFound,
            tonic::Code::PermissionDenied,
            tonic::Code::Unauthenticated,
            tonic::Code::FailedPrecondition,
        ] {
            assert!(!unavailable(rpc_err("u", "query", status(code))), "{code:?}");
        }
        assert!(!unavailable(rpc_err(
            "u",
            "payload",
            QdrantError::ConversionError("x".into())
        )));
    }

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
