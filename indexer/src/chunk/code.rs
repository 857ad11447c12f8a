//! Code chunking with tree-sitter: a language's query (in
//! `indexer/queries/<language>.scm`) marks definitions as `@def.<kind>`
//! with their `@name` (and, for Rust impls, `@trait`). Definitions become
//! chunks together with the comments, attributes and decorators directly
//! above them; the code between definitions becomes `code` chunks; a
//! definition too large for one chunk is split into its nested definitions
//! (methods of a class or impl) or, failing that, into windows.

use std::sync::OnceLock;

use streaming_iterator::StreamingIterator;
use tree_sitter::{Language, Parser, Query, QueryCursor};
use tree_sitter_language::LanguageFn;

use super::{FIT_CHARS, Piece, fit, size, windows};

pub(crate) struct Grammar {
    language: Language,
    query: Query,
    /// Comment/attribute line prefixes that attach to the next definition.
    leads: &'static [&'static str],
}

const C_LEADS: &[&str] = &["//", "/*", "*"];

/// The grammar for a language name from [`super::language_of`].
pub(crate) fn grammar(language: &str) -> Option<&'static Grammar> {
    load(language)?.as_ref().ok()
}

/// Why a language's grammar or query failed to load, if it did.
pub(crate) fn load_error(language: &str) -> Option<String> {
    load(language)?.as_ref().err().cloned()
}

fn load(language: &str) -> Option<&'static Result<Grammar, String>> {
    static CELLS: [OnceLock<Result<Grammar, String>>; 10] = [const { OnceLock::new() }; 10];
    let (slot, lang, query, leads): (usize, LanguageFn, &str, &'static [&'static str]) = match language {
        "rust" => (
            0,
            tree_sitter_rust::LANGUAGE,
            include_str!("../../queries/rust.scm"),
            &["//", "/*", "*", "#["],
        ),
        "python" => (
            1,
            tree_sitter_python::LANGUAGE,
            include_str!("../../queries/python.scm"),
            &["#", "@"],
        ),
        "javascript" => (
            2,
            tree_sitter_javascript::LANGUAGE,
            include_str!("../../queries/javascript.scm"),
            &["//", "/*", "*", "@"],
        ),
        "typescript" => (
            3,
            tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
            include_str!("../../queries/typescript.scm"),
            &["//", "/*", "*", "@"],
        ),
        "tsx" => (
            4,
            tree_sitter_typescript::LANGUAGE_TSX,
            include_str!("../../queries/typescript.scm"),
            &["//", "/*", "*", "@"],
        ),
        "go" => (
            5,
            tree_sitter_go::LANGUAGE,
            include_str!("../../queries/go.scm"),
            C_LEADS,
        ),
        "java" => (
            6,
            tree_sitter_java::LANGUAGE,
            include_str!("../../queries/java.scm"),
            &["//", "/*", "*", "@"],
        ),
        "c" => (
            7,
            tree_sitter_c::LANGUAGE,
            include_str!("../../queries/c.scm"),
            C_LEADS,
        ),
        "cpp" => (
            8,
            tree_sitter_cpp::LANGUAGE,
            include_str!("../../queries/cpp.scm"),
            &["//", "/*", "*", "template"],
        ),
        "bash" => (
            9,
            tree_sitter_bash::LANGUAGE,
            include_str!("../../queries/bash.scm"),
            &["# "],
        ),
        _ => return None,
    };
    Some(CELLS[slot].get_or_init(|| {
        let language = Language::new(lang);
        let query = Query::new(&language, query).map_err(|e| format!("{language:?} query: {e}"))?;
        Ok(Grammar {
            language,
            query,
            leads,
        })
    }))
}

#[derive(Debug)]
struct Def {
    start_byte: usize,
    end_byte: usize,
    /// 0-based first line and exclusive end line.
    start: usize,
    end: usize,
    kind: String,
    name: String,
    /// The header: from the start to the body (or the first line).
    signature: String,
    /// A docstring that is the body's first statement (Python).
    docstring: String,
    children: Vec<usize>,
}

/// Longest header kept for the signature field, in bytes.
const SIGNATURE_BYTES: usize = 300;
/// Longest doc text kept for the doc field, in bytes.
const DOC_BYTES: usize = 2000;

