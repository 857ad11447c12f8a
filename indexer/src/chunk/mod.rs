//! Splitting a redacted file into chunks that carry their line span.
//!
//! * Code in Rust, Python, JavaScript, TypeScript, Go, Java, C, C++ and
//!   Bash is parsed with tree-sitter; chunks follow definitions found by the
//!   queries in `indexer/queries/<language>.scm` ([`code`]).
//! * Markdown and reStructuredText split by section, TOML/YAML/JSON by
//!   top-level key or table ([`text`]).
//! * Anything else, and any file a grammar cannot parse, falls back to line
//!   windows that prefer to break at blank lines.
//!
//! Every chunk is a whole number of lines and its text is exactly those
//! lines (a single line longer than [`MAX_CHARS`] is cut). Chunks aim at
//! about [`TARGET_CHARS`] characters (~256 model tokens): definitions or
//! sections larger than [`FIT_CHARS`] are split (into their own nested
//! definitions when they have some, else into windows), and tiny
//! neighbours are merged.

mod code;
pub mod imports;
mod text;

use serde::{Deserialize, Serialize};

/// Bumped whenever chunk boundaries, the kinds given to files or what a
/// chunk carries (v4: signatures and docs) change, so existing indexes
/// re-chunk.
pub const CHUNKER_VERSION: u32 = 4;

/// Roughly 256 model tokens of code or prose.
pub const TARGET_CHARS: usize = 1_000;
/// A definition or section up to this size stays one chunk.
pub const FIT_CHARS: usize = 1_500;
/// Never emit a chunk larger than this.
pub const MAX_CHARS: usize = 2_000;
/// Neighbouring chunks both smaller than this are merged when the result
/// stays within [`TARGET_CHARS`].
pub const TINY_CHARS: usize = 250;
/// A chunk smaller than this (a closing brace, an import line, a one-line
/// declaration) joins a neighbour when the result stays within
/// [`FIT_CHARS`].
pub const CRUMB_CHARS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// 1-based inclusive line span.
    pub start_line: u32,
    pub end_line: u32,
    /// Function, type, heading or key the chunk is about, if known.
    /// Merged chunks list their symbols separated by `, `.
    pub symbol: Option<String>,
    /// What the chunk is: `function`, `method`, `class`, `struct`, `impl`,
    /// `section`, `table`, `key`, `code` (between definitions), `window`...
    pub kind: String,
    pub text: String,
    /// The definitions' headers (`pub fn f(x: u32) -> Result<()>`), up to
    /// their bodies, one per line; indexed as a field of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The definitions' doc comments and docstrings, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// The language (kind of text) of a path, by extension or name. Files the
/// chunker does not know are `other`, never prose: only Markdown, RST and
/// `text` (`.txt`, READMEs, changelogs and the like) are prose. SVG,
/// notebooks, translations and lockfiles are kinds of their own, so that
/// ranking and answers can tell them from code and docs.
pub fn language_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if is_lockfile_name(name) {
        return "lockfile";
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("rs") => "rust",
        Some("py" | "pyi") => "python",
        Some("pyx" | "pxd" | "pxi") => "cython",
        Some("js" | "mjs" | "cjs" | "jsx") => "javascript",
        Some("ts" | "mts" | "cts") => "typescript",
        Some("tsx") => "tsx",
        Some("go") => "go",
        Some("java") => "java",
        Some("c" | "h") => "c",
        Some("cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx") => "cpp",
        Some("sh" | "bash") => "bash",
        Some("md" | "markdown") => "markdown",
        Some("rst") => "rst",
        Some("txt" | "text") => "text",
        Some("toml") => "toml",
        Some("yaml" | "yml") => "yaml",
        Some("json") => "json",
        Some("svg") => "svg",
        Some("ipynb") => "notebook",
        Some("po" | "pot") => "translation",
        Some("html" | "htm") => "html",
        Some("xml") => "xml",
        Some("css" | "scss" | "less") => "css",
        _ => match name {
            "Dockerfile" => "dockerfile",
            "Makefile" => "make",
            _ if is_prose_name(name) => "text",
            _ => "other",
        },
    }
}

