//! Topic packages on disk: loading the topics directory, and reading cited
//! files from the checkout through the registry's policy and the redactor
//! (so verification sees what agents would; retrieval verifies against the
//! index instead). Shared by `check`, package provenance and the
//! `packages` commands.

use indexer::redact::Redactor;
use indexer::walk::Found;
use packages::topic::{Citation, Cited, PackageStatus, Problem, TopicPackage, Verification, parse, verify};
use registry::{Policy, Registry, Status};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::ingest::load_rules;
use crate::settings::{ConfigError, Settings};

/// A package file and what parsing made of it.
#[derive(Debug)]
pub struct Loaded {
    pub file: PathBuf,
    pub text: String,
    pub parsed: Result<TopicPackage, Vec<Problem>>,
}

/// Every `*.md` in the topics directory except README.md. A missing
/// directory holds no packages; one that is not a directory is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Loaded>> {
    let files = packages::topic::list_dir(dir)
        .map_err(|e| ConfigError(format!("topics directory {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let problem = |message: String| {
            Err(vec![Problem {
                line: 1,
                code: "malformed",
                message,
            }])
        };
        let (text, parsed) = match retriever::read_package_file(&file) {
            Ok(text) => {
                let parsed = parse(&text);
                (text, parsed)
            }
            Err(why) => (String::new(), problem(why)),
        };
        let parsed = match parsed {
            Ok(p) => match ids.get(&p.id) {
                Some(other) => Err(vec![Problem {
                    line: p.lines.id,
                    code: "malformed",
                    message: format!("id {:?} is already used by {}", p.id, other.display()),
                }]),
                None => {
                    ids.insert(p.id.clone(), file.clone());
                    Ok(p)
                }
            },
            Err(e) => Err(e),
        };
        out.push(Loaded { file, text, parsed });
    }
    Ok(out)
}

/// Reads cited files from the checkout as the indexer would: only approved
/// sources, only paths the policy lets in, no symlinks, redacted.
pub struct DiskReader<'a> {
    reg: &'a Registry,
    policy: &'a Policy<'a>,
    redactor: Redactor,
    max_bytes: u64,
    listings: HashMap<String, Result<HashMap<String, Found>, String>>,
}

impl std::fmt::Debug for DiskReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskReader")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl<'a> DiskReader<'a> {
    pub fn new(reg: &'a Registry, policy: &'a Policy<'a>, s: &Settings) -> Result<Self> {
        Ok(DiskReader {
            reg,
            policy,
            redactor: Redactor::new(load_rules(s.redaction_rules.as_deref(), true)?, [0u8; 32]),
            max_bytes: s.max_file_bytes,
            listings: HashMap::new(),
        })
    }

    pub fn read(&mut self, c: &Citation) -> Cited {
        let Some(src) = self.reg.source_named(&c.source) else {
            return Cited::Denied(format!("no source {:?} in the registry", c.source));
        };
        if src.status != Status::Approved {
            return Cited::Denied(format!("source {} is not approved", c.source));
        }
        let d = self.policy.decide_ingest(&c.source, &c.path);
        if let Some(why) = d.deny_reason() {
            return Cited::Denied(format!("the policy refuses this path: {why}"));
        }
        let root = src.root(&self.reg.base_dir);
        let listing = self.listings.entry(c.source.clone()).or_insert_with(|| {
            indexer::walk::list(&root)
                .map(|v| v.into_iter().map(|f| (f.rel.clone(), f)).collect())
                .map_err(|e| e.to_string())
        });
        let found = match listing {
            Err(e) => return Cited::Missing(format!("cannot read the source: {e}")),
            Ok(m) => match m.get(&c.path) {
                Some(f) => f,
                None => return Cited::Missing("no such file in the source".into()),
            },
        };
        match indexer::walk::read_text(found, self.max_bytes) {
            Ok((text, _)) => Cited::Text {
                text: self.redactor.redact(&text, Some(&c.path)).text,
                since: None,
            },
            Err(skip) => Cited::Missing(format!("not readable as text ({})", skip.code())),
        }
    }
}

/// Problems with who owns a package (the owner must be known).
pub fn owner_problem(reg: &Registry, pkg: &TopicPackage) -> Option<Problem> {
    let known = reg.sources.values().any(|s| s.owner == pkg.owner) || reg.principal(&pkg.owner).is_some();
    (!known).then(|| Problem {
        line: pkg.lines.owner,
        code: "unknown_owner",
        message: format!(
            "owner {:?} is neither a source owner nor a principal in the registry",
            pkg.owner
        ),
    })
}

pub fn verify_on_disk(
    reg: &Registry,
    reader: &mut DiskReader<'_>,
    pkg: &TopicPackage,
    today: jiff::civil::Date,
) -> Verification {
    verify(pkg, today, retriever::default_max_age(reg, pkg), &mut |c| {
        reader.read(c)
    })
}

/// A path as printed: relative to the working directory when possible.
pub fn shown(p: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let p = p.strip_prefix(&cwd).unwrap_or(p);
    p.strip_prefix(".").unwrap_or(p).display().to_string()
}

pub fn status_name(s: PackageStatus) -> &'static str {
    match s {
        PackageStatus::Fresh => "fresh",
        PackageStatus::Stale => "stale",
        PackageStatus::Draft => "draft",
    }
}
