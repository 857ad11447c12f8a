//! What a file of code imports, found with tree-sitter (so an `import` in
//! a string or a comment is not one): Rust `use` and `extern crate`,
//! Python `import` and `from … import`, JavaScript/TypeScript `import` and
//! `require(…)`, Go `import`, Java `import`. Each import says which
//! package it comes from as the language names it (the crate, the
//! top-level module, the npm package, the Go import path) and which names
//! it brings into scope, so a chunk can be matched with the imports it
//! uses. Mapping a package to a pinned version is [`crate::alignment`]'s.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use streaming_iterator::StreamingIterator;
use tree_sitter::{Language, Parser, Query, QueryCursor};
use tree_sitter_language::LanguageFn;

/// One import statement (or one module of a statement naming several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// As written, trimmed (`tokio::sync::Mutex`, `requests.adapters`).
    pub written: String,
    /// The package as the language names it: a crate, a top-level Python
    /// module, an npm package, a Go import path, a Java package.
    pub package: String,
    /// A relative import (`from . import x`, `./util`, `crate::`, `super::`).
    pub local: bool,
    /// Names it brings into scope.
    pub binds: Vec<String>,
    /// 1-based line of the statement.
    pub line: u32,
}

fn query(language: &str) -> Option<&'static (Language, Query)> {
    static CELLS: [OnceLock<Option<(Language, Query)>>; 7] = [const { OnceLock::new() }; 7];
    let (slot, lang, q): (usize, LanguageFn, &str) = match language {
        "rust" => (
            0,
            tree_sitter_rust::LANGUAGE,
            "(use_declaration) @import (extern_crate_declaration) @import",
        ),
        "python" => (
            1,
            tree_sitter_python::LANGUAGE,
            "(import_statement) @import (import_from_statement) @import",
        ),
        "javascript" => (
            2,
            tree_sitter_javascript::LANGUAGE,
            r#"(import_statement) @import
               ((call_expression function: (identifier) @f arguments: (arguments (string) @import)) (#eq? @f "require"))"#,
        ),
        "typescript" | "tsx" => (
            if language == "tsx" { 6 } else { 3 },
            if language == "tsx" {
                tree_sitter_typescript::LANGUAGE_TSX
            } else {
                tree_sitter_typescript::LANGUAGE_TYPESCRIPT
            },
            r#"(import_statement) @import
               ((call_expression function: (identifier) @f arguments: (arguments (string) @import)) (#eq? @f "require"))"#,
        ),
        "go" => (4, tree_sitter_go::LANGUAGE, "(import_spec) @import"),
        "java" => (5, tree_sitter_java::LANGUAGE, "(import_declaration) @import"),
        _ => return None,
    };
    CELLS[slot]
        .get_or_init(|| {
            let l = Language::new(lang);
            Query::new(&l, q).ok().map(|q| (l, q))
        })
        .as_ref()
}

/// Whether imports are read for `language`.
pub fn reads_imports(language: &str) -> bool {
    query(language).is_some()
}

/// The imports of a file of `language` (empty when it has none or the
/// language is not one of those above).
pub fn imports(text: &str, language: &str) -> Vec<Import> {
    let Some((lang, q)) = query(language) else {
        return Vec::new();
    };
    let mut parser = Parser::new();
    if parser.set_language(lang).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(text, None) else {
        return Vec::new();
    };
    let Some(import_idx) = q.capture_index_for_name("import") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(q, tree.root_node(), text.as_bytes());
    while let Some(m) = matches.next() {
        for c in m.captures().iter().filter(|c| c.index == import_idx) {
            let node = c.node;
            let Some(stmt) = text.get(node.byte_range()) else {
                continue;
            };
            let line = node.start_position().row as u32 + 1;
            out.extend(parse_statement(language, stmt, line));
        }
    }
    out
}

fn idents(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
}

fn parse_statement(language: &str, stmt: &str, line: u32) -> Vec<Import> {
    let one = |written: &str, package: &str, local: bool, binds: Vec<String>| Import {
        written: written.split_whitespace().collect::<Vec<_>>().join(" "),
        package: package.to_string(),
        local,
        binds,
        line,
    };
    match language {
        "rust" => {
            let s = stmt.trim().trim_end_matches(';').trim();
            if let Some(rest) = s
                .strip_prefix("extern crate")
                .or_else(|| s.split_once(" extern crate").map(|(_, r)| r))
            {
                let mut w = rest.split_whitespace();
                let name = w.next().unwrap_or("");
                let alias = match (w.next(), w.next()) {
                    (Some("as"), Some(a)) => a,
                    _ => name,
                };
                return vec![one(s, name, false, vec![alias.to_string()])];
            }
            let path = s
                .split_once("use ")
                .map_or(s, |(_, p)| p)
                .trim()
                .trim_start_matches("::");
            let root = path.split("::").next().unwrap_or("").trim();
            let local = matches!(root, "crate" | "self" | "super" | "Self") || root.starts_with('{');
            let binds: Vec<String> = idents(path)
                .filter(|w| !matches!(*w, "as" | "self" | "crate" | "super"))
                .map(str::to_string)
                .collect();
            vec![one(path, root, local, binds)]
        }
        "python" => {
            let s = stmt.trim();
            if let Some(rest) = s.strip_prefix("from") {
                let (module, names) = rest.split_once(" import ").unwrap_or((rest, ""));
                let module = module.trim();
                let local = module.starts_with('.');
                let root = module.trim_start_matches('.').split('.').next().unwrap_or("");
                let binds = names
                    .trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
                    .split(',')
                    .filter_map(|n| {
                        let n = n.trim().trim_matches(|c| c == '(' || c == ')');
                        let n = n.rsplit(" as ").next().unwrap_or(n).trim();
                        (!n.is_empty() && n != "*").then(|| n.to_string())
                    })
                    .collect();
                return vec![one(s, root, local, binds)];
            }
            let rest = s.strip_prefix("import").unwrap_or(s);
            rest.split(',')
                .filter_map(|part| {
                    let part = part.trim();
                    let (module, alias) = match part.split_once(" as ") {
                        Some((m, a)) => (m.trim(), a.trim()),
                        None => (part, part.split('.').next().unwrap_or(part)),
                    };
                    let root = module.split('.').next()?;
                    (!root.is_empty()).then(|| one(module, root, false, vec![alias.to_string()]))
                })
                .collect()
        }
        "javascript" | "typescript" | "tsx" => {
            let s = stmt.trim();
            // The module is the last string literal of the statement (or the
            // captured `require` argument itself).
            let quoted: Vec<&str> = s.split(['\'', '"', '`']).collect();
            let module = if quoted.len() >= 3 {
                quoted[quoted.len() - 2]
            } else {
                return Vec::new();
            };
            let local = module.starts_with('.') || module.starts_with('/');
            let package = if let Some(scoped) = module.strip_prefix('@') {
                let mut it = scoped.splitn(3, '/');
                format!("@{}/{}", it.next().unwrap_or(""), it.next().unwrap_or(""))
            } else {
                module.split('/').next().unwrap_or(module).to_string()
            };
            let clause = s.split_once(" from ").map_or("", |(c, _)| c);
            let binds = idents(clause.strip_prefix("import").unwrap_or(clause))
                .filter(|w| !matches!(*w, "as" | "type" | "typeof"))
                .map(str::to_string)
                .collect();
            vec![one(module, &package, local, binds)]
        }
        "go" => {
            let s = stmt.trim();
            let Some(path) = s.split('"').nth(1) else {
                return Vec::new();
            };
            let alias = s.split('"').next().unwrap_or("").trim();
            let last = path.rsplit('/').next().unwrap_or(path);
            let bind = if alias.is_empty() || alias == "." || alias == "_" {
                last
            } else {
                alias
            };
            vec![one(path, path, path.starts_with('.'), vec![bind.to_string()])]
        }
        "java" => {
            let s = stmt.trim().trim_end_matches(';').trim();
            let path = s
                .trim_start_matches("import")
                .trim()
                .trim_start_matches("static ")
                .trim();
            let last = path.rsplit('.').next().unwrap_or(path);
            let package = path.rsplit_once('.').map_or(path, |(p, _)| p);
            vec![one(path, package, false, vec![last.to_string()])]
        }
        _ => Vec::new(),
    }
}

/// The imports `chunk` uses: those whose statement lies within its lines
/// (`start..=end`), or one of whose names appears in it as a word.
pub fn used_by<'a>(all: &'a [Import], chunk: &str, start: u32, end: u32) -> Vec<&'a Import> {
    let words: BTreeSet<&str> = idents(chunk).collect();
    all.iter()
        .filter(|i| (i.line >= start && i.line <= end) || i.binds.iter().any(|b| words.contains(b.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkgs(text: &str, lang: &str) -> Vec<(String, bool, Vec<String>)> {
        imports(text, lang)
            .into_iter()
            .map(|i| (i.package, i.local, i.binds))
            .collect()
    }

    #[test]
    fn reads_each_language() {
        let rust = "use tokio::sync::Mutex;\nuse serde::{Deserialize, Serialize};\nuse crate::x::Y;\nextern crate rand as r;\n// use fake::Thing;\nfn f() { let s = \"use nope::X;\"; }\n";
        assert_eq!(
            pkgs(rust, "rust"),
            vec![
                (
                    "tokio".into(),
                    false,
                    vec!["tokio".into(), "sync".into(), "Mutex".into()]
                ),
                (
                    "serde".into(),
                    false,
                    vec!["serde".into(), "Deserialize".into(), "Serialize".into()]
                ),
                ("crate".into(), true, vec!["x".into(), "Y".into()]),
                ("rand".into(), false, vec!["r".into()]),
            ]
        );
        let py = "import os, requests.adapters as ra\nfrom django.db import models, connection as conn\nfrom . import local\n# import fake\n";
        assert_eq!(
            pkgs(py, "python"),
            vec![
                ("os".into(), false, vec!["os".into()]),
                ("requests".into(), false, vec!["ra".into()]),
                ("django".into(), false, vec!["models".into(), "conn".into()]),
                ("".into(), true, vec!["local".into()]),
            ]
        );
        let js = "import React, { useState as us } from 'react';\nconst x = require(\"@scope/pkg/sub\");\nimport './style.css';\n";
        let got = pkgs(js, "javascript");
        assert_eq!(got[0].0, "react");
        assert_eq!(
            got[0].2,
            vec!["React".to_string(), "useState".into(), "us".into()]
        );
        assert_eq!(got[1].0, "@scope/pkg");
        assert!(got[2].1, "a relative import is local");
        let go = "package m\nimport (\n  \"fmt\"\n  yaml \"gopkg.in/yaml.v3\"\n)\n";
        assert_eq!(
            pkgs(go, "go"),
            vec![
                ("fmt".into(), false, vec!["fmt".into()]),
                ("gopkg.in/yaml.v3".into(), false, vec!["yaml".into()]),
            ]
        );
        let java = "import java.util.List;\nimport static org.junit.Assert.assertEquals;\n";
        assert_eq!(pkgs(java, "java")[1].0, "org.junit.Assert");
    }

    #[test]
    fn a_chunk_uses_what_it_names() {
        let all = imports("use tokio::sync::Mutex;\nuse serde::Serialize;\n", "rust");
        let used = used_by(&all, "fn f(m: Mutex<u8>) {}", 10, 12);
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].package, "tokio");
    }
}
