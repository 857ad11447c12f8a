//! Settings, layered once at start-up: defaults, then a config file, then
//! environment variables, then flags (clap folds the last two together,
//! flags winning). Nothing re-reads configuration later.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A problem with configuration, reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The config file's shape. Relative paths are relative to the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    registry: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    max_file_bytes: Option<u64>,
    /// Threads a pass reads, redacts and chunks files on (default: one per
    /// core, at most 8).
    index_threads: Option<usize>,
    /// Where the embedding model lives (default: vendor/model of the build).
    model_dir: Option<PathBuf>,
    /// onnxruntime threads for embedding.
    embed_threads: Option<usize>,
    /// `embedded` (default) or `qdrant`.
    vector_store: Option<String>,
    qdrant_url: Option<String>,
    /// Name of the environment variable holding the Qdrant API key (the key
    /// itself never goes in a file).
    qdrant_api_key_env: Option<String>,
    /// Collection name prefix: the collection is `<prefix>_<model id>`.
    qdrant_collection: Option<String>,
    /// This deployment's id in a shared Qdrant collection (default: the
    /// id in `<data_dir>/deployment-id`, made by the first writer).
    deployment_id: Option<String>,
    /// Shards and copies of each shard when the collection is created on a
    /// Qdrant cluster (default 1 and 1).
    qdrant_shards: Option<u32>,
    qdrant_replication: Option<u32>,
    /// Where topic packages live (default: `topics/` beside the registry).
    topics_dir: Option<PathBuf>,
    /// How many days a stale topic package is still served (flagged) before
    /// queries fall through to search.
    topic_grace_days: Option<u32>,
    /// The audit checkpoint signing key (from `ctxplane audit keygen`),
    /// outside the data directory.
    audit_key_file: Option<PathBuf>,
    /// Entries between signed checkpoints.
    audit_checkpoint_every: Option<u64>,
    /// A second directory every checkpoint is also appended to (make it
    /// append-only, or another host's mount).
    audit_checkpoint_export: Option<PathBuf>,
    /// Days a context snapshot is kept before it is pruned (default 90).
    snapshot_retention_days: Option<u32>,
    /// Keep each answer's query text in its snapshot (default: only its hash).
    snapshot_store_query: Option<bool>,
}

/// Which vector store holds the dense vectors.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorBackend {
    Embedded,
    Qdrant {
        url: String,
        api_key: Option<String>,
        /// Collection name prefix (`<prefix>_<model id>`).
        prefix: String,
        /// `CTXPLANE_DEPLOYMENT_ID` or `deployment_id`; `None`: the data
        /// dir's `deployment-id`.
        deployment: Option<String>,
        /// Shards and replication factor of a collection this creates.
        shards: u32,
        replication: u32,
    },
}

/// Validated settings every command starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub registry: PathBuf,
    pub data_dir: PathBuf,
    pub actor: String,
    /// Files larger than this are not ingested.
    pub max_file_bytes: u64,
    /// `CTXPLANE_INDEX_THREADS`, else the config's `index_threads`.
    pub index_threads: usize,
    /// `CTXPLANE_MODEL_DIR`, else the config's `model_dir`; `None` lets the
    /// embedder look in its default places.
    pub model_dir: Option<PathBuf>,
    pub embed_threads: usize,
    pub vectors: VectorBackend,
    /// Topic packages: `CTXPLANE_TOPICS_DIR`, the config's `topics_dir`, or
    /// `topics/` beside the registry.
    pub topics_dir: PathBuf,
    pub topic_grace_days: u32,
    /// Extra redaction rules (gitleaks TOML) on top of the built-in ones:
    /// `CTXPLANE_REDACTION_RULES`, or `index --rules`.
    pub redaction_rules: Option<PathBuf>,
    /// Signs audit checkpoints: `CTXPLANE_AUDIT_KEY` (hex), else the key
    /// file from `CTXPLANE_AUDIT_KEY_FILE` or the config's `audit_key_file`.
    pub audit_signer: Option<std::sync::Arc<registry::checkpoint::AuditSigner>>,
    /// Why the configured signing key could not be loaded: every command
    /// that may append refuses to run (see [`Settings::require_audit_signer`]),
    /// while reading and verifying the log needs no secret.
    pub audit_signer_problem: Option<String>,
    /// Days a context snapshot is kept (1 to 3650; default 90).
    pub snapshot_retention_days: u32,
    /// Whether snapshots keep the query text (default: only its hash).
    pub snapshot_store_query: bool,
}

