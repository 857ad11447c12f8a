//! What a query looks like, read before it is searched: how long it is,
//! how much of it is code, and the evidence a long query (a bug report, a
//! stack trace, a commit message) carries in its identifiers, file paths,
//! stack frames and error lines. Fusion weighs the engines by the shape;
//! the lexical engine gets the evidence as extra, heavier query parts; the
//! dense engine gets a text that fits the model.

use indexer::lexical::QueryPart;

/// Query text longer than this (bytes) is reduced for BM25: its evidence
/// and its beginning are kept.
pub const LEXICAL_TEXT_BYTES: usize = 4_096;
/// The model reads about 256 tokens; the dense side embeds at most this
/// many bytes: the beginning, then the evidence.
pub const DENSE_TEXT_BYTES: usize = 1_200;
/// A query of fewer words looks for its plain words in chunks' text only,
/// not in definitions' headers and docs (extracted identifiers and paths
/// always are): a short natural-language question is a paraphrase, and
/// matching it against headers ranked well-named but wrong functions
/// first (CoSQA), while a long report's or change's words name what it is
/// about (file localisation).
const DEFINITION_WORDS: usize = 12;
/// Evidence items kept per kind, most frequent first.
const MAX_ITEMS: usize = 24;

/// How much each kind of evidence counts, relative to the whole text's words.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvidenceWeights {
    pub paths: f32,
    pub identifiers: f32,
    pub frames: f32,
    pub errors: f32,
}

impl Default for EvidenceWeights {
    /// Set by judgement, not yet tuned: a named path or frame counts as
    /// much again as the whole text's words, an identifier or error line
    /// half as much (`file_localisation --split dev` is where to tune them).
    fn default() -> Self {
        EvidenceWeights {
            paths: 1.0,
            identifiers: 0.5,
            frames: 1.0,
            errors: 0.5,
        }
    }
}

/// A query, read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// Whitespace-separated words.
    pub words: usize,
    /// Share of the words that look like code (identifiers with `_`,
    /// inner capitals or `::`, calls, paths, operators).
    pub code_share: f32,
    /// File paths named (`src/app.py`, `bar.js`), stack frames' files included.
    pub paths: Vec<String>,
    /// Identifiers (`validate_refund`, `parseHttpRequest`, `mod::item`,
    /// `obj.method`), stack frames' functions included.
    pub identifiers: Vec<String>,
    /// Functions and files of stack frames (Python `File "x.py", line N, in f`,
    /// JavaScript `at f (x.js:10:5)`, Rust `panicked at src/x.rs:10:5`,
    /// Go/others `path/x.go:123`).
    pub frames: Vec<String>,
    /// Error lines (`ValueError: ...`, `error[E0599]: ...`, `panicked at ...`).
    pub errors: Vec<String>,
}

impl Shape {
    pub fn of(text: &str) -> Shape {
        let words: Vec<&str> = text.split_whitespace().collect();
        let code = words.iter().filter(|w| looks_like_code(w)).count();
        let mut shape = Shape {
            words: words.len(),
            code_share: if words.is_empty() {
                0.0
            } else {
                code as f32 / words.len() as f32
            },
            ..Shape::default()
        };
        let mut paths = Counter::default();
        let mut identifiers = Counter::default();
        let mut frames = Counter::default();
        let mut errors = Counter::default();
        for line in text.lines() {
            let t = line.trim();
            if let Some(f) = frame(t) {
                for item in f {
                    if is_path(&item) {
                        paths.add(&item);
                    } else {
                        identifiers.add(&item);
                    }
                    frames.add(&item);
                }
            }
            if is_error_line(t) {
                errors.add(&t.chars().take(200).collect::<String>());
            }
        }
        for w in &words {
            let w = trim_word(w);
            if w.is_empty() {
                continue;
            }
            if is_path(w) {
                paths.add(strip_line_suffix(w));
            } else if is_identifier(w) {
                identifiers.add(w);
            }
        }
        shape.paths = paths.top();
        shape.identifiers = identifiers.top();
        shape.frames = frames.top();
        shape.errors = errors.top();
        shape
    }

    /// Whether anything beyond the plain words was found.
    pub fn has_evidence(&self) -> bool {
        !(self.paths.is_empty()
            && self.identifiers.is_empty()
            && self.frames.is_empty()
            && self.errors.is_empty())
    }

