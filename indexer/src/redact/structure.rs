//! Views of a file in which a secret's name and its value sit side by side.
//!
//! Rules match text as written, but many formats put a value somewhere
//! other than right after its name: on the next lines (YAML block scalars,
//! Kubernetes `- name:` / `value:` lists), in another attribute (HTML
//! inputs), in another table cell, split into literals the code
//! concatenates, or across shell line continuations. Each extractor here
//! pairs such a name with the pieces of its value; the pairs are written
//! into one view as `name = "value"` lines, the rules run over the view,
//! and every byte of the view maps back to the file so a finding there
//! redacts the pieces in the file.

use std::ops::Range;
use std::sync::LazyLock;

use regex::bytes::Regex;

/// Text assembled from pieces of a file, with each byte's origin.
#[derive(Default)]
pub(super) struct View {
    pub text: String,
    /// `origin[i]`: the file offset of view byte `i`.
    origin: Vec<usize>,
}

impl View {
    fn original(&mut self, file: &str, range: Range<usize>) {
        // Byte regexes may stop inside a character; keep whole characters.
        let range = super::rules::widen_to_chars(file, range);
        self.text.push_str(&file[range.clone()]);
        self.origin.extend(range);
    }

    fn synthetic(&mut self, s: &str, at: usize) {
        self.text.push_str(s);
        self.origin.extend(std::iter::repeat_n(at, s.len()));
    }

    /// The file range a view range came from (from its first byte's origin
    /// to just past its last byte's).
    pub fn to_file(&self, r: Range<usize>) -> Option<Range<usize>> {
        if r.is_empty() || r.end > self.origin.len() {
            return None;
        }
        Some(self.origin[r.start]..self.origin[r.end - 1] + 1)
    }

    /// Appends `name = "value"` (value = the pieces joined) on a line of its
    /// own, when the name says it is a secret or the value is shaped like a
    /// token (one word, long): the rules decide the rest. Pairs of other
    /// names are left out, which keeps the view small on ordinary code.
    fn pair(&mut self, file: &str, name: Option<Range<usize>>, value: &[Range<usize>]) {
        let whole = |r: &Range<usize>| super::rules::widen_to_chars(file, r.clone());
        let name = name.as_ref().map(whole);
        let value: Vec<Range<usize>> = value.iter().map(whole).collect();
        let (Some(first), Some(last)) = (value.first(), value.last()) else {
            return;
        };
        let named = name.as_ref().is_some_and(|n| secret_name(&file[n.clone()]));
        let length: usize = value.iter().map(|r| r.len()).sum();
        let one_word = value
            .iter()
            .all(|r| !file[r.clone()].contains(char::is_whitespace));
        if !(named || (one_word && length >= 16)) || length == 0 {
            return;
        }
        match name {
            Some(n) => self.original(file, n),
            None => self.synthetic("value", first.start),
        }
        self.synthetic(" = \"", first.start);
        for piece in &value {
            self.original(file, piece.clone());
        }
        self.synthetic("\"\n", last.end.saturating_sub(1));
    }
}

/// Whether a name says its value is a secret.
fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Words that make a name a secret's name.
const SECRET_WORDS: [&str; 20] = [
    "key", "token", "secret", "pass", "pwd", "auth", "cred", "private", "api", "bearer", "jwt", "dsn",
    "salt", "hmac", "signing", "webhook", "cookie", "session", "access", "conn",
];

/// A name holding one of `SECRET_WORDS`, as a regex: extractors match only
/// secrets' names, so on ordinary text their searches rarely stop.
fn secret_name_pattern() -> String {
    format!(r"[\w.-]*(?i:{})[\w.-]*", SECRET_WORDS.join("|"))
}

/// Compiles an extractor's pattern, with `{NAME}` standing for a secret's name.
fn extractor(pattern: &str) -> Regex {
    Regex::new(&pattern.replace("{NAME}", &secret_name_pattern())).expect("static regex")
}

