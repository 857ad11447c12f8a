use std::fmt;
use std::path::PathBuf;

/// One problem in a registry file, located by line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry file {path} not found (create one with `ctxplane registry init`)")]
    NotFound { path: PathBuf },
    #[error("{}", Invalid(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
    #[error("no source {id:?} in the registry")]
    UnknownSource { id: String },
    #[error("source {id:?} already exists")]
    DuplicateSource { id: String },
    #[error("exception {id:?} already exists")]
    DuplicateException { id: String },
    #[error("principal {name:?} already exists")]
    DuplicatePrincipal { name: String },
    #[error("cannot {action} source {id:?}: it is {status}{hint}")]
    BadTransition {
        id: String,
        action: &'static str,
        status: String,
        hint: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("audit log {path}: {message}")]
    Audit { path: PathBuf, message: String },
}

impl RegistryError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }
}

struct Invalid<'a>(&'a PathBuf, &'a [Problem]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1.len();
        write!(
            f,
            "{} is not a valid registry ({n} problem{})",
            self.0.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.1 {
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.0.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
