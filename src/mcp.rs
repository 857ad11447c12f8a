//! The MCP adapter (rmcp): the agent operations as tools, on stdio (`ctxplane
//! mcp`, one principal per process) and over streamable HTTP (`serve` at
//! `/mcp`, the principal from each request's bearer token). Each call is
//! admitted by the plane exactly as its HTTP twin (role, stop, scope), and
//! returns `structuredContent` matching the tool's declared output schema
//! plus a one-line text rendering.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, DiscoverRequestMethod, DiscoverResult, Implementation, ProtocolVersion,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use plane::query::{Asker, ContextRequest, GroupBy, SearchMode, Via};
use plane::{Operation, Plane, Profile, Settings};

/// Who the tools act for.
#[derive(Clone, Debug)]
enum Identity {
    /// The token given at start (stdio): authenticated again on every call.
    Token(String),
    /// A principal named by the operator (`mcp --as`).
    Named(String),
    /// HTTP: the bearer token of each request.
    PerRequest,
}

#[derive(Clone)]
pub struct Mcp {
    plane: Arc<Plane>,
    identity: Identity,
    tool_router: ToolRouter<Self>,
}

/// `get_context` arguments: the same options as `POST /v1/context`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetContext {
    /// The question or search text (1 to 32768 bytes; a long one is reduced).
    pub query: String,
    /// Token budget for everything returned, provenance included: 1 to
    /// 200000 (default 4000).
    #[serde(default, deserialize_with = "plane::query::whole::optional")]
    #[schemars(with = "u32", range(min = 1, max = 200000))]
    pub max_tokens: Option<u32>,
    /// Most results: 1 to 100 (default 10).
    #[serde(default, deserialize_with = "plane::query::whole::optional")]
    #[schemars(with = "u32", range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// Only these source ids (narrowing this principal's scope).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub sources: Option<Vec<String>>,
    /// hybrid (default), lexical or dense.
    #[serde(default)]
    #[schemars(with = "SearchMode")]
    pub mode: Option<SearchMode>,
    /// Try curated topic packages first (default true).
    #[serde(default)]
    #[schemars(with = "bool")]
    pub packages: Option<bool>,
    /// chunk (default) or file: rank files by their chunks' evidence
    /// (`limit` counts files; each file names its best chunks in `results`).
    #[serde(default)]
    #[schemars(with = "GroupBy")]
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explain {
    /// A result id from get_context (`c-…` or `topic:<id>`), or an
    /// answer's snapshot (`snap-…` or `ctxplane:snap-…`).
    pub result_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessQuery {
    /// Only this source.
    #[serde(default)]
    #[schemars(with = "String")]
    pub source: Option<String>,
}

/// No arguments (anything given is refused).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// A JSON object of the plane's making (provenance chains, source lists).
type Object = Map<String, Value>;

/// A tool's output schema, derived from the type it returns, with every
/// nullable `"type": [T, "null"]` spelled as `anyOf` branches of one type
/// each (portable to single-type dialects; MCP Inspector's --strict).
fn output_schema<T: JsonSchema>() -> Arc<Map<String, Value>> {
    fn split(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(types)) = m.get("type").cloned() {
                    m.remove("type");
                    let mut branches: Vec<Value> = types
                        .into_iter()
                        .map(|t| {
                            let mut b = Map::new();
                            b.insert("type".into(), t);
                            Value::Object(b)
                        })
                        .collect();
                    // Keywords that constrain the non-null branch move into it.
                    for key in [
                        "format",
                        "minimum",
                        "maximum",
                        "items",
                        "properties",
                        "required",
                        "enum",
                    ] {
                        if let Some(k) = m.remove(key)
                            && let Some(Value::Object(b)) = branches.iter_mut().find(|b| b["type"] != "null")
                        {
                            b.insert(key.into(), k);
                        }
                    }
                    m.insert("anyOf".into(), Value::Array(branches));
                }
                m.values_mut().for_each(split);
            }
            Value::Array(a) => a.iter_mut().for_each(split),
            _ => {}
        }
    }
    let mut v = schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value();
    split(&mut v);
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