    /// Whether the query names code: a path, a stack frame or an identifier.
    pub fn has_code_evidence(&self) -> bool {
        !(self.paths.is_empty() && self.frames.is_empty() && self.identifiers.is_empty())
    }

    /// The lexical query: the text (its beginning, when long) and each
    /// kind of evidence as a part of its own weight.
    pub fn lexical_parts(&self, text: &str, w: &EvidenceWeights) -> Vec<QueryPart> {
        let mut whole = QueryPart::new(prefix(text, LEXICAL_TEXT_BYTES), 1.0);
        if self.words < DEFINITION_WORDS {
            whole = whole.without_definitions();
        }
        let mut parts = vec![whole];
        for (items, weight) in [
            (&self.paths, w.paths),
            (&self.identifiers, w.identifiers),
            (&self.frames, w.frames),
            (&self.errors, w.errors),
        ] {
            if !items.is_empty() && weight > 0.0 {
                // Paths' separators become spaces so every component is a word.
                let joined = items.join(" ");
                parts.push(QueryPart::new(joined, weight));
            }
        }
        parts
    }

    /// The text the model embeds: the query when it fits, else its
    /// beginning and then the error lines and frames, within
    /// [`DENSE_TEXT_BYTES`].
    pub fn dense_text(&self, text: &str) -> String {
        if text.len() <= DENSE_TEXT_BYTES {
            return text.to_string();
        }
        let mut out = prefix(text, DENSE_TEXT_BYTES / 2).to_string();
        for extra in self.errors.iter().chain(&self.frames) {
            if out.len() + extra.len() + 1 > DENSE_TEXT_BYTES {
                break;
            }
            out.push('\n');
            out.push_str(extra);
        }
        out
    }
}

/// Items by count, first-seen order among equals, at most [`MAX_ITEMS`].
#[derive(Default)]
struct Counter {
    seen: Vec<(String, usize)>,
}

impl Counter {
    fn add(&mut self, item: &str) {
        match self.seen.iter_mut().find(|(s, _)| s == item) {
            Some((_, n)) => *n += 1,
            None => self.seen.push((item.to_string(), 1)),
        }
    }

    fn top(mut self) -> Vec<String> {
        // Stable: equal counts keep the order they were seen in.
        self.seen.sort_by_key(|s| std::cmp::Reverse(s.1));
        self.seen.into_iter().take(MAX_ITEMS).map(|(s, _)| s).collect()
    }
}

/// The longest prefix of `text` within `max` bytes, cut at a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn trim_word(w: &str) -> &str {
    w.trim_matches(|c: char| {
        matches!(
            c,
            '`' | '\'' | '"' | ',' | ';' | ':' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '!' | '?'
        )
    })
    .trim_end_matches('.')
}

fn looks_like_code(w: &str) -> bool {
    let w = trim_word(w);
    is_path(w)
        || is_identifier(w)
        || w.contains("()")
        || w.contains("->")
        || w.contains("=>")
        || w.contains("==")
        || w.contains("::")
        || (w.len() > 1 && w.chars().all(|c| "{}[]();=<>!&|+-*/%".contains(c)))
}

/// `snake_case`, `camelCase`/`PascalCase` with an inner capital,
/// `mod::item`, `obj.method`, `__dunder__`, `fn()`.
fn is_identifier(w: &str) -> bool {
    let w = w.trim_end_matches("()");
    if w.len() < 3 || !w.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') {
        return false;
    }
    if !w
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == ':')
    {
        return false;
    }
    let inner_capital = w
        .char_indices()
        .skip(1)
        .any(|(i, c)| c.is_uppercase() && w[..i].chars().last().is_some_and(char::is_lowercase));
    let dotted = w.split('.').filter(|p| !p.is_empty()).count() > 1
        && !w.ends_with('.')
        && w.split('.')
            .all(|p| p.len() >= 2 && p.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_'));
    (w.contains('_') && w.chars().any(char::is_alphabetic)) || inner_capital || w.contains("::") || dotted
}

