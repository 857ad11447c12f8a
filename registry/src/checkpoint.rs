//! Signed checkpoints of the audit chain: an ed25519 signature over the
//! sequence number and hash of the log's head, written every N entries and
//! when a process that appended exits.
//!
//! The hash chain alone detects edits only by someone who cannot rewrite
//! the whole file; anyone who can write the data directory can re-link it.
//! The signing key lives outside the data directory (a file the operator
//! points to, or an environment variable), so a checkpoint cannot be forged
//! there; `audit verify --key` then detects, up to the last checkpoint,
//! rewritten or re-linked entries, a dropped tail, a wiped log, and forged
//! entries. Copies of each checkpoint can go to a second, append-only
//! location, so deleting the checkpoints along with the log is caught too.
//!
//! Not protected: entries after the last checkpoint (at most N-1, or those
//! since the last exit), anything done by whoever holds the signing key or
//! controls the running process, and a rollback of both the log and its
//! checkpoints to an earlier consistent state when no copy is kept elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};

const DOMAIN: &[u8] = b"ctxplane-audit-checkpoint-v1\n";
/// Checkpoints file inside the audit directory (and in an export directory).
pub const FILE: &str = "checkpoints.jsonl";
/// Default number of entries between checkpoints.
pub const DEFAULT_EVERY: u64 = 256;
/// Largest checkpoints file read back (a checkpoint is about 300 bytes).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// One signed statement: "entry `seq` of the log has hash `hash`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// Bytes of `log.jsonl` up to the end of entry `seq`: the next
    /// checkpoint checks the chain from here on before it signs.
    pub offset: u64,
    pub ts: Timestamp,
    /// The signer's public key (hex), so a verifier can tell keys apart.
    pub key: String,
    /// ed25519 signature (hex) over the domain, `seq`, `hash` and `ts`.
    pub sig: String,
}

fn message(seq: u64, hash: &str, offset: u64, ts: &Timestamp) -> Vec<u8> {
    let ts = ts.to_string();
    let mut m = Vec::with_capacity(DOMAIN.len() + 16 + hash.len() + ts.len() + 16);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&offset.to_le_bytes());
    m.extend_from_slice(&(hash.len() as u64).to_le_bytes());
    m.extend_from_slice(hash.as_bytes());
    m.extend_from_slice(&(ts.len() as u64).to_le_bytes());
    m.extend_from_slice(ts.as_bytes());
    m
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Who signs checkpoints, how often, and where copies go.
pub struct AuditSigner {
    key: SigningKey,
    every: u64,
    export: Option<PathBuf>,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("public_key", &self.public_hex())
            .field("every", &self.every)
            .field("export", &self.export)
            .finish_non_exhaustive()
    }
}

fn key_err(what: impl Into<String>) -> RegistryError {
    RegistryError::BadRequest(what.into())
}

impl AuditSigner {
    /// A signer from a 32-byte secret seed written as 64 hex digits.
    pub fn from_hex(seed: &str) -> Result<AuditSigner> {
        let seed = unhex::<32>(seed).ok_or_else(|| {
            key_err("audit signing key must be 64 hex digits (from `ctxplane audit keygen`)")
        })?;
        Ok(AuditSigner {
            key: SigningKey::from_bytes(&seed),
            every: DEFAULT_EVERY,
            export: None,
        })
    }

