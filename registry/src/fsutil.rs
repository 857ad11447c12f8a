//! Durable file writes: temp file + fsync + rename + directory fsync.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{RegistryError, Result};

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new content, never a mix. Keeps the old file's permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RegistryError::io(path, e));
    }
    fsync_dir(dir)
}

/// Makes a rename or create in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| RegistryError::io(dir, e))?;
    }
    let _ = dir;
    Ok(())
}

/// An exclusive lock on the data directory, held for the duration of a
/// mutating operation; released on drop (and by the OS if the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(data_dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(data_dir).map_err(|e| RegistryError::io(data_dir, e))?;
        let path = data_dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| RegistryError::io(&path, e))?;
        file.lock().map_err(|e| RegistryError::io(&path, e))?;
        Ok(DirLock { _file: file })
    }
}

/// Ends the process at once, as `kill -9` would (no destructor runs, no
/// buffer is flushed), when `CTXPLANE_CRASH_AT` names this point. Crash
/// tests use it to stop a pass exactly between two durable steps; unset,
/// it costs one cached lookup.
pub fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("CTXPLANE_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        std::process::abort();
    }
}