/// Source file extensions a path or frame may name.
const CODE_EXTENSIONS: &[&str] = &[
    "py", "pyi", "pyx", "rs", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "java", "kt", "c", "h", "cc",
    "cpp", "hpp", "rb", "php", "cs", "swift", "scala", "sh", "md", "rst", "toml", "yaml", "yml", "json",
    "html", "css", "vue", "svelte", "sql", "txt", "cfg", "ini",
];

/// `a/b.py`, `src/lib.rs`, `bar.js`, `pkg/mod.go` (a line or column
/// suffix `:10:5` removed by the caller).
fn is_path(w: &str) -> bool {
    let w = strip_line_suffix(w);
    let Some((stem, ext)) = w.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '.' | '@'))
        && CODE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
}

/// `x.rs:10:5` -> `x.rs`.
fn strip_line_suffix(w: &str) -> &str {
    let mut w = w;
    while let Some((head, tail)) = w.rsplit_once(':') {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            w = head;
        } else {
            break;
        }
    }
    w
}

/// The files and functions a stack-frame line names.
fn frame(line: &str) -> Option<Vec<String>> {
    // Python: File "django/db/models/query.py", line 123, in get
    if let Some(rest) = line.strip_prefix("File \"") {
        let (file, rest) = rest.split_once('"')?;
        let mut out = vec![short_path(file)];
        if rest.contains("line ")
            && let Some((_, func)) = rest.rsplit_once(", in ")
        {
            let func = func.trim();
            if !func.starts_with('<') && !func.is_empty() {
                out.push(func.to_string());
            }
        }
        return Some(out);
    }
    // JavaScript: at Object.render (src/app.js:10:5), at src/app.js:10:5
    if let Some(rest) = line.strip_prefix("at ") {
        let (func, loc) = match rest.split_once(" (") {
            Some((f, l)) => (Some(f.trim()), l.trim_end_matches(')')),
            None => (None, rest),
        };
        let loc = strip_line_suffix(loc.trim());
        let mut out = Vec::new();
        if is_path(loc) {
            out.push(short_path(loc));
        }
        if let Some(f) = func.filter(|f| !f.is_empty() && !f.contains(' ')) {
            let f = f.strip_prefix("async ").unwrap_or(f);
            out.push(f.rsplit('.').next().unwrap_or(f).to_string());
        }
        return (!out.is_empty()).then_some(out);
    }
    // Rust: thread 'main' panicked at src/lib.rs:10:5: message
    if let Some((_, rest)) = line.split_once("panicked at ") {
        let loc = rest.split(|c: char| c.is_whitespace() || c == ',').next()?;
        let loc = strip_line_suffix(loc.trim_end_matches(':').trim_matches('\''));
        return is_path(loc).then(|| vec![short_path(loc)]);
    }
    // Rust backtraces: "   3: crate::module::function" then "at ./src/x.rs:10:5";
    // Go and compilers: "path/x.go:123" or "path/x.go:123:4: message".
    let first = line.split_whitespace().next()?;
    let loc = strip_line_suffix(first.trim_end_matches(':'));
    (loc != first.trim_end_matches(':') && is_path(loc)).then(|| vec![short_path(loc)])
}

/// The last three components of a path: absolute prefixes (site-packages,
/// a user's checkout) say nothing about the repository.
fn short_path(p: &str) -> String {
    let p = p.trim_start_matches("./");
    let parts: Vec<&str> = p.split(['/', '\\']).filter(|s| !s.is_empty()).collect();
    parts[parts.len().saturating_sub(3)..].join("/")
}

