//! `ctxplane serve`: the watcher-driven indexer and the retriever in one
//! process, behind an HTTP API (axum) with bearer-token auth.
//!
//! Every `/v1` request is authenticated against the principals' token
//! hashes; the role decides the endpoint, the scope and tier ceiling decide
//! what the retriever returns. 401 and 403 bodies never say what exists.
//! Writes (registry edits, audit entries) complete, fsynced, before the
//! response is sent, so a shutdown or crash never loses an acknowledged
//! write. An emergency stop (persisted in the data dir) makes every `/v1`
//! endpoint but `/v1/admin/*` answer 503 and pauses ingestion until resumed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use indexer::{Indexer, PassOptions};
use registry::audit::Event;
use registry::edit::{Edit, NewException, NewSource};
use registry::{Permit, Registry, RegistryStore, Role, SourceId, SourceKind, Status, Tier};
use retriever::{Caller, Mode, Options, Retriever};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Settings;
use crate::indexing::{Dense, Watching, audit_pass, run_pass, sync_vectors};
use crate::querying::MAX_QUERY_BYTES;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7411", env = "CTXPLANE_LISTEN")]
    pub listen: SocketAddr,
    /// Do not watch sources (serve what is indexed; index on start only).
    #[arg(long)]
    pub no_watch: bool,
    /// Skip embedding (lexical search only).
    #[arg(long)]
    pub no_embed: bool,
}

/// The indexer and its vector store, used by one thread at a time.
pub(crate) struct Ingest {
    indexer: Indexer,
    dense: Result<Dense, String>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    queries_topic: AtomicU64,
    queries_hybrid: AtomicU64,
    queries_lexical: AtomicU64,
    queries_dense: AtomicU64,
    /// Query latency buckets (upper bounds in ms, see BUCKETS) and sum.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    tokens_served: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    files_denied: AtomicU64,
    secrets_redacted: AtomicU64,
    last_pass_unix: AtomicU64,
    pending_sources: AtomicU64,
}

const BUCKETS: [f64; 9] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

pub(crate) struct App {
    pub s: Settings,
    pub store: RegistryStore,
    registry: RwLock<(Option<SystemTime>, Arc<Registry>)>,
    pub retriever: Arc<Retriever>,
    ingest: Mutex<Ingest>,
    stopped: RwLock<Option<String>>,
    pub metrics: Metrics,
    shutdown: AtomicBool,
}

type Shared = Arc<App>;

/// An API error: status and a body that says no more than it must.
pub struct ApiError(StatusCode, Value);

impl ApiError {
    /// The error text, for callers that are not HTTP (MCP).
    pub(crate) fn message(&self) -> String {
        self.1["error"].as_str().unwrap_or("error").to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn err(code: StatusCode, msg: impl Into<String>) -> ApiError {
    ApiError(code, json!({"error": msg.into()}))
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let config = e.downcast_ref::<crate::config::ConfigError>().is_some()
            || matches!(
                e.downcast_ref::<registry::RegistryError>(),
                Some(registry::RegistryError::Invalid { .. })
            );
        if config {
            err(StatusCode::BAD_REQUEST, format!("{e:#}"))
        } else {
            eprintln!("error: {e:#}");
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            )
        }
    }
}