/// [`language_of`], and for a file it cannot place, what its first line
/// says: a script without an extension is the language of its `#!`
/// interpreter (`#!/usr/bin/env python3` is Python).
pub fn language_of_text(path: &str, text: &str) -> &'static str {
    let by_name = language_of(path);
    if by_name != "other" {
        return by_name;
    }
    let Some(shebang) = text.lines().next().and_then(|l| l.strip_prefix("#!")) else {
        return by_name;
    };
    let mut words = shebang.split_whitespace();
    let mut program = words.next().unwrap_or("").rsplit('/').next().unwrap_or("");
    if program == "env" {
        program = words.find(|w| !w.starts_with('-')).unwrap_or("");
    }
    let program = program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match program {
        "python" | "pypy" => "python",
        "sh" | "bash" | "dash" | "zsh" | "ksh" => "bash",
        "node" | "deno" | "bun" => "javascript",
        "" => by_name,
        _ => "script",
    }
}

/// Lockfiles, whatever their format: pins, not prose or code.
pub fn is_lockfile_name(name: &str) -> bool {
    matches!(
        name,
        "Cargo.lock"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "bun.lock"
            | "poetry.lock"
            | "uv.lock"
            | "Pipfile.lock"
            | "pdm.lock"
            | "Gemfile.lock"
            | "composer.lock"
            | "go.sum"
            | "flake.lock"
            | "mix.lock"
            | "pubspec.lock"
            | "Package.resolved"
    )
}

/// Extensionless files that are prose by convention.
fn is_prose_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let stem = upper.split('.').next().unwrap_or("");
    matches!(
        stem,
        "README"
            | "CHANGES"
            | "CHANGELOG"
            | "HISTORY"
            | "NEWS"
            | "AUTHORS"
            | "CONTRIBUTORS"
            | "CONTRIBUTING"
            | "LICENSE"
            | "LICENCE"
            | "COPYING"
            | "NOTICE"
            | "INSTALL"
            | "TODO"
    )
}

/// Whether chunks of `language` are prose (Markdown, RST, plain text).
pub fn is_prose(language: &str) -> bool {
    matches!(language, "markdown" | "rst" | "text")
}

/// Files that are rarely the answer to a question, by path and kind:
/// `lockfiles`, `vendored` (third-party copies), `generated` (minified,
/// protobuf or other generated output, snapshots), `tests` (tests, test
/// suites, fixtures, mocks, specs) and `changelogs` (release notes and
/// change logs: a line for every change ever made, so they share words
/// with almost any question about the code while saying little about how
/// it works now).
/// The names are the keys of a source's `answers` rules in the registry.
/// `None` for everything else.
pub fn answer_class(path: &str, language: &str) -> Option<&'static str> {
    if language == "lockfile" {
        return Some("lockfiles");
    }
    let lower = path.to_ascii_lowercase();
    let mut dirs: Vec<&str> = lower.split('/').collect();
    let name = dirs.pop().unwrap_or("");
    let in_dir = |names: &[&str]| dirs.iter().any(|d| names.contains(d));
    if in_dir(&[
        "vendor",
        "vendored",
        "_vendor",
        "third_party",
        "third-party",
        "node_modules",
        "bower_components",
    ]) {
        return Some("vendored");
    }
    let generated_name = [
        ".min.js",
        ".min.css",
        "_pb2.py",
        "_pb2_grpc.py",
        ".pb.go",
        ".pb.rs",
        ".g.dart",
        ".snap",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
        || name.contains(".generated.")
        || name.contains("_generated.");
    if generated_name || in_dir(&["__snapshots__", "__generated__"]) {
        return Some("generated");
    }
    let stem = name.split('.').next().unwrap_or(name);
    let test_name = stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || name.contains(".test.")
        || name.contains(".spec.")
        || matches!(stem, "conftest" | "tests" | "test");
    if test_name
        || in_dir(&[
            "test",
            "tests",
            "__tests__",
            "spec",
            "specs",
            "testing",
            "testdata",
            "fixtures",
            "testsuite",
            "test-suite",
            "__mocks__",
            "e2e",
        ])
    {
        return Some("tests");
    }
    // Only prose, or text of no known kind (`CHANGES`, `.adoc`): a
    // `history.py` or the code of a `releases/` package is code.
    let textual = is_prose(language) || language == "other";
    // The name alone, or with a version after it (`CHANGELOG-1.x.md`).
    let changelog_name = CHANGELOG_NAMES.iter().any(|word| {
        stem.strip_prefix(word).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix(['-', '_'])
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
    });
    if textual && (changelog_name || in_dir(CHANGELOG_DIRS)) {
        return Some("changelogs");
    }
    None
}

/// Names (lower case, without extension) of change logs and release notes.
const CHANGELOG_NAMES: &[&str] = &[
    "changelog",
    "changes",
    "history",
    "news",
    "releases",
    "release-notes",
    "release_notes",
    "releasenotes",
];