fn tool_error(e: &plane::Error) -> CallToolResult {
    let text = match e {
        plane::Error::Internal(err) => {
            tracing::error!(error = format!("{err:#}"), "internal error in an MCP tool");
            "internal error; see the server log".to_string()
        }
        plane::Error::Config(m) => {
            tracing::error!(error = %m, "configuration problem in an MCP tool");
            "internal error; see the server log".to_string()
        }
        plane::Error::Unavailable { reason, detail } => {
            plane::warn_unavailable(reason, detail);
            format!(
                "unavailable: {reason}; retry in {} s",
                plane::UNAVAILABLE_RETRY_SECS
            )
        }
        other => other.to_string(),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn structured(v: Value, summary: String) -> CallToolResult {
    let mut r = CallToolResult::structured(v);
    r.content = vec![ContentBlock::text(summary)];
    r
}

/// The caller `require_token` authenticated for this HTTP request.
fn authenticated(ctx: &RequestContext<RoleServer>) -> Option<plane::Who> {
    let parts = ctx.extensions.get::<http::request::Parts>()?;
    parts.extensions.get::<plane::Who>().cloned()
}

impl Mcp {
    /// Admits the caller for `op` and runs `f` off the async runtime; every
    /// refusal or failure is a tool error the agent can read.
    async fn call(
        &self,
        op: Operation,
        ctx: &RequestContext<RoleServer>,
        f: impl FnOnce(&Plane, plane::Who) -> plane::Result<(Value, String)> + Send + 'static,
    ) -> Result<CallToolResult, ErrorData> {
        let plane = self.plane.clone();
        let identity = self.identity.clone();
        let from_http = authenticated(ctx);
        let span = tracing::info_span!("mcp_call", tool = op.name(), principal = tracing::field::Empty);
        let out = tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            let who = match identity {
                Identity::Token(t) => plane.admit(Some(&t), op),
                Identity::Named(n) => plane.admit_named(&n, op),
                // Authenticated once, before any MCP message was read;
                // only the role and the stop remain to check.
                Identity::PerRequest => match from_http {
                    Some(who) => plane.authorize(&who, op).map(|()| who),
                    None => Err(plane::Error::Unauthorized),
                },
            }?;
            span.record("principal", who.name());
            let r = f(&plane, who);
            match &r {
                Ok(_) => tracing::info!("done"),
                Err(e) => tracing::info!(error = e.kind(), "refused"),
            }
            r
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match out {
            Ok((v, summary)) => structured(v, summary),
            Err(e) => tool_error(&e),
        })
    }
}

#[tool_router]
impl Mcp {
    #[tool(
        description = "Grounded context for a question about the organisation's code and docs: a curated topic package when one answers it, otherwise search results; every item carries provenance (source, path, lines, commit, hashes, freshness). Only what this principal may read; max_tokens bounds everything returned.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<plane::query::Delivered>()
    )]
    async fn get_context(
        &self,
        Parameters(p): Parameters<GetContext>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let req = ContextRequest {
            query: p.query,
            max_tokens: p.max_tokens,
            limit: p.limit,
            sources: p.sources,
            mode: p.mode,
            packages: p.packages,
            group_by: p.group_by,
        };
        self.call(Operation::Context, &ctx, move |plane, who| {
            let d = plane.context(&Asker::Principal(who), req, Via::Mcp)?;
            let summary = match &d.answer.package {
                Some(p) => format!(
                    "topic package {} answers it (~{} tokens)",
                    p.id, d.delivered_tokens
                ),
                None => format!(
                    "{} result(s) served by {} (~{} tokens)",
                    d.answer.results.len(),
                    d.answer.served_by,
                    d.delivered_tokens
                ),
            };
            Ok((serde_json::to_value(&d)?, summary))
        })
        .await
    }

    #[tool(
        description = "Where a result came from: its source, owner, path, lines, commit, content hashes, when it was ingested and under which policy decision, and whether it is still fresh. Given an answer's snapshot (`snap-…` or `ctxplane:snap-…`): what the whole answer was grounded in and whether each part still holds now, with a verdict.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<Object>()
    )]
    async fn explain_provenance(
        &self,
        Parameters(p): Parameters<Explain>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(Operation::Provenance, &ctx, move |plane, who| {
            let v = plane.provenance(&Asker::Principal(who), &p.result_id)?;
            Ok((v, format!("provenance of {}", p.result_id)))
        })
        .await
    }

    #[tool(
        description = "The sources this principal may read: id, owner, tier, description.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<Object>()
    )]
    async fn list_sources(
        &self,
        Parameters(_): Parameters<NoArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(Operation::ListSources, &ctx, |plane, who| {
            let v = plane.sources(&who);
            let n = v["sources"].as_array().map_or(0, Vec::len);
            Ok((v, format!("{n} source(s)")))
        })
        .await
    }

    #[tool(
        description = "How fresh each readable source is: last indexing pass, files changed since, content past its max age, and version drift between docs and lockfiles.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<plane::lookup::FreshnessReport>()
    )]
    async fn freshness_report(
        &self,
        Parameters(p): Parameters<FreshnessQuery>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(Operation::Freshness, &ctx, move |plane, who| {
            let r = plane.freshness(Some(&who), p.source.as_deref())?;
            let summary = format!(
                "{} source(s), {} need attention",
                r.sources.len(),
                r.needs_attention
            );
            Ok((serde_json::to_value(&r)?, summary))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ctxplane", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "ctxplane answers questions about this organisation's code and docs with provenance. \
                 Call get_context first; cite results by their provenance; use explain_provenance to check one.",
            )
    }

    /// The handshake-era versions: a client that probes with
    /// `server/discover` for the 2026-07-28 lifecycle is told so at once
    /// and falls back to `initialize`.
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(
            &ProtocolVersion::LATEST_WITH_INITIALIZE,
        ))
    }

    async fn discover(&self, _ctx: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        Err(ErrorData::method_not_found::<DiscoverRequestMethod>())
    }
}

