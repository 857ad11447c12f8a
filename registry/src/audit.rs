//! The audit log: append-only JSONL, each entry hash-chained to the one
//! before it with blake3, written and fsynced before the action it records
//! is acknowledged.
//!
//! Layout, inside the audit directory:
//! * `log.jsonl` — one entry a line, in canonical JSON (serde field order,
//!   sorted object keys); a line that is not canonical counts as tampered,
//!   so a change to any byte is detected.
//! * `head.json` — the sequence number and hash of the last acknowledged
//!   entry, rewritten in place after each group (a fixed 256 bytes, one
//!   write and one `fdatasync`, under the log's lock, which every reader
//!   takes); it catches entries cut from the end, which the chain alone
//!   cannot.
//!
//! A crash can leave (a) a torn last line that was never acknowledged, which
//! the next append discards, or (b) entries beyond the head, which are
//! complete and chain correctly; the next append moves the head forward
//! and records how many it adopted (`adopted_after_crash`).
//! * `checkpoints.jsonl` — with a signing key configured, signed statements
//!   of the head every N entries and at exit (see [`crate::checkpoint`]).
//! * `chains/<process>/` — the same four files for each process that
//!   keeps a chain of its own ([`AuditLog::for_process`]: serve replicas
//!   sharing the directory, which then never wait on one lock); each of
//!   its entries names the process, inside the hash. Reads merge every
//!   chain by time; [`AuditLog::verify`] on the directory checks them all.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::checkpoint::{self, AuditSigner, Checkpoint};
use crate::error::{RegistryError, Result};
use crate::fsutil::{DirLock, fsync_dir, write_atomic};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const DOMAIN: &[u8] = b"ctxplane-audit-v1\n";
/// Largest entry accepted, so the tail can always be found in one read.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// What is being recorded, before it is sequenced and chained.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: Value,
}

impl Event {
    pub fn new(actor: &str, action: &str, subject: &str) -> Self {
        Event {
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            details: Value::Object(Map::new()),
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(m) = &mut self.details {
            m.insert(key.to_string(), value.into());
        }
        self
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: Value,
    pub prev: String,
    /// The process whose own chain holds the entry (`None`: the
    /// directory's main chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    pub hash: String,
}

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a Timestamp,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    details: &'a Value,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<&'a str>,
}

impl Entry {
    fn compute_hash(&self) -> String {
        let body = Body {
            seq: self.seq,
            ts: &self.ts,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            details: &self.details,
            prev: &self.prev,
            process: self.process.as_deref(),
        };
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&serde_json::to_vec(&body).unwrap_or_default());
        h.finalize().to_hex().to_string()
    }

    fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Rebuilds objects with sorted keys, whatever map serde_json was built with,
/// so every build writes and re-reads the same bytes.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    /// The audit directory (the main chain's files, and `chains/`).
    root: PathBuf,
    /// This chain's files: `root`, or `root/chains/<process>`.
    dir: PathBuf,
    process: Option<String>,
    signer: Option<Arc<AuditSigner>>,
}

/// Where the process chains live inside an audit directory.
const CHAINS: &str = "chains";
/// The main chain's record of a process chain's creation.
const CHAIN_OPENED: &str = "audit.chain_opened";

/// Whether `id` may name a process chain (a directory name).
pub fn valid_process_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

/// The first problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// 1-based line in `log.jsonl` (0 when the problem is the head file).
    pub line: u64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub entries: u64,
    pub last_hash: Option<String>,
    pub intact: bool,
    pub first_bad: Option<BadEntry>,
    /// Things that are not tampering, such as an unacknowledged torn write.
    pub notes: Vec<String>,
    /// The last entry covered by a checkpoint signed by the given key
    /// (only when verifying with a key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_through: Option<u64>,
    /// Each process chain's own report (verifying the directory); the
    /// whole is intact only when every chain is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<ChainReport>,
}

/// One process chain's verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub process: String,
    #[serde(flatten)]
    pub report: VerifyReport,
}