/// Every name/value pairing the file's structure makes, as one view, plus a
/// view of the logical lines that shell-style `\` continuations join.
/// `path` (when known) spares program source and prose the extractors
/// that do not fit them.
pub(super) fn views(text: &str, path: Option<&str>) -> Vec<View> {
    let mut pairs = View::default();
    let lines = Lines::new(text);
    let gates = Gates::of(text);
    let kind = kind(path);
    if gates.block_scalar {
        yaml_blocks(text, &lines, &mut pairs);
    }
    if gates.value {
        name_value_maps(text, &lines, &mut pairs);
        inline_name_value(text, &mut pairs);
    }
    if kind == Kind::Other {
        two_token_lines(text, &mut pairs);
    }
    tag_attributes(text, &mut pairs);
    if gates.table_row {
        markdown_tables(text, &lines, &mut pairs);
    }
    if kind != Kind::Prose {
        literal_chains(text, &mut pairs);
    }
    let mut out = vec![pairs];
    if gates.continuation
        && let Some(joined) = continuations(text)
    {
        out.push(joined);
    }
    out.retain(|v| !v.text.is_empty());
    out
}

/// What a file holds that some extractor needs before it is worth running.
struct Gates {
    block_scalar: bool,
    value: bool,
    table_row: bool,
    continuation: bool,
}

impl Gates {
    /// Substring searches (vectorised by the standard library): cheaper on
    /// code than one automaton whose first bytes (`:`, `|`) are everywhere.
    fn of(text: &str) -> Gates {
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        Gates {
            block_scalar: any(&[": |", ": >", ":|", ":>"]),
            value: any(&["alue:", "alue\"", "alue'", "alue ="]),
            table_row: any(&["|\n"]) || text.ends_with('|'),
            continuation: any(&["\\\n", "\\\r\n"]),
        }
    }
}

/// The kind of text a path holds, for the extractors that only make sense
/// in some kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Program source: a line of two blank-separated words is code.
    Program,
    /// Prose (RST, plain text, gettext): quotes are apostrophes and
    /// citations, not string literals.
    Prose,
    /// Configuration, Markdown, markup, or unknown.
    Other,
}

fn kind(path: Option<&str>) -> Kind {
    const PROGRAM: [&str; 24] = [
        "rs", "py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "java", "kt", "scala", "c", "h",
        "cc", "cpp", "hpp", "cs", "rb", "php", "swift", "m", "lua",
    ];
    const PROSE: [&str; 5] = ["txt", "rst", "po", "adoc", "tex"];
    let Some(ext) = path
        .and_then(|p| p.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|ext| !ext.contains('/'))
    else {
        return Kind::Other;
    };
    if PROGRAM.contains(&ext.as_str()) {
        Kind::Program
    } else if PROSE.contains(&ext.as_str()) {
        Kind::Prose
    } else {
        Kind::Other
    }
}

/// The file's line table, built only when an extractor needs it.
struct Lines<'a> {
    text: &'a str,
    table: std::cell::OnceCell<Vec<Range<usize>>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            table: std::cell::OnceCell::new(),
        }
    }

    fn get(&self) -> &[Range<usize>] {
        self.table.get_or_init(|| line_ranges(self.text))
    }
}

/// (start, end) of each line, without its line break.
fn line_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices('\n') {
        let end = if i > start && text.as_bytes()[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        out.push(start..end);
        start = i + 1;
    }
    if start < text.len() {
        out.push(start..text.len());
    }
    out
}

fn indent(text: &str, line: &Range<usize>) -> usize {
    text[line.clone()].len() - text[line.clone()].trim_start().len()
}

fn trimmed(text: &str, r: Range<usize>) -> Range<usize> {
    let s = &text[r.clone()];
    let start = r.start + (s.len() - s.trim_start().len());
    let end = r.start + s.trim_end().len();
    start..end.max(start)
}

/// Strips one pair of matching quotes (or backticks) around a value.
fn unquoted(text: &str, r: Range<usize>) -> Range<usize> {
    let r = trimmed(text, r);
    let s = text[r.clone()].as_bytes();
    if s.len() >= 2 && matches!(s[0], b'"' | b'\'' | b'`') && s[s.len() - 1] == s[0] {
        return r.start + 1..r.end - 1;
    }
    r
}

/// The index of the line holding byte `at`.
fn line_of(lines: &[Range<usize>], at: usize) -> usize {
    lines.partition_point(|l| l.end < at)
}