impl From<registry::RegistryError> for ApiError {
    fn from(e: registry::RegistryError) -> Self {
        ApiError::from(anyhow::Error::from(e))
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn stop_file(s: &Settings) -> PathBuf {
    s.data_dir.join("stopped.json")
}

impl App {
    pub(crate) fn open(s: Settings, store: RegistryStore, embed: bool, verbose: bool) -> anyhow::Result<App> {
        let rules = crate::commands::load_rules(
            std::env::var_os("CTXPLANE_REDACTION_RULES")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .as_deref(),
            true,
        )?;
        let indexer = Indexer::open(
            store.data_dir(),
            rules,
            PassOptions {
                max_file_bytes: s.max_file_bytes,
            },
        )?;
        let reg = store.load(&s.actor)?;
        let stopped = std::fs::read(stop_file(&s))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map(|v| v["reason"].as_str().unwrap_or("stopped").to_string());
        // Indexing embeds on one thread while serving, so queries keep a core.
        let mut dense = if embed {
            Dense::open_threads(&s, store.data_dir(), true, 1)
        } else {
            Err("embedding disabled (--no-embed)".into())
        };
        let metrics = Metrics::default();
        if stopped.is_none() {
            let bars = verbose && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let (report, elapsed) = run_pass(&indexer, &reg, &store, None, bars)?;
            audit_pass(&s, &store, &reg, &report, "index.pass")?;
            record_pass(&metrics, &report);
            if verbose {
                crate::indexing::print_summary(&report, elapsed);
            }
            let vectors = sync_vectors(&indexer, &mut dense, &s, &store, bars, !report.purged.is_empty())?;
            if verbose {
                crate::indexing::print_vectors(&vectors);
            }
        }
        let read_dense = match &dense {
            Ok(d) => Dense::with_embedder(&s, store.data_dir(), false, d.embedder.clone())
                .map(|d| (d.embedder, d.store)),
            Err(e) => Err(e.clone()),
        };
        let retriever =
            Retriever::open(store.data_dir(), read_dense)?.with_topics(&s.topics_dir, s.topic_grace_days);
        let mtime = std::fs::metadata(store.registry_path())
            .and_then(|m| m.modified())
            .ok();
        Ok(App {
            registry: RwLock::new((mtime, Arc::new(reg))),
            retriever: Arc::new(retriever),
            ingest: Mutex::new(Ingest { indexer, dense }),
            stopped: RwLock::new(stopped),
            metrics,
            shutdown: AtomicBool::new(false),
            s,
            store,
        })
    }

    /// The registry in force, re-read when its file changed.
    pub(crate) fn registry(&self) -> anyhow::Result<Arc<Registry>> {
        let mtime = std::fs::metadata(self.store.registry_path())
            .and_then(|m| m.modified())
            .ok();
        {
            let r = self
                .registry
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if r.0 == mtime {
                return Ok(r.1.clone());
            }
        }
        let reg = Arc::new(self.store.load(&self.s.actor)?);
        *self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mtime, reg.clone());
        Ok(reg)
    }

    fn set_registry(&self, reg: Registry) {
        let mtime = std::fs::metadata(self.store.registry_path())
            .and_then(|m| m.modified())
            .ok();
        *self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mtime, Arc::new(reg));
    }

    pub(crate) fn stopped(&self) -> Option<String> {
        self.stopped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One pass over `only` (or everything), vectors caught up, the
    /// retriever refreshed. Serialised with every other ingest.
    pub(crate) fn update(
        &self,
        reg: &Registry,
        only: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<indexer::PassReport> {
        let mut ingest = self
            .ingest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ingest { indexer, dense } = &mut *ingest;
        let started = std::time::Instant::now();
        let (report, _) = run_pass(indexer, reg, &self.store, only, false)?;
        if report.committed || !report.purged.is_empty() {
            audit_pass(&self.s, &self.store, reg, &report, "index.update")?;
        }
        record_pass(&self.metrics, &report);
        let pass_ms = started.elapsed().as_millis();
        let mut vectors = Value::Null;
        if report.committed && dense.is_ok() {
            vectors = sync_vectors(
                indexer,
                dense,
                &self.s,
                &self.store,
                false,
                !report.purged.is_empty(),
            )?;
        }
        let vectors_ms = started.elapsed().as_millis() - pass_ms;
        self.retriever.refresh()?;
        if report.committed || !report.purged.is_empty() {
            let files: u64 = report.sources.iter().map(|s| s.indexed + s.removed).sum();
            let added: u64 = report.sources.iter().map(|s| s.chunks_added).sum();
            eprintln!(
                "indexed: {files} file(s) changed, {added} chunks added ({} in all), {} embedded; pass {pass_ms} ms, vectors {vectors_ms} ms, total {} ms",
                report.total_chunks,
                vectors["embedded"].as_u64().unwrap_or(0),
                started.elapsed().as_millis()
            );
        }
        Ok(report)
    }

    /// Who presents this bearer token, if anyone, and whether their role
    /// may use the endpoint.
    fn auth(&self, headers: &HeaderMap, roles: &[Role]) -> ApiResult<(Arc<Registry>, registry::Principal)> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 512);
        let reg = self.registry()?;
        let principal = token.and_then(|t| reg.authenticate(t).cloned());
        let Some(p) = principal else {
            self.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Err(err(StatusCode::UNAUTHORIZED, "unauthorized"));
        };
        if !roles.contains(&p.role) {
            self.metrics.forbidden.fetch_add(1, Ordering::Relaxed);
            return Err(err(StatusCode::FORBIDDEN, "forbidden"));
        }
        if let Some(reason) = self.stopped() {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "stopped", "reason": reason}),
            ));
        }
        Ok((reg, p))
    }

    fn record(&self, events: Vec<Event>) -> ApiResult<()> {
        self.store.record(events)?;
        Ok(())
    }
}

