//! The embedded vector store: exact search over every vector that passes
//! the filter. Vectors are kept in f32 and as int8 with a per-vector
//! scale; a query scans the int8 copies (AVX2 when the CPU has it), keeps
//! the best `k * RESCORE` candidates, and rescores those in f32.
//!
//! On disk it is one append-only log (`vectors.log`) of checksummed
//! records (add, delete file, delete source) plus `meta.json` naming the
//! model the vectors came from. A commit appends and fsyncs; a torn record
//! at the end (a crash mid-commit) is dropped when the writer next opens
//! the store; when more than half the records are dead the log is
//! rewritten (temp file, fsync, rename).

use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kernels::{dot_f32, dot_i8, quantize};
use super::{FileChunks, Point, VectorFilter, VectorStore};
use crate::embed::DIM;
use crate::error::{IndexError, Result};

/// Candidates per requested result that are rescored in f32.
const RESCORE: usize = 5;
const ADD: u8 = 1;
const DEL_FILE: u8 = 2;
const DEL_SOURCE: u8 = 3;
const LOG: &str = "vectors.log";
const META: &str = "meta.json";

#[derive(Serialize, Deserialize, PartialEq)]
struct Meta {
    format: u32,
    model_id: String,
    dim: usize,
}

#[derive(Debug)]
struct Row {
    chunk_id: String,
    source: u32,
    path: String,
    tier: u8,
    alive: bool,
}

#[derive(Debug)]
pub struct EmbeddedStore {
    dir: PathBuf,
    writable: bool,
    rows: Vec<Row>,
    f32s: Vec<f32>,
    i8s: Vec<i8>,
    scales: Vec<f32>,
    by_id: HashMap<String, usize>,
    by_file: HashMap<(u32, String), Vec<usize>>,
    sources: Vec<String>,
    source_ids: HashMap<String, u32>,
    alive: usize,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    /// Bytes of the log applied so far, and the log file's inode (a
    /// compaction replaces the file).
    offset: u64,
    inode: u64,
}

