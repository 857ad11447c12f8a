//! Topic packages: curated, distilled answers to recurring questions, each
//! claim tied to the lines it came from.
//!
//! A topic package is a Markdown file whose TOML front matter sits between
//! `+++` lines:
//!
//! ```text
//! +++
//! id = "refunds"
//! title = "How refunds are processed"
//! questions = ["How do I refund a payment?", "partial refunds"]
//! owner = "team-payments"
//! reviewed_at = 2026-11-20
//! reviewed_by = "rivera"
//! max_age_days = 90            # optional: else the cited sources' tier default
//!
//! [[citations]]
//! ref = "payments-api:src/refunds.rs#L3-L20"
//! blake3 = "…"                 # written by `ctxplane packages rehash`
//! +++
//! Refunds are issued against a captured payment [1].
//! ```
//!
//! A citation's hash is blake3 of the cited lines as agents see them
//! (redacted), each line's trailing whitespace removed, joined with `\n`.
//! A package is **stale** when a cited span's hash no longer matches, the
//! span or file is gone, a citation was never hashed, or it is past its max
//! age. `draft = true` marks a package that no steward has reviewed yet; it
//! is never served. Parsing and verification are pure: the caller supplies
//! the text of cited files.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::context::Problem;

/// The delimiter line around the front matter.
pub const FENCE: &str = "+++";

/// Longest id, title or question, in characters.
const MAX_FIELD: usize = 300;

/// Whether a file in the topics directory is a package: `*.md` except
/// README.md.
pub fn is_package_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|x| x == "md")
        && path
            .file_name()
            .is_some_and(|n| !n.eq_ignore_ascii_case("README.md"))
}

/// The packages in a topics directory, sorted; a missing directory holds
/// none.
pub fn list_dir(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_package_file(p))
        .collect();
    out.sort();
    Ok(out)
}

/// `source:path#Lx-Ly`, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Citation {
    pub source: String,
    pub path: String,
    pub start: u32,
    pub end: u32,
    /// The hash recorded at review time, if any.
    pub hash: Option<String>,
    /// Line of the citation in the package file.
    pub line: usize,
}

impl Citation {
    /// Parses `source:path#Lx-Ly` (or `#Lx` for one line). Paths are
    /// relative, `/`-separated and may not climb out of the source.
    pub fn parse_ref(s: &str) -> Result<(String, String, u32, u32), String> {
        let (source, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("citation {s:?} is not source:path#Lx-Ly"))?;
        let (path, lines) = rest
            .rsplit_once("#L")
            .ok_or_else(|| format!("citation {s:?} has no #Lx-Ly line range"))?;
        let (a, b) = match lines.split_once('-') {
            Some((a, b)) => (a, b.strip_prefix('L').unwrap_or(b)),
            None => (lines, lines),
        };
        let start: u32 = a
            .parse()
            .map_err(|_| format!("citation {s:?}: bad start line {a:?}"))?;
        let end: u32 = b
            .parse()
            .map_err(|_| format!("citation {s:?}: bad end line {b:?}"))?;
        if start == 0 || end < start {
            return Err(format!("citation {s:?}: lines must satisfy 1 <= start <= end"));
        }
        if end - start >= 2_000 {
            return Err(format!("citation {s:?}: a span may cover at most 2000 lines"));
        }
        let source_ok = !source.is_empty()
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !source_ok {
            return Err(format!("citation {s:?}: bad source id {source:?}"));
        }
        if !safe_path(path) {
            return Err(format!(
                "citation {s:?}: the path must be relative, inside the source, without . or .. parts"
            ));
        }
        Ok((source.to_string(), path.to_string(), start, end))
    }

    /// The reference as written: `source:path#Lx-Ly`.
    pub fn reference(&self) -> String {
        format!("{}:{}#L{}-L{}", self.source, self.path, self.start, self.end)
    }
}