fn record_pass(m: &Metrics, report: &indexer::PassReport) {
    let denied: u64 = report
        .sources
        .iter()
        .flat_map(|s| s.denied.values())
        .map(|t| t.count)
        .sum();
    let redacted: u64 = report.sources.iter().map(|s| s.redactions).sum();
    m.files_denied.fetch_add(denied, Ordering::Relaxed);
    m.secrets_redacted.fetch_add(redacted, Ordering::Relaxed);
    m.last_pass_unix.store(
        jiff::Timestamp::now().as_second().max(0) as u64,
        Ordering::Relaxed,
    );
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
}

const READERS: &[Role] = &[Role::Agent, Role::Developer, Role::Steward];
const ALL: &[Role] = &[Role::Agent, Role::Developer, Role::Steward, Role::Ci];
const STEWARD: &[Role] = &[Role::Steward];
const CHECKERS: &[Role] = &[Role::Ci, Role::Developer, Role::Steward];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextRequest {
    query: String,
    max_tokens: Option<usize>,
    limit: Option<usize>,
    /// Only these sources (intersected with the caller's scope).
    sources: Option<Vec<String>>,
    mode: Option<String>,
    packages: Option<bool>,
}

/// The answer to a context request, shared by HTTP and MCP.
pub(crate) fn context(
    app: &App,
    reg: &Registry,
    p: &registry::Principal,
    req: ContextRequestArgs,
) -> ApiResult<Value> {
    if req.query.trim().is_empty() {
        return Err(err(StatusCode::BAD_REQUEST, "query is empty"));
    }
    if req.query.len() > MAX_QUERY_BYTES {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("query longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mode = match req.mode.as_deref().unwrap_or("hybrid") {
        "hybrid" => Mode::Hybrid,
        "lexical" => Mode::Lexical,
        "dense" => Mode::Dense,
        other => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!("mode must be hybrid, lexical or dense, not {other:?}"),
            ));
        }
    };
    let policy = reg.policy(app.store.clock());
    let mut scope = policy.scope_for(p);
    if let Some(only) = &req.sources {
        // Narrowing only: an unknown or ungranted id simply matches nothing.
        scope.sources.retain(|s| only.iter().any(|o| o == s.as_str()));
    }
    let caller = Caller { registry: reg, scope };
    let opts = Options {
        mode,
        limit: req.limit.unwrap_or(10).clamp(1, 100),
        max_tokens: req.max_tokens.unwrap_or(4_000).clamp(1, 200_000),
        packages: req.packages.unwrap_or(true),
    };
    let a = app
        .retriever
        .query(&caller, &req.query, &opts)
        .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    let m = &app.metrics;
    match a.served_by.as_str() {
        "topic_package" => &m.queries_topic,
        "lexical" => &m.queries_lexical,
        "dense" => &m.queries_dense,
        _ => &m.queries_hybrid,
    }
    .fetch_add(1, Ordering::Relaxed);
    let bucket = BUCKETS
        .iter()
        .position(|b| a.took_ms <= *b)
        .unwrap_or(BUCKETS.len());
    m.latency[bucket].fetch_add(1, Ordering::Relaxed);
    m.latency_sum_us
        .fetch_add((a.took_ms * 1000.0) as u64, Ordering::Relaxed);
    m.tokens_served.fetch_add(a.tokens as u64, Ordering::Relaxed);
    app.record(vec![
        Event::new(&p.name, "query", &p.name)
            .detail(
                "query_hash",
                registry::ContentHash::of(a.query.as_bytes()).short(),
            )
            .detail("served_by", a.served_by.clone())
            .detail(
                "result_ids",
                a.package
                    .iter()
                    .map(|x| x.id.as_str())
                    .chain(a.results.iter().map(|h| h.id.as_str()))
                    .collect::<Vec<_>>(),
            )
            .detail("tokens", a.tokens)
            .detail("via", req.via),
    ])?;
    Ok(serde_json::to_value(&a).map_err(anyhow::Error::from)?)
}