/// Directories whose text files are change logs or release notes.
const CHANGELOG_DIRS: &[&str] = &[
    "changelog",
    "changelog.d",
    "changelogs",
    "changes.d",
    "newsfragments",
    "releases",
    "release-notes",
];

/// Whether `language` is chunked by a tree-sitter grammar.
pub fn has_grammar(language: &str) -> bool {
    code::grammar(language).is_some()
}

/// Why the grammar or `.scm` query of a language failed to load (a bug:
/// the file then falls back to line windows).
pub fn grammar_error(language: &str) -> Option<String> {
    code::load_error(language)
}

/// Chunks `text` (already redacted) as `language` (see [`language_of`]).
pub fn chunk(text: &str, language: &str) -> Vec<Chunk> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let pieces = match language {
        "markdown" => text::sections(&lines, &text::markdown_headings(&lines), "section"),
        "rst" => text::sections(&lines, &text::rst_headings(&lines), "section"),
        "toml" => text::sections(&lines, &text::toml_keys(&lines), "key"),
        "yaml" => text::sections(&lines, &text::yaml_keys(&lines), "key"),
        "json" => text::sections(&lines, &text::json_keys(text), "key"),
        _ => code::pieces(text, &lines, language).unwrap_or_else(|| {
            let like = Piece {
                kind: "window".into(),
                ..Piece::default()
            };
            windows(&lines, 0, lines.len(), &like)
        }),
    };
    finish(&lines, merge_tiny(&lines, pieces))
}

/// A chunk before its text is attached: lines `start..end` (0-based,
/// exclusive end).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Piece {
    pub start: usize,
    pub end: usize,
    pub symbol: Option<String>,
    pub kind: String,
    /// Of a definition: its header and its doc comments (see [`Chunk`]).
    pub signature: Option<String>,
    pub doc: Option<String>,
}

/// `extra` added to `into` on a line of its own, unless already there.
fn accumulate(into: &mut Option<String>, extra: Option<&str>) {
    let Some(y) = extra else { return };
    match into {
        Some(x) if x.lines().any(|l| l == y) => {}
        Some(x) => {
            x.push('\n');
            x.push_str(y);
        }
        None => *into = Some(y.to_string()),
    }
}

pub(crate) fn size(lines: &[&str], start: usize, end: usize) -> usize {
    lines[start..end].iter().map(|l| l.len()).sum()
}

fn blank(lines: &[&str], start: usize, end: usize) -> bool {
    lines[start..end].iter().all(|l| l.trim().is_empty())
}

/// Line windows of about `TARGET_CHARS` over `start..end`, breaking at a
/// blank line when one is near; whitespace-only windows are dropped. Each
/// is `like` (name, kind, header and docs) over its own lines.
pub(crate) fn windows(lines: &[&str], start: usize, end: usize, like: &Piece) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut i = start;
    while i < end {
        let mut size = 0;
        let mut j = i;
        let mut last_blank = None;
        while j < end && (size == 0 || size + lines[j].len() <= TARGET_CHARS) {
            size += lines[j].len();
            if lines[j].trim().is_empty() && j > i {
                last_blank = Some(j);
            }
            j += 1;
        }
        // Prefer ending after a blank line in the second half of the window.
        if j < end
            && let Some(b) = last_blank
            && b > i + (j - i) / 2
        {
            j = b + 1;
        }
        if !blank(lines, i, j) {
            out.push(Piece {
                start: i,
                end: j,
                ..like.clone()
            });
        }
        i = j;
    }
    out
}

/// A piece, or windows over it when it is too large.
pub(crate) fn fit(lines: &[&str], piece: Piece) -> Vec<Piece> {
    if size(lines, piece.start, piece.end) <= FIT_CHARS {
        vec![piece]
    } else {
        windows(lines, piece.start, piece.end, &piece)
    }
}