fn err(path: &Path, message: impl Into<String>) -> IndexError {
    IndexError::Layout {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` for vectors of `model_id`.
    /// Vectors of another model are discarded: they cannot be compared.
    pub fn open(dir: &Path, model_id: &str) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let meta = Meta {
            format: 1,
            model_id: model_id.to_string(),
            dim: DIM,
        };
        let meta_path = dir.join(META);
        let current: Option<Meta> = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if current.as_ref() != Some(&meta) {
            match std::fs::remove_file(dir.join(LOG)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IndexError::io(dir.join(LOG), e)),
            }
            let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| err(&meta_path, e.to_string()))?;
            registry::fsutil::write_atomic(&meta_path, &bytes)?;
        }
        let mut store = EmbeddedStore::empty(dir, true);
        store.load()?;
        Ok(store)
    }

    /// Opens the store read-only (a query process); `None` when there is no
    /// store or it holds vectors of another model.
    pub fn open_read(dir: &Path, model_id: &str) -> Result<Option<EmbeddedStore>> {
        let current: Option<Meta> = std::fs::read(dir.join(META))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match current {
            Some(m) if m.model_id == model_id && m.dim == DIM => {
                let mut store = EmbeddedStore::empty(dir, false);
                store.load()?;
                Ok(Some(store))
            }
            _ => Ok(None),
        }
    }

    /// The model id the vectors in `dir` came from, if any.
    pub fn model_in(dir: &Path) -> Option<String> {
        std::fs::read(dir.join(META))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .map(|m| m.model_id)
    }

    fn empty(dir: &Path, writable: bool) -> EmbeddedStore {
        EmbeddedStore {
            dir: dir.to_path_buf(),
            writable,
            rows: Vec::new(),
            f32s: Vec::new(),
            i8s: Vec::new(),
            scales: Vec::new(),
            by_id: HashMap::new(),
            by_file: HashMap::new(),
            sources: Vec::new(),
            source_ids: HashMap::new(),
            alive: 0,
            pending: Vec::new(),
            offset: 0,
            inode: 0,
        }
    }

    /// Applies records appended to the log since the last load (another
    /// process's commits). A rewritten (shorter) log is read again whole.
    pub fn refresh(&mut self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = self.dir.join(LOG);
        let (len, inode) = std::fs::metadata(&path).map_or((0, 0), |m| (m.len(), m.ino()));
        if len < self.offset || (self.offset > 0 && inode != self.inode) {
            let writable = self.writable;
            *self = EmbeddedStore::empty(&self.dir, writable);
        }
        self.load()
    }

    fn load(&mut self) -> Result<()> {
        let path = self.dir.join(LOG);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(IndexError::io(&path, e)),
        };
        {
            use std::os::unix::fs::MetadataExt;
            self.inode = f.metadata().map_err(|e| IndexError::io(&path, e))?.ino();
        }
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| IndexError::io(&path, e))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| IndexError::io(&path, e))?;
        let mut at = 0usize;
        while let Some((payload, next)) = next_record(&bytes, at) {
            self.apply(payload).map_err(|m| err(&path, m))?;
            at = next;
        }
        let good = self.offset + at as u64;
        if at < bytes.len() && self.writable {
            // A torn or corrupt tail from a crash mid-commit: drop it.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| IndexError::io(&path, e))?;
            f.set_len(good)
                .and_then(|()| f.sync_all())
                .map_err(|e| IndexError::io(&path, e))?;
        }
        self.offset = good;
        Ok(())
    }

    fn source_id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.source_ids.get(s) {
            return id;
        }
        let id = self.sources.len() as u32;
        self.sources.push(s.to_string());
        self.source_ids.insert(s.to_string(), id);
        id
    }

    fn kill(&mut self, row: usize) {
        if self.rows[row].alive {
            self.rows[row].alive = false;
            self.alive -= 1;
            self.by_id.remove(&self.rows[row].chunk_id);
        }
    }

    fn add_row(&mut self, p: &Point) {
        if let Some(&old) = self.by_id.get(&p.chunk_id) {
            self.kill(old);
        }
        let source = self.source_id(&p.source);
        let row = self.rows.len();
        self.rows.push(Row {
            chunk_id: p.chunk_id.clone(),
            source,
            path: p.path.clone(),
            tier: p.tier,
            alive: true,
        });
        self.f32s.extend_from_slice(&p.vector);
        let (q, scale) = quantize(&p.vector);
        self.i8s.extend_from_slice(&q);
        self.scales.push(scale);
        self.by_id.insert(p.chunk_id.clone(), row);
        self.by_file
            .entry((source, p.path.clone()))
            .or_default()
            .push(row);
        self.alive += 1;
    }

    fn del_file(&mut self, source: &str, path: &str) {
        let Some(&sid) = self.source_ids.get(source) else {
            return;
        };
        if let Some(rows) = self.by_file.remove(&(sid, path.to_string())) {
            for r in rows {
                self.kill(r);
            }
        }
    }

    fn del_source(&mut self, source: &str) {
        let Some(&sid) = self.source_ids.get(source) else {
            return;
        };
        let keys: Vec<(u32, String)> = self.by_file.keys().filter(|(s, _)| *s == sid).cloned().collect();
        for k in keys {
            if let Some(rows) = self.by_file.remove(&k) {
                for r in rows {
                    self.kill(r);
                }
            }
        }
    }

    fn apply(&mut self, payload: &[u8]) -> std::result::Result<(), String> {
        let mut r = Reader { b: payload, at: 1 };
        match payload.first() {
            Some(&ADD) => {
                let tier = r.u8()?;
                let chunk_id = r.string()?;
                let source = r.string()?;
                let path = r.string()?;
                let vector = r.vector()?;
                self.add_row(&Point {
                    chunk_id,
                    source,
                    path,
                    tier,
                    vector,
                    text: None,
                });
            }
            Some(&DEL_FILE) => {
                let source = r.string()?;
                let path = r.string()?;
                self.del_file(&source, &path);
            }
            Some(&DEL_SOURCE) => {
                let source = r.string()?;
                self.del_source(&source);
            }
            other => return Err(format!("unknown record type {other:?}")),
        }
        Ok(())
    }

    fn rewrite(&mut self) -> Result<()> {
        let path = self.dir.join(LOG);
        let tmp = self.dir.join("vectors.log.tmp");
        let mut out = Vec::new();
        let mut fresh = EmbeddedStore::empty(&self.dir, true);
        for (i, row) in self.rows.iter().enumerate().filter(|(_, r)| r.alive) {
            let p = Point {
                chunk_id: row.chunk_id.clone(),
                source: self.sources[row.source as usize].clone(),
                path: row.path.clone(),
                tier: row.tier,
                vector: self.f32s[i * DIM..(i + 1) * DIM].to_vec(),
                text: None,
            };
            encode_add(&mut out, &p);
            fresh.add_row(&p);
        }
        let mut f = std::fs::File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        f.write_all(&out)
            .and_then(|()| f.sync_all())
            .map_err(|e| IndexError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| IndexError::io(&path, e))?;
        registry::fsutil::fsync_dir(&self.dir)?;
        fresh.offset = out.len() as u64;
        {
            use std::os::unix::fs::MetadataExt;
            fresh.inode = std::fs::metadata(&path)
                .map_err(|e| IndexError::io(&path, e))?
                .ino();
        }
        *self = fresh;
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| "record too short".to_string())?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "bad length")?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())
    }
    fn vector(&mut self) -> std::result::Result<Vec<f32>, String> {
        let raw = self.take(DIM * 4)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Record framing: u32 payload length, 16 bytes of blake3(payload), payload.
fn push_record(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&blake3::hash(payload).as_bytes()[..16]);
    out.extend_from_slice(payload);
}

fn next_record(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    let sum = bytes.get(at + 4..at + 20)?;
    let payload = bytes.get(at + 20..at + 20 + len)?;
    (blake3::hash(payload).as_bytes()[..16] == *sum).then_some((payload, at + 20 + len))
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn encode_add(out: &mut Vec<u8>, p: &Point) {
    let mut payload = Vec::with_capacity(DIM * 4 + 128);
    payload.push(ADD);
    payload.push(p.tier);
    put_str(&mut payload, &p.chunk_id);
    put_str(&mut payload, &p.source);
    put_str(&mut payload, &p.path);
    for x in &p.vector {
        payload.extend_from_slice(&x.to_le_bytes());
    }
    push_record(out, &payload);
}

struct Scored(f32, usize);
impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Reversed: the heap keeps the worst candidate on top.
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}

impl VectorStore for EmbeddedStore {
    fn refresh(&mut self) -> Result<()> {
        EmbeddedStore::refresh(self)
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn upsert(&mut self, points: Vec<Point>) -> Result<()> {
        for p in points {
            if p.vector.len() != DIM {
                return Err(err(
                    &self.dir,
                    format!("vector of {} dimensions, expected {DIM}", p.vector.len()),
                ));
            }
            encode_add(&mut self.pending, &p);
            self.add_row(&p);
        }
        Ok(())
    }

    fn delete_file(&mut self, source: &str, path: &str) -> Result<()> {
        let mut payload = vec![DEL_FILE];
        put_str(&mut payload, source);
        put_str(&mut payload, path);
        push_record(&mut self.pending, &payload);
        self.del_file(source, path);
        Ok(())
    }

    fn delete_source(&mut self, source: &str) -> Result<()> {
        let mut payload = vec![DEL_SOURCE];
        put_str(&mut payload, source);
        push_record(&mut self.pending, &payload);
        self.del_source(source);
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if !self.writable {
            return Err(err(&self.dir, "the store was opened read-only"));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(LOG);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| IndexError::io(&path, e))?;
        f.write_all(&self.pending)
            .and_then(|()| f.sync_data())
            .map_err(|e| IndexError::io(&path, e))?;
        self.offset += self.pending.len() as u64;
        self.pending.clear();
        let dead = self.rows.len() - self.alive;
        if dead > 1_000 && dead > self.alive {
            self.rewrite()?;
        }
        Ok(())
    }

    fn expunge(&mut self) -> Result<()> {
        self.commit()?;
        if self.rows.len() > self.alive {
            self.rewrite()?;
        }
        Ok(())
    }

    fn dead_records(&self) -> usize {
        self.rows.len() - self.alive
    }

    fn search(&self, vector: &[f32], filter: &VectorFilter, k: usize) -> Result<Vec<(String, f32)>> {
        if k == 0 || filter.sources.is_empty() || vector.len() != DIM {
            return Ok(Vec::new());
        }
        let allowed: Vec<bool> = self.sources.iter().map(|s| filter.sources.contains(s)).collect();
        // The query's own scale does not change the order.
        let (q, _) = quantize(vector);
        let want = k * RESCORE;
        let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(want + 1);
        for (i, row) in self.rows.iter().enumerate() {
            if !row.alive
                || !allowed[row.source as usize]
                || row.tier > filter.max_tier
                || filter
                    .path_prefix
                    .as_deref()
                    .is_some_and(|p| !row.path.starts_with(p))
            {
                continue;
            }
            let s = dot_i8(&q, &self.i8s[i * DIM..(i + 1) * DIM]) as f32 * self.scales[i];
            if heap.len() < want {
                heap.push(Scored(s, i));
            } else if heap.peek().is_some_and(|w| s > w.0) {
                heap.pop();
                heap.push(Scored(s, i));
            }
        }
        let mut out: Vec<(String, f32)> = heap
            .into_iter()
            .map(|Scored(_, i)| {
                (
                    self.rows[i].chunk_id.clone(),
                    dot_f32(vector, &self.f32s[i * DIM..(i + 1) * DIM]),
                )
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(k);
        Ok(out)
    }

    fn len(&self) -> Result<usize> {
        Ok(self.alive)
    }

    fn count(&self, filter: &VectorFilter) -> Result<usize> {
        let allowed: Vec<bool> = self.sources.iter().map(|s| filter.sources.contains(s)).collect();
        Ok(self
            .rows
            .iter()
            .filter(|r| {
                r.alive
                    && allowed[r.source as usize]
                    && r.tier >= 1
                    && r.tier <= filter.max_tier
                    && filter
                        .path_prefix
                        .as_deref()
                        .is_none_or(|p| r.path.starts_with(p))
            })
            .count())
    }

    fn file_chunks(&self) -> Result<FileChunks> {
        let mut out = FileChunks::new();
        for ((sid, path), rows) in &self.by_file {
            let ids = rows
                .iter()
                .filter(|&&r| self.rows[r].alive)
                .map(|&r| self.rows[r].chunk_id.clone());
            let entry = out
                .entry((self.sources[*sid as usize].clone(), path.clone()))
                .or_default();
            entry.extend(ids);
        }
        out.retain(|_, ids| !ids.is_empty());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_for(seed: u32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM as u32)
            .map(|i| {
                let h = (i + 1)
                    .wrapping_mul(seed.wrapping_mul(2).wrapping_add(1))
                    .wrapping_mul(2_654_435_761u32.wrapping_mul(seed.wrapping_add(7)));
                (h % 1000) as f32 / 500.0 - 1.0
            })
            .collect();
        crate::embed::normalize(&mut v);
        v
    }

    fn point(id: u32, source: &str, path: &str, tier: u8) -> Point {
        Point {
            chunk_id: format!("c-{id}"),
            source: source.into(),
            path: path.into(),
            tier,
            vector: vec_for(id),
            text: None,
        }
    }

    fn filter(sources: &[&str], max_tier: u8) -> VectorFilter {
        VectorFilter {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            max_tier,
            path_prefix: None,
        }
    }

    #[test]
    fn exact_search_with_filters_deletes_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = EmbeddedStore::open(tmp.path(), "m1").unwrap();
        let mut pts = Vec::new();
        for i in 0..200 {
            let src = if i % 2 == 0 { "a" } else { "b" };
            pts.push(point(i, src, &format!("f{}.rs", i % 10), (i % 4 + 1) as u8));
        }
        s.upsert(pts).unwrap();
        s.commit().unwrap();
        // The query equal to a stored vector finds it first.
        let hits = s.search(&vec_for(42), &filter(&["a", "b"], 4), 5).unwrap();
        assert_eq!(hits[0].0, "c-42");
        assert!((hits[0].1 - 1.0).abs() < 1e-4);
        // Filters are exact: source and tier.
        let hits = s.search(&vec_for(42), &filter(&["b"], 2), 50).unwrap();
        assert!(!hits.is_empty());
        for (id, _) in &hits {
            let n: u32 = id[2..].parse().unwrap();
            assert!(n % 2 == 1 && (n % 4 + 1) <= 2, "{id}");
        }
        assert!(s.search(&vec_for(1), &filter(&[], 4), 5).unwrap().is_empty());
        // Deletes, then a reopen replays the log to the same state.
        s.delete_file("a", "f2.rs").unwrap();
        s.delete_source("b").unwrap();
        s.commit().unwrap();
        assert_eq!(s.len().unwrap(), 80);
        let r = EmbeddedStore::open(tmp.path(), "m1").unwrap();
        assert_eq!(r.len().unwrap(), 80);
        assert_eq!(r.file_chunks().unwrap(), s.file_chunks().unwrap());
        assert_eq!(
            r.search(&vec_for(44), &filter(&["a", "b"], 4), 5).unwrap()[0].0,
            "c-44"
        );
        // Another model's vectors are discarded.
        assert_eq!(EmbeddedStore::open(tmp.path(), "m2").unwrap().len().unwrap(), 0);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_refresh_sees_new_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = EmbeddedStore::open(tmp.path(), "m").unwrap();
        w.upsert(vec![point(1, "a", "x", 1), point(2, "a", "y", 1)])
            .unwrap();
        w.commit().unwrap();
        let mut r = EmbeddedStore::open_read(tmp.path(), "m").unwrap().unwrap();
        assert_eq!(r.len().unwrap(), 2);
        w.upsert(vec![point(3, "a", "z", 1)]).unwrap();
        w.commit().unwrap();
        r.refresh().unwrap();
        assert_eq!(r.len().unwrap(), 3);
        // Simulate a crash mid-append: half a record at the end.
        let log = tmp.path().join(LOG);
        let good = std::fs::metadata(&log).unwrap().len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[200, 1, 0, 0, 9, 9, 9]).unwrap();
        drop(f);
        let w2 = EmbeddedStore::open(tmp.path(), "m").unwrap();
        assert_eq!(w2.len().unwrap(), 3);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), good);
    }

    #[test]
    fn expunge_leaves_no_byte_of_a_deleted_source() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = EmbeddedStore::open(tmp.path(), "m").unwrap();
        s.upsert(vec![
            point(1, "keep", "a.md", 1),
            point(2, "gone-source", "secret-plan.md", 1),
        ])
        .unwrap();
        s.commit().unwrap();
        s.delete_source("gone-source").unwrap();
        s.commit().unwrap();
        let log = || std::fs::read(tmp.path().join(LOG)).unwrap();
        let has = |b: &[u8], n: &str| b.windows(n.len()).any(|w| w == n.as_bytes());
        // Deleted, but still in the log until expunged.
        assert_eq!(s.dead_records(), 1);
        assert!(has(&log(), "secret-plan.md"));
        s.expunge().unwrap();
        assert_eq!(s.dead_records(), 0);
        assert!(!has(&log(), "secret-plan.md") && !has(&log(), "gone-source"));
        let r = EmbeddedStore::open(tmp.path(), "m").unwrap();
        assert_eq!(r.len().unwrap(), 1);
        assert_eq!(
            r.search(&vec_for(1), &filter(&["keep"], 1), 1).unwrap()[0].0,
            "c-1"
        );
    }

    #[test]
    fn compaction_keeps_the_live_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = EmbeddedStore::open(tmp.path(), "m").unwrap();
        s.upsert(vec![point(99_999, "a", "early", 1)]).unwrap();
        s.commit().unwrap();
        let mut reader = EmbeddedStore::open_read(tmp.path(), "m").unwrap().unwrap();
        for round in 0..3 {
            let pts = (0..1_500)
                .map(|i| point(i + round * 10_000, "a", &format!("p{i}"), 1))
                .collect();
            for i in 0..1_500 {
                s.delete_file("a", &format!("p{i}")).unwrap();
            }
            s.upsert(pts).unwrap();
            s.commit().unwrap();
        }
        assert_eq!(s.len().unwrap(), 1_501);
        assert!(s.rows.len() < 3_000, "log was compacted");
        // A reader that predates the compaction reloads the new file.
        reader.refresh().unwrap();
        assert_eq!(reader.len().unwrap(), 1_501);
        assert_eq!(reader.file_chunks().unwrap(), s.file_chunks().unwrap());
        let r = EmbeddedStore::open(tmp.path(), "m").unwrap();
        assert_eq!(r.len().unwrap(), 1_501);
        assert_eq!(
            r.search(&vec_for(20_007), &filter(&["a"], 1), 1).unwrap()[0].0,
            "c-20007"
        );
    }
}