    /// A signer from a key file, which must be a regular file readable by
    /// its owner only and must not live inside `data_dir` (whoever can
    /// write the data directory must not be able to read the key).
    pub fn from_file(path: &Path, data_dir: &Path) -> Result<AuditSigner> {
        let meta = std::fs::metadata(path).map_err(|e| RegistryError::io(path, e))?;
        if !meta.is_file() {
            return Err(key_err(format!(
                "audit key {} is not a regular file",
                path.display()
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(key_err(format!(
                    "audit key {} is readable by others; chmod 600 it",
                    path.display()
                )));
            }
        }
        outside_data_dir(path, path, data_dir)?;
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::io(path, e))?;
        Self::from_hex(&text)
    }

    /// Writes a new random key to `path` (owner-only, never overwriting an
    /// existing file, never inside `data_dir`) and returns its public key.
    pub fn create_key_file(path: &Path, data_dir: &Path) -> Result<String> {
        use std::io::Write;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        outside_data_dir(path, parent, data_dir)?;
        let (secret, public) = Self::generate()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            key_err(format!(
                "creating {} (an existing key is never overwritten): {e}",
                path.display()
            ))
        })?;
        f.write_all(format!("{secret}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| RegistryError::io(path, e))?;
        Ok(public)
    }

    /// A new random key: (secret seed hex, public key hex).
    pub fn generate() -> Result<(String, String)> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| key_err(format!("no randomness: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        Ok((hex(&seed), hex(key.verifying_key().as_bytes())))
    }

    /// Checkpoint every `n` entries (at least 1).
    pub fn every(mut self, n: u64) -> Self {
        self.every = n.max(1);
        self
    }

    /// Also append each checkpoint to `<dir>/checkpoints.jsonl`.
    pub fn export_to(mut self, dir: Option<PathBuf>) -> Self {
        self.export = dir;
        self
    }

    pub fn interval(&self) -> u64 {
        self.every
    }

    pub fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    pub(crate) fn sign(&self, seq: u64, hash: &str, offset: u64, ts: Timestamp) -> Checkpoint {
        let sig = self.key.sign(&message(seq, hash, offset, &ts));
        Checkpoint {
            seq,
            hash: hash.to_string(),
            offset,
            ts,
            key: self.public_hex(),
            sig: hex(&sig.to_bytes()),
        }
    }

    /// Appends `cp` to the audit directory's checkpoints and to the export
    /// location, each fsynced.
    pub(crate) fn write(&self, audit_dir: &Path, cp: &Checkpoint) -> Result<()> {
        let mut line = serde_json::to_string(cp).unwrap_or_default();
        line.push('\n');
        append_line(&audit_dir.join(FILE), &line)?;
        if let Some(dir) = &self.export {
            std::fs::create_dir_all(dir).map_err(|e| RegistryError::io(dir, e))?;
            append_line(&dir.join(FILE), &line)?;
        }
        Ok(())
    }
}

/// Appends one line; a torn last line (a crash mid-write) is closed first
/// so the new line stands on its own.
/// Refuses a key `path` whose `existing` part (the file, or the directory
/// it goes in) resolves inside `data_dir`: whoever can write the data
/// directory must not be able to read the key.
fn outside_data_dir(path: &Path, existing: &Path, data_dir: &Path) -> Result<()> {
    if let (Ok(at), Ok(data)) = (std::fs::canonicalize(existing), std::fs::canonicalize(data_dir))
        && at.starts_with(&data)
    {
        return Err(key_err(format!(
            "audit key {} is inside the data directory; keep it where the data directory's writers cannot read it",
            path.display()
        )));
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| RegistryError::io(path, e))?;
    let len = f.metadata().map_err(|e| RegistryError::io(path, e))?.len();
    let mut out = String::with_capacity(line.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))
            .and_then(|_| f.read_exact(&mut last))
            .map_err(|e| RegistryError::io(path, e))?;
        if last[0] != b'\n' {
            out.push('\n');
        }
    }
    out.push_str(line);
    f.write_all(out.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| RegistryError::io(path, e))
}

