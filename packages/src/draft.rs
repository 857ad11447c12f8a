//! Extractive drafts of topic packages: sentences lifted verbatim (markup
//! aside) from retrieved chunks, each cited with the lines it came from,
//! for a steward to edit. Nothing is generated, so nothing is unsourced.

use std::collections::BTreeSet;

use crate::topic::span_hash;

/// A retrieved chunk to draft from, in rank order.
#[derive(Clone, Debug)]
pub struct DraftChunk {
    pub source: String,
    pub path: String,
    pub language: String,
    pub start_line: u32,
    pub content: String,
}

/// One extracted sentence and the lines it spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub text: String,
    pub source: String,
    pub path: String,
    pub start: u32,
    pub end: u32,
    /// [`span_hash`] of the lines, from the chunk's text.
    pub hash: String,
}

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "of", "on", "or", "that", "the", "this", "to", "what", "when", "where", "which", "why",
    "with", "you",
];

fn words(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 3)
        .map(|w| {
            let w = w.to_lowercase();
            w.strip_suffix('s')
                .filter(|x| x.len() >= 3)
                .map(str::to_string)
                .unwrap_or(w)
        })
        .filter(|w| !STOP.contains(&w.as_str()))
        .collect()
}

/// Strips inline reStructuredText / Markdown markup that reads badly out
/// of context: `:role:\`x\`` becomes `` `x` ``, ``` ``x`` ``` becomes `` `x` ``.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(":`") {
        // A role is `:name:` right before the backtick.
        let before = &rest[..i];
        match before.rfind(':') {
            Some(j)
                if before[j + 1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-') =>
            {
                out.push_str(&before[..j]);
                out.push('`');
                rest = &rest[i + 2..];
            }
            _ => {
                out.push_str(&rest[..i + 2]);
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    let out = out.replace("``", "`").replace("`~", "`");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_prose_language(lang: &str) -> bool {
    matches!(lang, "markdown" | "rst" | "text" | "")
}

/// Lines of a chunk that are prose, with their offsets in the chunk:
/// headings, code blocks, directives, tables and comments-markers aside.
fn prose_lines(c: &DraftChunk) -> Vec<(usize, String)> {
    let lines: Vec<&str> = c.content.lines().collect();
    let mut out = Vec::new();
    if !is_prose_language(&c.language) {
        // Code: its doc comments and docstrings are the prose.
        let mut in_doc = false;
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim();
            let quote = t.starts_with("\"\"\"") || t.starts_with("'''");
            if quote {
                let inner = t.trim_start_matches(['"', '\'']).trim_end_matches(['"', '\'']);
                if !inner.trim().is_empty() {
                    out.push((i, inner.trim().to_string()));
                }
                let closes_same_line = t.len() > 3 && (t.ends_with("\"\"\"") || t.ends_with("'''"));
                if !closes_same_line {
                    in_doc = !in_doc;
                }
                continue;
            }
            if in_doc {
                out.push((i, t.to_string()));
                continue;
            }
            for marker in ["///", "//!", "//", "#", "*"] {
                if let Some(rest) = t.strip_prefix(marker) {
                    let rest = rest.trim_start_matches(['/', '!', '#', '*']).trim();
                    if !rest.is_empty() && !rest.starts_with('!') {
                        out.push((i, rest.to_string()));
                    }
                    break;
                }
            }
        }
        return out;
    }
    let mut fence = false;
    let mut literal_indent: Option<usize> = None;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        let indent = l.len() - l.trim_start().len();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        if let Some(base) = literal_indent {
            if t.is_empty() || indent > base {
                continue;
            }
            literal_indent = None;
        }
        let underline = !t.is_empty() && t.chars().all(|c| "=-~^*#+`'\"".contains(c));
        let next_underline = lines.get(i + 1).is_some_and(|n| {
            let n = n.trim();
            n.len() >= 3 && n.chars().all(|c| "=-~^*#+`'\"".contains(c))
        });
        if t.is_empty()
            || underline
            || next_underline
            || t.starts_with('#')
            || t.starts_with(".. ")
            || t.starts_with('|')
            || t.starts_with('>')
            || t.starts_with("+---")
        {
            if t.starts_with(".. ") {
                literal_indent = Some(indent);
            }
            out.push((i, String::new()));
            continue;
        }
        let text = t.trim_start_matches(['*', '-']).trim_start();
        let text = if text.ends_with("::") {
            literal_indent = Some(indent);
            text.trim_end_matches(':').to_string() + ":"
        } else {
            text.to_string()
        };
        out.push((i, text));
    }
    out
}

/// Splits a chunk's prose into sentences with the chunk-relative line
/// range each covers.
fn sentences(c: &DraftChunk) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut first: Option<usize> = None;
    let mut last = 0;
    let flush =
        |cur: &mut String, first: &mut Option<usize>, last: usize, out: &mut Vec<(String, usize, usize)>| {
            if let Some(f) = first.take() {
                let s = clean(cur);
                if !s.is_empty() {
                    out.push((s, f, last));
                }
            }
            cur.clear();
        };
    for (i, line) in prose_lines(c) {
        if line.is_empty() {
            flush(&mut cur, &mut first, last, &mut out);
            continue;
        }
        let mut rest = line.as_str();
        loop {
            if first.is_none() {
                first = Some(i);
            }
            last = i;
            // A sentence ends at . ? ! followed by a space and a capital,
            // backtick or digit, or at the end of the line.
            let bytes = rest.as_bytes();
            let mut cut = None;
            for k in 0..bytes.len() {
                if matches!(bytes[k], b'.' | b'?' | b'!') {
                    let next = bytes.get(k + 1);
                    let after = bytes.get(k + 2);
                    let boundary = match next {
                        None => true,
                        Some(b' ') => {
                            after.is_some_and(|a| a.is_ascii_uppercase() || *a == b'`' || a.is_ascii_digit())
                        }
                        _ => false,
                    };
                    // Not after a common abbreviation.
                    let word_start = rest[..k].rfind(' ').map_or(0, |p| p + 1);
                    let word = &rest[word_start..k];
                    if boundary && !matches!(word, "e.g" | "i.e" | "etc" | "vs" | "Mr" | "Dr") {
                        cut = Some(k + 1);
                        break;
                    }
                }
            }
            match cut {
                Some(k) => {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&rest[..k]);
                    flush(&mut cur, &mut first, last, &mut out);
                    rest = rest[k..].trim_start();
                    if rest.is_empty() {
                        break;
                    }
                }
                None => {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(rest);
                    break;
                }
            }
        }
    }
    flush(&mut cur, &mut first, last, &mut out);
    out
}

