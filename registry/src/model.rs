//! The source registry as read from `registry.toml`: parsed, validated, and
//! compiled into the form policy decisions use.
//!
//! Parsing is all-or-nothing: a file with any problem yields every problem
//! found, each with its line and column, and no registry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::defaults::BUILTIN_NEVER_INGEST;
use crate::error::{Problem, RegistryError, Result};
use crate::rules::{RuleOrigin, RuleSet, check_pattern};
use crate::vocab::{ContentHash, Role, SourceId, Tier, validate_ident};

/// The registry format this build reads and writes.
pub const FORMAT_VERSION: i64 = 1;

/// The longest window an exception may be granted for.
pub const MAX_EXCEPTION_DAYS: i64 = 366;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A plain directory.
    Dir,
    /// A git working tree; ingested files record the HEAD commit.
    Git,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Dir => "dir",
            SourceKind::Git => "git",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Proposed,
    Approved,
    Denied,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an exception lets through inside its scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permit {
    /// Ingest paths that a never-ingest rule would refuse. Redaction still applies.
    NeverIngest,
}

impl Permit {
    pub fn as_str(self) -> &'static str {
        match self {
            Permit::NeverIngest => "never_ingest",
        }
    }
}

/// The steward's last decision on a source, kept in the file for readers of
/// its git history; the audit log holds the authoritative record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    pub by: String,
    pub at: Timestamp,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub kind: SourceKind,
    /// As written; relative locations are relative to the registry file.
    pub location: String,
    pub owner: String,
    pub tier: Tier,
    pub status: Status,
    pub description: Option<String>,
    /// Empty means everything.
    pub include: RuleSet,
    pub exclude: RuleSet,
    pub never_ingest: RuleSet,
    pub last_change: Option<StatusChange>,
    /// Overrides the tier's maximum content age, in days.
    pub max_age_days: Option<u32>,
    /// What tier-2 answers do with tests, generated and vendored files,
    /// lockfiles and changelogs of this source (all still indexed, for
    /// drift and checks).
    pub answers: AnswerRules,
}

/// What tier-2 answers do with a kind of file that is rarely the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Treatment {
    /// Ranked like any other file.
    Keep,
    /// Ranked lower (its fused score halved).
    Demote,
    /// Left out of answers.
    Exclude,
}

impl Treatment {
    pub fn as_str(self) -> &'static str {
        match self {
            Treatment::Keep => "keep",
            Treatment::Demote => "demote",
            Treatment::Exclude => "exclude",
        }
    }
}

/// A source's `answers = { tests = "...", generated = "...", vendored =
/// "...", lockfiles = "...", changelogs = "..." }`; each key left out
/// keeps its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AnswerRules {
    pub tests: Treatment,
    pub generated: Treatment,
    pub vendored: Treatment,
    pub lockfiles: Treatment,
    pub changelogs: Treatment,
}

impl Default for AnswerRules {
    /// Tests and changelogs rank lower (a question about when something
    /// changed still finds a changelog); generated and vendored files and
    /// lockfiles are left out: a question is rarely answered by them, and
    /// they are large and word-rich enough to crowd out the files that
    /// answer it.
    fn default() -> Self {
        AnswerRules {
            tests: Treatment::Demote,
            generated: Treatment::Exclude,
            vendored: Treatment::Exclude,
            lockfiles: Treatment::Exclude,
            changelogs: Treatment::Demote,
        }
    }
}

