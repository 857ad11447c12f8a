//! The command line, as clap sees it. Only parsing lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ctxplane",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CTXPLANE_COMMIT"), ")"),
    about = "What AI agents may know about your code and docs, kept fresh, with provenance."
)]
pub struct Cli {
    /// Config file (TOML with `registry` and `data_dir`); ./ctxplane.toml is read when present.
    #[arg(long, global = true, env = "CTXPLANE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The source registry [default: ./registry.toml].
    #[arg(long, global = true, env = "CTXPLANE_REGISTRY", value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Where ctxplane keeps its audit log and indexes [default: .ctxplane beside the registry].
    #[arg(long, global = true, env = "CTXPLANE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Who is acting, for the audit log [default: $USER].
    #[arg(long, global = true, env = "CTXPLANE_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    /// Log format on standard error: text or json (levels from RUST_LOG,
    /// default info).
    #[arg(
        long,
        global = true,
        env = "CTXPLANE_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the source registry: sources, exceptions, principals.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Ask the policy what it decides, without changing anything.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Ingest every approved source: policy, redaction, chunking, lexical index.
    Index(IndexArgs),
    /// Per source: last pass, files changed on disk since, content past the
    /// tier's max age.
    Freshness(FreshnessArgs),
    /// CI gate: validate repo context packages and report version drift.
    /// Exit 0 clean, 1 problems, 2 usage or configuration errors.
    Check(CheckArgs),
    /// Topic packages: curated answers with cited, hashed sources.
    #[command(subcommand)]
    Packages(PackagesCmd),
    /// Ask for context: topic packages first, then hybrid search within a principal's scope, packed to a
    /// token budget, every result with its provenance.
    #[command(alias = "search")]
    Query(QueryArgs),
    /// The whole chain behind a result id: registry entry and approvals,
    /// the ingest, redactions, freshness then and now, hash checks.
    Provenance(ProvenanceArgs),
    /// Registry, index, vectors (coverage, model) and audit chain at a glance.
    Status(HealthArgs),
    /// Run the HTTP API: the watcher-driven indexer and the retriever in
    /// one process, bearer-token auth, steward operations, metrics.
    Serve(ServeArgs),
    /// The main job on the example organisation: index it, answer agent
    /// questions from both tiers with provenance, show freshness, drift,
    /// the CI check and the audit chain, then serve on loopback.
    Demo(DemoArgs),
    /// A Model Context Protocol server on stdio acting as one principal
    /// (token in $CTXPLANE_TOKEN): get_context, explain_provenance,
    /// list_sources, freshness_report. `serve` also speaks MCP over
    /// streamable HTTP at /mcp with the same tokens.
    Mcp(McpArgs),
    /// Redact secrets from standard input to standard output; findings
    /// (rule, line, column, never the value) go to standard error.
    Redact(RedactArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) for ctxplane.
    Manpage,
}

