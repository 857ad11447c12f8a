//! The HTTP adapter: routes, extractors, admission middleware. Every `/v1`
//! route names its plane operation; the caller is authenticated and
//! authorised (role, emergency stop) before the body is read. Handlers
//! convert, call the plane on the blocking pool, convert back.

pub mod console;
pub mod error;
pub mod listener;
pub mod openapi;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use plane::query::{Asker, ContextRequest, Via};
use plane::stewardship::{ExceptionGrant, SourceProposal};
use plane::{Operation, Plane, Who};
use registry::Status;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::error::{ApiError, json_rejection, query_rejection};

/// Largest request body: a query of the longest length allowed still fits
/// when JSON escapes every byte of it (`\u00XX`, six bytes each).
pub const MAX_BODY_BYTES: usize = 6 * plane::query::MAX_QUERY_BYTES + 4 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `/readyz` waits for the index and the vector store.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

type Shared = Arc<Plane>;
type ApiResult<T> = Result<T, ApiError>;

/// The plane operation behind each `/v1` route: the role matrix applies
/// per operation, in the plane, for every interface alike.
pub fn operation(method: &Method, path: &str) -> Option<Operation> {
    use Operation::*;
    Some(match (method.as_str(), path) {
        ("POST", "/v1/context") => Context,
        ("GET", "/v1/provenance/{id}") => Provenance,
        ("GET", "/v1/snapshots/{id}") => Snapshot,
        ("GET", "/v1/sources") => ListSources,
        ("POST", "/v1/sources") => ProposeSource,
        ("POST", "/v1/sources/{id}/approve") => Approve,
        ("POST", "/v1/sources/{id}/deny") => Deny,
        ("POST", "/v1/sources/{id}/revoke") => Revoke,
        ("GET", "/v1/exceptions") => ListExceptions,
        ("POST", "/v1/exceptions") => GrantException,
        ("GET", "/v1/audit") => ReadAudit,
        ("GET", "/v1/audit/verify") => VerifyAudit,
        ("GET", "/v1/freshness") => Freshness,
        ("GET", "/v1/check") => Check,
        ("GET", "/v1/principals") => ListPrincipals,
        ("POST", "/v1/principals") => AddPrincipal,
        ("POST", "/v1/policy/decide") => DecidePolicy,
        ("POST", "/v1/admin/stop") => Stop,
        ("POST", "/v1/admin/resume") => Resume,
        _ => return None,
    })
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string())
}

/// Admission before anything else is read: authenticate, check the role
/// and the stop, then hand the admitted caller to the handler.
async fn admit(State(plane): State<Shared>, matched: MatchedPath, mut req: Request, next: Next) -> Response {
    let Some(op) = operation(req.method(), matched.as_str()) else {
        // A method the route does not have: the router answers 405.
        return next.run(req).await;
    };
    let token = bearer(req.headers());
    // Authentication may re-read a changed registry file: off the runtime.
    let admitted = tokio::task::spawn_blocking(move || plane.admit(token.as_deref(), op)).await;
    match admitted {
        Ok(Ok(who)) => {
            tracing::Span::current().record("principal", who.name());
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Ok(Err(e)) => ApiError(e).into_response(),
        Err(e) => ApiError(plane::Error::internal(e)).into_response(),
    }
}

/// A JSON body whose rejections are JSON too (415, 400, 422, 413).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(json_rejection)
    }
}

/// A JSON body that may be absent (no bytes at all).
pub struct OptionalBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalBody<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
            ApiError(plane::Error::TooLarge(format!(
                "body larger than {MAX_BODY_BYTES} bytes"
            )))
            .into_response()
        })?;
        if bytes.is_empty() {
            return Ok(OptionalBody(None));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Body::<T>::from_request(req, state)
            .await
            .map(|Body(v)| OptionalBody(Some(v)))
    }
}

/// A query string whose rejections are JSON.
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = Response;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(query_rejection)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> plane::Result<T> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(plane::Error::internal(e))),
    }
}

async fn post_context(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(req): Body<ContextRequest>,
) -> ApiResult<Json<plane::query::Delivered>> {
    blocking(move || plane.context(&Asker::Principal(who), req, Via::Http))
        .await
        .map(Json)
}

async fn get_provenance(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking(move || plane.provenance(&Asker::Principal(who), &id))
        .await
        .map(Json)
}

async fn get_snapshot(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Path(id): Path<String>,
) -> ApiResult<Json<plane::snapshots::Resolution>> {
    blocking(move || {
        let id = id.strip_prefix(plane::snapshots::CITE_PREFIX).unwrap_or(&id);
        plane.snapshot(&Asker::Principal(who), id)
    })
    .await
    .map(Json)
}