/// The header of a definition node and its docstring, if the body opens
/// with one.
fn header_and_docstring(node: tree_sitter::Node<'_>, text: &str) -> (String, String) {
    let body = node.child_by_field_name("body");
    let start = node.start_byte();
    let end = match body {
        Some(b) if b.start_byte() > start => b.start_byte(),
        _ => text
            .get(start..node.end_byte())
            .and_then(|t| t.find('\n'))
            .map_or(node.end_byte(), |n| start + n),
    };
    let header = text.get(start..end).unwrap_or("");
    let header = header.trim_end().trim_end_matches(['{', ':']).trim_end();
    let docstring = body
        .and_then(|b| b.named_child(0))
        .filter(|first| first.kind() == "expression_statement")
        .and_then(|first| first.named_child(0))
        // Python's node kinds; a JavaScript `"use strict"` is an
        // `expression_statement` holding a `string` too, so the language
        // is checked by the body's kind (`block` in Python).
        .filter(|inner| inner.kind() == "string" && body.is_some_and(|b| b.kind() == "block"))
        .and_then(|inner| inner.utf8_text(text.as_bytes()).ok())
        .map(|d| {
            let d = d.trim_start_matches(['r', 'R', 'u', 'U', 'b', 'B', 'f', 'F']);
            squash_to(d.trim_matches(['"', '\'']), DOC_BYTES)
        })
        .unwrap_or_default();
    (squash_to(header, SIGNATURE_BYTES), docstring)
}

/// Pieces for a file in a language with a grammar, or `None` (no grammar,
/// or the parser gave up).
pub(crate) fn pieces(text: &str, lines: &[&str], language: &str) -> Option<Vec<Piece>> {
    let g = grammar(language)?;
    let mut parser = Parser::new();
    parser.set_language(&g.language).ok()?;
    let tree = parser.parse(text, None)?;
    let defs = definitions(g, &tree, text);
    let roots: Vec<usize> = {
        let mut is_child = vec![false; defs.len()];
        for d in &defs {
            for &c in &d.children {
                is_child[c] = true;
            }
        }
        (0..defs.len()).filter(|&i| !is_child[i]).collect()
    };
    let mut out = Vec::new();
    let ctx = Ctx {
        lines,
        defs: &defs,
        g,
    };
    ctx.emit(&roots, 0, lines.len(), None, &mut out);
    Some(out)
}

fn definitions(g: &Grammar, tree: &tree_sitter::Tree, text: &str) -> Vec<Def> {
    let names = g.query.capture_names();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(&g.query, tree.root_node(), text.as_bytes());
    let mut found: Vec<(usize, Def)> = Vec::new();
    while let Some(m) = matches.next() {
        let mut def = None;
        let mut name = String::new();
        let mut trait_name = String::new();
        for cap in m.captures() {
            let cname = names[cap.index as usize];
            let node_text = cap.node.utf8_text(text.as_bytes()).unwrap_or("");
            if let Some(kind) = cname.strip_prefix("def.") {
                def = Some((cap.node, kind));
            } else if cname == "name" {
                name = squash(node_text);
            } else if cname == "trait" {
                trait_name = squash(node_text);
            }
        }
        let Some((node, kind)) = def else { continue };
        if !trait_name.is_empty() {
            name = format!("{trait_name} for {name}");
        }
        let end_pos = node.end_position();
        let (signature, docstring) = header_and_docstring(node, text);
        found.push((
            m.pattern_index,
            Def {
                start_byte: node.start_byte(),
                end_byte: node.end_byte(),
                start: node.start_position().row,
                end: end_pos.row + usize::from(end_pos.column > 0),
                kind: kind.to_string(),
                name,
                signature,
                docstring,
                children: Vec::new(),
            },
        ));
    }
    // Outer definitions first; one definition per node (first pattern wins).
    found.sort_by(|(pa, a), (pb, b)| {
        (a.start_byte, std::cmp::Reverse(a.end_byte), pa).cmp(&(
            b.start_byte,
            std::cmp::Reverse(b.end_byte),
            pb,
        ))
    });
    found.dedup_by(|(_, b), (_, a)| a.start_byte == b.start_byte && a.end_byte == b.end_byte);
    let mut defs: Vec<Def> = found.into_iter().map(|(_, d)| d).collect();
    let mut stack: Vec<usize> = Vec::new();
    for i in 0..defs.len() {
        while let Some(&top) = stack.last() {
            if defs[top].end_byte > defs[i].start_byte && defs[top].end_byte >= defs[i].end_byte {
                break;
            }
            stack.pop();
        }
        if let Some(&parent) = stack.last() {
            defs[parent].children.push(i);
        }
        stack.push(i);
    }
    defs
}

