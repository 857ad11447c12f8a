//! `ctxplane mcp`: a Model Context Protocol server on stdio (rmcp), acting
//! as one configured principal. Its tools are the agent endpoints of the
//! HTTP API with the same scope, tier ceiling, audit and emergency stop;
//! the principal is looked up again on every call, so a revoked grant or
//! a lowered ceiling applies at once.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Content, Implementation, ServerCapabilities, ServerInfo};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{ConfigError, Settings};
use crate::serve::{App, ContextRequestArgs};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Environment variable holding the principal's token.
    #[arg(long, default_value = "CTXPLANE_TOKEN", value_name = "VAR")]
    pub token_env: String,
    /// Act as this principal without a token (for an operator who already
    /// holds the registry and data dir); the token wins when both are set.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Do not watch sources for changes.
    #[arg(long)]
    pub no_watch: bool,
}

#[derive(Clone)]
pub struct Mcp {
    app: Arc<App>,
    principal: String,
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
pub struct GetContext {
    /// The question or search text.
    pub query: String,
    /// Token budget for the answer (default 4000).
    pub max_tokens: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct Explain {
    /// A result id from get_context (`c-…` or `topic:<id>`).
    pub result_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct FreshnessQuery {
    /// Only this source.
    pub source: Option<String>,
}

fn fail(message: String) -> CallToolResult {
    CallToolResult::error(vec![Content::text(message)])
}

impl Mcp {
    /// Runs `f` as the principal, off the async runtime; every refusal or
    /// error is a tool error the agent can read.
    async fn call(
        &self,
        f: impl FnOnce(
            &App,
            &registry::Registry,
            &registry::Principal,
        ) -> Result<serde_json::Value, crate::serve::ApiError>
        + Send
        + 'static,
    ) -> Result<CallToolResult, ErrorData> {
        let app = self.app.clone();
        let name = self.principal.clone();
        let out = tokio::task::spawn_blocking(move || {
            if let Some(reason) = app.stopped() {
                return Err(format!("ctxplane is stopped: {reason}"));
            }
            let reg = app.registry().map_err(|e| format!("{e:#}"))?;
            let p = reg
                .principal(&name)
                .cloned()
                .ok_or_else(|| "this principal no longer exists".to_string())?;
            f(&app, &reg, &p).map_err(|e| e.message())
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match out {
            Ok(v) => CallToolResult::success(vec![Content::text(
                serde_json::to_string_pretty(&v).unwrap_or_default(),
            )]),
            Err(m) => fail(m),
        })
    }
}

#[tool_router]
impl Mcp {
    #[tool(
        description = "Grounded context for a question about the organisation's code and docs: a curated topic package when one answers it, otherwise search results; every item carries provenance (source, path, lines, commit, hashes, freshness). Only what this principal may read."
    )]
    async fn get_context(&self, Parameters(p): Parameters<GetContext>) -> Result<CallToolResult, ErrorData> {
        self.call(move |app, reg, who| {
            crate::serve::context(
                app,
                reg,
                who,
                ContextRequestArgs {
                    query: p.query,
                    max_tokens: p.max_tokens,
                    limit: None,
                    sources: None,
                    mode: None,
                    packages: None,
                    via: "mcp",
                },
            )
        })
        .await
    }

    #[tool(
        description = "Where a result came from: its source, owner, path, lines, commit, content hashes, when it was ingested and under which policy decision, and whether it is still fresh."
    )]
    async fn explain_provenance(
        &self,
        Parameters(p): Parameters<Explain>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |app, reg, who| crate::serve::provenance(app, reg, who, &p.result_id))
            .await
    }

    #[tool(description = "The sources this principal may read: id, owner, tier, description.")]
    async fn list_sources(&self) -> Result<CallToolResult, ErrorData> {
        self.call(|app, reg, who| Ok(crate::serve::sources(app, reg, who)))
            .await
    }

    #[tool(
        description = "How fresh each readable source is: last indexing pass, files changed since, content past its max age, and version drift between docs and lockfiles."
    )]
    async fn freshness_report(
        &self,
        Parameters(p): Parameters<FreshnessQuery>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call(move |app, reg, who| crate::serve::freshness(app, reg, who, p.source.as_deref()))
            .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ctxplane", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "ctxplane answers questions about this organisation's code and docs with provenance. \
                 Call get_context first; cite results by their provenance; use explain_provenance to check one.",
            )
    }
}

pub fn mcp(
    args: McpArgs,
    s: &Settings,
    store: registry::RegistryStore,
) -> anyhow::Result<std::process::ExitCode> {
    let reg = store.load(&s.actor)?;
    let token = std::env::var(&args.token_env).ok().filter(|t| !t.is_empty());
    let principal = match (&token, &args.principal) {
        (Some(t), _) => reg
            .authenticate(t)
            .map(|p| p.name.clone())
            .ok_or_else(|| ConfigError(format!("the token in {} matches no principal", args.token_env)))?,
        (None, Some(name)) => reg
            .principal(name)
            .map(|p| p.name.clone())
            .ok_or_else(|| ConfigError(format!("no principal {name:?} in the registry")))?,
        (None, None) => {
            return Err(ConfigError(format!(
                "set {} to the principal's token (or pass --as PRINCIPAL)",
                args.token_env
            ))
            .into());
        }
    };
    drop(reg);
    let app = Arc::new(App::open(s.clone(), store, true, false)?);
    let watcher = crate::serve::start_watcher(&app, args.no_watch)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let server = Mcp {
            app: app.clone(),
            principal,
            tool_router: Mcp::tool_router(),
        };
        let running = server
            .serve(rmcp::transport::io::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("starting the MCP session: {e}"))?;
        running.waiting().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    });
    crate::serve::stop_watcher(&app, watcher);
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}