impl AnswerRules {
    /// The keys and their treatments, in the file's order.
    pub fn entries(&self) -> [(&'static str, Treatment); 5] {
        [
            ("tests", self.tests),
            ("generated", self.generated),
            ("vendored", self.vendored),
            ("lockfiles", self.lockfiles),
            ("changelogs", self.changelogs),
        ]
    }
}

impl Source {
    /// The source's root on this machine.
    pub fn root(&self, registry_dir: &Path) -> PathBuf {
        let p = Path::new(&self.location);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            registry_dir.join(p)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exception {
    pub id: String,
    pub source: SourceId,
    /// The path glob the exception covers, within `source`.
    pub path: String,
    pub path_rule: RuleSet,
    pub permits: BTreeSet<Permit>,
    pub approver: String,
    pub reason: String,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Where `now` falls in an exception's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    NotYet,
    Live,
    Expired,
}

impl Exception {
    pub fn window(&self, now: Timestamp) -> Window {
        if now < self.granted_at {
            Window::NotYet
        } else if now >= self.expires_at {
            Window::Expired
        } else {
            Window::Live
        }
    }

    pub fn covers(&self, source: &SourceId, path: &str, permit: Permit) -> bool {
        &self.source == source && self.permits.contains(&permit) && self.path_rule.is_match(path)
    }
}

/// Which sources a principal may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceGrant {
    /// Every approved source within the tier ceiling.
    All,
    Only(BTreeSet<SourceId>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub token_hash: ContentHash,
    pub tier_ceiling: Tier,
    pub sources: SourceGrant,
    pub description: Option<String>,
    /// Its own limits; unset ones fall back to the registry's `[limits]`.
    pub limits: Limits,
}

/// Cost control per principal: requests per minute (a token bucket that
/// holds a minute's worth) and context tokens served per UTC day. `None`
/// is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_day: Option<u64>,
}

impl Limits {
    /// These limits, with unset ones taken from `defaults`.
    pub fn or(self, defaults: Limits) -> Limits {
        Limits {
            requests_per_minute: self.requests_per_minute.or(defaults.requests_per_minute),
            tokens_per_day: self.tokens_per_day.or(defaults.tokens_per_day),
        }
    }
}

/// Largest requests-per-minute limit accepted.
pub const MAX_REQUESTS_PER_MINUTE: i64 = 1_000_000;
/// Largest tokens-per-day limit accepted.
pub const MAX_TOKENS_PER_DAY: i64 = 1_000_000_000_000;

/// How old indexed content may get before it is flagged stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Maximum content age in days for tiers 1..=4.
    pub max_age_days: [u32; 4],
}

/// Default maximum content age by tier: the more sensitive the content,
/// the sooner it must be looked at again.
pub const DEFAULT_MAX_AGE_DAYS: [u32; 4] = [365, 180, 90, 30];

/// The longest maximum age the registry accepts (ten years).
pub const MAX_AGE_LIMIT_DAYS: i64 = 3_650;

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }
}

impl Freshness {
    /// The maximum content age for a source: its own, else its tier's.
    pub fn max_age_days(&self, source: &Source) -> u32 {
        source
            .max_age_days
            .unwrap_or(self.max_age_days[usize::from(u8::from(source.tier)) - 1])
    }

    pub fn max_age(&self, source: &Source) -> SignedDuration {
        SignedDuration::from_hours(24 * i64::from(self.max_age_days(source)))
    }
}

/// A parsed, validated registry.
#[derive(Clone, Debug)]
pub struct Registry {
    /// blake3 of the file's bytes: every decision names the version it used.
    pub version: ContentHash,
    /// The directory relative source locations are resolved against.
    pub base_dir: PathBuf,
    pub use_builtin_never_ingest: bool,
    /// Global never-ingest rules, built-ins first.
    pub never_ingest: RuleSet,
    pub sources: BTreeMap<SourceId, Source>,
    pub exceptions: Vec<Exception>,
    pub principals: Vec<Principal>,
    pub freshness: Freshness,
    /// Limits for principals that set none of their own.
    pub limits: Limits,
}

impl PartialEq for Registry {
    /// Two registries are equal when they say the same things; the file
    /// version and base directory are where they came from, not what they say.
    fn eq(&self, other: &Self) -> bool {
        self.use_builtin_never_ingest == other.use_builtin_never_ingest
            && self.never_ingest == other.never_ingest
            && self.sources == other.sources
            && self.freshness == other.freshness
            && self.exceptions == other.exceptions
            && self.principals == other.principals
            && self.limits == other.limits
    }
}