/// A public key to verify with: 64 hex digits, or a file holding them.
pub fn verifying_key(spec: &str) -> Result<VerifyingKey> {
    let text = match unhex::<32>(spec) {
        Some(_) => spec.to_string(),
        None => std::fs::read_to_string(spec).map_err(|e| {
            key_err(format!(
                "--key must be a public key (64 hex digits) or a file holding one: {spec}: {e}"
            ))
        })?,
    };
    let bytes = unhex::<32>(&text).ok_or_else(|| key_err("public key must be 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| key_err(format!("not an ed25519 public key: {e}")))
}

/// The public key (hex) a signer file or seed corresponds to.
pub fn public_of(seed_hex: &str) -> Result<String> {
    Ok(AuditSigner::from_hex(seed_hex)?.public_hex())
}

/// Checkpoints read from a file; a missing file has none. A line that is
/// not a checkpoint is an error naming the file and line.
pub fn read(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return Err(key_err(format!(
                "{} is larger than {MAX_FILE_BYTES} bytes",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(path).map_err(|e| RegistryError::io(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RegistryError::io(path, e)),
    };
    let mut out = Vec::new();
    // A last line without its newline was torn by a crash: never written
    // in full, so not a checkpoint.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for (i, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.ends_with('}') {
            // A torn line that a later append closed.
            continue;
        }
        let cp: Checkpoint = serde_json::from_str(line).map_err(|e| RegistryError::Audit {
            path: path.to_path_buf(),
            message: format!("line {}: not a checkpoint ({e})", i + 1),
        })?;
        out.push(cp);
    }
    Ok(out)
}

/// The last complete checkpoint in `path`, read from the file's end.
pub(crate) fn last(path: &Path) -> Result<Option<Checkpoint>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io(path, e)),
    };
    let len = f.metadata().map_err(|e| RegistryError::io(path, e))?.len();
    let window = len.min(8192);
    let mut tail = Vec::with_capacity(window as usize);
    f.seek(SeekFrom::Start(len - window))
        .and_then(|_| f.take(window).read_to_end(&mut tail))
        .map_err(|e| RegistryError::io(path, e))?;
    let text = String::from_utf8_lossy(&tail);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return Ok(None),
    };
    Ok(complete
        .rsplit('\n')
        .find_map(|l| serde_json::from_str::<Checkpoint>(l).ok()))
}

impl Checkpoint {
    /// Whether `key` signed exactly this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(sig) = unhex::<64>(&self.sig) else {
            return false;
        };
        hex(key.as_bytes()) == self.key
            && key
                .verify(
                    &message(self.seq, &self.hash, self.offset, &self.ts),
                    &Signature::from_bytes(&sig),
                )
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_seq_hash_and_time() {
        let (seed, public) = AuditSigner::generate().unwrap();
        let signer = AuditSigner::from_hex(&seed).unwrap();
        assert_eq!(signer.public_hex(), public);
        let key = verifying_key(&public).unwrap();
        let cp = signer.sign(7, "abc", 900, Timestamp::UNIX_EPOCH);
        assert!(cp.verify(&key));
        for forged in [
            Checkpoint { seq: 8, ..cp.clone() },
            Checkpoint {
                offset: 901,
                ..cp.clone()
            },
            Checkpoint {
                hash: "abd".into(),
                ..cp.clone()
            },
            Checkpoint {
                ts: Timestamp::from_second(1).unwrap(),
                ..cp.clone()
            },
            Checkpoint {
                sig: "00".repeat(64),
                ..cp.clone()
            },
        ] {
            assert!(!forged.verify(&key), "{forged:?}");
        }
        let (_, other) = AuditSigner::generate().unwrap();
        assert!(!cp.verify(&verifying_key(&other).unwrap()));
    }

    #[test]
    fn a_torn_checkpoint_line_is_skipped_and_closed_by_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE);
        let (seed, _) = AuditSigner::generate().unwrap();
        let signer = AuditSigner::from_hex(&seed).unwrap();
        signer
            .write(tmp.path(), &signer.sign(1, "a", 10, Timestamp::UNIX_EPOCH))
            .unwrap();
        // A crash mid-write leaves half a line.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,\"ha");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        assert_eq!(last(&path).unwrap().unwrap().seq, 1);
        signer
            .write(tmp.path(), &signer.sign(3, "c", 30, Timestamp::UNIX_EPOCH))
            .unwrap();
        let all = read(&path).unwrap();
        assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(last(&path).unwrap().unwrap().seq, 3);
    }

    #[test]
    fn bad_keys_are_refused_clearly() {
        assert!(AuditSigner::from_hex("xyz").is_err());
        assert!(
            verifying_key("not-a-key-or-file")
                .unwrap_err()
                .to_string()
                .contains("64 hex digits")
        );
    }
}
