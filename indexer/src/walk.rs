//! Walking a source: every regular file under its root, `.gitignore`
//! respected, `.git` skipped, symlinks never followed, each file read once
//! and classified before any of it can reach a store.

use std::io::Read;
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

/// Why a file was not ingested, apart from policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "skip", rename_all = "snake_case")]
pub enum Skip {
    /// A symbolic link; its target is ingested only if it is itself inside the source.
    Symlink,
    TooLarge {
        bytes: u64,
        limit: u64,
    },
    Binary,
    InvalidUtf8 {
        at_byte: usize,
    },
    Unreadable {
        error: String,
    },
    /// A FIFO, socket or device: opening it could block or never end.
    NotRegular,
    /// A name that is not UTF-8: it could not be named in provenance. Shown
    /// with its bad bytes as `\xNN` (and `\` as `\\`), so no two collapse.
    NonUtf8Name,
}

impl Skip {
    pub fn code(&self) -> &'static str {
        match self {
            Skip::Symlink => "symlink",
            Skip::TooLarge { .. } => "too_large",
            Skip::Binary => "binary",
            Skip::InvalidUtf8 { .. } => "invalid_utf8",
            Skip::Unreadable { .. } => "unreadable",
            Skip::NotRegular => "not_a_regular_file",
            Skip::NonUtf8Name => "non_utf8_name",
        }
    }
}

/// A file found under a source root.
#[derive(Debug)]
pub struct Found {
    /// Relative, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    pub is_symlink: bool,
    /// A regular file (not a FIFO, socket or device); only these are read.
    pub is_regular: bool,
    /// Why it cannot be ingested whatever the policy says: a name that is
    /// not UTF-8, or a directory the walk could not read (`rel` is then the
    /// directory).
    pub problem: Option<Skip>,
}

/// A non-UTF-8 path, shown injectively: bad bytes as `\xNN`, backslashes
/// doubled.
fn escaped(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.replace(std::path::MAIN_SEPARATOR, "/")
}

/// The path an error of the walk is about, if it names one.
fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => error_path(err),
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}

/// Lists files under `root` (sorted by path, for stable runs). Errors from
/// individual entries are returned as unreadable files, not dropped.
pub fn list(root: &Path) -> Result<Vec<Found>, std::io::Error> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "source location is not a directory",
        ));
    }
    let mut out = Vec::new();
    let walker = WalkBuilder::new(root)
        .hidden(false)
        .follow_links(false)
        .parents(false)
        .require_git(false)
        .git_global(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // An unreadable directory (or file) is reported, never
                // dropped silently.
                let rel = error_path(&e)
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map_or_else(
                        || ".".to_string(),
                        |p| match p.to_str() {
                            Some(s) => s.replace(std::path::MAIN_SEPARATOR, "/"),
                            None => escaped(p),
                        },
                    );
                out.push(Found {
                    abs: root.join(&rel),
                    rel,
                    size: 0,
                    mtime_ns: 0,
                    is_symlink: false,
                    is_regular: false,
                    problem: Some(Skip::Unreadable { error: e.to_string() }),
                });
                continue;
            }
        };
        let Some(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            continue;
        }
        let abs = entry.path().to_path_buf();
        let Ok(rel) = abs.strip_prefix(root) else { continue };
        let Some(rel) = rel.to_str() else {
            // Non-UTF-8 file names cannot be named in provenance; skip them visibly.
            out.push(Found {
                rel: escaped(rel),
                abs,
                size: 0,
                mtime_ns: 0,
                is_symlink: false,
                is_regular: ft.is_file(),
                problem: Some(Skip::NonUtf8Name),
            });
            continue;
        };
        let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
        let lmeta = std::fs::symlink_metadata(&abs);
        let (size, mtime_ns) = lmeta
            .as_ref()
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128);
                (m.len(), mtime)
            })
            .unwrap_or((0, 0));
        out.push(Found {
            rel,
            abs,
            size,
            mtime_ns,
            is_symlink: ft.is_symlink(),
            is_regular: ft.is_file(),
            problem: None,
        });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Opens `path` for reading only if it is (still) a regular file: opened
/// without blocking (a FIFO swapped in after the listing cannot hang the
/// pass), then checked on the open handle.
pub fn open_regular(path: &Path) -> Result<std::fs::File, Skip> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a FIFO with no writer opens at once instead of waiting.
        options.custom_flags(0o4000);
    }
    let file = options
        .open(path)
        .map_err(|e| Skip::Unreadable { error: e.to_string() })?;
    let meta = file
        .metadata()
        .map_err(|e| Skip::Unreadable { error: e.to_string() })?;
    if !meta.is_file() {
        return Err(Skip::NotRegular);
    }
    Ok(file)
}

/// Reads a file's text, or says why not.
pub fn read_text(found: &Found, max_bytes: u64) -> Result<(String, blake3::Hash), Skip> {
    if found.is_symlink {
        return Err(Skip::Symlink);
    }
    if !found.is_regular {
        return Err(Skip::NotRegular);
    }
    if found.size > max_bytes {
        return Err(Skip::TooLarge {
            bytes: found.size,
            limit: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(found.size as usize);
    let file = open_regular(&found.abs)?;
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Skip::Unreadable { error: e.to_string() })?;
    if bytes.len() as u64 > max_bytes {
        return Err(Skip::TooLarge {
            bytes: bytes.len() as u64,
            limit: max_bytes,
        });
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Skip::Binary);
    }
    let hash = blake3::hash(&bytes);
    String::from_utf8(bytes)
        .map(|t| (t, hash))
        .map_err(|e| Skip::InvalidUtf8 {
            at_byte: e.utf8_error().valid_up_to(),
        })
}