async fn get_sources(State(plane): State<Shared>, Extension(who): Extension<Who>) -> Json<Value> {
    Json(plane.sources(&who))
}

async fn post_source(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(p): Body<SourceProposal>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    blocking(move || plane.propose_source(who.name(), p))
        .await
        .map(|o| {
            (
                StatusCode::CREATED,
                Json(json!({"status": "proposed", "source": o.subject, "audit_seq": o.audit_seq, "registry_version": o.registry_version})),
            )
        })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (optional to approve; at most 500 characters).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredReason {
    /// Why: 1 to 500 characters, not only whitespace.
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    pub reason: String,
}

async fn set_status(
    plane: Shared,
    who: Who,
    id: String,
    status: Status,
    reason: Option<String>,
) -> ApiResult<Json<Value>> {
    blocking(move || plane.set_status(who.name(), &id, status, reason))
        .await
        .and_then(|o| serde_json::to_value(o).map_err(|e| ApiError(e.into())))
        .map(Json)
}

async fn post_approve(
    State(p): State<Shared>,
    Extension(w): Extension<Who>,
    Path(id): Path<String>,
    OptionalBody(b): OptionalBody<ReasonBody>,
) -> ApiResult<Json<Value>> {
    set_status(p, w, id, Status::Approved, b.and_then(|b| b.reason)).await
}

async fn post_deny(
    State(p): State<Shared>,
    Extension(w): Extension<Who>,
    Path(id): Path<String>,
    Body(b): Body<RequiredReason>,
) -> ApiResult<Json<Value>> {
    set_status(p, w, id, Status::Denied, Some(b.reason)).await
}

async fn post_revoke(
    State(p): State<Shared>,
    Extension(w): Extension<Who>,
    Path(id): Path<String>,
    Body(b): Body<RequiredReason>,
) -> ApiResult<Json<Value>> {
    set_status(p, w, id, Status::Revoked, Some(b.reason)).await
}

async fn get_exceptions(State(plane): State<Shared>, Extension(who): Extension<Who>) -> Json<Value> {
    Json(plane.exceptions(&who))
}

async fn post_exception(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(g): Body<ExceptionGrant>,
) -> ApiResult<(StatusCode, Json<plane::stewardship::GrantOutcome>)> {
    blocking(move || plane.grant_exception(&who, g))
        .await
        .map(|o| (StatusCode::CREATED, Json(o)))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the latest entries: 1 to 10000 (default 50).
    #[schemars(range(min = 1, max = 10000))]
    pub n: Option<usize>,
}

async fn get_audit(State(plane): State<Shared>, Q(q): Q<TailQuery>) -> ApiResult<Json<Value>> {
    blocking(move || plane.audit_tail(q.n.unwrap_or(50)))
        .await
        .map(Json)
}

async fn get_audit_verify(State(plane): State<Shared>) -> ApiResult<Json<Value>> {
    blocking(move || plane.audit_verify()).await.map(Json)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceQuery {
    /// Only this source.
    pub source: Option<String>,
}

async fn get_freshness(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Q(q): Q<SourceQuery>,
) -> ApiResult<Json<plane::lookup::FreshnessReport>> {
    blocking(move || plane.freshness(Some(&who), q.source.as_deref()))
        .await
        .map(Json)
}

async fn get_check(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Q(q): Q<SourceQuery>,
) -> ApiResult<Json<plane::check::CheckReport>> {
    blocking(move || plane.check(Some(&who), q.source.as_deref()))
        .await
        .map(Json)
}

async fn get_principals(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
) -> ApiResult<Json<Value>> {
    let rows = serde_json::to_value(plane.principals(&who)).map_err(|e| ApiError(e.into()))?;
    Ok(Json(json!({"principals": rows})))
}

async fn post_principal(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(r): Body<plane::overview::PrincipalRequest>,
) -> ApiResult<(StatusCode, Json<plane::overview::PrincipalAdded>)> {
    blocking(move || plane.add_principal(&who, r))
        .await
        .map(|o| (StatusCode::CREATED, Json(o)))
}

async fn post_decide(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(r): Body<plane::overview::DecideRequest>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let d = plane.decide(who.name(), &r.source, &r.paths)?;
        Ok(json!({"decisions": d}))
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    /// Why everything stops: 1 to 500 characters, not only whitespace.
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    pub reason: String,
}

async fn post_stop(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
    Body(b): Body<StopBody>,
) -> ApiResult<Json<plane::access::StopState>> {
    blocking(move || plane.stop(&who, &b.reason)).await.map(Json)
}

async fn post_resume(
    State(plane): State<Shared>,
    Extension(who): Extension<Who>,
) -> ApiResult<Json<plane::access::StopState>> {
    blocking(move || plane.resume(&who)).await.map(Json)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(plane): State<Shared>) -> Response {
    let stopped = plane.stopped();
    let p = plane.clone();
    // The registry must parse: a malformed file makes every operation fail
    // closed (500 with no detail), so the service is not ready. Counting
    // vectors and asking a vector server are I/O: off the async workers.
    let probed = tokio::time::timeout(
        READY_PROBE_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let registry_ok = p.registry().is_ok();
            let dense = p.retriever().map(|r| r.dense_status());
            (registry_ok, dense, p.vector_backend())
        }),
    )
    .await;
    let (registry_ok, dense, (backend_ok, backend)) = match probed {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false}))).into_response();
        }
        Err(_) => {
            let why = format!(
                "the index or vector store did not answer within {} s",
                READY_PROBE_TIMEOUT.as_secs()
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ready": false, "stopped": stopped, "error": why})),
            )
                .into_response();
        }
    };
    let ready = stopped.is_none() && registry_ok && dense.is_ok() && backend_ok;
    let registry = if registry_ok {
        "valid"
    } else {
        "invalid; see the server log"
    };
    // Serving starts as soon as the lexical index is usable; vectors may
    // still be being built behind it (`vectors`: building, complete, off).
    let model = plane.model().is_ok();
    let body = match &dense {
        Ok(d) => json!({
            "ready": ready,
            "stopped": stopped,
            "registry": registry,
            "served_by": if d.available { "hybrid" } else { "lexical" },
            "vectors": if !model {
                "off"
            } else if d.chunks == 0 || (d.available && d.coverage >= 1.0) {
                "complete"
            } else {
                "building"
            },
            "model": {"available": d.available, "model_id": d.model_id, "reason": d.reason},
            "index": {"chunks": d.chunks, "vectors": d.vectors, "coverage": d.coverage},
            "vector_store": backend,
        }),
        Err(e) => {
            let error = match e {
                // The server's address and message stay in the log.
                plane::Error::Unavailable { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            json!({"ready": false, "stopped": stopped, "registry": registry, "index": {"error": error}, "vector_store": backend})
        }
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(plane): State<Shared>) -> Response {
    let p = plane.clone();
    let dense = tokio::task::spawn_blocking(move || match p.retriever() {
        Ok(r) => r.dense_status(),
        Err(e) => retriever::DenseStatus::unavailable(e.to_string()),
    })
    .await
    .unwrap_or_else(|e| retriever::DenseStatus::unavailable(e.to_string()));
    let text = plane
        .metrics
        .render(&dense, plane.stopped().is_some(), plane.store().clock().now());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn openapi_doc() -> Json<Value> {
    Json(openapi::document())
}

async fn not_found() -> ApiError {
    ApiError(plane::Error::NotFound("not found".into()))
}

/// A request id on every request's log span.
async fn trace_request(req: Request, next: Next) -> Response {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = %req.uri().path(),
        principal = tracing::field::Empty
    );
    let started = std::time::Instant::now();
    let r = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    span.in_scope(|| {
        tracing::info!(
            status = r.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "done"
        );
    });
    r
}

/// The whole API. `extra` is merged in before the layers (the MCP endpoint).
pub fn router(plane: Shared, extra: Option<Router>) -> Router {
    let gate = from_fn_with_state(plane.clone(), admit);
    let v1 = Router::new()
        .route("/v1/context", post(post_context))
        .route("/v1/provenance/{id}", get(get_provenance))
        .route("/v1/snapshots/{id}", get(get_snapshot))
        .route("/v1/sources", get(get_sources).post(post_source))
        .route("/v1/sources/{id}/approve", post(post_approve))
        .route("/v1/sources/{id}/deny", post(post_deny))
        .route("/v1/sources/{id}/revoke", post(post_revoke))
        .route("/v1/exceptions", get(get_exceptions).post(post_exception))
        .route("/v1/audit", get(get_audit))
        .route("/v1/audit/verify", get(get_audit_verify))
        .route("/v1/freshness", get(get_freshness))
        .route("/v1/check", get(get_check))
        .route("/v1/principals", get(get_principals).post(post_principal))
        .route("/v1/policy/decide", post(post_decide))
        .route("/v1/admin/stop", post(post_stop))
        .route("/v1/admin/resume", post(post_resume))
        .route_layer(gate);
    let mut app: Router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_doc))
        .merge(v1)
        .with_state(plane.clone())
        .merge(console::router(plane));
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(error::json_errors))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(from_fn(trace_request))
}