/// Whitespace collapsed, at most 120 bytes.
fn squash(s: &str) -> String {
    squash_to(s, 120)
}

/// Whitespace collapsed, at most `max` bytes (cut at a character boundary).
fn squash_to(s: &str, max: usize) -> String {
    let mut out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

struct Ctx<'a> {
    lines: &'a [&'a str],
    defs: &'a [Def],
    g: &'a Grammar,
}

impl Ctx<'_> {
    /// Emits the definitions `children` within lines `lo..hi`, and the code
    /// between them (named after the enclosing definition, if any).
    fn emit(&self, children: &[usize], lo: usize, hi: usize, parent: Option<&Def>, out: &mut Vec<Piece>) {
        // Code between the nested definitions of a split one (its header,
        // fields, docstring) carries that definition's name, header and docs.
        let gap = match parent {
            Some(p) => {
                let (signature, doc) = self.evidence(p, lo, false);
                Piece {
                    symbol: Some(p.name.clone()),
                    kind: p.kind.clone(),
                    signature,
                    doc,
                    ..Piece::default()
                }
            }
            None => Piece {
                kind: "code".into(),
                ..Piece::default()
            },
        };
        let gaps =
            |from: usize, to: usize, out: &mut Vec<Piece>| out.extend(windows(self.lines, from, to, &gap));
        let mut cursor = lo;
        for &c in children {
            let d = &self.defs[c];
            // A definition sharing a line with the previous one stays with it.
            if d.start < cursor || d.start >= hi {
                continue;
            }
            let start = self.lead_start(d.start, cursor);
            gaps(cursor, start, out);
            let end = d.end.min(hi);
            let kind = match (d.kind.as_str(), parent.map(|p| p.kind.as_str())) {
                ("function", Some("impl" | "trait" | "class" | "struct" | "interface")) => "method",
                (k, _) => k,
            };
            if size(self.lines, start, end) <= FIT_CHARS || d.children.is_empty() {
                let (signature, doc) = self.evidence(d, start, true);
                out.extend(fit(
                    self.lines,
                    Piece {
                        start,
                        end,
                        symbol: (!d.name.is_empty()).then(|| d.name.clone()),
                        kind: kind.to_string(),
                        signature,
                        doc,
                    },
                ));
            } else {
                self.emit(&d.children, start, end, Some(d), out);
            }
            cursor = end;
        }
        gaps(cursor, hi, out);
    }

    /// The headers and docs of `d` (whose chunk starts at line `lead`) and,
    /// with `nested`, of the definitions inside it (a small class's
    /// methods), one per line.
    fn evidence(&self, d: &Def, lead: usize, nested: bool) -> (Option<String>, Option<String>) {
        let mut signature = None;
        let mut doc = None;
        let mut todo = vec![(d, lead)];
        while let Some((d, lead)) = todo.pop() {
            super::accumulate(
                &mut signature,
                Some(d.signature.as_str()).filter(|s| !s.is_empty()),
            );
            super::accumulate(&mut doc, self.doc(lead, d).as_deref());
            if nested {
                // In reverse, so that they come out in file order.
                for &c in d.children.iter().rev() {
                    let child = &self.defs[c];
                    if child.start > d.start {
                        todo.push((child, self.lead_start(child.start, d.start + 1)));
                    }
                }
            }
        }
        (signature, doc)
    }

    /// The doc of definition `d` whose chunk starts at `lead`: the
    /// comments among the lines above it (not attributes, decorators or
    /// `template` lines) and its docstring.
    fn doc(&self, lead: usize, d: &Def) -> Option<String> {
        let mut parts: Vec<&str> = self.lines[lead..d.start]
            .iter()
            .map(|l| l.trim())
            .filter(|l| {
                !(l.starts_with("#[")
                    || l.starts_with("#!")
                    || l.starts_with('@')
                    || l.starts_with("template"))
            })
            .collect();
        if !d.docstring.is_empty() {
            parts.push(&d.docstring);
        }
        let doc = squash_to(&parts.join(" "), DOC_BYTES);
        (!doc.is_empty()).then_some(doc)
    }

    /// The first line of the comments/attributes directly above `start`
    /// (not above `floor`).
    fn lead_start(&self, start: usize, floor: usize) -> usize {
        let mut s = start;
        while s > floor {
            let prev = self.lines[s - 1].trim_start();
            if prev.is_empty() || !self.g.leads.iter().any(|p| prev.starts_with(p)) {
                break;
            }
            s -= 1;
        }
        s
    }
}