impl AuditLog {
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        AuditLog {
            root: dir.clone(),
            dir,
            process: None,
            signer: None,
        }
    }

    /// The chain of its own that process `id` appends to inside the audit
    /// directory `dir` (its entries name it). `None` when `id` is not a
    /// valid name ([`valid_process_id`]).
    pub fn for_process(dir: impl Into<PathBuf>, id: &str) -> Option<Self> {
        if !valid_process_id(id) {
            return None;
        }
        let root = dir.into();
        Some(AuditLog {
            dir: root.join(CHAINS).join(id),
            root,
            process: Some(id.to_string()),
            signer: None,
        })
    }

    /// The process this log's chain belongs to (`None`: the main chain).
    pub fn process(&self) -> Option<&str> {
        self.process.as_deref()
    }

    /// Every chain in the directory: the main one, then each process's
    /// (by name). Entries under `chains/` that cannot be a chain are left
    /// out here and reported by [`AuditLog::verify`].
    fn all_chains(&self) -> Result<Vec<AuditLog>> {
        Ok(self.chains_and_strays()?.0)
    }

    /// [`AuditLog::all_chains`], and the names under `chains/` that are not
    /// a chain (not a directory, or not a process name).
    fn chains_and_strays(&self) -> Result<(Vec<AuditLog>, Vec<String>)> {
        let mut out = vec![AuditLog {
            root: self.root.clone(),
            dir: self.root.clone(),
            process: None,
            signer: self.signer.clone(),
        }];
        let chains = self.root.join(CHAINS);
        let listing = match std::fs::read_dir(&chains) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, Vec::new())),
            Err(e) => return Err(RegistryError::io(&chains, e)),
        };
        let mut names: Vec<(String, bool)> = Vec::new();
        for e in listing {
            let e = e.map_err(|e| RegistryError::io(&chains, e))?;
            let dir = e.file_type().is_ok_and(|t| t.is_dir());
            names.push((e.file_name().to_string_lossy().into_owned(), dir));
        }
        names.sort();
        let mut strays = Vec::new();
        for (name, dir) in names {
            match AuditLog::for_process(&self.root, &name) {
                Some(log) if dir => out.push(log.with_signer(self.signer.clone())),
                _ => strays.push(name),
            }
        }
        Ok((out, strays))
    }

    /// Signs a checkpoint of the head every `signer.interval()` entries.
    pub fn with_signer(mut self, signer: Option<Arc<AuditSigner>>) -> Self {
        self.signer = signer;
        self
    }

    pub fn checkpoints_path(&self) -> PathBuf {
        self.dir.join(checkpoint::FILE)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    fn head_path(&self) -> PathBuf {
        self.dir.join("head.json")
    }

    fn err(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Audit {
            path: self.log_path(),
            message: message.into(),
        }
    }

    fn read_head(&self) -> Result<Option<Head>> {
        match std::fs::read(self.head_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                self.err(format!(
                    "head.json is unreadable ({e}); run `ctxplane audit verify`"
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(self.head_path(), e)),
        }
    }

    /// Moves the head: rewritten in place (one write of a fixed
    /// [`HEAD_BYTES`], well within a sector, then `fdatasync`; the file's
    /// size does not change, so no metadata is synced and no rename or
    /// directory sync is needed). Only under the log's lock, which every
    /// reader of the head takes too, so no reader sees a half-written one.
    fn move_head(&self, head: &Head) -> Result<()> {
        let path = self.head_path();
        let mut bytes = serde_json::to_vec(head).unwrap_or_default();
        if bytes.len() < HEAD_BYTES {
            bytes.resize(HEAD_BYTES - 1, b' ');
            bytes.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| RegistryError::io(&path, e))?;
        f.write_all(&bytes).map_err(|e| RegistryError::io(&path, e))?;
        f.sync_data().map_err(|e| RegistryError::io(&path, e))
    }

    /// Creates the directory, an empty log and a genesis head if absent.
    fn ensure_created(&self, now: Timestamp) -> Result<()> {
        if self.log_path().exists() {
            if self.read_head()?.is_none() {
                return Err(self.err(
                    "head.json is missing; the log may have been tampered with (run `ctxplane audit verify`)",
                ));
            }
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| RegistryError::io(&self.dir, e))?;
        let head = Head {
            seq: 0,
            hash: GENESIS.to_string(),
        };
        let mut bytes = serde_json::to_vec(&head).unwrap_or_default();
        bytes.resize(HEAD_BYTES - 1, b' ');
        bytes.push(b'\n');
        write_atomic(&self.head_path(), &bytes)?;
        File::create(self.log_path())
            .and_then(|f| f.sync_all())
            .map_err(|e| RegistryError::io(self.log_path(), e))?;
        fsync_dir(&self.dir)?;
        // A process chain is recorded in the main chain once it exists, so
        // that deleting it whole (checkpoints and all) is detected.
        if let Some(process) = &self.process {
            AuditLog::open(&self.root)
                .with_signer(self.signer.clone())
                .append(now, vec![Event::new("ctxplane", CHAIN_OPENED, process)])?;
        }
        Ok(())
    }

    /// The process chains the main chain records as opened.
    fn opened_chains(&self) -> Result<BTreeMap<String, u64>> {
        let path = self.root.join("log.jsonl");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(RegistryError::io(&path, e)),
        };
        let mut out = BTreeMap::new();
        // Bytes, not text: a damaged line is verify's to report, not a
        // reason to stop here.
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| RegistryError::io(&path, e))?;
            if !line
                .windows(CHAIN_OPENED.len())
                .any(|w| w == CHAIN_OPENED.as_bytes())
            {
                continue;
            }
            if let Ok(e) = serde_json::from_slice::<Entry>(&line)
                && e.action == CHAIN_OPENED
                && e.process.is_none()
            {
                out.insert(e.subject, e.seq);
            }
        }
        Ok(out)
    }

    /// The log's own lock (`audit/lock`): appends exclude each other across
    /// threads and processes without waiting for whoever holds the data
    /// directory lock (an indexing pass, say). Callers that must order an
    /// entry with a registry change take the data directory lock first;
    /// nothing takes them the other way round.
    fn lock(&self) -> Result<DirLock> {
        DirLock::acquire(&self.dir)
    }

    /// Appends events in order, fsyncs, then moves the head, under the
    /// log's own lock. Returns the written entries.
    ///
    /// Group commit: appends that arrive while another thread of this
    /// process is writing wait for it, then go out together as one write,
    /// one `fdatasync` and one head update; each caller returns only after
    /// the group holding its events is durable, with its own entries
    /// (contiguous, in its order).
    pub fn append(&self, now: Timestamp, events: Vec<Event>) -> Result<Vec<Entry>> {
        self.append_with(now, events, Vec::new())
    }

    /// [`AuditLog::append`], with records for other append-only files
    /// written in the same group: each sidecar is appended and
    /// `fdatasync`ed before the group's audit entries are, so an entry
    /// that vouches for a sidecar record (by its hash) is never durable
    /// without it, and concurrent callers share both syncs.
    pub fn append_with(
        &self,
        now: Timestamp,
        events: Vec<Event>,
        sidecars: Vec<Sidecar>,
    ) -> Result<Vec<Entry>> {
        if events.is_empty() && sidecars.is_empty() {
            return Ok(Vec::new());
        }
        group_for(&self.dir).append(self, now, events, sidecars)
    }

    /// One durable append of `events` (a whole group) under the log's lock.
    fn append_now(&self, now: Timestamp, events: Vec<Event>) -> Result<Vec<Entry>> {
        let _lock = self.lock()?;
        self.ensure_created(now)?;
        let path = self.log_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| RegistryError::io(&path, e))?;
        let head = self
            .read_head()?
            .ok_or_else(|| self.err("head.json is missing"))?;
        let (mut seq, mut prev, torn) = self.tail(&mut file, &head)?;
        let mut recovered = torn;
        // Complete entries after the head were never acknowledged: adopted,
        // and said so in the chain (a forged tail is then on record).
        let mut adopted = (seq > head.seq).then_some(seq - head.seq);
        let first = seq;
        let mut written = Vec::with_capacity(events.len());
        let mut buf = String::new();
        for ev in events {
            seq += 1;
            let mut details = canonical(ev.details);
            if let Some(n) = recovered.take()
                && let Value::Object(m) = &mut details
            {
                m.insert("recovered_torn_tail_bytes".into(), Value::from(n));
            }
            if let Some(n) = adopted.take()
                && let Value::Object(m) = &mut details
            {
                m.insert("adopted_after_crash".into(), Value::from(n));
            }
            let mut entry = Entry {
                seq,
                ts: now,
                actor: ev.actor,
                action: ev.action,
                subject: ev.subject,
                details: canonical(details),
                prev: prev.clone(),
                process: self.process.clone(),
                hash: String::new(),
            };
            entry.hash = entry.compute_hash();
            let line = entry.to_line();
            if line.len() > MAX_ENTRY_BYTES {
                return Err(self.err(format!(
                    "entry for {:?} is larger than {MAX_ENTRY_BYTES} bytes",
                    entry.action
                )));
            }
            buf.push_str(&line);
            buf.push('\n');
            prev = entry.hash.clone();
            written.push(entry);
        }
        let start = file
            .seek(SeekFrom::End(0))
            .map_err(|e| RegistryError::io(&path, e))?;
        file.write_all(buf.as_bytes())
            .map_err(|e| RegistryError::io(&path, e))?;
        file.sync_data().map_err(|e| RegistryError::io(&path, e))?;
        let head = Head { seq, hash: prev };
        self.move_head(&head)?;
        group_for(&self.dir)
            .appended
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(signer) = &self.signer
            && first / signer.interval() != seq / signer.interval()
        {
            // The entries are durable and acknowledged whatever happens
            // to the checkpoint; a failed one is retried at the next.
            if let Err(e) = self.sign_head(signer, &head, start + buf.len() as u64, now) {
                tracing::warn!(error = %e, "audit checkpoint not signed");
            }
        }
        Ok(written)
    }

    /// Whether this process appended to the log (so its exit checkpoint
    /// has something of its own to cover).
    pub fn appended_here(&self) -> bool {
        group_for(&self.dir)
            .appended
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signs a checkpoint of the head now, unless the last one already
    /// covers it (a process that appended calls this when it exits).
    /// `None` without a signer or with nothing new; an error when the chain
    /// since the last checkpoint does not verify (nothing is signed then).
    pub fn checkpoint(&self, now: Timestamp) -> Result<Option<Checkpoint>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        if !self.log_path().exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let head = self
            .read_head()?
            .ok_or_else(|| self.err("head.json is missing"))?;
        let end = std::fs::metadata(self.log_path())
            .map_err(|e| RegistryError::io(self.log_path(), e))?
            .len();
        self.sign_head(signer, &head, end, now)
    }

    /// Signs `head` (ending at byte `end` of the log) after checking every
    /// entry since the last checkpoint: the chain links from the signed
    /// hash to the head, each line canonical and hashing right. A tail
    /// someone re-linked or rewrote is refused, never signed. Under the lock.
    fn sign_head(
        &self,
        signer: &AuditSigner,
        head: &Head,
        end: u64,
        now: Timestamp,
    ) -> Result<Option<Checkpoint>> {
        let last = checkpoint::last(&self.checkpoints_path())?;
        if head.seq == 0 || last.as_ref().is_some_and(|c| c.seq >= head.seq) {
            return Ok(None);
        }
        let (seq, prev, from) = match last {
            Some(c) => (c.seq, c.hash, c.offset),
            None => (0, GENESIS.to_string(), 0),
        };
        if from > end {
            return Err(self.err("the log is shorter than at the last checkpoint; not signing"));
        }
        let path = self.log_path();
        let mut file = File::open(&path).map_err(|e| RegistryError::io(&path, e))?;
        file.seek(SeekFrom::Start(from))
            .map_err(|e| RegistryError::io(&path, e))?;
        let mut chain = Chain::new(
            BufReader::new(file.take(end - from)),
            seq,
            prev,
            self.process.clone(),
        );
        while let Some(link) = chain.next().map_err(|e| RegistryError::io(&path, e))? {
            if !matches!(link, Link::Entry(_)) {
                return Err(self.err(format!(
                    "entry {} (after the last checkpoint) does not verify; not signing (run `ctxplane audit verify`)",
                    chain.seq + 1
                )));
            }
        }
        if chain.seq != head.seq || chain.prev != head.hash {
            return Err(self.err("the log does not end at its head; not signing"));
        }
        let cp = signer.sign(head.seq, &head.hash, end, now);
        signer.write(&self.dir, &cp)?;
        Ok(Some(cp))
    }

    /// Finds the last complete entry (its seq and hash), discarding a torn
    /// tail that was never acknowledged. Returns the torn byte count, if any.
    fn tail(&self, file: &mut File, head: &Head) -> Result<(u64, String, Option<u64>)> {
        let path = self.log_path();
        let len = file.metadata().map_err(|e| RegistryError::io(&path, e))?.len();
        if len == 0 {
            if head.seq != 0 {
                return Err(self.err(format!(
                    "log is empty but head says {} entries were acknowledged",
                    head.seq
                )));
            }
            return Ok((0, GENESIS.to_string(), None));
        }
        let window = len.min(2 * MAX_ENTRY_BYTES as u64 + 2);
        file.seek(SeekFrom::Start(len - window))
            .map_err(|e| RegistryError::io(&path, e))?;
        let mut bytes = Vec::with_capacity(window as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| RegistryError::io(&path, e))?;
        let mut torn = None;
        let complete_end = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if window == len => 0,
            None => {
                return Err(
                    self.err("last line is longer than any entry can be; run `ctxplane audit verify`")
                );
            }
        };
        if complete_end < bytes.len() {
            torn = Some((bytes.len() - complete_end) as u64);
        }
        let complete = &bytes[..complete_end];
        let last_line = complete[..complete.len().saturating_sub(1)]
            .rsplit(|&b| b == b'\n')
            .next()
            .filter(|l| !l.is_empty());
        let (seq, hash) = match last_line {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let entry: Entry = serde_json::from_slice(line)
                    .map_err(|_| self.err("last entry is unreadable; run `ctxplane audit verify`"))?;
                if entry.compute_hash() != entry.hash {
                    return Err(self.err(format!(
                        "entry {} does not match its hash; run `ctxplane audit verify`",
                        entry.seq
                    )));
                }
                (entry.seq, entry.hash)
            }
        };
        if seq < head.seq || (seq == head.seq && hash != head.hash) {
            return Err(self.err(format!(
                "log ends at entry {seq} but entry {} was acknowledged; run `ctxplane audit verify`",
                head.seq
            )));
        }
        if let Some(n) = torn {
            file.set_len(len - n).map_err(|e| RegistryError::io(&path, e))?;
            file.sync_data().map_err(|e| RegistryError::io(&path, e))?;
        }
        Ok((seq, hash, torn))
    }

    /// Reads the last `n` entries of every chain in the directory, merged
    /// by time (oldest first).
    pub fn tail_entries(&self, n: usize) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        for chain in self.all_chains()? {
            all.extend(chain.chain_tail(n)?);
        }
        Ok(merged(all, Some(n)))
    }

    /// The last `n` entries of this chain.
    fn chain_tail(&self, n: usize) -> Result<Vec<Entry>> {
        let path = self.log_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::io(&path, e)),
        };
        let mut ring = std::collections::VecDeque::with_capacity(n.min(4096));
        // An unreadable line is an error unless it is the last one: a torn
        // write a killed process never acknowledged (its next append, or
        // `verify`, deals with it), which must not stop every reader.
        let mut unreadable: Option<RegistryError> = None;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            if let Some(e) = unreadable.take() {
                return Err(e);
            }
            let line = line.map_err(|e| RegistryError::io(&path, e))?;
            let entry: Entry = match serde_json::from_str(&line) {
                Ok(entry) => entry,
                Err(e) => {
                    unreadable = Some(self.err(format!("line {} is unreadable: {e}", i + 1)));
                    continue;
                }
            };
            if ring.len() == n {
                ring.pop_front();
            }
            if n > 0 {
                ring.push_back(entry);
            }
        }
        Ok(ring.into_iter().collect())
    }

    /// The entries stamped at or after `since` (oldest first), found by a
    /// binary search over the log's bytes (entries are appended in time
    /// order; a window of slack before `since` absorbs a clock stepped
    /// back), so a lookup near the end of a long log reads little of it.
    pub fn entries_since(&self, since: Timestamp) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        for chain in self.all_chains()? {
            all.extend(chain.chain_since(since)?);
        }
        Ok(merged(all, None))
    }

    /// [`AuditLog::entries_since`] in this chain alone.
    fn chain_since(&self, since: Timestamp) -> Result<Vec<Entry>> {
        let path = self.log_path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::io(&path, e)),
        };
        let io = |e| RegistryError::io(&path, e);
        let len = file.metadata().map_err(io)?.len();
        let slack = since - jiff::SignedDuration::from_secs(300);
        // The first whole line at or after `at`, and its timestamp.
        let mut line_after = |at: u64| -> Result<Option<(u64, Timestamp)>> {
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            let mut r = BufReader::new(&mut file);
            let mut skipped = Vec::new();
            let mut start = at;
            if at > 0 {
                start += r.read_until(b'\n', &mut skipped).map_err(io)? as u64;
            }
            let mut line = String::new();
            if r.read_line(&mut line).map_err(io)? == 0 {
                return Ok(None);
            }
            Ok(serde_json::from_str::<Entry>(&line).ok().map(|e| (start, e.ts)))
        };
        let (mut lo, mut hi) = (0u64, len);
        while hi - lo > 64 * 1024 {
            let mid = lo + (hi - lo) / 2;
            match line_after(mid)? {
                Some((start, ts)) if ts < slack => lo = start,
                _ => hi = mid,
            }
        }
        file.seek(SeekFrom::Start(lo)).map_err(io)?;
        let mut out = Vec::new();
        // `lo` is 0 or where a whole line starts.
        for line in BufReader::new(&mut file).lines() {
            let line = line.map_err(io)?;
            if let Ok(e) = serde_json::from_str::<Entry>(&line)
                && e.ts >= since
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Walks the whole log: every line canonical, every hash right, every
    /// link to the previous entry intact, and the head present in the log;
    /// every chain of the directory (the main one and each process's).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_each(|chain| chain.verify_against(&BTreeMap::new()))
    }

    /// The main chain's report, with each process chain's attached; intact
    /// only if all are.
    fn verify_each(&self, check: impl Fn(&AuditLog) -> Result<VerifyReport>) -> Result<VerifyReport> {
        let (chains, strays) = self.chains_and_strays()?;
        let present: BTreeSet<String> = chains
            .iter()
            .filter(|c| c.log_path().exists())
            .filter_map(|c| c.process.clone())
            .collect();
        let mut chains = chains.into_iter();
        let main = chains.next().ok_or_else(|| self.err("no main chain"))?;
        let mut report = check(&main)?;
        if report.intact
            && let Some(name) = strays.first()
        {
            report = report.fail(
                0,
                &format!("{CHAINS}/{name} is not a process chain (not a directory, or not a process name)"),
            );
        }
        // Every chain the main chain recorded must still be there.
        for (name, seq) in self.opened_chains()? {
            if report.intact && !present.contains(&name) {
                report = report.fail(
                    0,
                    &format!(
                        "{CHAINS}/{name}, recorded as opened by entry {seq}, is missing (a chain deleted)"
                    ),
                );
            }
        }
        for chain in chains {
            let r = check(&chain)?;
            let process = chain.process.clone().unwrap_or_default();
            if !r.intact && report.intact {
                report.intact = false;
                report.first_bad = r.first_bad.as_ref().map(|b| BadEntry {
                    line: b.line,
                    reason: format!("{CHAINS}/{process}: {}", b.reason),
                });
            }
            report.chains.push(ChainReport { process, report: r });
        }
        Ok(report)
    }

    /// [`AuditLog::verify`], and every checkpoint signed by one of `keys`
    /// (read from the audit directory and from `copies`) must match the
    /// entry it names: up to the last one, rewriting, re-linking, dropping
    /// or forging entries is detected. Checkpoints by other keys are
    /// ignored (and noted); with none by these keys the check fails.
    pub fn verify_signed(
        &self,
        keys: &[ed25519_dalek::VerifyingKey],
        copies: &[PathBuf],
    ) -> Result<VerifyReport> {
        // Copies are of the main chain's checkpoints; each process chain
        // is checked against its own.
        self.verify_each(|chain| {
            let copies: &[PathBuf] = if chain.process.is_none() { copies } else { &[] };
            chain.verify_chain_signed(keys, copies)
        })
    }

    fn verify_chain_signed(
        &self,
        keys: &[ed25519_dalek::VerifyingKey],
        copies: &[PathBuf],
    ) -> Result<VerifyReport> {
        let mut files = vec![self.checkpoints_path()];
        files.extend(copies.iter().map(|c| {
            if c.is_dir() {
                c.join(checkpoint::FILE)
            } else {
                c.clone()
            }
        }));
        let mut signed: BTreeMap<u64, String> = BTreeMap::new();
        let mut foreign = 0u64;
        let mut bad = None;
        for f in &files {
            for cp in checkpoint::read(f)? {
                if !keys.iter().any(|k| cp.verify(k)) {
                    if keys.iter().any(|k| checkpoint::hex(k.as_bytes()) == cp.key) {
                        bad.get_or_insert(format!(
                            "checkpoint of entry {} in {} has a bad signature (forged or altered)",
                            cp.seq,
                            f.display()
                        ));
                    } else {
                        foreign += 1;
                    }
                    continue;
                }
                if let Some(h) = signed.get(&cp.seq)
                    && *h != cp.hash
                {
                    bad.get_or_insert(format!("two signed checkpoints disagree about entry {}", cp.seq));
                }
                signed.insert(cp.seq, cp.hash);
            }
        }
        let mut report = self.verify_against(&signed)?;
        report.signed_through = signed.keys().next_back().copied();
        if foreign > 0 {
            report.notes.push(format!(
                "{foreign} checkpoint(s) signed by other keys were not checked"
            ));
        }
        if let Some(reason) = bad {
            return Ok(report.fail(0, &reason));
        }
        if !report.intact {
            return Ok(report);
        }
        let entries = report.entries;
        match report.signed_through {
            None => Ok(report.fail(
                0,
                "no checkpoint signed by the given key (checkpoints removed, or signing not configured)",
            )),
            Some(last) if last > entries => Ok(report.fail(
                entries + 1,
                &format!("log ends at entry {entries} but entry {last} was signed (entries removed)"),
            )),
            Some(last) => {
                if report.entries > last {
                    report.notes.push(format!(
                        "{} entr{} after the last signed checkpoint (entry {last}) are covered by the chain only",
                        report.entries - last,
                        if report.entries - last == 1 { "y is" } else { "ies are" }
                    ));
                }
                Ok(report)
            }
        }
    }

    fn verify_against(&self, signed: &BTreeMap<u64, String>) -> Result<VerifyReport> {
        let path = self.log_path();
        let mut report = VerifyReport {
            path: path.clone(),
            entries: 0,
            last_hash: None,
            intact: true,
            first_bad: None,
            notes: Vec::new(),
            signed_through: None,
            chains: Vec::new(),
        };
        if !path.exists() {
            report.notes.push("no audit log yet".into());
            return Ok(report);
        }
        // A consistent snapshot: the head and the log's length read together
        // under the lock; entries appended meanwhile are not part of this check.
        let (file, head, len) = {
            let _lock = self.lock()?;
            let file = File::open(&path).map_err(|e| RegistryError::io(&path, e))?;
            let head = match self.read_head() {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(report.fail(0, "head.json is missing")),
                Err(RegistryError::Audit { message, .. }) => return Ok(report.fail(0, &message)),
                Err(e) => return Err(e),
            };
            let len = file.metadata().map_err(|e| RegistryError::io(&path, e))?.len();
            (file, head, len)
        };
        let mut chain = Chain::new(
            BufReader::new(file.take(len)),
            0,
            GENESIS.to_string(),
            self.process.clone(),
        );
        let mut head_seen = head.seq == 0 && head.hash == GENESIS;
        loop {
            let entry = match chain.next().map_err(|e| RegistryError::io(&path, e))? {
                None => break,
                Some(Link::Torn(bytes)) => {
                    if chain.seq < head.seq {
                        return Ok(report.fail(chain.line, "entry is cut short"));
                    }
                    report.notes.push(format!(
                        "line {}: torn write of {bytes} bytes that was never acknowledged; the next append discards it",
                        chain.line
                    ));
                    break;
                }
                Some(Link::Bad(reason)) => return Ok(report.fail(chain.line, &reason)),
                Some(Link::Entry(entry)) => entry,
            };
            let line_no = chain.line;
            if let Some(n) = entry.details.get("adopted_after_crash") {
                report.notes.push(format!(
                    "entry {} adopted {n} entr(ies) found after the acknowledged head: written just before a crash, or by someone else",
                    entry.seq
                ));
            }
            if signed.get(&entry.seq).is_some_and(|h| *h != entry.hash) {
                return Ok(report.fail(line_no, "differs from the signed checkpoint (entry rewritten)"));
            }
            if entry.seq == head.seq {
                if entry.hash != head.hash {
                    return Ok(report.fail(line_no, "differs from the acknowledged head"));
                }
                head_seen = true;
            }
            report.entries += 1;
            report.last_hash = Some(entry.hash);
        }
        let line_no = chain.line;
        if !head_seen {
            let reason = format!(
                "log ends at entry {} but entry {} was acknowledged (entries removed)",
                report.entries, head.seq
            );
            return Ok(report.fail(line_no + 1, &reason));
        }
        if report.entries > head.seq {
            report.notes.push(format!(
                "{} entr{} after the head were written just before a crash; they verify and the next append adopts them",
                report.entries - head.seq,
                if report.entries - head.seq == 1 { "y" } else { "ies" }
            ));
        }
        Ok(report)
    }
}