/// The content lines of a block scalar whose header is on line `header`
/// (more indented than `key_indent`, or blank), trimmed.
fn block_lines(text: &str, lines: &[Range<usize>], header: usize, key_indent: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for line in lines.iter().skip(header + 1) {
        if text[line.clone()].trim().is_empty() {
            continue;
        }
        if indent(text, line) <= key_indent {
            break;
        }
        out.push(trimmed(text, line.clone()));
    }
    out
}

static BLOCK_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    extractor(
        r#"(?-u)(?m)^([ \t]*)(?:-[ \t]+)?["']?({NAME})["']?[ \t]*:[ \t]*[|>][-+0-9]*[ \t]*(?:#[^\n]*)?\r?$"#,
    )
});

/// YAML `key: |` and `key: >-`: the value is on the following lines.
fn yaml_blocks(text: &str, lines: &Lines, view: &mut View) {
    for caps in BLOCK_HEADER.captures_iter(text.as_bytes()) {
        let (Some(all), Some(ind), Some(name)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        let header = line_of(lines.get(), all.start());
        let value = block_lines(text, lines.get(), header, ind.len());
        view.pair(text, Some(name.range()), &value);
    }
}

static NAME_LINE: LazyLock<Regex> = LazyLock::new(|| {
    extractor(
        r#"(?-u)(?m)^([ \t]*)(?:-[ \t]+)?["']?(?:name|key|Name|Key)["']?[ \t]*:[ \t]*["']?({NAME})["']?[ \t]*,?\r?$"#,
    )
});
static VALUE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?-u)^[ \t]*(?:-[ \t]+)?["']?(?:value|Value)["']?[ \t]*:[ \t]*(.*?)[ \t]*,?$"#)
        .expect("static regex")
});

/// Sequences of name/value maps (Kubernetes `env`, ECS task definitions):
/// `- name: DB_PASSWORD` with `value: ...` on one of the next lines.
fn name_value_maps(text: &str, lines: &Lines, view: &mut View) {
    for caps in NAME_LINE.captures_iter(text.as_bytes()) {
        let (Some(all), Some(ind), Some(name)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        let lines = lines.get();
        let at = line_of(lines, all.start());
        for (k, line) in lines.iter().enumerate().skip(at + 1).take(4) {
            let Some(v) = VALUE_LINE
                .captures(text[line.clone()].as_bytes())
                .and_then(|c| c.get(1))
            else {
                continue;
            };
            let raw = line.start + v.start()..line.start + v.end();
            let body = text[raw.clone()].trim();
            let value = if body.starts_with('|') || body.starts_with('>') {
                block_lines(text, lines, k, ind.len().max(indent(text, line)))
            } else {
                std::iter::once(unquoted(text, raw)).collect()
            };
            view.pair(text, Some(name.range()), &value);
            break;
        }
    }
}

static INLINE_NAME_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    extractor(
        r#"(?-u)["']?(?:name|key|Name|Key)["']?\s*[:=]\s*["']({NAME})["']\s*,?\s*["']?(?:value|Value)["']?\s*[:=]\s*["']([^"'\n]+)["']"#,
    )
});

/// `{"name": "API_TOKEN", "value": "..."}` and `{ key = "x", value = "y" }`.
fn inline_name_value(text: &str, view: &mut View) {
    for caps in INLINE_NAME_VALUE.captures_iter(text.as_bytes()) {
        if let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) {
            view.pair(text, Some(name.range()), std::slice::from_ref(&value.range()));
        }
    }
}

static TWO_TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    extractor(
        r#"(?-u)(?m)^[ \t]*(?:(?:ENV|ARG|export|set|SET|setenv)[ \t]+)?({NAME})[ \t]+([^\s=:#][^\s]*)[ \t]*\r?$"#,
    )
});

/// A name and a value separated by blanks only: `.properties` (whose spec
/// allows a space as separator), Dockerfile `ENV NAME value`, `.netrc`,
/// csh `setenv`.
fn two_token_lines(text: &str, view: &mut View) {
    for caps in TWO_TOKENS.captures_iter(text.as_bytes()) {
        if let (Some(name), Some(value)) = (caps.get(1), caps.get(2)) {
            view.pair(
                text,
                Some(name.range()),
                std::slice::from_ref(&unquoted(text, value.range())),
            );
        }
    }
}

