//! The embedding cache: vectors keyed by blake3(model id, text), so no text
//! is embedded twice by the same model, whichever file, source or pass it
//! comes from. One append-only file per model of fixed-size records
//! (key, vector, checksum); the index of keys lives in memory, vectors are
//! read from the file on a hit. A torn record at the end is dropped.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::embed::DIM;
use crate::error::{IndexError, Result};

const RECORD: usize = 32 + DIM * 4 + 16;

pub type Key = [u8; 32];

/// The cache key of `text` for `model_id`.
pub fn key(model_id: &str, text: &str) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(&(model_id.len() as u64).to_le_bytes());
    h.update(model_id.as_bytes());
    h.update(text.as_bytes());
    *h.finalize().as_bytes()
}

#[derive(Debug)]
pub struct EmbeddingCache {
    path: PathBuf,
    file: std::fs::File,
    index: HashMap<Key, u64>,
    len: u64,
    pending: Vec<u8>,
}

impl EmbeddingCache {
    pub fn open(dir: &Path, model_id: &str) -> Result<EmbeddingCache> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let path = dir.join(format!("{}.cache", crate::embed::file_stem(model_id)));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| IndexError::io(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| IndexError::io(&path, e))?;
        let mut index = HashMap::with_capacity(bytes.len() / RECORD);
        let mut good = 0usize;
        for rec in bytes.chunks_exact(RECORD) {
            if blake3::hash(&rec[..RECORD - 16]).as_bytes()[..16] != rec[RECORD - 16..] {
                break;
            }
            let mut k = [0u8; 32];
            k.copy_from_slice(&rec[..32]);
            index.insert(k, good as u64);
            good += RECORD;
        }
        if good < bytes.len() {
            file.set_len(good as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| IndexError::io(&path, e))?;
        }
        Ok(EmbeddingCache {
            path,
            file,
            index,
            len: good as u64,
            pending: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, key: &Key) -> Result<Option<Vec<f32>>> {
        let Some(&at) = self.index.get(key) else {
            return Ok(None);
        };
        if at >= self.len {
            // Still in the pending buffer.
            let off = (at - self.len) as usize;
            return Ok(Some(decode(&self.pending[off + 32..off + 32 + DIM * 4])));
        }
        let mut buf = vec![0u8; DIM * 4];
        self.file
            .read_exact_at(&mut buf, at + 32)
            .map_err(|e| IndexError::io(&self.path, e))?;
        Ok(Some(decode(&buf)))
    }

    pub fn put(&mut self, key: Key, vector: &[f32]) {
        if self.index.contains_key(&key) || vector.len() != DIM {
            return;
        }
        let at = self.len + self.pending.len() as u64;
        let start = self.pending.len();
        self.pending.extend_from_slice(&key);
        for x in vector {
            self.pending.extend_from_slice(&x.to_le_bytes());
        }
        let sum = blake3::hash(&self.pending[start..]);
        self.pending.extend_from_slice(&sum.as_bytes()[..16]);
        self.index.insert(key, at);
    }

    /// Appends what was put since the last flush and fsyncs.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| IndexError::io(&self.path, e))?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Keeps only the records whose key is in `keep` and drops the rest
    /// from disk (the file is rewritten: temp file, fsync, rename), so the
    /// cache does not grow with every edit a long watcher sees, and holds
    /// no vector of a purged source. Returns how many records were dropped.
    pub fn retain(&mut self, keep: &std::collections::HashSet<Key>) -> Result<usize> {
        self.flush()?;
        let mut kept: Vec<(Key, u64)> = self
            .index
            .iter()
            .filter(|(k, _)| keep.contains(*k))
            .map(|(k, at)| (*k, *at))
            .collect();
        let dropped = self.index.len() - kept.len();
        if dropped == 0 {
            return Ok(0);
        }
        kept.sort_by_key(|(_, at)| *at);
        let tmp = self.path.with_extension("cache.tmp");
        let mut out = Vec::with_capacity(kept.len() * RECORD);
        let mut index = HashMap::with_capacity(kept.len());
        let mut rec = vec![0u8; RECORD];
        for (k, at) in kept {
            self.file
                .read_exact_at(&mut rec, at)
                .map_err(|e| IndexError::io(&self.path, e))?;
            index.insert(k, out.len() as u64);
            out.extend_from_slice(&rec);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| IndexError::io(&tmp, e))?;
        file.write_all_at(&out, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| IndexError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| IndexError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            registry::fsutil::fsync_dir(dir)?;
        }
        self.file = file;
        self.index = index;
        self.len = out.len() as u64;
        Ok(dropped)
    }
}

impl EmbeddingCache {
    /// Records whose key is not in `keep`.
    pub fn outside(&self, keep: &std::collections::HashSet<Key>) -> usize {
        self.index.keys().filter(|k| !keep.contains(*k)).count()
    }
}

/// The cache files in `dir` that are not `model_id`'s (other models', or
/// a rewrite's leftover temp file), with how many records each holds.
/// `model_id` `None`: every file.
pub fn other_files(dir: &Path, model_id: Option<&str>) -> Result<Vec<(PathBuf, u64)>> {
    let ours = model_id.map(|m| format!("{}.cache", crate::embed::file_stem(m)));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IndexError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if Some(&name) == ours.as_ref() {
            continue;
        }
        let len = entry
            .metadata()
            .map_err(|e| IndexError::io(entry.path(), e))?
            .len();
        out.push((entry.path(), len.div_ceil(RECORD as u64)));
    }
    out.sort();
    Ok(out)
}

fn decode(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Drop for EmbeddingCache {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn hits_survive_reopen_and_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let v: Vec<f32> = (0..DIM).map(|i| i as f32 / DIM as f32).collect();
        {
            let mut c = EmbeddingCache::open(tmp.path(), "m").unwrap();
            c.put(key("m", "hello"), &v);
            assert_eq!(c.get(&key("m", "hello")).unwrap().unwrap(), v);
            c.flush().unwrap();
            c.put(key("m", "world"), &v);
        }
        let path = tmp.path().join("m.cache");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let c = EmbeddingCache::open(tmp.path(), "m").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key("m", "world")).unwrap().unwrap(), v);
        assert!(c.get(&key("other-model", "hello")).unwrap().is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, 2 * RECORD);
    }

    #[test]
    fn retain_drops_the_rest_from_disk_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let v = |s: f32| -> Vec<f32> { (0..DIM).map(|i| s + i as f32).collect() };
        let mut c = EmbeddingCache::open(tmp.path(), "m").unwrap();
        for (i, t) in ["a", "b", "c", "d"].iter().enumerate() {
            c.put(key("m", t), &v(i as f32));
        }
        c.flush().unwrap();
        c.put(key("m", "e"), &v(4.0)); // still pending
        let keep: std::collections::HashSet<Key> = ["b", "e"].iter().map(|t| key("m", t)).collect();
        assert_eq!(c.retain(&keep).unwrap(), 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key("m", "b")).unwrap().unwrap(), v(1.0));
        assert_eq!(c.get(&key("m", "e")).unwrap().unwrap(), v(4.0));
        assert!(c.get(&key("m", "a")).unwrap().is_none());
        // Nothing of a dropped vector stays in the file.
        let path = tmp.path().join("m.cache");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, 2 * RECORD);
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(32).any(|w| w == key("m", "a")));
        c.put(key("m", "f"), &v(5.0));
        drop(c);
        let c = EmbeddingCache::open(tmp.path(), "m").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("m", "f")).unwrap().unwrap(), v(5.0));
        assert_eq!(c.get(&key("m", "b")).unwrap().unwrap(), v(1.0));
    }
}
