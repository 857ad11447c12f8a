//! Section boundaries for prose and configuration: Markdown and RST
//! headings, TOML tables and top-level keys, YAML top-level keys, JSON
//! top-level members. Boundaries are line indices; [`sections`] turns them
//! into pieces.

use super::{Piece, fit};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bound {
    pub line: usize,
    pub symbol: Option<String>,
    pub kind: &'static str,
}

fn bound(line: usize, symbol: impl Into<String>, kind: &'static str) -> Bound {
    let s: String = symbol.into();
    Bound {
        line,
        symbol: (!s.is_empty()).then_some(s),
        kind,
    }
}

/// One piece per section (lines before the first boundary form their own,
/// of kind `lead_kind`), each split into windows when too large.
pub(crate) fn sections(lines: &[&str], bounds: &[Bound], lead_kind: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let first = bounds.first().map_or(lines.len(), |b| b.line);
    if first > 0 {
        out.extend(fit(
            lines,
            Piece {
                start: 0,
                end: first,
                symbol: None,
                kind: lead_kind.to_string(),
                ..Piece::default()
            },
        ));
    }
    for (k, b) in bounds.iter().enumerate() {
        let end = bounds.get(k + 1).map_or(lines.len(), |n| n.line);
        if end <= b.line || super::blank(lines, b.line, end) {
            continue;
        }
        out.extend(fit(
            lines,
            Piece {
                start: b.line,
                end,
                symbol: b.symbol.clone(),
                kind: b.kind.to_string(),
                ..Piece::default()
            },
        ));
    }
    out.retain(|p| !super::blank(lines, p.start, p.end));
    out
}

fn fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// ATX (`## Title`) and setext (`Title` over `===`/`---`) headings outside
/// code fences and front matter.
pub(crate) fn markdown_headings(lines: &[&str]) -> Vec<Bound> {
    let mut out = Vec::new();
    let mut in_fence = false;
    let mut i = 0;
    // YAML front matter is not a heading.
    if lines.first().is_some_and(|l| l.trim_end() == "---")
        && let Some(close) = lines.iter().skip(1).position(|l| l.trim_end() == "---")
    {
        i = close + 2;
    }
    while i < lines.len() {
        let line = lines[i];
        if fence(line) {
            in_fence = !in_fence;
        } else if !in_fence {
            let t = line.trim_end();
            let hashes = t.chars().take_while(|&c| c == '#').count();
            if (1..=6).contains(&hashes) && (t.len() == hashes || t[hashes..].starts_with(' ')) {
                out.push(bound(
                    i,
                    t[hashes..].trim().trim_end_matches('#').trim(),
                    "section",
                ));
            } else if let Some(next) = lines.get(i + 1)
                && underline(next, &['=', '-'])
                && !t.trim().is_empty()
                && !line.starts_with([' ', '\t', '-', '*', '>', '|'])
                && !out
                    .last()
                    .is_some_and(|b: &Bound| b.line + 1 == i && lines[b.line].trim().is_empty())
            {
                out.push(bound(i, t.trim(), "section"));
                i += 1;
            }
        }
        i += 1;
    }
    out
}

/// A line made of one repeated punctuation character (3 or more).
fn underline(line: &str, chars: &[char]) -> bool {
    let t = line.trim_end();
    let Some(c) = t.chars().next() else {
        return false;
    };
    t.len() >= 3 && chars.contains(&c) && t.chars().all(|x| x == c)
}

const RST_ADORNMENT: &[char] = &[
    '=', '-', '~', '^', '"', '\'', '`', '#', '*', '+', ':', '.', '_', '<', '>',
];

/// RST titles: a text line underlined (and optionally overlined) by a
/// punctuation line at least as long as the title.
pub(crate) fn rst_headings(lines: &[&str]) -> Vec<Bound> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        let title = lines[i].trim();
        if !title.is_empty()
            && !underline(lines[i], RST_ADORNMENT)
            && !lines[i].starts_with([' ', '\t'])
            && underline(lines[i + 1], RST_ADORNMENT)
            && lines[i + 1].trim_end().chars().count() >= title.chars().count()
        {
            let over = i > 0 && lines[i - 1].trim_end() == lines[i + 1].trim_end();
            out.push(bound(if over { i - 1 } else { i }, title, "section"));
            i += 2;
            continue;
        }
        i += 1;
    }
    out
}

/// TOML: every `[table]` / `[[array]]` header, and each top-level
/// `key = value` before the first header (multi-line strings and arrays
/// are followed so their contents are not mistaken for keys).
pub(crate) fn toml_keys(lines: &[&str]) -> Vec<Bound> {
    let mut out = Vec::new();
    let mut depth: i32 = 0;
    let mut in_string: Option<&str> = None;
    let mut seen_table = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if in_string.is_none() && depth == 0 {
            if t.starts_with('[') {
                let inner = t.trim_start_matches('[');
                if let Some(end) = inner.find(']') {
                    let name = inner[..end].trim();
                    out.push(bound(i, name, "table"));
                    seen_table = true;
                    continue;
                }
            } else if !seen_table
                && !line.starts_with([' ', '\t', '#'])
                && let Some((key, _)) = t.split_once('=')
            {
                out.push(bound(i, key.trim(), "key"));
            }
        }
        // Track multi-line strings and bracket depth past this line.
        let mut rest = t;
        while !rest.is_empty() {
            if let Some(q) = in_string {
                match rest.find(q) {
                    Some(p) => {
                        rest = &rest[p + q.len()..];
                        in_string = None;
                    }
                    None => break,
                }
                continue;
            }
            let Some(p) = rest.find(['"', '\'', '[', ']', '{', '}', '#']) else {
                break;
            };
            let c = rest.as_bytes()[p];
            rest = &rest[p..];
            match c {
                b'#' => break,
                b'[' | b'{' => {
                    depth += 1;
                    rest = &rest[1..];
                }
                b']' | b'}' => {
                    depth = (depth - 1).max(0);
                    rest = &rest[1..];
                }
                _ => {
                    let quote = if c == b'"' { "\"" } else { "'" };
                    let triple = if c == b'"' { "\"\"\"" } else { "'''" };
                    if rest.starts_with(triple) {
                        in_string = Some(triple);
                        rest = &rest[3..];
                    } else {
                        // A single-line string: skip to its closing quote.
                        let body = &rest[1..];
                        let mut end = None;
                        let mut escaped = false;
                        for (k, ch) in body.char_indices() {
                            if escaped {
                                escaped = false;
                            } else if ch == '\\' && quote == "\"" {
                                escaped = true;
                            } else if body[k..].starts_with(quote) {
                                end = Some(k);
                                break;
                            }
                        }
                        rest = end.map_or("", |k| &body[k + 1..]);
                    }
                }
            }
        }
    }
    out
}