static TAG: LazyLock<Regex> =
    LazyLock::new(|| extractor(r#"(?-u)(?is)<[a-z][\w:.-]*\s[^<>=]*=[^<>]*["']{NAME}["'][^<>]*>"#));
static TAG_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?-u)(?i)\b(?:name|id|key|property)\s*=\s*(?:"([^"]{1,80})"|'([^']{1,80})')"#)
        .expect("static regex")
});
static TAG_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?-u)(?i)\b(?:value|content)\s*=\s*(?:"([^"]*)"|'([^']*)')"#).expect("static regex")
});

/// HTML and XML tags that name a value in one attribute and hold it in
/// another (`<input type="hidden" name="api_key" value="...">`, `<meta>`),
/// or name it in an attribute and hold it as their text
/// (`<string name="api_key">...</string>`).
fn tag_attributes(text: &str, view: &mut View) {
    for tag in TAG.find_iter(text.as_bytes()) {
        let inner = tag.as_bytes();
        if inner.len() > 2000 {
            continue;
        }
        let Some(name) = TAG_NAME.captures(inner).and_then(|c| c.get(1).or(c.get(2))) else {
            continue;
        };
        let name = tag.start() + name.start()..tag.start() + name.end();
        if let Some(value) = TAG_VALUE.captures(inner).and_then(|c| c.get(1).or(c.get(2))) {
            view.pair(
                text,
                Some(name),
                std::slice::from_ref(&(tag.start() + value.start()..tag.start() + value.end())),
            );
        } else if !inner.ends_with(b"/>") {
            let after = tag.end();
            let end = text[after..].find('<').map_or(text.len(), |i| after + i);
            let body = trimmed(text, after..end);
            if !body.is_empty() && body.len() < 4096 {
                view.pair(text, Some(name), std::slice::from_ref(&body));
            }
        }
    }
}

/// Markdown tables: each cell paired with the cell before it and with its
/// column's header.
fn markdown_tables(text: &str, lines: &Lines, view: &mut View) {
    let mut header: Vec<Range<usize>> = Vec::new();
    let mut previous: Option<Vec<Range<usize>>> = None;
    for line in lines.get() {
        let s = text[line.clone()].trim();
        if !(s.starts_with('|') && s.ends_with('|') && s.len() > 2) {
            header.clear();
            previous = None;
            continue;
        }
        let cells = table_cells(text, line.clone());
        if s.bytes().all(|b| matches!(b, b'|' | b'-' | b':' | b' ' | b'\t')) {
            header = previous.take().unwrap_or_default();
            continue;
        }
        for (i, cell) in cells.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            if i > 0 && !cells[i - 1].is_empty() {
                view.pair(text, Some(cells[i - 1].clone()), std::slice::from_ref(cell));
            }
            if let Some(h) = header.get(i).filter(|h| !h.is_empty()) {
                view.pair(text, Some(h.clone()), std::slice::from_ref(cell));
            }
        }
        previous = Some(cells);
    }
}

fn table_cells(text: &str, line: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[line.clone()];
    let first = s.find('|').unwrap_or(0);
    let last = s.rfind('|').unwrap_or(s.len());
    let mut out = Vec::new();
    let mut start = line.start + first + 1;
    for (i, _) in s[first + 1..last].match_indices('|') {
        out.push(unquoted(text, start..line.start + first + 1 + i));
        start = line.start + first + 1 + i + 1;
    }
    out.push(unquoted(text, start..line.start + last));
    out
}

/// Finds quotes with a vectorised byte search.
static QUOTES: LazyLock<Option<aho_corasick::AhoCorasick>> =
    LazyLock::new(|| aho_corasick::AhoCorasick::new(["\"", "'", "`"]).ok());