// ---- raw file shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    never_ingest: RawNeverIngest,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    exceptions: Vec<RawException>,
    #[serde(default)]
    principals: Vec<RawPrincipal>,
    #[serde(default)]
    freshness: RawFreshness,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_minute: Option<Spanned<i64>>,
    tokens_per_day: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFreshness {
    /// Keys are tiers ("1".."4"), values days.
    #[serde(default)]
    max_age_days: BTreeMap<String, Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeverIngest {
    #[serde(default = "yes")]
    use_builtin: bool,
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
}

impl Default for RawNeverIngest {
    fn default() -> Self {
        RawNeverIngest {
            use_builtin: true,
            patterns: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    id: Spanned<String>,
    kind: SourceKind,
    location: Spanned<String>,
    owner: Spanned<String>,
    tier: Spanned<i64>,
    status: Status,
    description: Option<String>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    never_ingest: Vec<Spanned<String>>,
    status_changed_by: Option<String>,
    status_changed_at: Option<Spanned<toml::value::Datetime>>,
    status_reason: Option<String>,
    max_age_days: Option<Spanned<i64>>,
    answers: Option<RawAnswers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswers {
    tests: Option<Treatment>,
    generated: Option<Treatment>,
    vendored: Option<Treatment>,
    lockfiles: Option<Treatment>,
    changelogs: Option<Treatment>,
}

impl RawAnswers {
    fn rules(&self) -> AnswerRules {
        let d = AnswerRules::default();
        AnswerRules {
            tests: self.tests.unwrap_or(d.tests),
            generated: self.generated.unwrap_or(d.generated),
            vendored: self.vendored.unwrap_or(d.vendored),
            lockfiles: self.lockfiles.unwrap_or(d.lockfiles),
            changelogs: self.changelogs.unwrap_or(d.changelogs),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    id: Spanned<String>,
    source: Spanned<String>,
    path: Spanned<String>,
    permits: Spanned<Vec<Permit>>,
    approver: Spanned<String>,
    reason: Spanned<String>,
    granted_at: Spanned<toml::value::Datetime>,
    expires_at: Spanned<toml::value::Datetime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    name: Spanned<String>,
    role: Role,
    token_hash: Spanned<String>,
    tier_ceiling: Spanned<i64>,
    sources: Spanned<Vec<Spanned<String>>>,
    description: Option<String>,
    requests_per_minute: Option<Spanned<i64>>,
    tokens_per_day: Option<Spanned<i64>>,
}

// ---- parsing ----------------------------------------------------------------

/// Collects problems with positions computed from byte offsets.
struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
}

impl Problems<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = line_col(self.text, offset);
        self.found.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn timestamp(dt: &toml::value::Datetime) -> std::result::Result<Timestamp, String> {
    if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
        return Err(format!(
            "{dt} must be a full date-time with an offset, e.g. 2026-12-01T00:00:00Z"
        ));
    }
    dt.to_string()
        .parse::<Timestamp>()
        .map_err(|e| format!("{dt}: {e}"))
}

fn non_empty(p: &mut Problems<'_>, value: &Spanned<String>, what: &str) -> String {
    let v = value.get_ref().trim();
    if v.is_empty() {
        p.at(value.span().start, format!("{what} must not be empty"));
    }
    v.to_string()
}

fn tier(p: &mut Problems<'_>, value: &Spanned<i64>, what: &str) -> Tier {
    match u8::try_from(*value.get_ref())
        .map_err(|_| ())
        .and_then(|n| Tier::new(n).map_err(|_| ()))
    {
        Ok(t) => t,
        Err(()) => {
            p.at(
                value.span().start,
                format!("{what} must be 1, 2, 3 or 4, not {}", value.get_ref()),
            );
            Tier::MAX
        }
    }
}

fn limits(p: &mut Problems<'_>, rpm: &Option<Spanned<i64>>, tokens: &Option<Spanned<i64>>) -> Limits {
    let mut bounded = |v: &Option<Spanned<i64>>, what: &str, max: i64| {
        let v = v.as_ref()?;
        if (1..=max).contains(v.get_ref()) {
            Some(*v.get_ref())
        } else {
            p.at(
                v.span().start,
                format!("{what} must be between 1 and {max}, not {}", v.get_ref()),
            );
            None
        }
    };
    Limits {
        requests_per_minute: bounded(rpm, "requests_per_minute", MAX_REQUESTS_PER_MINUTE).map(|n| n as u32),
        tokens_per_day: bounded(tokens, "tokens_per_day", MAX_TOKENS_PER_DAY).map(|n| n as u64),
    }
}

fn max_age(p: &mut Problems<'_>, value: &Spanned<i64>) -> u32 {
    let days = *value.get_ref();
    if (1..=MAX_AGE_LIMIT_DAYS).contains(&days) {
        days as u32
    } else {
        p.at(
            value.span().start,
            format!("max_age_days must be between 1 and {MAX_AGE_LIMIT_DAYS}, not {days}"),
        );
        1
    }
}

fn rule_set(
    p: &mut Problems<'_>,
    patterns: &[Spanned<String>],
    origin: RuleOrigin,
    case_insensitive: bool,
) -> RuleSet {
    let mut ok = Vec::new();
    for pat in patterns {
        match check_pattern(pat.get_ref()) {
            Ok(()) => ok.push((pat.get_ref().as_str(), origin)),
            Err(e) => p.at(pat.span().start, e),
        }
    }
    RuleSet::new(ok, case_insensitive).unwrap_or_else(|_| RuleSet::empty())
}

/// Largest registry file read.
pub const MAX_REGISTRY_BYTES: u64 = 8 << 20;

impl Registry {
    /// Reads and validates a registry file: a regular file of at most
    /// [`MAX_REGISTRY_BYTES`] (a FIFO or device is refused, never opened).
    pub fn load(path: &Path) -> Result<Registry> {
        Registry::from_bytes(Registry::read_file(path)?, path)
    }

    /// The bytes of the registry file at `path`, with the checks of
    /// [`Registry::load`]; callers that compare content before parsing
    /// (a server deciding whether the file changed) read through this.
    pub fn read_file(path: &Path) -> Result<Vec<u8>> {
        let invalid = |message: String| RegistryError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message,
            }],
        };
        let not_found = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RegistryError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                RegistryError::io(path, e)
            }
        };
        // Opened without blocking (a FIFO swapped in cannot hang the
        // caller), then checked on the handle.
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(0o4000); // O_NONBLOCK
        }
        let file = options.open(path).map_err(not_found)?;
        let meta = file.metadata().map_err(|e| RegistryError::io(path, e))?;
        if !meta.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let too_large = |n: u64| invalid(format!("larger than {MAX_REGISTRY_BYTES} bytes ({n} bytes)"));
        if meta.len() > MAX_REGISTRY_BYTES {
            return Err(too_large(meta.len()));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_REGISTRY_BYTES + 1), &mut bytes)
            .map_err(|e| RegistryError::io(path, e))?;
        if bytes.len() as u64 > MAX_REGISTRY_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Validates registry file bytes read from `path` (which also places
    /// relative source locations).
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Registry> {
        let text = String::from_utf8(bytes).map_err(|_| RegistryError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message: "file is not valid UTF-8".into(),
            }],
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Registry::parse(&text, &base).map_err(|problems| RegistryError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Parses registry text; `base_dir` resolves relative source locations.
    pub fn parse(text: &str, base_dir: &Path) -> std::result::Result<Registry, Vec<Problem>> {
        let mut p = Problems {
            text,
            found: Vec::new(),
        };
        let raw: RawRegistry = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                p.at(offset, e.message().trim().to_string());
                return Err(p.found);
            }
        };

        if let Some(v) = &raw.version
            && *v.get_ref() != FORMAT_VERSION
        {
            p.at(
                v.span().start,
                format!(
                    "registry format version {} is not supported (this build reads {FORMAT_VERSION})",
                    v.get_ref()
                ),
            );
        }

        // Global never-ingest rules: built-ins, then the steward's.
        let mut global: Vec<(&str, RuleOrigin)> = Vec::new();
        if raw.never_ingest.use_builtin {
            global.extend(BUILTIN_NEVER_INGEST.iter().map(|s| (*s, RuleOrigin::Builtin)));
        }
        for pat in &raw.never_ingest.patterns {
            match check_pattern(pat.get_ref()) {
                Ok(()) => global.push((pat.get_ref().as_str(), RuleOrigin::Global)),
                Err(e) => p.at(pat.span().start, e),
            }
        }
        let never_ingest = RuleSet::new(global, true).unwrap_or_else(|_| RuleSet::empty());

        let mut sources = BTreeMap::new();
        for s in &raw.sources {
            let id = match SourceId::new(s.id.get_ref().clone()) {
                Ok(id) => id,
                Err(e) => {
                    p.at(s.id.span().start, e);
                    continue;
                }
            };
            let location = non_empty(&mut p, &s.location, "location");
            let owner = non_empty(&mut p, &s.owner, "owner");
            let tier = tier(&mut p, &s.tier, "tier");
            let include = rule_set(&mut p, &s.include, RuleOrigin::Source, false);
            let exclude = rule_set(&mut p, &s.exclude, RuleOrigin::Source, false);
            let source_never = rule_set(&mut p, &s.never_ingest, RuleOrigin::Source, true);
            let last_change = match (&s.status_changed_by, &s.status_changed_at) {
                (Some(by), Some(at)) => match timestamp(at.get_ref()) {
                    Ok(at) => Some(StatusChange {
                        by: by.clone(),
                        at,
                        reason: s.status_reason.clone(),
                    }),
                    Err(e) => {
                        p.at(at.span().start, e);
                        None
                    }
                },
                _ => None,
            };
            let source = Source {
                id: id.clone(),
                kind: s.kind,
                location,
                owner,
                tier,
                status: s.status,
                description: s.description.clone(),
                include,
                exclude,
                never_ingest: source_never,
                last_change,
                max_age_days: s.max_age_days.as_ref().map(|d| max_age(&mut p, d)),
                answers: s.answers.as_ref().map(RawAnswers::rules).unwrap_or_default(),
            };
            if sources.insert(id.clone(), source).is_some() {
                p.at(s.id.span().start, format!("duplicate source id {id:?}"));
            }
        }

        let mut freshness = Freshness::default();
        for (key, days) in &raw.freshness.max_age_days {
            match key.parse::<u8>().ok().and_then(|n| Tier::new(n).ok()) {
                Some(t) => freshness.max_age_days[usize::from(u8::from(t)) - 1] = max_age(&mut p, days),
                None => p.at(
                    days.span().start,
                    format!("[freshness.max_age_days] keys are tiers 1 to 4, not {key:?}"),
                ),
            }
        }

        let mut exceptions: Vec<Exception> = Vec::new();
        for x in &raw.exceptions {
            if let Err(e) = validate_ident(x.id.get_ref(), "exception id") {
                p.at(x.id.span().start, e);
            }
            if exceptions.iter().any(|o| &o.id == x.id.get_ref()) {
                p.at(
                    x.id.span().start,
                    format!("duplicate exception id {:?}", x.id.get_ref()),
                );
            }
            let source = match SourceId::new(x.source.get_ref().clone()) {
                Ok(id) if sources.contains_key(&id) => id,
                Ok(id) => {
                    p.at(
                        x.source.span().start,
                        format!("exception names unknown source {:?}", id.as_str()),
                    );
                    id
                }
                Err(e) => {
                    p.at(x.source.span().start, e);
                    continue;
                }
            };
            let path_rule = rule_set(&mut p, std::slice::from_ref(&x.path), RuleOrigin::Source, false);
            if x.permits.get_ref().is_empty() {
                p.at(
                    x.permits.span().start,
                    "permits must name at least one permission",
                );
            }
            let approver = non_empty(&mut p, &x.approver, "approver");
            let reason = non_empty(&mut p, &x.reason, "reason");
            let granted = timestamp(x.granted_at.get_ref());
            let expires = timestamp(x.expires_at.get_ref());
            let (granted_at, expires_at) = match (granted, expires) {
                (Ok(g), Ok(e)) => (g, e),
                (g, e) => {
                    if let Err(m) = g {
                        p.at(x.granted_at.span().start, m);
                    }
                    if let Err(m) = e {
                        p.at(x.expires_at.span().start, m);
                    }
                    continue;
                }
            };
            if expires_at <= granted_at {
                p.at(
                    x.expires_at.span().start,
                    format!("expires_at {expires_at} is not after granted_at {granted_at}"),
                );
            } else if expires_at.duration_since(granted_at)
                > SignedDuration::from_hours(24 * MAX_EXCEPTION_DAYS)
            {
                p.at(
                    x.expires_at.span().start,
                    format!("an exception may last at most {MAX_EXCEPTION_DAYS} days; grant a new one when it runs out"),
                );
            }
            exceptions.push(Exception {
                id: x.id.get_ref().clone(),
                source,
                path: x.path.get_ref().clone(),
                path_rule,
                permits: x.permits.get_ref().iter().copied().collect(),
                approver,
                reason,
                granted_at,
                expires_at,
            });
        }

        let mut principals: Vec<Principal> = Vec::new();
        for pr in &raw.principals {
            if let Err(e) = validate_ident(pr.name.get_ref(), "principal name") {
                p.at(pr.name.span().start, e);
            }
            if principals.iter().any(|o| &o.name == pr.name.get_ref()) {
                p.at(
                    pr.name.span().start,
                    format!("duplicate principal name {:?}", pr.name.get_ref()),
                );
            }
            let token_hash = match ContentHash::from_hex(pr.token_hash.get_ref()) {
                Ok(h) => h,
                Err(e) => {
                    p.at(
                        pr.token_hash.span().start,
                        format!("token_hash: {e}; store blake3(token), never the token"),
                    );
                    ContentHash::of(pr.name.get_ref().as_bytes())
                }
            };
            if principals.iter().any(|o| o.token_hash == token_hash) {
                p.at(
                    pr.token_hash.span().start,
                    "two principals share this token hash; every token must be unique",
                );
            }
            let tier_ceiling = tier(&mut p, &pr.tier_ceiling, "tier_ceiling");
            let mut only = BTreeSet::new();
            let mut all = false;
            for s in pr.sources.get_ref() {
                if s.get_ref() == "*" {
                    all = true;
                    continue;
                }
                match SourceId::new(s.get_ref().clone()) {
                    Ok(id) if sources.contains_key(&id) => {
                        only.insert(id);
                    }
                    Ok(id) => p.at(
                        s.span().start,
                        format!("principal names unknown source {:?}", id.as_str()),
                    ),
                    Err(e) => p.at(s.span().start, e),
                }
            }
            if all && !only.is_empty() {
                p.at(
                    pr.sources.span().start,
                    "sources is either [\"*\"] or a list of source ids, not both",
                );
            }
            principals.push(Principal {
                name: pr.name.get_ref().clone(),
                role: pr.role,
                token_hash,
                tier_ceiling,
                sources: if all {
                    SourceGrant::All
                } else {
                    SourceGrant::Only(only)
                },
                description: pr.description.clone(),
                limits: limits(&mut p, &pr.requests_per_minute, &pr.tokens_per_day),
            });
        }
        let default_limits = limits(
            &mut p,
            &raw.limits.requests_per_minute,
            &raw.limits.tokens_per_day,
        );

        if !p.found.is_empty() {
            return Err(p.found);
        }
        Ok(Registry {
            version: ContentHash::of(text.as_bytes()),
            base_dir: base_dir.to_path_buf(),
            use_builtin_never_ingest: raw.never_ingest.use_builtin,
            never_ingest,
            sources,
            exceptions,
            principals,
            freshness,
            limits: default_limits,
        })
    }

    /// The limits in force for `p`: its own, else the registry's defaults.
    pub fn limits_for(&self, p: &Principal) -> Limits {
        p.limits.or(self.limits)
    }

    pub fn source(&self, id: &SourceId) -> Option<&Source> {
        self.sources.get(id)
    }

    /// The source with this id, given as a string (from an index record
    /// or a citation); `None` for an id no source has, valid or not.
    pub fn source_named(&self, id: &str) -> Option<&Source> {
        self.sources.get(id)
    }

    /// Whether the source with this id exists and is approved.
    pub fn is_approved(&self, id: &str) -> bool {
        self.source_named(id)
            .is_some_and(|s| s.status == Status::Approved)
    }

    pub fn principal(&self, name: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| p.name == name)
    }

    pub fn exception(&self, id: &str) -> Option<&Exception> {
        self.exceptions.iter().find(|x| x.id == id)
    }
}