pub(crate) struct ContextRequestArgs {
    pub query: String,
    pub max_tokens: Option<usize>,
    pub limit: Option<usize>,
    pub sources: Option<Vec<String>>,
    pub mode: Option<String>,
    pub packages: Option<bool>,
    pub via: &'static str,
}

async fn post_context(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Json<ContextRequest>,
) -> ApiResult<Json<Value>> {
    let (reg, p) = app.auth(&headers, READERS)?;
    let Json(r) = body;
    blocking(move || {
        context(
            &app,
            &reg,
            &p,
            ContextRequestArgs {
                query: r.query,
                max_tokens: r.max_tokens,
                limit: r.limit,
                sources: r.sources,
                mode: r.mode,
                packages: r.packages,
                via: "http",
            },
        )
    })
    .await
    .map(Json)
}

/// A result's provenance, only if the caller may read it; otherwise the
/// same 404 as an id that does not exist.
pub(crate) fn provenance(app: &App, reg: &Registry, p: &registry::Principal, id: &str) -> ApiResult<Value> {
    let policy = reg.policy(app.store.clock());
    let scope = policy.scope_for(p);
    let not_found = || err(StatusCode::NOT_FOUND, "no such result");
    let caller = Caller {
        registry: reg,
        scope: scope.clone(),
    };
    let out = if let Some(pkg) = id.strip_prefix("topic:") {
        let (prov, content) = app
            .retriever
            .package_lookup(reg, Some(&caller.scope), pkg)
            .ok_or_else(not_found)?;
        if prov.status == "draft" {
            return Err(not_found());
        }
        json!({"result_id": id, "package": prov, "content": content})
    } else {
        let doc = app
            .retriever
            .chunk(id)
            .map_err(|e| ApiError::from(anyhow::Error::from(e)))?
            .ok_or_else(not_found)?;
        let readable = SourceId::new(doc.source.clone()).is_ok_and(|sid| scope.sources.contains(&sid))
            && doc.tier <= scope.tier_ceiling.get();
        if !readable {
            return Err(not_found());
        }
        let prov = app.retriever.provenance_of(reg, &doc);
        json!({"result_id": id, "provenance": prov, "content": doc.content})
    };
    app.record(vec![Event::new(&p.name, "provenance", id)])?;
    Ok(out)
}

async fn get_provenance(
    State(app): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let (reg, p) = app.auth(&headers, READERS)?;
    if id.len() > 200 {
        return Err(err(StatusCode::NOT_FOUND, "no such result"));
    }
    blocking(move || provenance(&app, &reg, &p, &id)).await.map(Json)
}

/// Sources: stewards see the registry; everyone else the sources in scope.
pub(crate) fn sources(app: &App, reg: &Registry, p: &registry::Principal) -> Value {
    let dir = app
        .store
        .registry_path()
        .parent()
        .unwrap_or(std::path::Path::new("."));
    if p.role == Role::Steward {
        let all: Vec<_> = reg
            .sources
            .values()
            .map(|x| crate::views::SourceView::new(x, dir))
            .collect();
        return json!({"registry_version": reg.version.to_hex(), "sources": all});
    }
    let scope = reg.policy(app.store.clock()).scope_for(p);
    let visible: Vec<Value> = reg
        .sources
        .values()
        .filter(|x| scope.sources.contains(&x.id))
        .map(|x| json!({"id": x.id.as_str(), "owner": x.owner, "tier": x.tier.get(), "description": x.description}))
        .collect();
    json!({"sources": visible})
}