impl Command {
    /// Whether the command was asked for JSON output (errors are then JSON too).
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Registry(c) => c.wants_json(),
            Command::Audit(
                AuditCmd::Tail { out, .. } | AuditCmd::Verify { out, .. } | AuditCmd::Checkpoint(out),
            ) => out.json,
            Command::Policy(PolicyCmd::Decide { out, .. } | PolicyCmd::Scope { out, .. }) => out.json,
            Command::Index(a) => a.out.json,
            Command::Freshness(a) => a.out.json,
            Command::Check(a) => a.json || a.format == "json",
            Command::Packages(c) => match c {
                PackagesCmd::List(out)
                | PackagesCmd::Verify { out, .. }
                | PackagesCmd::Rehash { out, .. } => out.json,
                PackagesCmd::Draft(_) => false,
            },
            Command::Query(a) => a.out.json || a.batch.is_some(),
            Command::Provenance(a) => a.out.json,
            Command::Status(a) => a.out.json,
            Command::Redact(a) => a.json,
            _ => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct RedactArgs {
    /// A gitleaks-format rule file to add to the built-in rules (a rule with
    /// a built-in's id runs beside it).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Use only the rules from --rules.
    #[arg(long, requires = "rules")]
    pub no_builtin: bool,
    /// The path the text comes from, so path-scoped rules and allowlists apply.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Print findings as JSON lines on standard error.
    #[arg(long)]
    pub json: bool,
    /// Files to redact instead of standard input, printed one after the
    /// other; a value found in any of them is redacted from all of them.
    #[arg(value_name = "FILE", conflicts_with = "path")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Json {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Write a new, empty registry file.
    Init(Json),
    /// List sources with kind, tier, status and owner.
    List(Json),
    /// Check the registry file and report every problem.
    Validate(Json),
    /// Propose a new source (status `proposed` until approved).
    Add(AddSource),
    /// Approve a proposed, denied or revoked source.
    Approve(StatusArgs),
    /// Deny a proposed source.
    Deny(StatusArgs),
    /// Revoke an approved source; its content must leave every store.
    Revoke(StatusArgs),
    /// Time-bounded exceptions to never-ingest rules.
    #[command(subcommand)]
    Exception(ExceptionCmd),
    /// Principals: agents, stewards, CI and developers with tokens.
    #[command(subcommand)]
    Principal(PrincipalCmd),
}

impl RegistryCmd {
    fn wants_json(&self) -> bool {
        match self {
            RegistryCmd::Init(o) | RegistryCmd::List(o) | RegistryCmd::Validate(o) => o.json,
            RegistryCmd::Add(a) => a.out.json,
            RegistryCmd::Approve(a) | RegistryCmd::Deny(a) | RegistryCmd::Revoke(a) => a.out.json,
            RegistryCmd::Exception(ExceptionCmd::Grant(g)) => g.out.json,
            RegistryCmd::Exception(ExceptionCmd::List(o)) | RegistryCmd::Principal(PrincipalCmd::List(o)) => {
                o.json
            }
            RegistryCmd::Principal(PrincipalCmd::Add(a)) => a.out.json,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Dir,
    Git,
}

#[derive(Debug, Args)]
pub struct AddSource {
    #[arg(long)]
    pub id: String,
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Directory or git working tree; relative paths are relative to the registry file.
    #[arg(long)]
    pub location: String,
    #[arg(long)]
    pub owner: String,
    /// Sensitivity, 1 (least) to 4 (most).
    #[arg(long)]
    pub tier: String,
    #[arg(long)]
    pub description: Option<String>,
    /// Only paths matching these globs are ingested (repeatable).
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Paths matching these globs are skipped (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Extra never-ingest rules for this source (repeatable).
    #[arg(long = "never-ingest", value_name = "GLOB")]
    pub never_ingest: Vec<String>,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub id: String,
    /// Why; required to deny or revoke.
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Subcommand)]
pub enum ExceptionCmd {
    /// Grant an exception for a path glob within one source.
    Grant(GrantArgs),
    /// List exceptions and whether each is live, not yet live or expired.
    List(Json),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PermitArg {
    /// Ingest paths a never-ingest rule would refuse (redaction still applies).
    NeverIngest,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Exception id [default: derived from source and time].
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub source: String,
    /// Path glob inside the source that the exception covers.
    #[arg(long)]
    pub path: String,
    #[arg(long = "permit", value_enum, default_values_t = [PermitArg::NeverIngest])]
    pub permits: Vec<PermitArg>,
    /// Who approved it [default: the actor].
    #[arg(long)]
    pub approver: Option<String>,
    #[arg(long)]
    pub reason: String,
    /// When it ends (RFC 3339, e.g. 2026-12-31T00:00:00Z).
    #[arg(long, conflicts_with = "duration", required_unless_present = "duration")]
    pub expires_at: Option<String>,
    /// How long it lasts from now: 90m, 12h, 30d, 2w.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Agent,
    Steward,
    Ci,
    Developer,
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    /// Create a principal and print its token once; only the token's hash is stored.
    Add(AddPrincipal),
    /// List principals with role, tier ceiling and granted sources.
    List(Json),
}

#[derive(Debug, Args)]
pub struct AddPrincipal {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Highest tier this principal may read, 1-4.
    #[arg(long)]
    pub tier_ceiling: String,
    /// A source it may read (repeatable).
    #[arg(long = "source", value_name = "ID", required_unless_present = "all_sources")]
    pub sources: Vec<String>,
    /// May read every approved source within its ceiling.
    #[arg(long, conflicts_with = "sources")]
    pub all_sources: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Requests it may make per minute (default: the registry's [limits]).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub requests_per_minute: Option<u32>,
    /// Context tokens it may be served per UTC day (default: the registry's [limits]).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    pub tokens_per_day: Option<u64>,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Show the last entries.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[command(flatten)]
        out: Json,
    },
    /// Check the whole hash chain; exit 1 naming the first bad entry. With
    /// --key, also every checkpoint signed by that key: truncation,
    /// rewriting and forged entries up to the last one are detected.
    Verify {
        /// An ed25519 public key (64 hex digits, or a file holding them)
        /// whose checkpoints the log must match; repeat for rotated keys.
        #[arg(long = "key", value_name = "PUBLIC_KEY")]
        keys: Vec<String>,
        /// More checkpoints to check against (an exported checkpoints.jsonl
        /// or the directory holding it), e.g. the append-only copy.
        #[arg(long = "checkpoints", value_name = "PATH", requires = "keys")]
        copies: Vec<std::path::PathBuf>,
        #[command(flatten)]
        out: Json,
    },
    /// Create a checkpoint signing key: the secret goes to FILE (mode 600;
    /// keep it outside the data directory), the public key is printed.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Sign a checkpoint of the log's head now (needs a signing key).
    Checkpoint(Json),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Would these paths of a source be ingested, and why (not)?
    Decide {
        source: String,
        /// Paths relative to the source root.
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        out: Json,
    },
    /// What may this principal read?
    Scope {
        principal: String,
        #[command(flatten)]
        out: Json,
    },
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Files larger than this are skipped [default: 1048576, or `max_file_bytes` in the config].
    #[arg(long, env = "CTXPLANE_MAX_FILE_BYTES", value_name = "BYTES")]
    pub max_file_bytes: Option<u64>,
    /// A gitleaks-format rule file added to the built-in redaction rules.
    #[arg(long, env = "CTXPLANE_REDACTION_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// After the pass, keep watching the sources and the registry file and
    /// index every change as it happens.
    #[arg(long)]
    pub watch: bool,
    /// Skip embedding: index lexically only (vectors catch up on the next run).
    #[arg(long)]
    pub no_embed: bool,
    /// With --watch: how long to wait for a burst of changes to settle.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub debounce_ms: u64,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only this source.
    #[arg(long, value_name = "ID")]
    pub source: Option<String>,
    /// Instead of the sources: check every `ctxplane:snap-…` cited in this
    /// text (a PR description, commit messages; `-` reads stdin). Exit 1
    /// when any no longer holds or is unknown.
    #[arg(long, value_name = "FILE|-", conflicts_with = "source")]
    pub snapshots: Option<std::path::PathBuf>,
    /// text, json, junit or github (workflow annotations).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PackagesCmd {
    /// List topic packages: status (fresh, stale, draft, invalid), owner,
    /// review date, citations.
    List(Json),
    /// Check packages against the sources on disk: every cited span must
    /// hash as recorded and the review must be within its max age. Exit 1
    /// when any is stale or invalid.
    Verify {
        /// Package ids [default: all].
        ids: Vec<String>,
        #[command(flatten)]
        out: Json,
    },
    /// Re-review packages: record the current hash of every cited span,
    /// set reviewed_at/reviewed_by to today and the actor, clear `draft`.
    Rehash {
        /// Package ids.
        ids: Vec<String>,
        /// Every package in the topics directory.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        out: Json,
    },
    /// Write an extractive draft from the index, every sentence cited,
    /// marked `draft = true` for a steward to edit and rehash.
    Draft(DraftArgs),
}

#[derive(Debug, Args)]
pub struct DraftArgs {
    /// What the package is about, e.g. "how refunds are processed".
    pub topic: String,
    /// Package id [default: a slug of the topic].
    #[arg(long)]
    pub id: Option<String>,
    /// Owner [default: the owner of the first cited source].
    #[arg(long)]
    pub owner: Option<String>,
    /// Draft only from what this principal may read.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Most sentences.
    #[arg(long, default_value_t = 8)]
    pub sentences: usize,
    /// Chunks retrieved to draft from.
    #[arg(long, default_value_t = 12)]
    pub chunks: usize,
    /// Where to write [default: <topics dir>/<id>.md]; - for standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FreshnessArgs {
    /// Exit 1 when any source is behind, stale, unavailable or never indexed.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question or search text (omit with --batch).
    pub query: Option<String>,
    /// Query as this principal: only its sources, up to its tier ceiling.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Token budget for the returned content.
    #[arg(long, default_value_t = 4_000)]
    pub max_tokens: usize,
    /// Most results.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// hybrid, lexical or dense.
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Skip topic packages (tier 1); search only.
    #[arg(long)]
    pub no_packages: bool,
    /// chunk, or file: rank files by their chunks (--limit counts files),
    /// each with its best chunks.
    #[arg(long, default_value = "chunk", value_name = "chunk|file")]
    pub group_by: String,
    /// JSON lines {"id": .., "query": .., "as"?: .., "max_tokens"?: .., "limit"?: ..}
    /// in (- for stdin), one JSON line per query out; the model loads once.
    #[arg(long, value_name = "FILE", conflicts_with = "query")]
    pub batch: Option<PathBuf>,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// A result id from `ctxplane query`.
    pub result_id: String,
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub out: Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7411", env = "CTXPLANE_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Do not watch sources (serve what is indexed; index on start only).
    #[arg(long)]
    pub no_watch: bool,
    /// Skip embedding (lexical search only).
    #[arg(long)]
    pub no_embed: bool,
    /// Serve as a read-only replica: no local index, no passes, no
    /// watcher; both search tiers are read from the shared Qdrant
    /// collection that one `ctxplane index --watch` writes. Needs
    /// vector_store = "qdrant" and the indexer's deployment_id.
    #[arg(long, conflicts_with = "no_embed")]
    pub read_only: bool,
    /// Most connections open at once; further clients wait until one closes.
    #[arg(long, default_value_t = 512, env = "CTXPLANE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Close a connection that sends and receives nothing for this long
    /// (idle keep-alive sockets, trickling clients). Above the 30 s request limit.
    #[arg(long, default_value_t = 60, env = "CTXPLANE_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,
    /// A request's line and headers must arrive in full within this long of
    /// their first byte (slow-header clients), however steadily they trickle.
    #[arg(long, default_value_t = 10, env = "CTXPLANE_HEADER_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout_secs: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the API listens afterwards.
    #[arg(long, default_value = "127.0.0.1:7411")]
    pub listen: std::net::SocketAddr,
    /// Stop after the tour instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Args)]
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
