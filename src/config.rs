//! Settings, layered once at start-up: defaults, then a config file, then
//! environment variables, then flags (clap folds the last two together,
//! flags winning). Nothing re-reads configuration later.

use std::path::{Path, PathBuf};

/// A problem with configuration, reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
use serde::Deserialize;

/// The config file's shape. Relative paths are relative to the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    registry: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    max_file_bytes: Option<u64>,
}

/// Validated settings every command starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub registry: PathBuf,
    pub data_dir: PathBuf,
    pub actor: String,
    /// Files larger than this are not ingested.
    pub max_file_bytes: u64,
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
    pub fn resolve(o: Overrides) -> anyhow::Result<Settings> {
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
        let actor = o
            .actor
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        let actor = actor.trim().to_string();
        if actor.is_empty() || actor.len() > 128 || actor.chars().any(char::is_control) {
            return Err(ConfigError(
                "--actor must be a non-empty name of at most 128 printable characters".into(),
            )
            .into());
        }
        let max_file_bytes = file.max_file_bytes.unwrap_or(1 << 20);
        if max_file_bytes == 0 {
            return Err(ConfigError("max_file_bytes must be at least 1".into()).into());
        }
        Ok(Settings {
            registry,
            data_dir,
            actor,
            max_file_bytes,
        })
    }
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("reading config {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|s| registry::model::line_col(&text, s.start))
            .unwrap_or((1, 1));
        ConfigError(format!("{}:{line}:{col}: {}", path.display(), e.message().trim())).into()
    })
}