/// String literals (their contents): quote to quote on one line, backslash
/// escapes skipped, in order.
fn literals(b: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let quotes: Box<dyn Iterator<Item = usize>> = match QUOTES.as_ref() {
        Some(q) => Box::new(q.find_iter(b).map(|m| m.start())),
        None => Box::new((0..b.len()).filter(|&i| matches!(b[i], b'"' | b'\'' | b'`'))),
    };
    let mut resume = 0;
    quotes.filter_map(move |at| {
        if at < resume {
            return None;
        }
        let q = b[at];
        let mut j = at + 1;
        while j < b.len() && b[j] != q && b[j] != b'\n' {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        if j < b.len() && b[j] == q {
            resume = j + 1;
            Some(at + 1..j)
        } else {
            None
        }
    })
}

/// Whether the bytes between two literals join them into one string:
/// blanks, line breaks, `\` continuations, parentheses and one
/// concatenation operator.
fn joins(between: &[u8]) -> bool {
    let mut ops = [0u8; 2];
    let mut n = 0;
    for &c in between {
        if c.is_ascii_whitespace() || matches!(c, b'\\' | b'(' | b')') {
            continue;
        }
        if n == 2 {
            return false;
        }
        ops[n] = c;
        n += 1;
    }
    matches!(&ops[..n], b"" | b"+" | b"." | b".." | b"&" | b"||" | b"~")
}

static CHAIN_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?-u)([\w.-]+)["']?[ \t]*(?::[^=\n]{0,40})?(?:=|:|=>|\+=|:=)[ \t]*\(?[ \t]*$"#)
        .expect("static regex")
});

/// String literals the code concatenates (`"abc" + "def"`, Python's
/// adjacent literals, a JWT split in two), joined, with the name they are
/// assigned to when the line says. One pass over the bytes.
fn literal_chains(text: &str, view: &mut View) {
    let b = text.as_bytes();
    let mut chain: Vec<Range<usize>> = Vec::new();
    let mut flush = |chain: &mut Vec<Range<usize>>| {
        if chain.len() >= 2 {
            let open = chain[0].start - 1;
            let line_start = text[..open].rfind('\n').map_or(0, |i| i + 1);
            let name = CHAIN_NAME
                .captures(&b[line_start..open])
                .and_then(|c| c.get(1))
                .map(|m| line_start + m.start()..line_start + m.end());
            view.pair(text, name, chain);
        }
        chain.clear();
    };
    for lit in literals(b) {
        let joined = chain
            .last()
            .is_some_and(|last| lit.start - last.end <= 24 && joins(&b[last.end + 1..lit.start - 1]));
        if !joined {
            flush(&mut chain);
        }
        chain.push(lit);
    }
    flush(&mut chain);
}

/// The logical lines that `\`-newline continuations join, with the
/// continuation and the next line's indentation removed.
fn continuations(text: &str) -> Option<View> {
    let lines = line_ranges(text);
    let mut view = View::default();
    let mut i = 0;
    while i < lines.len() {
        let continued = |l: &Range<usize>| text[l.clone()].ends_with('\\');
        if !continued(&lines[i]) {
            i += 1;
            continue;
        }
        let mut first = true;
        while i < lines.len() {
            let line = lines[i].clone();
            let from = if first {
                line.start
            } else {
                trimmed(text, line.clone()).start
            };
            first = false;
            if continued(&line) {
                view.original(text, from..line.end - 1);
                i += 1;
            } else {
                view.original(text, from..line.end);
                i += 1;
                break;
            }
        }
        view.synthetic("\n", text.len().saturating_sub(1));
    }
    Some(view)
}

/// Runs that may be base64 and decode to text, with the decoded text.
pub(super) fn encoded_texts(text: &str) -> Vec<(Range<usize>, String)> {
    let b = text.as_bytes();
    let alphabet = |c: u8| BASE64_ALPHABET[usize::from(c)];
    let mut out = Vec::new();
    // Only runs of 24 or more matter, so look 23 bytes ahead: if that byte
    // ends a word, no such run starts before it.
    let mut i = 0;
    while i + MIN_RUN <= b.len() {
        let probe = i + MIN_RUN - 1;
        if !alphabet(b[probe]) {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && alphabet(b[start - 1]) {
            start -= 1;
        }
        let mut stop = probe + 1;
        while stop < b.len() && alphabet(b[stop]) {
            stop += 1;
        }
        i = stop + 1;
        if stop - start < MIN_RUN {
            continue;
        }
        let mut end = stop;
        while end < b.len() && end - stop < 2 && b[end] == b'=' {
            end += 1;
        }
        if let Some(decoded) = decoded_text(&b[start..end]) {
            out.push((start..end, decoded));
        }
    }
    out
}

/// Shortest base64 run worth decoding (18 bytes of text).
const MIN_RUN: usize = 24;

/// Bytes of standard and URL-safe base64.
static BASE64_ALPHABET: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'_' || b == b'-';
        c += 1;
    }
    t
};

