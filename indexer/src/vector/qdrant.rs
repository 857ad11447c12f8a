//! Vectors in a Qdrant server or cluster, for scaling out: the same
//! collection layout as the embedded store (one point per chunk, payload
//! `chunk_id`, `source`, `path`, `file_key`, `tier`, each payload-indexed
//! for filtering). Writes are buffered in order and applied at commit with
//! `wait`, so a commit that returns is durable on the server.

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

pub struct QdrantStore {
    client: Qdrant,
    rt: tokio::runtime::Runtime,
    collection: String,
    url: String,
    pending: Vec<Op>,
}

impl std::fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantStore")
            .field("url", &self.url)
            .field("collection", &self.collection)
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

/// A stable UUID for a chunk id (Qdrant ids are integers or UUIDs).
fn point_id(chunk_id: &str) -> PointId {
    let h = blake3::hash(chunk_id.as_bytes()).to_hex();
    PointId::from(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

impl QdrantStore {
    /// Connects and makes sure the collection and its payload indexes exist.
    pub fn connect(url: &str, api_key: Option<&str>, collection: &str) -> Result<QdrantStore> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| qerr(url, "runtime", e))?;
        let client = Qdrant::from_url(url)
            .api_key(api_key.map(String::from))
            .skip_compatibility_check()
            .build()
            .map_err(|e| qerr(url, "client", e))?;
        let store = QdrantStore {
            client,
            rt,
            collection: collection.to_string(),
            url: url.to_string(),
            pending: Vec::new(),
        };
        store.rt.block_on(async {
            let exists = store
                .client
                .collection_exists(collection)
                .await
                .map_err(|e| qerr(url, "connect", e))?;
            if !exists {
                store
                    .client
                    .create_collection(
                        CreateCollectionBuilder::new(collection)
                            .vectors_config(VectorParamsBuilder::new(DIM as u64, Distance::Cosine)),
                    )
                    .await
                    .map_err(|e| qerr(url, "create collection", e))?;
                for (field, kind) in [
                    ("chunk_id", FieldType::Keyword),
                    ("source", FieldType::Keyword),
                    ("path", FieldType::Keyword),
                    ("file_key", FieldType::Keyword),
                    ("tier", FieldType::Integer),
                ] {
                    store
                        .client
                        .create_field_index(
                            CreateFieldIndexCollectionBuilder::new(collection, field, kind).wait(true),
                        )
                        .await
                        .map_err(|e| qerr(url, "payload index", e))?;
                }
            }
            Ok::<_, IndexError>(())
        })?;
        Ok(store)
    }

    /// Deletes the whole collection (tests).
    pub fn drop_collection(&self) -> Result<()> {
        self.rt
            .block_on(self.client.delete_collection(&self.collection))
            .map_err(|e| qerr(&self.url, "delete collection", e))?;
        Ok(())
    }

    fn filter(filter: &VectorFilter) -> Filter {
        Filter::must([
            Condition::matches("source", filter.sources.iter().cloned().collect::<Vec<String>>()),
            Condition::range(
                "tier",
                Range {
                    gte: Some(1.0),
                    lte: Some(f64::from(filter.max_tier)),
                    ..Default::default()
                },
            ),
        ])
    }
}

fn text(payload: &std::collections::HashMap<String, qdrant_client::qdrant::Value>, key: &str) -> String {
    match payload.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

impl VectorStore for QdrantStore {
    fn kind(&self) -> &'static str {
        "qdrant"
    }

    fn upsert(&mut self, points: Vec<Point>) -> Result<()> {
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            let payload = Payload::try_from(serde_json::json!({
                "chunk_id": p.chunk_id,
                "source": p.source,
                "path": p.path,
                "file_key": file_key(&p.source, &p.path),
                "tier": p.tier,
            }))
            .map_err(|e| qerr(&self.url, "payload", e))?;
            structs.push(PointStruct::new(point_id(&p.chunk_id), p.vector, payload));
        }
        self.pending.push(Op::Upsert(structs));
        Ok(())
    }

    fn delete_file(&mut self, source: &str, path: &str) -> Result<()> {
        self.pending.push(Op::Delete(Filter::must([Condition::matches(
            "file_key",
            file_key(source, path),
        )])));
        Ok(())
    }

    fn delete_source(&mut self, source: &str) -> Result<()> {
        self.pending.push(Op::Delete(Filter::must([Condition::matches(
            "source",
            source.to_string(),
        )])));
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let ops = std::mem::take(&mut self.pending);
        let (client, collection, url) = (&self.client, &self.collection, &self.url);
        self.rt.block_on(async {
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
        // Path prefixes are checked here; fetch extra to make up for them.
        let fetch = if filter.path_prefix.is_some() { k * 5 } else { k };
        let response = self
            .rt
            .block_on(
                self.client.query(
                    QueryPointsBuilder::new(&self.collection)
                        .query(vector.to_vec())
                        .filter(QdrantStore::filter(filter))
                        .params(SearchParamsBuilder::default().hnsw_ef(256))
                        .limit(fetch as u64)
                        .with_payload(true),
                ),
            )
            .map_err(|e| qerr(&self.url, "query", e))?;
        let mut out = Vec::new();
        for p in response.result {
            let (source, path, tier) = (text(&p.payload, "source"), text(&p.payload, "path"), {
                match p.payload.get("tier").and_then(|v| v.kind.as_ref()) {
                    Some(Kind::IntegerValue(t)) => u8::try_from(*t).unwrap_or(u8::MAX),
                    _ => u8::MAX,
                }
            });
            // The server filtered already; check again, it costs nothing.
            if filter.admits(&source, tier, &path) {
                out.push((text(&p.payload, "chunk_id"), p.score));
            }
        }
        out.truncate(k);
        Ok(out)
    }

    fn len(&self) -> usize {
        self.rt
            .block_on(
                self.client
                    .count(CountPointsBuilder::new(&self.collection).exact(true)),
            )
            .ok()
            .and_then(|r| r.result)
            .map_or(0, |c| c.count as usize)
    }

    fn count(&self, filter: &VectorFilter) -> usize {
        if filter.sources.is_empty() || filter.max_tier == 0 {
            return 0;
        }
        self.rt
            .block_on(
                self.client.count(
                    CountPointsBuilder::new(&self.collection)
                        .filter(Self::filter(filter))
                        .exact(true),
                ),
            )
            .ok()
            .and_then(|r| r.result)
            .map_or(0, |c| c.count as usize)
    }

    fn file_chunks(&self) -> Result<FileChunks> {
        let mut out = FileChunks::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.collection)
                .limit(1_000)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let page = self
                .rt
                .block_on(self.client.scroll(req))
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