impl VerifyReport {
    fn fail(mut self, line: u64, reason: &str) -> Self {
        self.intact = false;
        self.first_bad = Some(BadEntry {
            line,
            reason: reason.to_string(),
        });
        self
    }
}

/// What walking the chain found next.
enum Link {
    /// An entry in its written form, next in sequence, linked and hashing right.
    Entry(Entry),
    /// A last line without its newline (bytes): a write never acknowledged.
    Torn(usize),
    /// A line that breaks the chain, and why.
    Bad(String),
}

/// Walks log lines forward from a known entry (`seq`, its hash `prev`),
/// checking each the same way wherever the walk starts: whole-log
/// verification and the check before signing a checkpoint.
struct Chain<R> {
    reader: R,
    /// The last good entry's sequence number and hash.
    seq: u64,
    prev: String,
    /// Lines read so far (1-based number of the last one).
    line: u64,
    raw: Vec<u8>,
    /// The process every entry must name (`None`: the main chain).
    process: Option<String>,
}

impl<R: BufRead> Chain<R> {
    fn new(reader: R, seq: u64, prev: String, process: Option<String>) -> Self {
        Chain {
            reader,
            seq,
            prev,
            line: 0,
            raw: Vec::new(),
            process,
        }
    }

    fn next(&mut self) -> std::io::Result<Option<Link>> {
        self.raw.clear();
        if self.reader.read_until(b'\n', &mut self.raw)? == 0 {
            return Ok(None);
        }
        self.line += 1;
        let Some(line) = self.raw.strip_suffix(b"\n") else {
            return Ok(Some(Link::Torn(self.raw.len())));
        };
        let expected = self.seq + 1;
        let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
            return Ok(Some(Link::Bad("not a valid audit entry".into())));
        };
        let bad = if entry.to_line().as_bytes() != line {
            Some("entry was altered (not in the form it was written)".to_string())
        } else if entry.seq != expected {
            Some(format!(
                "sequence {} where {expected} was expected (entries removed or reordered)",
                entry.seq
            ))
        } else if entry.prev != self.prev {
            Some("does not link to the previous entry (entries removed or reordered)".into())
        } else if entry.compute_hash() != entry.hash {
            Some("content does not match its hash (entry altered)".into())
        } else if entry.process != self.process {
            Some("names another chain's process (entry moved between chains)".into())
        } else {
            None
        };
        if let Some(reason) = bad {
            return Ok(Some(Link::Bad(reason)));
        }
        self.seq = entry.seq;
        self.prev = entry.hash.clone();
        Ok(Some(Link::Entry(entry)))
    }
}

