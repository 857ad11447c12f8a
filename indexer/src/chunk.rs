//! Splitting a redacted file into chunks that carry their line span.
//!
//! Markdown is split by heading into sections (the heading is the chunk's
//! symbol); everything else by line windows that prefer to break at blank
//! lines. Chunks aim at about `TARGET_CHARS` characters (~256 model tokens);
//! a section larger than that is split into windows.

use serde::{Deserialize, Serialize};

/// Roughly 256 model tokens of code or prose.
pub const TARGET_CHARS: usize = 1_000;
/// Never emit a chunk larger than this.
pub const MAX_CHARS: usize = 2_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// 1-based inclusive line span.
    pub start_line: u32,
    pub end_line: u32,
    /// Heading, function or other name the chunk is about, if known.
    pub symbol: Option<String>,
    /// What the chunk is: `section`, `window`, ...
    pub kind: String,
    pub text: String,
}

/// The language of a path, by extension or name.
pub fn language_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("rs") => "rust",
        Some("py" | "pyi") => "python",
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
        Some("toml") => "toml",
        Some("yaml" | "yml") => "yaml",
        Some("json") => "json",
        _ => match name {
            "Dockerfile" => "dockerfile",
            "Makefile" => "make",
            _ => "text",
        },
    }
}

pub fn chunk(text: &str, language: &str) -> Vec<Chunk> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match language {
        "markdown" => sections(&lines, markdown_heading),
        _ => windows(&lines, 0, None, "window"),
    }
}

fn markdown_heading(line: &str) -> Option<String> {
    let t = line.trim_end();
    let hashes = t.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
        Some(t[hashes..].trim().to_string())
    } else {
        None
    }
}

/// Splits at heading lines; each section is windowed if too big, and small
/// neighbouring sections are merged.
fn sections(lines: &[&str], heading: impl Fn(&str) -> Option<String>) -> Vec<Chunk> {
    let mut bounds: Vec<(usize, Option<String>)> = Vec::new();
    let mut in_fence = false;
    for (i, l) in lines.iter().enumerate() {
        if l.trim_start().starts_with("```") || l.trim_start().starts_with("~~~") {
            in_fence = !in_fence;
        }
        if !in_fence && let Some(h) = heading(l) {
            bounds.push((i, Some(h)));
        }
    }
    if bounds.first().is_none_or(|(i, _)| *i != 0) {
        bounds.insert(0, (0, None));
    }
    let mut out: Vec<Chunk> = Vec::new();
    for (k, (start, symbol)) in bounds.iter().enumerate() {
        let end = bounds.get(k + 1).map_or(lines.len(), |(e, _)| *e);
        let section = &lines[*start..end];
        let size: usize = section.iter().map(|l| l.len()).sum();
        if section.iter().all(|l| l.trim().is_empty()) {
            continue;
        }
        if size > MAX_CHARS {
            out.extend(windows(section, *start, symbol.clone(), "section"));
            continue;
        }
        let chunk = Chunk {
            start_line: *start as u32 + 1,
            end_line: end as u32,
            symbol: symbol.clone(),
            kind: "section".into(),
            text: section.concat(),
        };
        match out.last_mut() {
            // Merge a tiny section into its predecessor when both stay small.
            Some(prev)
                if prev.end_line + 1 == chunk.start_line
                    && prev.text.len() + chunk.text.len() < TARGET_CHARS / 2 =>
            {
                prev.end_line = chunk.end_line;
                prev.text.push_str(&chunk.text);
            }
            _ => out.push(chunk),
        }
    }
    out
}

/// Line windows of about `TARGET_CHARS`, breaking at a blank line when one
/// is near, never splitting a line (a single huge line is cut at `MAX_CHARS`).
fn windows(lines: &[&str], first_line: usize, symbol: Option<String>, kind: &str) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut size = 0;
        let mut j = i;
        let mut last_blank = None;
        while j < lines.len() && (size == 0 || size + lines[j].len() <= TARGET_CHARS) {
            size += lines[j].len();
            if lines[j].trim().is_empty() && j > i {
                last_blank = Some(j);
            }
            j += 1;
        }
        // Prefer ending after a blank line in the second half of the window.
        if j < lines.len()
            && let Some(b) = last_blank
            && b > i + (j - i) / 2
        {
            j = b + 1;
        }
        let mut text: String = lines[i..j].concat();
        if text.len() > MAX_CHARS {
            let mut cut = MAX_CHARS;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        if !text.trim().is_empty() {
            out.push(Chunk {
                start_line: (first_line + i) as u32 + 1,
                end_line: (first_line + j) as u32,
                symbol: symbol.clone(),
                kind: kind.to_string(),
                text,
            });
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_splits_by_heading_and_keeps_spans() {
        let text = format!(
            "# Title\nintro\n\n## Retries\n{}\n## Fences\n```\n# not a heading\n```\n",
            "retry text\n".repeat(60)
        );
        let chunks = chunk(&text, "markdown");
        assert_eq!(chunks[0].symbol.as_deref(), Some("Title"));
        let retries = chunks
            .iter()
            .find(|c| c.symbol.as_deref() == Some("Retries"))
            .unwrap();
        assert_eq!(retries.start_line, 4);
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
                    format!("line {i} of code\n")
                }
            })
            .collect();
        let chunks = chunk(&text, "rust");
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
    fn languages_by_extension() {
        assert_eq!(language_of("src/main.rs"), "rust");
        assert_eq!(language_of("docs/ADR-1.md"), "markdown");
        assert_eq!(language_of("Dockerfile"), "dockerfile");
        assert_eq!(language_of("notes"), "text");
    }
}