/// Merges neighbours (separated by nothing but blank lines): a crumb into
/// whatever it touches, tiny pieces with each other; a crumb of bare
/// punctuation (a closing brace) joins even a large neighbour.
fn merge_tiny(lines: &[&str], pieces: Vec<Piece>) -> Vec<Piece> {
    let punct = |p: &Piece| {
        !lines[p.start..p.end]
            .iter()
            .any(|l| l.chars().any(char::is_alphanumeric))
    };
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        if let Some(prev) = out.last_mut() {
            let a = size(lines, prev.start, prev.end);
            let b = size(lines, p.start, p.end);
            let merged = size(lines, prev.start.min(p.start), p.end);
            let join = (b < CRUMB_CHARS && punct(&p) && merged <= MAX_CHARS)
                || (a.min(b) < CRUMB_CHARS && merged <= TARGET_CHARS)
                || (a.max(b) < TINY_CHARS && merged <= TARGET_CHARS);
            if prev.end <= p.start && blank(lines, prev.end, p.start) && join {
                // The first definition names the kind; symbols accumulate.
                if prev.kind == "code" {
                    prev.kind = p.kind.clone();
                }
                if let Some(y) = p.symbol.as_deref().filter(|_| !punct(&p)) {
                    match &mut prev.symbol {
                        Some(x) if x.split(", ").any(|s| s == y) => {}
                        Some(x) => {
                            x.push_str(", ");
                            x.push_str(y);
                        }
                        None => prev.symbol = Some(y.to_string()),
                    }
                }
                accumulate(&mut prev.signature, p.signature.as_deref());
                accumulate(&mut prev.doc, p.doc.as_deref());
                prev.end = p.end;
                continue;
            }
        }
        out.push(p);
    }
    out
}