/// The text a base64 run decodes to, if it is mostly printable text.
fn decoded_text(s: &[u8]) -> Option<String> {
    // A slash every few characters is a path or a URL; base64 has one in 64.
    let slashes = s.iter().filter(|&&b| b == b'/').count();
    if slashes * 16 > s.len() {
        return None;
    }
    // Encoded text mixes cases; and without a digit, a sign or padding it
    // is more likely a long identifier, unless its length is whole quanta.
    let has = |f: fn(&u8) -> bool| s.iter().any(f);
    let marked =
        has(u8::is_ascii_digit) || has(|b| matches!(b, b'+' | b'/' | b'=')) || s.len().is_multiple_of(4);
    if !marked || !has(u8::is_ascii_uppercase) || !has(u8::is_ascii_lowercase) {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(s)?).ok()?;
    let printable = decoded
        .bytes()
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    (printable * 10 >= decoded.len() * 9 && decoded.len() >= 12).then_some(decoded)
}

/// Standard or URL-safe base64, padded or not; None if it is neither.
fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let body: Vec<u8> = s.iter().copied().take_while(|&b| b != b'=').collect();
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> String {
        views(text, None).into_iter().map(|v| v.text).collect()
    }

    #[test]
    fn base64_decodes_both_alphabets() {
        assert_eq!(decode_base64(b"aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode_base64(b"aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(decode_base64(b"-_-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        assert!(decode_base64(b"a").is_none());
    }

    #[test]
    fn values_are_paired_with_their_names() {
        let yaml = "data:\n  db_password: >-\n    Qw7rT9zLm2Xc\n  other: 1\n";
        assert!(
            pairs(yaml).contains("db_password = \"Qw7rT9zLm2Xc\""),
            "{}",
            pairs(yaml)
        );
        let k8s = "env:\n  - name: DB_PASSWORD\n    value: \"Qw7rT9zLm2Xc\"\n";
        assert!(
            pairs(k8s).contains("DB_PASSWORD = \"Qw7rT9zLm2Xc\""),
            "{}",
            pairs(k8s)
        );
        let html = "<input type=\"hidden\" name=\"api_key\" value=\"Qw7rT9zLm2Xc\">";
        assert!(pairs(html).contains("api_key = \"Qw7rT9zLm2Xc\""));
        let md = "| Name | Value |\n|---|---|\n| `STRIPE_KEY` | `Qw7rT9zLm2Xc` |\n";
        assert!(
            pairs(md).contains("STRIPE_KEY = \"Qw7rT9zLm2Xc\""),
            "{}",
            pairs(md)
        );
        let js = "const token = \"Qw7rT9\" +\n    \"zLm2Xc\";\n";
        assert!(pairs(js).contains("token = \"Qw7rT9zLm2Xc\""), "{}", pairs(js));
        let sh = "curl --password \\\n   Qw7rT9zLm2Xc x\n";
        assert!(
            pairs(sh).contains("curl --password Qw7rT9zLm2Xc x"),
            "{}",
            pairs(sh)
        );
        let props = "db.password Qw7rT9zLm2Xc\n";
        assert!(pairs(props).contains("db.password = \"Qw7rT9zLm2Xc\""));
    }

    #[test]
    fn view_ranges_map_back_to_the_file() {
        let js = "const token = \"Qw7rT9\" +\n    \"zLm2Xc\";\n";
        let v = views(js, Some("a.js")).remove(0);
        let at = v.text.find("Qw7").unwrap();
        let r = v.to_file(at..at + 12).unwrap();
        assert_eq!(&js[r.start..r.start + 6], "Qw7rT9");
        assert_eq!(&js[r.end - 6..r.end], "zLm2Xc");
    }
}