/// What the command line and environment said (flags override env).
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub registry: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub actor: Option<String>,
}

pub const DEFAULT_CONFIG: &str = "ctxplane.toml";

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let (file, file_dir) = match &o.config {
            Some(path) => (read_config(path)?, parent(path)),
            None if Path::new(DEFAULT_CONFIG).is_file() => {
                (read_config(Path::new(DEFAULT_CONFIG))?, PathBuf::from("."))
            }
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        let registry = o
            .registry
            .or_else(|| file.registry.map(|p| file_dir.join(p)))
            .unwrap_or_else(|| PathBuf::from("registry.toml"));
        let data_dir = o
            .data_dir
            .or_else(|| file.data_dir.map(|p| file_dir.join(p)))
            .unwrap_or_else(|| parent(&registry).join(".ctxplane"));
        let every = file
            .audit_checkpoint_every
            .unwrap_or(registry::checkpoint::DEFAULT_EVERY);
        if !(1..=1_000_000).contains(&every) {
            return Err(ConfigError(
                "audit_checkpoint_every must be between 1 and 1000000".into(),
            ));
        }
        let (audit_signer, audit_signer_problem) = match audit_signer(
            file.audit_key_file.map(|p| file_dir.join(p)),
            every,
            file.audit_checkpoint_export.map(|p| file_dir.join(p)),
            &data_dir,
        ) {
            Ok(s) => (s, None),
            Err(e) => (None, Some(e.0)),
        };
        let actor = o
            .actor
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let actor = actor.trim().to_string();
        if actor.is_empty() || actor.len() > 128 || actor.chars().any(char::is_control) {
            return Err(ConfigError(
                "--actor must be a non-empty name of at most 128 printable characters".into(),
            ));
        }
        let max_file_bytes = file.max_file_bytes.unwrap_or(1 << 20);
        if max_file_bytes == 0 {
            return Err(ConfigError("max_file_bytes must be at least 1".into()));
        }
        let index_threads =
            match std::env::var("CTXPLANE_INDEX_THREADS")
                .ok()
                .filter(|v| !v.is_empty())
            {
                Some(v) => Some(v.parse::<usize>().map_err(|_| {
                    ConfigError(format!("CTXPLANE_INDEX_THREADS must be a number, not {v:?}"))
                })?),
                None => file.index_threads,
            }
            .unwrap_or_else(indexer::PassOptions::default_threads);
        if !(1..=indexer::MAX_INDEX_THREADS).contains(&index_threads) {
            return Err(ConfigError(format!(
                "index_threads must be between 1 and {}",
                indexer::MAX_INDEX_THREADS
            )));
        }
        let model_dir = std::env::var_os("CTXPLANE_MODEL_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| file.model_dir.map(|p| file_dir.join(p)));
        let embed_threads = file.embed_threads.unwrap_or(2);
        if !(1..=64).contains(&embed_threads) {
            return Err(ConfigError("embed_threads must be between 1 and 64".into()));
        }
        let vectors = match file.vector_store.as_deref().unwrap_or("embedded") {
            "embedded" => VectorBackend::Embedded,
            "qdrant" => {
                let url = std::env::var("CTXPLANE_QDRANT_URL")
                    .ok()
                    .or(file.qdrant_url)
                    .ok_or_else(|| ConfigError("vector_store = \"qdrant\" needs qdrant_url".into()))?;
                let api_key = match &file.qdrant_api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        ConfigError(format!("qdrant_api_key_env names {var}, which is not set"))
                    })?),
                    None => None,
                };
                let deployment = std::env::var("CTXPLANE_DEPLOYMENT_ID")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .or(file.deployment_id);
                if let Some(d) = &deployment {
                    registry::vocab::validate_ident(d, "deployment_id").map_err(ConfigError)?;
                }
                let prefix = file.qdrant_collection.unwrap_or_else(|| "ctxplane".into());
                registry::vocab::validate_ident(&prefix, "qdrant_collection").map_err(ConfigError)?;
                let shards = file.qdrant_shards.unwrap_or(1);
                let replication = file.qdrant_replication.unwrap_or(1);
                if !(1..=1024).contains(&shards) || !(1..=16).contains(&replication) {
                    return Err(ConfigError(
                        "qdrant_shards must be 1 to 1024 and qdrant_replication 1 to 16".into(),
                    ));
                }
                VectorBackend::Qdrant {
                    url,
                    api_key,
                    prefix,
                    deployment,
                    shards,
                    replication,
                }
            }
            other => {
                return Err(ConfigError(format!(
                    "vector_store must be \"embedded\" or \"qdrant\", not {other:?}"
                )));
            }
        };
        let topics_dir = std::env::var_os("CTXPLANE_TOPICS_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| file.topics_dir.map(|p| file_dir.join(p)))
            .unwrap_or_else(|| parent(&registry).join("topics"));
        let topic_grace_days = file.topic_grace_days.unwrap_or(7);
        if topic_grace_days > 365 {
            return Err(ConfigError("topic_grace_days is at most 365".into()));
        }
        let snapshot_retention_days = file.snapshot_retention_days.unwrap_or(90);
        if !(1..=3650).contains(&snapshot_retention_days) {
            return Err(ConfigError(
                "snapshot_retention_days must be between 1 and 3650".into(),
            ));
        }
        let redaction_rules = std::env::var_os("CTXPLANE_REDACTION_RULES")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(Settings {
            snapshot_retention_days,
            snapshot_store_query: file.snapshot_store_query.unwrap_or(false),
            audit_signer,
            audit_signer_problem,
            redaction_rules,
            topics_dir,
            topic_grace_days,
            registry,
            data_dir,
            actor,
            max_file_bytes,
            index_threads,
            model_dir,
            embed_threads,
            vectors,
        })
    }
}