/// YAML: unindented `key:` lines and `---` document starts (block scalars
/// and nested maps are indented, so they never match).
pub(crate) fn yaml_keys(lines: &[&str]) -> Vec<Bound> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            out.push(bound(i, "", "document"));
            continue;
        }
        if t.is_empty() || line.starts_with([' ', '\t', '#', '-', '}', ']']) || t == "..." {
            continue;
        }
        let key = match t.strip_prefix('"') {
            Some(q) => q.split_once("\":").map(|(k, _)| k),
            None => t.split_once(": ").map(|(k, _)| k).or_else(|| t.strip_suffix(':')),
        };
        if let Some(k) = key {
            // Extend upward over the comment lines directly above.
            let mut start = i;
            while start > 0 && lines[start - 1].starts_with('#') {
                start -= 1;
            }
            if out.last().is_none_or(|b: &Bound| b.line < start) {
                out.push(bound(start, k.trim(), "key"));
            }
        }
    }
    out
}

/// JSON: each member of a top-level object (or element of a top-level
/// array) starts a section on the line where it starts.
pub(crate) fn json_keys(text: &str) -> Vec<Bound> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut line = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut key_start: Option<(usize, usize)> = None; // (line, byte after quote)
    let mut expect_member = false; // after `{`/`[`/`,` at depth 1
    let mut top_array = false;
    for (k, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if let Some((l, s)) = key_start.take() {
                    out.push(bound(l, &text[s..k], "key"));
                }
            } else if c == '\n' {
                line += 1;
            }
            continue;
        }
        match c {
            '\n' => line += 1,
            '"' => {
                in_string = true;
                if depth == 1 && expect_member {
                    expect_member = false;
                    if top_array {
                        out.push(bound(line, "", "item"));
                    } else {
                        key_start = Some((line, k + 1));
                    }
                }
            }
            '{' | '[' => {
                if depth == 1 && expect_member && top_array {
                    out.push(bound(line, "", "item"));
                }
                depth += 1;
                if depth == 1 {
                    top_array = c == '[';
                    expect_member = true;
                } else {
                    expect_member = false;
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_member = true,
            c if c.is_whitespace() => {}
            _ => {
                if depth == 1 && expect_member && top_array {
                    out.push(bound(line, "", "item"));
                }
                expect_member = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.split_inclusive('\n').collect()
    }

    fn names(b: &[Bound]) -> Vec<(usize, &str)> {
        b.iter()
            .map(|b| (b.line, b.symbol.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn markdown_setext_and_front_matter() {
        let t = "---\ntitle: x\n---\nIntro\n=====\ntext\n\nPart\n----\nmore\n";
        assert_eq!(
            names(&markdown_headings(&lines(t))),
            vec![(3, "Intro"), (7, "Part")]
        );
    }

    #[test]
    fn rst_titles_with_and_without_overline() {
        let t = "=====\nGuide\n=====\n\nintro\n\nInstall\n-------\nsteps\n\nnot a title\n--\n";
        assert_eq!(
            names(&rst_headings(&lines(t))),
            vec![(0, "Guide"), (6, "Install")]
        );
    }

    #[test]
    fn toml_tables_and_leading_keys() {
        let t = "name = \"x\"\ndesc = \"\"\"\n[not] = a table\n\"\"\"\nlist = [\n  \"[x]\",\n]\n\n[server]\nport = 1\n[[rule]]\nid = 'a'\n";
        assert_eq!(
            names(&toml_keys(&lines(t))),
            vec![(0, "name"), (1, "desc"), (4, "list"), (8, "server"), (10, "rule")]
        );
    }

    #[test]
    fn yaml_top_level_keys_with_their_comments() {
        let t = "# about a\na: 1\nb:\n  c: 2\n  d: |\n    e: 3\n---\n\"q\": 4\n- item\n";
        assert_eq!(
            names(&yaml_keys(&lines(t))),
            vec![(0, "a"), (2, "b"), (6, ""), (7, "q")]
        );
    }

    #[test]
    fn json_members_and_array_items() {
        let t = "{\n  \"a\": {\"x\": \"}\"},\n  \"b\\\"q\": [1,\n 2],\n  \"c\": 3\n}\n";
        assert_eq!(names(&json_keys(t)), vec![(1, "a"), (2, "b\\\"q"), (4, "c")]);
        let arr = "[\n {\"id\": 1},\n {\"id\": 2},\n 3\n]";
        assert_eq!(names(&json_keys(arr)), vec![(1, ""), (2, ""), (3, "")]);
    }
}