/// `ValueError: bad input`, `TypeError: x is not a function`,
/// `error[E0599]: no method`, `Error: ENOENT`, `panicked at ...`.
fn is_error_line(line: &str) -> bool {
    if line.contains("panicked at ") || line.starts_with("error[") || line.starts_with("error:") {
        return true;
    }
    let Some((head, rest)) = line.split_once(": ") else {
        return false;
    };
    let name = head.rsplit('.').next().unwrap_or(head);
    !rest.trim().is_empty()
        && !name.contains(' ')
        && (name.ends_with("Error") || name.ends_with("Exception") || name == "Traceback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_language_has_no_code_and_no_evidence() {
        let s = Shape::of("How are refunds limited?");
        assert_eq!(s.words, 4);
        assert_eq!(s.code_share, 0.0);
        assert!(!s.has_evidence(), "{s:?}");
    }

    #[test]
    fn identifiers_and_paths_are_found_and_counted() {
        let s = Shape::of(
            "`validate_refund` in src/refunds.rs calls parseHttpRequest and ledger::post; see refunds.rs:10.",
        );
        assert!(s.identifiers.contains(&"validate_refund".to_string()), "{s:?}");
        assert!(s.identifiers.contains(&"parseHttpRequest".to_string()), "{s:?}");
        assert!(s.identifiers.contains(&"ledger::post".to_string()), "{s:?}");
        assert!(s.paths.contains(&"src/refunds.rs".to_string()), "{s:?}");
        assert!(s.paths.contains(&"refunds.rs".to_string()), "{s:?}");
        assert!(!Shape::of("e.g. this, i.e. that").has_evidence());
        assert!(s.code_share > 0.3);
    }

    #[test]
    fn stack_frames_of_three_languages() {
        let py = "Traceback (most recent call last):\n  File \"/usr/lib/python3/site-packages/flask/app.py\", line 2190, in wsgi_app\n    response = self.full_dispatch_request()\nKeyError: 'user_id'\n";
        let s = Shape::of(py);
        assert!(
            s.frames.contains(&"site-packages/flask/app.py".to_string())
                || s.frames.contains(&"flask/app.py".to_string()),
            "{s:?}"
        );
        assert!(s.frames.contains(&"wsgi_app".to_string()), "{s:?}");
        assert_eq!(s.errors, vec!["KeyError: 'user_id'".to_string()]);

        let js = "TypeError: Cannot read properties of undefined\n    at Object.render (src/components/App.js:10:5)\n    at processChild (node_modules/react-dom/server.js:3043:14)\n";
        let s = Shape::of(js);
        assert!(
            s.frames.contains(&"components/App.js".to_string())
                || s.frames.contains(&"src/components/App.js".to_string()),
            "{s:?}"
        );
        assert!(s.frames.contains(&"render".to_string()), "{s:?}");
        assert!(s.frames.contains(&"processChild".to_string()), "{s:?}");
        assert_eq!(s.errors.len(), 1);

        let rs = "thread 'main' panicked at src/chunk/mod.rs:120:9:\nindex out of bounds\n";
        let s = Shape::of(rs);
        assert!(s.frames.contains(&"src/chunk/mod.rs".to_string()), "{s:?}");
        assert_eq!(s.errors.len(), 1);

        let go = "main.go:12:5: undefined: fooBar\n";
        assert!(Shape::of(go).frames.contains(&"main.go".to_string()));
    }

    #[test]
    fn only_long_queries_look_for_their_words_in_definitions() {
        let w = EvidenceWeights::default();
        let short = "python check if a file exists";
        let parts = Shape::of(short).lexical_parts(short, &w);
        assert!(!parts[0].definitions, "{parts:?}");
        let long = "Fix the retry loop so that a timeout while reading the response body is retried like a connect timeout";
        let parts = Shape::of(long).lexical_parts(long, &w);
        assert!(parts[0].definitions, "{parts:?}");
        // Named code is looked for in headers whatever the length.
        let named = "why does validate_refund fail";
        let parts = Shape::of(named).lexical_parts(named, &w);
        assert!(!parts[0].definitions);
        assert!(
            parts[1..]
                .iter()
                .any(|p| p.definitions && p.text.contains("validate_refund")),
            "{parts:?}"
        );
    }

    #[test]
    fn long_text_is_reduced_for_both_engines() {
        let mut text = String::from("KeyError: 'user_id'\n");
        text.push_str(&"the request failed again and again ".repeat(1_000));
        text.push_str("  File \"app/views.py\", line 3, in load_user\n");
        let s = Shape::of(&text);
        let parts = s.lexical_parts(&text, &EvidenceWeights::default());
        assert!(parts[0].text.len() <= LEXICAL_TEXT_BYTES);
        assert!(parts.iter().any(|p| p.text.contains("load_user")), "{parts:?}");
        let dense = s.dense_text(&text);
        assert!(dense.len() <= DENSE_TEXT_BYTES);
        assert!(dense.contains("KeyError"));
        // Multi-byte text is cut at a character boundary.
        let wide = "é".repeat(5_000);
        assert!(Shape::of(&wide).dense_text(&wide).len() <= DENSE_TEXT_BYTES);
    }
}