/// A relative `/`-separated path with only normal parts.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// A parsed topic package.
#[derive(Clone, Debug, Serialize)]
pub struct TopicPackage {
    pub id: String,
    pub title: String,
    pub questions: Vec<String>,
    pub owner: String,
    pub reviewed_at: Option<Date>,
    pub reviewed_by: Option<String>,
    pub max_age_days: Option<u32>,
    pub draft: bool,
    pub citations: Vec<Citation>,
    /// The Markdown after the front matter.
    pub body: String,
    /// Line of the body's first line in the file.
    pub body_line: usize,
    /// Lines of the fields, for problems: id, owner, reviewed_at.
    #[serde(skip)]
    pub lines: FieldLines,
}

#[derive(Clone, Debug, Default)]
pub struct FieldLines {
    pub id: usize,
    pub owner: usize,
    pub reviewed_at: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Front {
    id: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    #[serde(default)]
    questions: Vec<Spanned<String>>,
    owner: Option<Spanned<String>>,
    reviewed_at: Option<Spanned<toml::value::Datetime>>,
    reviewed_by: Option<String>,
    max_age_days: Option<Spanned<i64>>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    citations: Vec<Spanned<RawCitation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCitation {
    #[serde(rename = "ref")]
    reference: String,
    blake3: Option<String>,
}

/// Where the front matter is: its text, the line its first line is on,
/// and the byte range of the front matter (without fences) in the file.
struct Split<'a> {
    front: &'a str,
    front_line: usize,
    front_range: std::ops::Range<usize>,
    body: &'a str,
    body_line: usize,
}

fn split(text: &str) -> Result<Split<'_>, Problem> {
    let text_nb = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bom = text.len() - text_nb.len();
    let first_end = text_nb.find('\n').unwrap_or(text_nb.len());
    if text_nb[..first_end].trim_end() != FENCE {
        return Err(Problem {
            line: 1,
            code: "malformed",
            message: format!("a topic package starts with a {FENCE} line opening its TOML front matter"),
        });
    }
    let start = bom + first_end + 1;
    let mut offset = start;
    for (line, l) in (2..).zip(text[start.min(text.len())..].split_inclusive('\n')) {
        if l.trim_end() == FENCE {
            let body_start = offset + l.len();
            return Ok(Split {
                front: &text[start..offset],
                front_line: 2,
                front_range: start..offset,
                body: &text[body_start.min(text.len())..],
                body_line: line + 1,
            });
        }
        offset += l.len();
    }
    Err(Problem {
        line: 1,
        code: "malformed",
        message: format!("the front matter is never closed by a {FENCE} line"),
    })
}

fn line_in(front: &str, front_line: usize, offset: usize) -> usize {
    front_line + front[..offset.min(front.len())].matches('\n').count()
}