fn finish(lines: &[&str], pieces: Vec<Piece>) -> Vec<Chunk> {
    pieces
        .into_iter()
        .map(|p| {
            let mut text = lines[p.start..p.end].concat();
            if text.len() > MAX_CHARS {
                let mut cut = MAX_CHARS;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            Chunk {
                start_line: p.start as u32 + 1,
                end_line: p.end as u32,
                symbol: p.symbol,
                kind: p.kind,
                text,
                signature: p.signature,
                doc: p.doc,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_splits_by_heading_and_keeps_spans() {
        let text = format!(
            "# Title\n{}\n## Retries\n{}\n## Fences\n```\n# not a heading\n```\n{}",
            "intro text\n".repeat(30),
            "retry text\n".repeat(60),
            "more text\n".repeat(30)
        );
        let chunks = chunk(&text, "markdown");
        assert_eq!(chunks[0].symbol.as_deref(), Some("Title"));
        let retries = chunks
            .iter()
            .find(|c| c.symbol.as_deref() == Some("Retries"))
            .unwrap();
        assert_eq!(retries.start_line, 33);
        let fences = chunks.last().unwrap();
        assert!(fences.text.contains("# not a heading"), "{chunks:#?}");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for c in &chunks {
            let expected = lines[c.start_line as usize - 1..c.end_line as usize].concat();
            assert_eq!(c.text, expected, "span of {c:?}");
        }
    }

    #[test]
    fn windows_cover_every_line_once() {
        let text: String = (0..500)
            .map(|i| {
                if i % 17 == 0 {
                    "\n".to_string()
                } else {
                    format!("line {i} of text\n")
                }
            })
            .collect();
        let chunks = chunk(&text, "text");
        assert!(chunks.len() > 3);
        let mut next = 1;
        for c in &chunks {
            assert!(c.start_line >= next, "{c:?}");
            assert!(c.text.len() <= MAX_CHARS);
            next = c.end_line + 1;
        }
        assert_eq!(chunks.last().unwrap().end_line as usize, text.lines().count());
    }

    #[test]
    fn a_huge_single_line_is_cut() {
        let text = "x".repeat(10 * MAX_CHARS);
        let chunks = chunk(&text, "rust");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text.len(), MAX_CHARS);
    }

    #[test]
    fn definitions_carry_their_header_and_docs() {
        let filler = "    let x = 1;\n".repeat(20);
        let rust = format!(
            "/// Refunds are limited to the original charge.\n#[inline]\npub fn validate_refund(\n    amount: u64,\n    charged: u64,\n) -> Result<(), Error> {{\n{filler}}}\n"
        );
        let chunks = chunk(&rust, "rust");
        let f = chunks
            .iter()
            .find(|c| c.symbol.as_deref() == Some("validate_refund"))
            .unwrap();
        assert_eq!(
            f.signature.as_deref(),
            Some("pub fn validate_refund( amount: u64, charged: u64, ) -> Result<(), Error>")
        );
        assert_eq!(
            f.doc.as_deref(),
            Some("/// Refunds are limited to the original charge.")
        );

        let body = "        x = 1\n".repeat(20);
        let python = format!(
            "class Pool:\n    def acquire(self, timeout: float) -> Conn:\n        \"\"\"Wait for a free connection.\"\"\"\n{body}"
        );
        let chunks = chunk(&python, "python");
        let all_sigs: Vec<&str> = chunks.iter().filter_map(|c| c.signature.as_deref()).collect();
        assert!(
            all_sigs
                .iter()
                .any(|s| s.contains("def acquire(self, timeout: float) -> Conn")),
            "{chunks:#?}"
        );
        let docs: Vec<&str> = chunks.iter().filter_map(|c| c.doc.as_deref()).collect();
        assert!(docs.contains(&"Wait for a free connection."), "{chunks:#?}");
        // Text between definitions has neither.
        let gap = chunk("use a::b;\n\nconst X: u32 = 1;\n", "rust");
        assert!(
            gap.iter().all(|c| c.signature.is_none() && c.doc.is_none()),
            "{gap:#?}"
        );
    }

    #[test]
    fn tiny_neighbours_merge_and_name_both() {
        let text = "# A\none\n\n# B\ntwo\n";
        let chunks = chunk(text, "markdown");
        assert_eq!(chunks.len(), 1, "{chunks:#?}");
        assert_eq!(chunks[0].symbol.as_deref(), Some("A, B"));
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (1, 5));
    }

    #[test]
    fn languages_by_extension() {
        assert_eq!(language_of("src/main.rs"), "rust");
        assert_eq!(language_of("docs/ADR-1.md"), "markdown");
        assert_eq!(language_of("Dockerfile"), "dockerfile");
        assert_eq!(language_of("notes"), "other");
        assert_eq!(language_of("notes.txt"), "text");
        assert_eq!(language_of("CHANGES"), "text");
        assert_eq!(language_of("docs/logo.svg"), "svg");
        assert_eq!(language_of("nb/intro.ipynb"), "notebook");
        assert_eq!(language_of("locale/de/LC_MESSAGES/django.po"), "translation");
        assert_eq!(language_of("Cargo.lock"), "lockfile");
        assert_eq!(language_of("web/package-lock.json"), "lockfile");
        assert_eq!(language_of("src/speedups.pyx"), "cython");
        assert_eq!(language_of("data/blob.bin2"), "other");
        assert_eq!(
            language_of_text("bin/tool", "#!/usr/bin/env python3\nprint(1)\n"),
            "python"
        );
        assert_eq!(language_of_text("bin/run", "#!/bin/sh -e\necho\n"), "bash");
        assert_eq!(
            language_of_text("bin/serve", "#!/usr/bin/env -S node --harmony\n"),
            "javascript"
        );
        assert_eq!(language_of_text("bin/x", "#!/usr/bin/perl\n"), "script");
        assert_eq!(language_of_text("notes", "just words\n"), "other");
        assert_eq!(
            language_of_text("a.md", "#!not a shebang for markdown\n"),
            "markdown"
        );
        assert!(!is_prose("other") && !is_prose("svg") && is_prose("text"));
        for (path, want) in [
            ("Cargo.lock", Some("lockfiles")),
            ("web/node_modules/left-pad/index.js", Some("vendored")),
            ("src/vendor/lib.go", Some("vendored")),
            ("static/app.min.js", Some("generated")),
            ("api/service_pb2.py", Some("generated")),
            ("src/__snapshots__/view.snap", Some("generated")),
            // A directory merely named so is a person's choice of name.
            ("src/generated/mod_600.rs", None),
            ("tests/test_app.py", Some("tests")),
            ("src/flask/testing.py", None),
            ("pkg/server_test.go", Some("tests")),
            ("src/app.spec.ts", Some("tests")),
            ("lib/router/index.test.js", Some("tests")),
            ("src/conftest.py", Some("tests")),
            ("crates/core/tests/fixtures/input.rs", Some("tests")),
            ("flask/testsuite/basic.py", Some("tests")),
            ("src/__mocks__/fs.js", Some("tests")),
            ("web/e2e/login.ts", Some("tests")),
            ("src/testsuites.rs", None),
            ("src/attestation.rs", None),
            ("src/contest.py", None),
            ("docs/testing.md", None),
            ("CHANGELOG.md", Some("changelogs")),
            ("CHANGES", Some("changelogs")),
            ("History.md", Some("changelogs")),
            ("docs/news.rst", Some("changelogs")),
            ("crates/rmcp/CHANGELOG.md", Some("changelogs")),
            ("changelog.d/1234.bugfix.md", Some("changelogs")),
            ("CHANGELOG-1.28.md", Some("changelogs")),
            ("docs/releases/5.1.4.txt", Some("changelogs")),
            ("newsfragments/1234.feature", Some("changelogs")),
            ("src/history.py", None),
            ("lib/changes.js", None),
            ("docs/changing-things.md", None),
            ("docs/changes-we-want.md", None),
            ("release-notes/generate.py", None),
            ("src/changelogs/mod.rs", None),
        ] {
            assert_eq!(answer_class(path, language_of(path)), want, "{path}");
        }
    }
}