async fn get_sources(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let (reg, p) = app.auth(&headers, ALL)?;
    Ok(Json(sources(&app, &reg, &p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddSourceBody {
    id: String,
    kind: String,
    location: String,
    owner: String,
    tier: u8,
    description: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    never_ingest: Vec<String>,
}

fn bad(msg: impl std::fmt::Display) -> ApiError {
    err(StatusCode::BAD_REQUEST, msg.to_string())
}

async fn post_source(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<AddSourceBody>,
) -> ApiResult<Json<Value>> {
    let (_, p) = app.auth(&headers, STEWARD)?;
    blocking(move || {
        let edit = Edit::AddSource(NewSource {
            id: SourceId::new(b.id).map_err(bad)?,
            kind: match b.kind.as_str() {
                "dir" => SourceKind::Dir,
                "git" => SourceKind::Git,
                other => return Err(bad(format!("kind must be dir or git, not {other:?}"))),
            },
            location: b.location,
            owner: b.owner,
            tier: b.tier.to_string().parse::<Tier>().map_err(bad)?,
            description: b.description,
            include: b.include,
            exclude: b.exclude,
            never_ingest: b.never_ingest,
        });
        let applied = app.store.apply(&p.name, edit)?;
        let seq = applied.entry.seq;
        app.set_registry(applied.registry);
        Ok(Json(json!({"status": "proposed", "audit_seq": seq})))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    reason: Option<String>,
}

/// Approve, deny or revoke; a revocation purges and proves it.
pub(crate) fn set_status(
    app: &App,
    actor: &str,
    id: &str,
    status: Status,
    reason: Option<String>,
) -> ApiResult<Value> {
    let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.is_none() && matches!(status, Status::Denied | Status::Revoked) {
        return Err(bad("a reason is required to deny or revoke"));
    }
    let sid = SourceId::new(id.to_string()).map_err(bad)?;
    let applied = app.store.apply(
        actor,
        Edit::SetStatus {
            id: sid,
            status,
            reason,
        },
    )?;
    let seq = applied.entry.seq;
    let reg = applied.registry.clone();
    app.set_registry(applied.registry);
    let mut out = json!({"source": id, "status": status.as_str(), "audit_seq": seq});
    if app.stopped().is_none() || status == Status::Revoked {
        // Approvals start ingesting now; a revocation purges now, even
        // during an emergency stop.
        let report = app.update(&reg, None)?;
        out["purged"] = json!(report.purged);
    }
    if status == Status::Revoked {
        let remaining = remaining(app, id)?;
        let clean = remaining["chunks"] == 0
            && remaining["vectors"] == 0
            && remaining["manifest"] == false
            && remaining["deleted_in_index"] == 0
            && remaining["dead_vectors"] == 0;
        app.record(vec![
            Event::new(actor, "source.purge_verified", id)
                .detail("clean", clean)
                .detail("remaining", remaining.clone()),
        ])?;
        out["remaining"] = remaining;
        out["purge_verified"] = json!(clean);
        if !clean {
            return Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "purge incomplete", "detail": out}),
            ));
        }
    }
    Ok(out)
}

/// What of a source is left in every store.
fn remaining(app: &App, id: &str) -> ApiResult<Value> {
    let ingest = app
        .ingest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let chunks = ingest.indexer.lexical().count_source(id);
    let vectors = match &ingest.dense {
        Ok(d) => d
            .store
            .file_chunks()
            .map_err(|e| ApiError::from(anyhow::Error::from(e)))?
            .iter()
            .filter(|((s, _), _)| s == id)
            .map(|(_, ids)| ids.len())
            .sum::<usize>(),
        Err(_) => 0,
    };
    let manifest = ingest.indexer.manifests().path_of(id).exists();
    // Deleted but still on disk: the purge expunges both to zero.
    let deleted_in_index = ingest
        .indexer
        .lexical()
        .deleted_docs()
        .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    let dead_vectors = ingest.dense.as_ref().map_or(0, |d| d.store.dead_records());
    Ok(json!({
        "chunks": chunks, "vectors": vectors, "manifest": manifest,
        "deleted_in_index": deleted_in_index, "dead_vectors": dead_vectors,
    }))
}

async fn post_status(
    State(app): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, verb)): UrlPath<(String, String)>,
    body: Option<Json<StatusBody>>,
) -> ApiResult<Json<Value>> {
    let status = match verb.as_str() {
        "approve" => Status::Approved,
        "deny" => Status::Denied,
        "revoke" => Status::Revoked,
        _ => return Err(err(StatusCode::NOT_FOUND, "not found")),
    };
    // Revocation must work during an emergency stop.
    let (_, p) = if status == Status::Revoked {
        auth_even_stopped(&app, &headers, STEWARD)?
    } else {
        app.auth(&headers, STEWARD)?
    };
    let reason = body.and_then(|b| b.0.reason);
    blocking(move || set_status(&app, &p.name, &id, status, reason))
        .await
        .map(Json)
}

fn auth_even_stopped(
    app: &App,
    headers: &HeaderMap,
    roles: &[Role],
) -> ApiResult<(Arc<Registry>, registry::Principal)> {
    match app.auth(headers, roles) {
        Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, _)) => {
            // Authenticated and authorised; only the stop refused it.
            let saved = app
                .stopped
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let r = app.auth(headers, roles);
            *app.stopped
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = saved;
            r
        }
        other => other,
    }
}