/// Parses a package; every problem carries its line in the file.
pub fn parse(text: &str) -> Result<TopicPackage, Vec<Problem>> {
    let sp = split(text).map_err(|p| vec![p])?;
    let at = |offset: usize| line_in(sp.front, sp.front_line, offset);
    let front: Front = toml::from_str(sp.front).map_err(|e| {
        vec![Problem {
            line: e.span().map_or(sp.front_line, |s| at(s.start)),
            code: "malformed",
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut problems = Vec::new();
    let mut problem = |line: usize, code: &'static str, message: String| {
        problems.push(Problem { line, code, message });
    };
    let end_line = sp.body_line.saturating_sub(1);
    let mut required = |f: &Option<Spanned<String>>, name: &str| -> (String, usize) {
        match f {
            Some(v) if !v.get_ref().trim().is_empty() && v.get_ref().chars().count() <= MAX_FIELD => {
                (v.get_ref().trim().to_string(), at(v.span().start))
            }
            Some(v) if !v.get_ref().trim().is_empty() => {
                problem(
                    at(v.span().start),
                    "malformed",
                    format!("{name} is longer than {MAX_FIELD} characters"),
                );
                (String::new(), at(v.span().start))
            }
            Some(v) => {
                problem(at(v.span().start), "missing", format!("{name} is empty"));
                (String::new(), at(v.span().start))
            }
            None => {
                problem(end_line, "missing", format!("{name} is required"));
                (String::new(), end_line)
            }
        }
    };
    let (id, id_line) = required(&front.id, "id");
    let (title, _) = required(&front.title, "title");
    let (owner, owner_line) = required(&front.owner, "owner");
    if !id.is_empty()
        && !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problem(
            id_line,
            "malformed",
            format!("id {id:?} may hold only letters, digits, '-', '_' and '.'"),
        );
    }
    let mut questions = Vec::new();
    for q in &front.questions {
        let t = q.get_ref().trim();
        if t.is_empty() || t.chars().count() > MAX_FIELD {
            problem(
                at(q.span().start),
                "malformed",
                format!("each question is 1 to {MAX_FIELD} characters"),
            );
        } else {
            questions.push(t.to_string());
        }
    }
    if questions.is_empty() {
        problem(
            end_line,
            "missing",
            "questions: list at least one question this package answers".into(),
        );
    }
    let (reviewed_at, reviewed_line) = match &front.reviewed_at {
        Some(d) => {
            let line = at(d.span().start);
            match (d.get_ref().date, d.get_ref().time) {
                (Some(date), None) => (
                    Date::new(date.year as i16, date.month as i8, date.day as i8).ok(),
                    line,
                ),
                _ => {
                    problem(line, "malformed", "reviewed_at is a date (YYYY-MM-DD)".into());
                    (None, line)
                }
            }
        }
        None if front.draft => (None, end_line),
        None => {
            problem(
                end_line,
                "missing",
                "reviewed_at is required (run `ctxplane packages rehash`)".into(),
            );
            (None, end_line)
        }
    };
    let max_age_days = match &front.max_age_days {
        Some(v) if (1..=3650).contains(v.get_ref()) => Some(*v.get_ref() as u32),
        Some(v) => {
            problem(
                at(v.span().start),
                "malformed",
                "max_age_days is between 1 and 3650".into(),
            );
            None
        }
        None => None,
    };
    let mut citations = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &front.citations {
        let line = at(c.span().start);
        let raw = c.get_ref();
        match Citation::parse_ref(raw.reference.trim()) {
            Ok((source, path, start, end)) => {
                if !seen.insert((source.clone(), path.clone(), start, end)) {
                    problem(
                        line,
                        "malformed",
                        format!("citation {} is listed twice", raw.reference),
                    );
                    continue;
                }
                let hash = raw.blake3.as_ref().map(|h| h.trim().to_ascii_lowercase());
                if let Some(h) = &hash
                    && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
                {
                    problem(line, "malformed", "blake3 is 64 hex digits".into());
                }
                citations.push(Citation {
                    source,
                    path,
                    start,
                    end,
                    hash,
                    line,
                });
            }
            Err(e) => problem(line, "malformed", e),
        }
    }
    if front.citations.is_empty() {
        problem(
            end_line,
            "missing",
            "a topic package cites at least one source span ([[citations]])".into(),
        );
    }
    let body = sp.body.to_string();
    if body.trim().is_empty() {
        problem(
            sp.body_line.min(text.lines().count().max(1)),
            "missing",
            "the body is empty".into(),
        );
    }
    // Body markers [n] must name a citation.
    for (i, l) in body.lines().enumerate() {
        for n in markers(l) {
            if n == 0 || n > front.citations.len() {
                problem(
                    sp.body_line + i,
                    "malformed",
                    format!(
                        "[{n}] refers to no citation (there are {})",
                        front.citations.len()
                    ),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(TopicPackage {
        id,
        title,
        questions,
        owner,
        reviewed_at,
        reviewed_by: front.reviewed_by,
        max_age_days,
        draft: front.draft,
        citations,
        body,
        body_line: sp.body_line,
        lines: FieldLines {
            id: id_line,
            owner: owner_line,
            reviewed_at: reviewed_line,
        },
    })
}

/// Citation markers `[n]` in a line of Markdown (not `[text](link)`).
pub fn markers(line: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let close = i + 1 + digits;
            if digits > 0
                && digits <= 4
                && close < b.len()
                && b[close] == b']'
                && b.get(close + 1) != Some(&b'(')
            {
                if let Ok(n) = line[i + 1..close].parse() {
                    out.push(n);
                }
                i = close + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The hash of lines `start..=end` (1-based) of `text`, or `None` when the
/// text has fewer lines.
pub fn span_hash(text: &str, start: u32, end: u32) -> Option<String> {
    let mut h = blake3::Hasher::new();
    let mut n = 0u32;
    for (i, l) in text.lines().enumerate().skip(start as usize - 1) {
        let i = i as u32 + 1;
        if i > end {
            break;
        }
        if i > start {
            h.update(b"\n");
        }
        h.update(l.trim_end().as_bytes());
        n += 1;
    }
    (n == end - start + 1).then(|| h.finalize().to_hex().to_string())
}

/// Where a span of `len` lines hashing to `hash` is in `text`, nearest to
/// line `near` when it occurs more than once.
pub fn find_span(text: &str, len: u32, hash: &str, near: u32) -> Option<(u32, u32)> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let len = len as usize;
    if len == 0 || len > lines.len() {
        return None;
    }
    let mut best: Option<(u32, u32)> = None;
    for start in 0..=lines.len() - len {
        let mut h = blake3::Hasher::new();
        for (i, l) in lines[start..start + len].iter().enumerate() {
            if i > 0 {
                h.update(b"\n");
            }
            h.update(l.as_bytes());
        }
        if h.finalize().to_hex().as_str() == hash {
            let s = start as u32 + 1;
            if best.is_none_or(|(b, _)| s.abs_diff(near) < b.abs_diff(near)) {
                best = Some((s, s + len as u32 - 1));
            }
        }
    }
    best
}

/// What the caller found for a cited file.
#[derive(Clone, Debug)]
pub enum Cited {
    /// The file's text as agents see it, and since when it has had it
    /// (when known).
    Text { text: String, since: Option<Timestamp> },
    /// Not there, or not readable: why.
    Missing(String),
    /// The policy does not let this citation be used: why.
    Denied(String),
}

/// One citation's state now.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CitationStatus {
    Unchanged,
    /// The same lines, hashing as recorded, are now elsewhere in the file
    /// (lines were added or removed above them): not stale.
    Moved,
    Changed,
    Gone,
    Unhashed,
    Denied,
}

#[derive(Clone, Debug, Serialize)]
pub struct CitationCheck {
    #[serde(rename = "ref")]
    pub reference: String,
    pub source: String,
    pub path: String,
    pub start: u32,
    pub end: u32,
    pub line: usize,
    pub status: CitationStatus,
    pub recorded: Option<String>,
    pub current: Option<String>,
    pub detail: Option<String>,
    /// Where the cited lines are now, when they moved.
    pub moved_to: Option<(u32, u32)>,
}

impl CitationCheck {
    /// The lines the cited text is on now.
    pub fn lines_now(&self) -> (u32, u32) {
        self.moved_to.unwrap_or((self.start, self.end))
    }
}

/// `fresh`, `stale` or `draft`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    Fresh,
    Stale,
    Draft,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub status: PackageStatus,
    /// Why it is stale, one line each (with the file line it concerns).
    pub reasons: Vec<Problem>,
    /// What is worth a steward's attention without making it stale (moved
    /// citations).
    pub notes: Vec<Problem>,
    pub citations: Vec<CitationCheck>,
    pub max_age_days: u32,
    /// When the review lapses.
    pub expires_on: Option<Date>,
    /// Since when it has been stale, when known; unknown means "treat as
    /// long ago" (a gone file, say).
    pub stale_since: Option<Timestamp>,
}

/// Checks a package against what its cited files hold now.
/// `default_max_age` applies when the package sets none.
pub fn verify(
    pkg: &TopicPackage,
    today: Date,
    default_max_age: u32,
    read: &mut dyn FnMut(&Citation) -> Cited,
) -> Verification {
    let max_age = pkg.max_age_days.unwrap_or(default_max_age);
    let mut reasons = Vec::new();
    let mut citations = Vec::new();
    let mut stale_since: Option<Option<Timestamp>> = None;
    let mut mark = |at: Option<Timestamp>| {
        stale_since = Some(match stale_since {
            None => at,
            Some(None) => None,
            Some(Some(prev)) => at.map(|a| a.min(prev)),
        });
    };
    let mut notes = Vec::new();
    for c in &pkg.citations {
        let mut moved_to = None;
        let (status, current, detail, since) = match read(c) {
            Cited::Denied(why) => (CitationStatus::Denied, None, Some(why), None),
            Cited::Missing(why) => (CitationStatus::Gone, None, Some(why), None),
            Cited::Text { text, since } => {
                let here = span_hash(&text, c.start, c.end);
                let moved = match (&c.hash, &here) {
                    (Some(r), Some(h)) if r == h => None,
                    (Some(r), _) => find_span(&text, c.end - c.start + 1, r, c.start),
                    (None, _) => None,
                };
                match (here, moved) {
                    (_, Some(to)) => {
                        moved_to = Some(to);
                        (CitationStatus::Moved, c.hash.clone(), None, since)
                    }
                    (None, None) => (
                        CitationStatus::Gone,
                        None,
                        Some(format!("the file has {} lines", text.lines().count())),
                        since,
                    ),
                    (Some(h), None) => match &c.hash {
                        None => (CitationStatus::Unhashed, Some(h), None, since),
                        Some(r) if *r == h => (CitationStatus::Unchanged, Some(h), None, since),
                        Some(_) => (CitationStatus::Changed, Some(h), None, since),
                    },
                }
            }
        };
        if let Some((a, b)) = moved_to {
            notes.push(Problem {
                line: c.line,
                code: "moved",
                message: format!(
                    "{} is unchanged but now at lines {a}-{b} (`ctxplane packages rehash {}` updates the reference)",
                    c.reference(),
                    pkg.id
                ),
            });
        }
        let msg = match status {
            CitationStatus::Unchanged | CitationStatus::Moved => None,
            CitationStatus::Changed => Some(format!("{} changed since review", c.reference())),
            CitationStatus::Gone => Some(format!(
                "{} is gone: {}",
                c.reference(),
                detail.as_deref().unwrap_or("not found")
            )),
            CitationStatus::Unhashed => Some(format!(
                "{} has no recorded hash (run `ctxplane packages rehash {}`)",
                c.reference(),
                pkg.id
            )),
            CitationStatus::Denied => Some(format!(
                "{} may not be cited: {}",
                c.reference(),
                detail.as_deref().unwrap_or("denied")
            )),
        };
        if let Some(message) = msg {
            let code = match status {
                CitationStatus::Denied => "citation_denied",
                CitationStatus::Unhashed => "unhashed",
                _ => "stale_citation",
            };
            reasons.push(Problem {
                line: c.line,
                code,
                message,
            });
            // A changed file has been changed since the index took it in;
            // anything else has no known start.
            mark(if status == CitationStatus::Changed {
                since
            } else {
                None
            });
        }
        citations.push(CitationCheck {
            reference: c.reference(),
            source: c.source.clone(),
            path: c.path.clone(),
            start: c.start,
            end: c.end,
            line: c.line,
            status,
            recorded: c.hash.clone(),
            current,
            detail,
            moved_to,
        });
    }
    let expires_on = pkg
        .reviewed_at
        .and_then(|d| d.checked_add((max_age as i64).days()).ok());
    if let Some(exp) = expires_on
        && today > exp
    {
        reasons.push(Problem {
            line: pkg.lines.reviewed_at,
            code: "stale",
            message: format!(
                "reviewed {} and past its max age of {max_age} days (lapsed {exp})",
                pkg.reviewed_at.map(|d| d.to_string()).unwrap_or_default()
            ),
        });
        mark(exp.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp()));
    }
    let status = if pkg.draft {
        PackageStatus::Draft
    } else if reasons.is_empty() {
        PackageStatus::Fresh
    } else {
        PackageStatus::Stale
    };
    Verification {
        status,
        reasons,
        notes,
        citations,
        max_age_days: max_age,
        expires_on,
        stale_since: stale_since.flatten(),
    }
}

/// The steward's re-review: records the current hash of every citation,
/// sets `reviewed_at`/`reviewed_by` and clears `draft`, keeping everything
/// else in the file (comments included) as it was. Refuses when a citation
/// cannot be read.
pub fn rehash(
    text: &str,
    today: Date,
    by: &str,
    read: &mut dyn FnMut(&Citation) -> Cited,
) -> Result<String, Vec<Problem>> {
    let pkg = match parse(text) {
        Ok(p) => p,
        // Missing review fields are what rehash fills in.
        Err(problems)
            if problems
                .iter()
                .all(|p| p.code == "missing" && p.message.starts_with("reviewed_at")) =>
        {
            // Add the key among the top-level keys (before the first table).
            let sp = split(text).map_err(|p| vec![p])?;
            let mut at = sp.front_range.end;
            let mut offset = sp.front_range.start;
            let mut after_text = sp.front_range.start;
            for l in sp.front.split_inclusive('\n') {
                if l.trim_start().starts_with('[') {
                    at = after_text;
                    break;
                }
                offset += l.len();
                if !l.trim().is_empty() {
                    after_text = offset;
                }
            }
            let mut patched = String::new();
            patched.push_str(&text[..at]);
            patched.push_str("reviewed_at = 2000-01-01\n");
            patched.push_str(&text[at..]);
            return rehash(&patched, today, by, read);
        }
        Err(problems) => return Err(problems),
    };
    let mut problems = Vec::new();
    let mut hashes = Vec::new();
    for c in &pkg.citations {
        match read(c) {
            // Lines that moved keep their text: follow them.
            Cited::Text { text, .. }
                if c.hash.as_ref().is_some_and(|r| {
                    span_hash(&text, c.start, c.end).as_ref() != Some(r)
                        && find_span(&text, c.end - c.start + 1, r, c.start).is_some()
                }) =>
            {
                let r = c.hash.clone().unwrap_or_default();
                let (a, b) = find_span(&text, c.end - c.start + 1, &r, c.start).unwrap_or((c.start, c.end));
                hashes.push((r, Some(format!("{}:{}#L{a}-L{b}", c.source, c.path))));
            }
            Cited::Text { text, .. } => match span_hash(&text, c.start, c.end) {
                Some(h) => hashes.push((h, None)),
                None => problems.push(Problem {
                    line: c.line,
                    code: "stale_citation",
                    message: format!("{} is beyond the end of the file", c.reference()),
                }),
            },
            Cited::Missing(why) => problems.push(Problem {
                line: c.line,
                code: "stale_citation",
                message: format!("{}: {why}", c.reference()),
            }),
            Cited::Denied(why) => problems.push(Problem {
                line: c.line,
                code: "citation_denied",
                message: format!("{}: {why}", c.reference()),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let sp = split(text).map_err(|p| vec![p])?;
    let mut doc: toml_edit::DocumentMut = sp.front.parse().map_err(|e: toml_edit::TomlError| {
        vec![Problem {
            line: sp.front_line,
            code: "malformed",
            message: e.message().to_string(),
        }]
    })?;
    let date: toml_edit::Datetime = today.to_string().parse().map_err(|_| {
        vec![Problem {
            line: 1,
            code: "malformed",
            message: "bad date".into(),
        }]
    })?;
    doc["reviewed_at"] = toml_edit::value(date);
    doc["reviewed_by"] = toml_edit::value(by);
    doc.remove("draft");
    if let Some(arr) = doc.get_mut("citations").and_then(|i| i.as_array_of_tables_mut()) {
        for (t, (h, moved)) in arr.iter_mut().zip(&hashes) {
            t["blake3"] = toml_edit::value(h.as_str());
            if let Some(r) = moved {
                t["ref"] = toml_edit::value(r.as_str());
            }
        }
    }
    let mut front = doc.to_string();
    if !front.ends_with('\n') {
        front.push('\n');
    }
    Ok(format!(
        "{}{}{}",
        &text[..sp.front_range.start],
        front,
        &text[sp.front_range.end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKG: &str = "+++\nid = \"refunds\"\ntitle = \"Refunds\"\nquestions = [\"how do refunds work\"]\nowner = \"team-payments\"\nreviewed_at = 2026-11-01\nmax_age_days = 30\n\n[[citations]]\nref = \"pay:src/refund.rs#L2-L3\"\n+++\nRefunds go back to the card [1].\n";

    fn text(t: &'static str) -> impl FnMut(&Citation) -> Cited {
        move |_| Cited::Text {
            text: t.to_string(),
            since: None,
        }
    }

    #[test]
    fn parses_with_lines() {
        let p = parse(PKG).unwrap();
        assert_eq!(p.id, "refunds");
        assert_eq!(p.citations[0].line, 9);
        assert_eq!(p.citations[0].path, "src/refund.rs");
        assert_eq!((p.citations[0].start, p.citations[0].end), (2, 3));
        assert_eq!(p.body_line, 12);
        assert_eq!(p.lines.reviewed_at, 6);
    }

    #[test]
    fn refs_are_checked() {
        assert!(Citation::parse_ref("a:b.rs#L1-L2").is_ok());
        assert_eq!(Citation::parse_ref("a:b.rs#L4").unwrap().3, 4);
        for bad in [
            "a:../x#L1-L2",
            "a:/etc/passwd#L1",
            "a:b.rs",
            "a:b.rs#L3-L2",
            "a:b.rs#L0-L2",
            ":b#L1",
            "a:x/./y#L1",
        ] {
            assert!(Citation::parse_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_are_located() {
        let bad = PKG
            .replace("owner = \"team-payments\"\n", "")
            .replace("[1]", "[2]");
        let problems = parse(&bad).unwrap_err();
        let codes: Vec<_> = problems.iter().map(|p| (p.code, p.line)).collect();
        assert!(codes.contains(&("missing", 10)), "{codes:?}");
        assert!(codes.contains(&("malformed", 11)), "{codes:?}");
        assert_eq!(parse("# no front matter\n").unwrap_err()[0].code, "malformed");
        assert_eq!(parse("+++\nid = \"x\"\n").unwrap_err()[0].code, "malformed");
        assert_eq!(parse("+++\nid = [\n+++\n").unwrap_err()[0].code, "malformed");
    }

    #[test]
    fn span_hash_ignores_trailing_space_not_content() {
        let a = span_hash("one\ntwo  \nthree\n", 2, 3).unwrap();
        assert_eq!(a, span_hash("one\r\ntwo\r\nthree", 2, 3).unwrap());
        assert_ne!(a, span_hash("one\ntwo\nthree!\n", 2, 3).unwrap());
        assert_eq!(span_hash("one\ntwo\n", 2, 3), None);
    }

    #[test]
    fn rehash_then_verify_then_edit() {
        let today = Date::new(2026, 11, 10).unwrap();
        let file = "fn a() {}\nfn refund() {\n    back_to_card()\n}\n";
        let unhashed = verify(&parse(PKG).unwrap(), today, 90, &mut text(file));
        assert_eq!(unhashed.status, PackageStatus::Stale);
        assert_eq!(unhashed.citations[0].status, CitationStatus::Unhashed);

        let reviewed = rehash(PKG, today, "rivera", &mut text(file)).unwrap();
        assert!(reviewed.contains("reviewed_by = \"rivera\""));
        assert!(reviewed.contains("reviewed_at = 2026-11-10"));
        assert!(reviewed.ends_with("+++\nRefunds go back to the card [1].\n"));
        let p = parse(&reviewed).unwrap();
        let v = verify(&p, today, 90, &mut text(file));
        assert_eq!(v.status, PackageStatus::Fresh, "{:?}", v.reasons);
        // Lines outside the span do not matter; inside they do.
        let v = verify(
            &p,
            today,
            90,
            &mut text("fn b() {}\nfn refund() {\n    back_to_card()\n}\n// more\n"),
        );
        assert_eq!(v.status, PackageStatus::Fresh);
        let v = verify(
            &p,
            today,
            90,
            &mut text("fn a() {}\nfn refund() {\n    back_to_wallet()\n}\n"),
        );
        assert_eq!(v.status, PackageStatus::Stale);
        assert_eq!(v.citations[0].status, CitationStatus::Changed);
        let v = verify(&p, today, 90, &mut |_| Cited::Missing("no such file".into()));
        assert_eq!(v.citations[0].status, CitationStatus::Gone);
        // Age: max_age_days = 30 from 2026-11-10.
        let later = Date::new(2026, 12, 11).unwrap();
        let v = verify(&p, later, 90, &mut text(file));
        assert_eq!(v.status, PackageStatus::Stale);
        assert_eq!(v.reasons[0].code, "stale");
        assert!(v.stale_since.is_some());
    }

    #[test]
    fn moved_lines_are_followed_not_stale() {
        let today = Date::new(2026, 11, 10).unwrap();
        let file = "fn a() {}\nfn refund() {\n    back_to_card()\n}\n";
        let reviewed = rehash(PKG, today, "rivera", &mut text(file)).unwrap();
        let p = parse(&reviewed).unwrap();
        let shifted = "// header\n// more\nfn a() {}\nfn refund() {\n    back_to_card()\n}\n";
        let v = verify(&p, today, 90, &mut text(shifted));
        assert_eq!(v.status, PackageStatus::Fresh, "{:?}", v.reasons);
        assert_eq!(v.citations[0].status, CitationStatus::Moved);
        assert_eq!(v.citations[0].lines_now(), (4, 5));
        assert_eq!(v.notes[0].code, "moved");
        // Rehash follows the lines.
        let again = rehash(&reviewed, today, "rivera", &mut text(shifted)).unwrap();
        assert!(again.contains("ref = \"pay:src/refund.rs#L4-L5\""), "{again}");
        let v = verify(&parse(&again).unwrap(), today, 90, &mut text(shifted));
        assert_eq!(v.citations[0].status, CitationStatus::Unchanged);
        assert!(v.notes.is_empty());
    }

    #[test]
    fn drafts_are_not_fresh_and_rehash_clears_them() {
        let draft = PKG.replace("reviewed_at = 2026-11-01\n", "draft = true\n");
        let p = parse(&draft).unwrap();
        assert!(p.draft);
        let today = Date::new(2026, 11, 10).unwrap();
        let file = "a\nb\nc\n";
        let v = verify(&p, today, 90, &mut text(file));
        assert_eq!(v.status, PackageStatus::Draft);
        let reviewed = rehash(&draft, today, "okafor", &mut text(file)).unwrap();
        let p = parse(&reviewed).unwrap();
        assert!(!p.draft);
        assert_eq!(
            verify(&p, today, 90, &mut text(file)).status,
            PackageStatus::Fresh
        );
    }

    #[test]
    fn markers_skip_links() {
        assert_eq!(markers("a [1] b [23][4] [x](y) [5](z)"), vec![1, 23, 4]);
    }
}