/// Appends waiting to go out together, per audit directory.
#[derive(Default)]
struct Group {
    state: std::sync::Mutex<GroupState>,
    done: std::sync::Condvar,
    /// Something was appended by this process.
    appended: std::sync::atomic::AtomicBool,
}

/// Bytes to append to a file beside the log, in the same group commit.
#[derive(Clone, Debug)]
pub struct Sidecar {
    pub path: PathBuf,
    /// Whole records, each ending in a newline.
    pub bytes: Vec<u8>,
}

impl Sidecar {
    /// Appends to the file (created with its directory if need be) after
    /// closing off a torn tail a crash left, then syncs it.
    fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let created = !path.exists();
        let dir = path.parent().unwrap_or(Path::new("."));
        if created {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = f.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                f.write_all(b"\n")?;
            }
        }
        f.write_all(bytes)?;
        f.sync_data()?;
        if created {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct GroupState {
    /// Events (and sidecar records) waiting for the next write, by ticket.
    queue: Vec<(u64, Timestamp, Vec<Event>, Vec<Sidecar>)>,
    /// A thread is writing a group now.
    writing: bool,
    next_ticket: u64,
    /// Outcomes not yet picked up, by ticket.
    results: std::collections::HashMap<u64, std::result::Result<Vec<Entry>, String>>,
}

fn group_for(dir: &Path) -> Arc<Group> {
    static GROUPS: std::sync::OnceLock<std::sync::Mutex<BTreeMap<PathBuf, Arc<Group>>>> =
        std::sync::OnceLock::new();
    let mut groups = GROUPS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    groups.entry(dir.to_path_buf()).or_default().clone()
}

impl Group {
    fn append(
        &self,
        log: &AuditLog,
        now: Timestamp,
        events: Vec<Event>,
        sidecars: Vec<Sidecar>,
    ) -> Result<Vec<Entry>> {
        fn lock(m: &std::sync::Mutex<GroupState>) -> std::sync::MutexGuard<'_, GroupState> {
            m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        let mut st = lock(&self.state);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, now, events, sidecars));
        loop {
            if let Some(r) = st.results.remove(&ticket) {
                return r.map_err(|message| RegistryError::Audit {
                    path: log.log_path(),
                    message,
                });
            }
            if !st.writing {
                break;
            }
            st = self
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        // This thread writes: everything queued so far, as one group.
        st.writing = true;
        let batch = std::mem::take(&mut st.queue);
        drop(st);
        // The group's time is its latest caller's (entries stay in order).
        let at = batch.iter().map(|b| b.1).max().unwrap_or(now);
        let sizes: Vec<(u64, usize)> = batch.iter().map(|(t, _, e, _)| (*t, e.len())).collect();
        let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut all: Vec<Event> = Vec::new();
        for (_, _, events, sidecars) in batch {
            all.extend(events);
            for sc in sidecars {
                files.entry(sc.path).or_default().extend_from_slice(&sc.bytes);
            }
        }
        let written = files
            .iter()
            .try_for_each(|(path, bytes)| Sidecar::write(path, bytes).map_err(|e| RegistryError::io(path, e)))
            .and_then(|()| {
                if all.is_empty() {
                    Ok(Vec::new())
                } else {
                    log.append_now(at, all)
                }
            });
        let mut st = lock(&self.state);
        match written {
            Ok(entries) => {
                let mut rest = entries.into_iter();
                for (t, n) in sizes {
                    st.results.insert(t, Ok(rest.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                for (t, _) in sizes {
                    st.results.insert(t, Err(e.to_string()));
                }
            }
        }
        st.writing = false;
        self.done.notify_all();
        let r = st
            .results
            .remove(&ticket)
            .unwrap_or_else(|| Err("audit group lost an append".into()));
        r.map_err(|message| RegistryError::Audit {
            path: log.log_path(),
            message,
        })
    }
}

/// Entries of several chains in time order (ties: by chain, then
/// sequence), the last `keep` of them if given.
fn merged(mut all: Vec<Entry>, keep: Option<usize>) -> Vec<Entry> {
    all.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.process.cmp(&b.process))
            .then_with(|| a.seq.cmp(&b.seq))
    });
    if let Some(n) = keep
        && all.len() > n
    {
        all.drain(..all.len() - n);
    }
    all
}

/// Path of the audit directory inside a data directory.
/// The head file's size: its JSON padded with spaces, so that moving the
/// head rewrites one small block in place.
const HEAD_BYTES: usize = 256;

pub fn audit_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}
