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
    let tmp = dir.join(temp_name(&name, std::process::id()));
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

/// The name [`write_atomic`] writes `name`'s new content under before it
/// renames it into place: `.<name>.<pid>.tmp`.
pub fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.{pid}.tmp")
}

/// The file a [`write_atomic`] temp file was meant to become, if `name` is
/// one ([`temp_name`]). A process killed between writing and renaming
/// leaves it behind; whoever holds the lock its writers hold may remove it.
pub fn temp_target(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (target, pid) = rest.rsplit_once('.')?;
    (!target.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(target)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_name_leads_back_to_its_target_and_nothing_else_does() {
        for target in ["payments-api.json", "docs.v2.json", "a.json.1.tmp", "lock"] {
            assert_eq!(temp_target(&temp_name(target, 4_194_304)), Some(target));
        }
        for name in [
            "payments-api.json",
            ".payments-api.json",
            ".payments-api.json.tmp",
            ".payments-api.json.12a.tmp",
            "payments-api.json.123.tmp",
            "..123.tmp",
        ] {
            assert_eq!(temp_target(name), None, "{name}");
        }
    }

    #[test]
    fn write_atomic_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"{}").unwrap();
        write_atomic(&path, b"{\"v\": 2}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"v\": 2}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
    }
}