impl Settings {
    /// Fails when a signing key is configured but unusable: a command that
    /// may append must not run unsigned by mistake.
    pub fn require_audit_signer(&self) -> Result<(), ConfigError> {
        match &self.audit_signer_problem {
            Some(p) => Err(ConfigError(p.clone())),
            None => Ok(()),
        }
    }
}

fn audit_signer(
    config_key_file: Option<PathBuf>,
    every: u64,
    export: Option<PathBuf>,
    data_dir: &Path,
) -> Result<Option<std::sync::Arc<registry::checkpoint::AuditSigner>>, ConfigError> {
    use registry::checkpoint::AuditSigner;
    let from_env = std::env::var("CTXPLANE_AUDIT_KEY").ok().filter(|v| !v.is_empty());
    let key_file = std::env::var_os("CTXPLANE_AUDIT_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or(config_key_file);
    let signer = match (from_env, key_file) {
        (Some(hex), _) => {
            AuditSigner::from_hex(&hex).map_err(|e| ConfigError(format!("CTXPLANE_AUDIT_KEY: {e}")))?
        }
        (None, Some(path)) => {
            AuditSigner::from_file(&path, data_dir).map_err(|e| ConfigError(e.to_string()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(std::sync::Arc::new(signer.every(every).export_to(export))))
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("reading config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|s| registry::model::line_col(&text, s.start))
            .unwrap_or((1, 1));
        ConfigError(format!("{}:{line}:{col}: {}", path.display(), e.message().trim()))
    })
}