impl Mcp {
    fn new(plane: Arc<Plane>, identity: Identity) -> Mcp {
        Mcp {
            plane,
            identity,
            tool_router: Mcp::tool_router(),
        }
    }
}

/// `ctxplane mcp`: MCP on stdio as one principal.
pub fn mcp(
    args: crate::cli::McpArgs,
    s: &Settings,
    store: registry::RegistryStore,
) -> anyhow::Result<std::process::ExitCode> {
    let token = std::env::var(&args.token_env).ok().filter(|t| !t.is_empty());
    let plane = Arc::new(Plane::open(s.clone(), store, Profile::server(true))?);
    let identity = match (token, &args.principal) {
        (Some(t), _) => {
            plane.authenticate(Some(&t)).map_err(|_| {
                plane::ConfigError(format!("the token in {} matches no principal", args.token_env))
            })?;
            Identity::Token(t)
        }
        (None, Some(name)) => {
            plane.principal_named(name)?;
            Identity::Named(name.clone())
        }
        (None, None) => {
            return Err(plane::ConfigError(format!(
                "set {} to the principal's token (or pass --as PRINCIPAL)",
                args.token_env
            ))
            .into());
        }
    };
    if let Err(e) = plane.update(None, plane::PassKind::Full, &mut plane::Quiet) {
        tracing::error!(error = %e, "initial pass failed; serving what is indexed");
    }
    plane.retriever()?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = crate::watch::spawn(&plane, args.no_watch, &stop)?;
    let filler = crate::cmd::serve::spawn_filler(&plane, &stop);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let running = Mcp::new(plane.clone(), identity)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("starting the MCP session: {e}"))?;
        running.waiting().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    });
    crate::watch::stop(&stop, watcher);
    let _ = filler.join();
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// MCP over streamable HTTP for `serve`, at `/mcp`: the same tools, each
/// call admitted with the request's bearer token (a request without a
/// valid token is a 401 before any MCP message is read).
pub fn http_service(plane: Arc<Plane>, addr: SocketAddr) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
    let host = addr.ip().to_string();
    let hosts = [
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        format!("{host}:{}", addr.port()),
        host,
    ];
    let p = plane.clone();
    let service = StreamableHttpService::new(
        move || Ok(Mcp::new(p.clone(), Identity::PerRequest)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(session_closed))
        .layer(axum::middleware::from_fn_with_state(plane, require_token))
}

/// A closed session answers `DELETE /mcp` with 204 No Content (clients
/// expect 200 or 204 there, not 202).
async fn session_closed(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete = req.method() == axum::http::Method::DELETE;
    let mut r = next.run(req).await;
    if delete && r.status() == axum::http::StatusCode::ACCEPTED {
        *r.status_mut() = axum::http::StatusCode::NO_CONTENT;
        *r.body_mut() = axum::body::Body::empty();
    }
    r
}

/// 401 with `WWW-Authenticate` for a request to `/mcp` without a valid token.
/// The caller is authenticated here, once per request, and handed to the
/// tools through the request's extensions.
async fn require_token(
    axum::extract::State(plane): axum::extract::State<Arc<Plane>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let token = crate::http::bearer(req.headers());
    let who = tokio::task::spawn_blocking(move || plane.authenticate(token.as_deref()).ok())
        .await
        .ok()
        .flatten();
    match who {
        Some(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        None => crate::http::error::ApiError(plane::Error::Unauthorized).into_response(),
    }
}