/// Picks up to `max` sentences about `topic` from `chunks` (best first),
/// returned in reading order: by chunk rank, then line.
pub fn extract(topic: &str, chunks: &[DraftChunk], max: usize) -> Vec<Sentence> {
    let want = words(topic);
    let mut scored: Vec<(f32, usize, Sentence)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (rank, c) in chunks.iter().enumerate() {
        for (text, a, b) in sentences(c) {
            let len = text.chars().count();
            if !(25..=500).contains(&len) || !text.chars().any(char::is_alphabetic) {
                continue;
            }
            // A sentence ends like one; fragments of lists and tables do not.
            if !text.ends_with(['.', '?', '!', ':']) {
                continue;
            }
            let key = text.to_lowercase();
            if !seen.insert(key) {
                continue;
            }
            let w = words(&text);
            let hits = want.intersection(&w).count();
            if hits == 0 {
                continue;
            }
            let coverage = hits as f32 / want.len().max(1) as f32;
            let score = coverage + 0.5 / (1.0 + rank as f32);
            let start = c.start_line + a as u32;
            let end = c.start_line + b as u32;
            let Some(hash) = span_hash(&c.content, a as u32 + 1, b as u32 + 1) else {
                continue;
            };
            scored.push((
                score,
                rank,
                Sentence {
                    text,
                    source: c.source.clone(),
                    path: c.path.clone(),
                    start,
                    end,
                    hash,
                },
            ));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(max);
    scored.sort_by_key(|a| (a.1, a.2.start));
    scored.into_iter().map(|(_, _, s)| s).collect()
}

/// A slug for a package id from a topic.
pub fn slug(topic: &str) -> String {
    let mut out = String::new();
    for w in topic
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&w.to_ascii_lowercase());
        if out.len() > 60 {
            break;
        }
    }
    if out.is_empty() { "topic".into() } else { out }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The draft package file: `draft = true`, the topic as title and first
/// question, one citation per distinct span, every sentence marked.
pub fn render(id: &str, topic: &str, owner: &str, sentences: &[Sentence]) -> String {
    let mut cites: Vec<(String, &str)> = Vec::new();
    let mut body = String::new();
    let mut last_file: Option<(&str, &str)> = None;
    for s in sentences {
        let r = format!("{}:{}#L{}-L{}", s.source, s.path, s.start, s.end);
        let n = match cites.iter().position(|(x, _)| *x == r) {
            Some(i) => i + 1,
            None => {
                cites.push((r, &s.hash));
                cites.len()
            }
        };
        let file = (s.source.as_str(), s.path.as_str());
        if last_file.is_some_and(|f| f != file) {
            body.push_str("\n\n");
        } else if last_file.is_some() {
            body.push(' ');
        }
        last_file = Some(file);
        body.push_str(&format!("{} [{n}]", s.text));
    }
    let mut out = String::from("+++\n");
    out.push_str(&format!("id = {}\n", toml_str(id)));
    out.push_str(&format!("title = {}\n", toml_str(topic)));
    out.push_str(&format!("questions = [{}]\n", toml_str(topic)));
    out.push_str(&format!("owner = {}\n", toml_str(owner)));
    out.push_str("# An extractive draft: edit it, then `ctxplane packages rehash` to review it.\n");
    out.push_str("draft = true\n");
    for (r, h) in &cites {
        out.push_str(&format!(
            "\n[[citations]]\nref = {}\nblake3 = \"{h}\"\n",
            toml_str(r)
        ));
    }
    out.push_str("+++\n");
    if body.is_empty() {
        body.push_str("(nothing found to extract)");
    }
    out.push_str(&body);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::parse;

    fn rst() -> DraftChunk {
        DraftChunk {
            source: "django".into(),
            path: "docs/topics/cache.txt".into(),
            language: "rst".into(),
            start_line: 100,
            content: "Memcached\n---------\n\nMemcached is an entirely memory-based cache server. It runs\nas a daemon and is allotted a specified amount of RAM.\n\n.. code-block:: python\n\n    CACHES = {}\n\nAfter installing Memcached itself, you'll need to install a binding. See :setting:`CACHES` for the cache options.\n".into(),
        }
    }

    #[test]
    fn sentences_keep_their_lines() {
        let s = sentences(&rst());
        assert_eq!(s[0].0, "Memcached is an entirely memory-based cache server.");
        assert_eq!((s[0].1, s[0].2), (3, 3));
        assert_eq!(
            s[1].0,
            "It runs as a daemon and is allotted a specified amount of RAM."
        );
        assert_eq!((s[1].1, s[1].2), (3, 4));
        assert!(s.iter().all(|x| !x.0.contains("CACHES = {}")), "{s:?}");
        assert!(
            s.iter().any(|x| x.0 == "See `CACHES` for the cache options."),
            "{s:?}"
        );
    }

    #[test]
    fn drafts_parse_and_cite_every_sentence() {
        let got = extract("memcached cache server", &[rst()], 5);
        assert!(!got.is_empty());
        for s in &got {
            assert!(s.start >= 100);
        }
        let text = render("memcached", "memcached cache server", "platform", &got);
        let p = parse(&text).unwrap();
        assert!(p.draft);
        // Sentences on the same lines share a citation; every sentence has a marker.
        assert!(!p.citations.is_empty() && p.citations.len() <= got.len());
        let marked: usize = p.body.lines().map(|l| crate::topic::markers(l).len()).sum();
        assert_eq!(marked, got.len());
        // The hashes recorded match the file's lines.
        let mut file = "\n".repeat(99);
        file.push_str(&rst().content);
        for c in &p.citations {
            assert_eq!(span_hash(&file, c.start, c.end), c.hash);
        }
    }

    #[test]
    fn code_docstrings_are_prose() {
        let c = DraftChunk {
            source: "s".into(),
            path: "a.py".into(),
            language: "python".into(),
            start_line: 1,
            content: "def check_password(password, encoded):\n    \"\"\"\n    Return a boolean of whether the raw password matches the encoded digest.\n    \"\"\"\n    return True\n".into(),
        };
        let got = extract("check password digest", &[c], 3);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start, got[0].end), (3, 3));
    }
}