async fn get_exceptions(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let (reg, _) = app.auth(&headers, STEWARD)?;
    let now = app.store.clock().now();
    let views: Vec<_> = reg
        .exceptions
        .iter()
        .map(|x| crate::views::ExceptionView::new(x, now))
        .collect();
    Ok(Json(json!({"now": now, "exceptions": views})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionBody {
    id: Option<String>,
    source: String,
    path: String,
    reason: String,
    expires_at: String,
}

async fn post_exception(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<ExceptionBody>,
) -> ApiResult<Json<Value>> {
    let (_, p) = app.auth(&headers, STEWARD)?;
    blocking(move || {
        let now = app.store.clock().now();
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let expires_at: jiff::Timestamp = b
            .expires_at
            .parse()
            .map_err(|_| bad("expires_at must be an RFC 3339 time"))?;
        let source = SourceId::new(b.source).map_err(bad)?;
        let id = b.id.unwrap_or_else(|| {
            let h = registry::ContentHash::of(format!("{source}\0{}\0{now}", b.path).as_bytes());
            format!("exc-{}", &h.to_hex()[..10])
        });
        let applied = app.store.apply(
            &p.name,
            Edit::GrantException(NewException {
                id: id.clone(),
                source,
                path: b.path,
                permits: vec![Permit::NeverIngest],
                approver: p.name.clone(),
                reason: b.reason,
                granted_at: now,
                expires_at,
            }),
        )?;
        let seq = applied.entry.seq;
        app.set_registry(applied.registry);
        Ok(Json(json!({"id": id, "granted": true, "audit_seq": seq})))
    })
    .await
}

#[derive(Deserialize)]
struct TailQuery {
    n: Option<usize>,
}

async fn get_audit(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<TailQuery>,
) -> ApiResult<Json<Value>> {
    app.auth(&headers, STEWARD)?;
    blocking(move || {
        let entries = app
            .store
            .audit()
            .tail_entries(q.n.unwrap_or(50).clamp(1, 10_000))?;
        Ok(Json(json!({"entries": entries})))
    })
    .await
}

async fn get_audit_verify(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    app.auth(&headers, STEWARD)?;
    blocking(move || {
        let report = app.store.audit().verify()?;
        Ok(Json(serde_json::to_value(&report).map_err(anyhow::Error::from)?))
    })
    .await
}

/// Freshness per source; non-stewards see only the sources in scope.
pub(crate) fn freshness(
    app: &App,
    reg: &Registry,
    p: &registry::Principal,
    only: Option<&str>,
) -> ApiResult<Value> {
    let policy = reg.policy(app.store.clock());
    let scope = policy.scope_for(p);
    let report = {
        let ingest = app
            .ingest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ingest
            .indexer
            .freshness(reg, &policy, policy.now())
            .map_err(|e| ApiError::from(anyhow::Error::from(e)))?
    };
    let rows: Vec<_> = report
        .into_iter()
        .filter(|f| {
            p.role == Role::Steward
                || SourceId::new(f.source.clone()).is_ok_and(|sid| scope.sources.contains(&sid))
        })
        .filter(|f| only.is_none_or(|o| o == f.source))
        .collect();
    let attention = rows.iter().filter(|f| f.status.needs_attention()).count();
    Ok(json!({"at": policy.now(), "sources": rows, "needs_attention": attention}))
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
}

async fn get_freshness(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SourceQuery>,
) -> ApiResult<Json<Value>> {
    let (reg, p) = app.auth(&headers, ALL)?;
    blocking(move || freshness(&app, &reg, &p, q.source.as_deref()))
        .await
        .map(Json)
}

async fn get_check(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SourceQuery>,
) -> ApiResult<Json<Value>> {
    let (reg, p) = app.auth(&headers, CHECKERS)?;
    blocking(move || {
        // Stewards see the whole registry; CI and developers what their
        // scope covers, and a source outside it is the same 404 as none.
        let scope = (p.role != Role::Steward).then(|| reg.policy(app.store.clock()).scope_for(&p));
        if let Some(id) = &q.source
            && !crate::checking::source_visible(&reg, scope.as_ref(), id)
        {
            return Err(err(StatusCode::NOT_FOUND, "no such source"));
        }
        let rep = crate::checking::report(&reg, q.source.as_deref(), scope.as_ref(), &app.s, &app.store)?;
        Ok(Json(serde_json::to_value(&rep).map_err(anyhow::Error::from)?))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    reason: String,
}

async fn post_stop(
    State(app): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<StopBody>,
) -> ApiResult<Json<Value>> {
    let (_, p) = auth_even_stopped(&app, &headers, STEWARD)?;
    let reason = b.reason.trim().to_string();
    if reason.is_empty() || reason.len() > 500 {
        return Err(bad("reason is 1 to 500 characters"));
    }
    blocking(move || {
        // Audited and persisted before it is acknowledged.
        app.record(vec![
            Event::new(&p.name, "service.stop", "service").detail("reason", reason.clone()),
        ])?;
        registry::fsutil::write_atomic(
            &stop_file(&app.s),
            json!({"reason": reason, "by": p.name, "at": jiff::Timestamp::now()})
                .to_string()
                .as_bytes(),
        )?;
        *app.stopped
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.clone());
        Ok(Json(json!({"stopped": true, "reason": reason})))
    })
    .await
}

async fn post_resume(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let (_, p) = auth_even_stopped(&app, &headers, STEWARD)?;
    blocking(move || {
        app.record(vec![Event::new(&p.name, "service.resume", "service")])?;
        match std::fs::remove_file(stop_file(&app.s)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ApiError::from(anyhow::Error::from(e))),
        }
        *app.stopped
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        // Catch up on whatever changed while stopped.
        let reg = app.registry()?;
        app.update(&reg, None)?;
        Ok(Json(json!({"stopped": false})))
    })
    .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Shared>) -> Response {
    let dense = app.retriever.dense_status();
    let stopped = app.stopped();
    let body = json!({
        "ready": stopped.is_none(),
        "stopped": stopped,
        "served_by": if dense.available { "hybrid" } else { "lexical" },
        "model": {"available": dense.available, "model_id": dense.model_id, "reason": dense.reason},
        "index": {"chunks": dense.chunks, "vectors": dense.vectors, "coverage": dense.coverage},
    });
    let code = if stopped.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    let m = &app.metrics;
    let d = app.retriever.dense_status();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("# HELP ctxplane_queries_total Queries answered, by the tier that served them.".into());
    line("# TYPE ctxplane_queries_total counter".into());
    for (tier, c) in [
        ("topic_package", &m.queries_topic),
        ("hybrid", &m.queries_hybrid),
        ("lexical", &m.queries_lexical),
        ("dense", &m.queries_dense),
    ] {
        line(format!(
            "ctxplane_queries_total{{served_by=\"{tier}\"}} {}",
            c.load(Ordering::Relaxed)
        ));
    }
    line("# HELP ctxplane_query_duration_seconds Query latency inside the retriever.".into());
    line("# TYPE ctxplane_query_duration_seconds histogram".into());
    let mut cum = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        cum += m.latency[i].load(Ordering::Relaxed);
        line(format!(
            "ctxplane_query_duration_seconds_bucket{{le=\"{}\"}} {cum}",
            b / 1000.0
        ));
    }
    cum += m.latency[BUCKETS.len()].load(Ordering::Relaxed);
    line(format!(
        "ctxplane_query_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
    ));
    line(format!(
        "ctxplane_query_duration_seconds_sum {}",
        m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    ));
    line(format!("ctxplane_query_duration_seconds_count {cum}"));
    let counters = [
        (
            "ctxplane_tokens_served_total",
            "Tokens of content served.",
            m.tokens_served.load(Ordering::Relaxed),
        ),
        (
            "ctxplane_auth_unauthorized_total",
            "Requests without a valid token.",
            m.unauthorized.load(Ordering::Relaxed),
        ),
        (
            "ctxplane_auth_forbidden_total",
            "Requests whose role may not use the endpoint.",
            m.forbidden.load(Ordering::Relaxed),
        ),
        (
            "ctxplane_files_denied_total",
            "Files the policy kept out, over passes since start.",
            m.files_denied.load(Ordering::Relaxed),
        ),
        (
            "ctxplane_secrets_redacted_total",
            "Secrets redacted, over passes since start.",
            m.secrets_redacted.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        line(format!("# HELP {name} {help}"));
        line(format!("# TYPE {name} counter"));
        line(format!("{name} {v}"));
    }
    let last = m.last_pass_unix.load(Ordering::Relaxed);
    let lag = if last == 0 {
        -1
    } else {
        jiff::Timestamp::now().as_second() - last as i64
    };
    let gauges = [
        (
            "ctxplane_index_lag_seconds",
            "Seconds since the last indexing pass (-1: none yet).",
            lag as f64,
        ),
        (
            "ctxplane_index_pending_sources",
            "Sources with changes not yet indexed.",
            m.pending_sources.load(Ordering::Relaxed) as f64,
        ),
        (
            "ctxplane_index_chunks",
            "Chunks in the lexical index.",
            d.chunks as f64,
        ),
        (
            "ctxplane_vector_coverage_ratio",
            "Share of chunks with a vector.",
            d.coverage,
        ),
        (
            "ctxplane_stopped",
            "1 during an emergency stop.",
            if app.stopped().is_some() { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, v) in gauges {
        line(format!("# HELP {name} {help}"));
        line(format!("# TYPE {name} gauge"));
        line(format!("{name} {v}"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "not found")
}

pub(crate) fn router(app: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/context", post(post_context))
        .route("/v1/provenance/{id}", get(get_provenance))
        .route("/v1/sources", get(get_sources).post(post_source))
        .route("/v1/sources/{id}/{verb}", post(post_status))
        .route("/v1/exceptions", get(get_exceptions).post(post_exception))
        .route("/v1/audit", get(get_audit))
        .route("/v1/audit/verify", get(get_audit_verify))
        .route("/v1/freshness", get(get_freshness))
        .route("/v1/check", get(get_check))
        .route("/v1/admin/stop", post(post_stop))
        .route("/v1/admin/resume", post(post_resume))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(app)
}

/// Follows the sources and the registry, indexing each burst of changes;
/// holds them while stopped and catches up on resume.
fn watch_loop(app: Shared, mut w: Watching) {
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut registry_changed = false;
    while !app.shutdown.load(Ordering::Relaxed) {
        match w.next_burst_within(Duration::from_millis(250)) {
            Err(()) => break,
            Ok(Some((touched, reg_changed))) => {
                pending.extend(touched);
                registry_changed |= reg_changed;
            }
            Ok(None) => {}
        }
        app.metrics
            .pending_sources
            .store(pending.len() as u64, Ordering::Relaxed);
        if app.stopped().is_some() || (pending.is_empty() && !registry_changed) {
            continue;
        }
        let reg = match app.registry() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: registry not reloaded, keeping the previous one: {e:#}");
                registry_changed = false;
                continue;
            }
        };
        if registry_changed {
            w.follow(&reg);
        }
        let only = (!registry_changed).then_some(&pending);
        match app.update(&reg, only) {
            Ok(_) => {
                pending.clear();
                registry_changed = false;
            }
            Err(e) => eprintln!("error: update failed (the next change retries): {e:#}"),
        }
        app.metrics.pending_sources.store(0, Ordering::Relaxed);
    }
}

pub fn serve(args: ServeArgs, s: &Settings, store: RegistryStore) -> anyhow::Result<std::process::ExitCode> {
    let app = Arc::new(App::open(s.clone(), store, !args.no_embed, false)?);
    serve_app(app, args, None)
}

/// Runs the server until SIGINT/SIGTERM; `ready` is called with the bound
/// address once it listens.
pub(crate) fn serve_app(
    app: Shared,
    args: ServeArgs,
    ready: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
) -> anyhow::Result<std::process::ExitCode> {
    let watcher = start_watcher(&app, args.no_watch)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("ctxplane serving on http://{addr} (Ctrl-C to stop)");
        if let Some(f) = ready {
            f(addr);
        }
        axum::serve(listener, router(app.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")
    });
    stop_watcher(&app, watcher);
    result?;
    eprintln!("ctxplane stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Starts the indexing thread that follows the sources (unless `off`).
pub(crate) fn start_watcher(app: &Shared, off: bool) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if off {
        return Ok(None);
    }
    let reg = app.registry()?;
    let w = Watching::start(&reg, &app.store, 100)?;
    let a = app.clone();
    Ok(Some(std::thread::spawn(move || watch_loop(a, w))))
}

/// Stops the indexing thread after its current pass.
pub(crate) fn stop_watcher(app: &Shared, watcher: Option<std::thread::JoinHandle<()>>) {
    app.shutdown.store(true, Ordering::Relaxed);
    if let Some(h) = watcher {
        let _ = h.join();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
