use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lexical index at {path}: {message}")]
    Lexical { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("the lexical index at {0} was written with another schema; run `ctxplane index` to rebuild it")]
    SchemaChanged(PathBuf),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// A store on another server (Qdrant) could not be reached, did not
    /// answer in time, or has nothing to read yet: the same request may
    /// succeed later, unlike the other variants.
    #[error("{url}: {message}")]
    Unavailable { url: String, message: String },
}

impl IndexError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn lexical(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        IndexError::Lexical {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;
