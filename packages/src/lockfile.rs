//! Lockfiles and pinning manifests, parsed into the versions they pin, each
//! with the file and line it comes from: Cargo.lock, package-lock.json,
//! pnpm-lock.yaml, yarn.lock, go.mod, requirements*.txt, poetry.lock,
//! uv.lock and Gemfile.lock. Parsers are line-based where the format allows
//! (so every pin has a line), tolerant of versions they do not know, and
//! never fail a whole file for one odd entry.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Cargo,
    Npm,
    Go,
    Pypi,
    Rubygems,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Cargo => "cargo",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Rubygems => "rubygems",
        }
    }

    /// How names compare within the ecosystem.
    pub fn normalize(self, name: &str) -> String {
        match self {
            // PEP 503: case-insensitive, runs of -_. are one separator.
            Ecosystem::Pypi => {
                let mut out = String::with_capacity(name.len());
                let mut sep = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        sep = true;
                    } else {
                        if sep && !out.is_empty() {
                            out.push('-');
                        }
                        sep = false;
                        out.push(c.to_ascii_lowercase());
                    }
                }
                out
            }
            // Cargo treats - and _ alike when resolving; names are lower case.
            Ecosystem::Cargo => name.to_ascii_lowercase().replace('_', "-"),
            Ecosystem::Npm | Ecosystem::Go | Ecosystem::Rubygems => name.to_string(),
        }
    }
}

/// One pinned version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The lockfile, relative to the source root.
    pub file: String,
    /// 1-based line of the pin.
    pub line: usize,
}

/// Every version pinned in a source, by ecosystem and normalised name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DependencyMap {
    pub pins: BTreeMap<(Ecosystem, String), Vec<Pin>>,
    /// Lockfiles read.
    pub files: Vec<String>,
}

impl DependencyMap {
    pub fn add(&mut self, pins: Vec<Pin>, file: &str) {
        self.files.push(file.to_string());
        for p in pins {
            let key = (p.ecosystem, p.ecosystem.normalize(&p.name));
            let list = self.pins.entry(key).or_default();
            if !list.iter().any(|q| q.version == p.version) {
                list.push(p);
            }
        }
    }

    /// The pins of `name` in any ecosystem.
    pub fn lookup(&self, name: &str) -> Vec<&Pin> {
        self.pins
            .iter()
            .filter(|((eco, n), _)| *n == eco.normalize(name))
            .flat_map(|(_, pins)| pins)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

/// Whether `path` (relative, `/`-separated) is a file this module parses.
pub fn is_lockfile(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "Cargo.lock"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "pnpm-lock.yaml"
            | "yarn.lock"
            | "go.mod"
            | "poetry.lock"
            | "uv.lock"
            | "Gemfile.lock"
    ) || (name.starts_with("requirements") && name.ends_with(".txt"))
}

/// The pins in one lockfile (`path` decides the format).
pub fn parse(path: &str, text: &str) -> Vec<Pin> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let pin = |ecosystem, name: &str, version: &str, line| Pin {
        ecosystem,
        name: name.to_string(),
        version: version.to_string(),
        file: path.to_string(),
        line,
    };
    let mut out = Vec::new();
    match name {
        "Cargo.lock" => toml_packages(text, &mut |n, v, l| out.push(pin(Ecosystem::Cargo, n, v, l))),
        "poetry.lock" | "uv.lock" => {
            toml_packages(text, &mut |n, v, l| out.push(pin(Ecosystem::Pypi, n, v, l)))
        }
        "package-lock.json" | "npm-shrinkwrap.json" => {
            npm_lock(text, &mut |n, v, l| out.push(pin(Ecosystem::Npm, n, v, l)))
        }
        "pnpm-lock.yaml" => pnpm_lock(text, &mut |n, v, l| out.push(pin(Ecosystem::Npm, n, v, l))),
        "yarn.lock" => yarn_lock(text, &mut |n, v, l| out.push(pin(Ecosystem::Npm, n, v, l))),
        "go.mod" => go_mod(text, &mut |n, v, l| out.push(pin(Ecosystem::Go, n, v, l))),
        "Gemfile.lock" => gemfile_lock(text, &mut |n, v, l| out.push(pin(Ecosystem::Rubygems, n, v, l))),
        _ if is_lockfile(path) => requirements(text, &mut |n, v, l| out.push(pin(Ecosystem::Pypi, n, v, l))),
        _ => {}
    }
    // A pin needs a name and a version; an entry with either empty is
    // junk in the file, not a dependency (found by fuzzing).
    out.retain(|p| !p.name.trim().is_empty() && !p.version.trim().is_empty());
    out
}

type Sink<'a> = dyn FnMut(&str, &str, usize) + 'a;

fn unquote(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'')
}

/// `[[package]]` tables with `name = ".."` and `version = ".."` (Cargo,
/// Poetry, uv).
fn toml_packages(text: &str, sink: &mut Sink<'_>) {
    let mut name: Option<(String, usize)> = None;
    let mut in_package = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[[package]]";
            name = None;
            continue;
        }
        if !in_package {
            continue;
        }
        if let Some(v) = t
            .strip_prefix("name")
            .and_then(|r| r.trim_start().strip_prefix('='))
        {
            name = Some((unquote(v).to_string(), i + 1));
        } else if let Some(v) = t
            .strip_prefix("version")
            .and_then(|r| r.trim_start().strip_prefix('='))
            && let Some((n, _)) = &name
        {
            sink(n, unquote(v), i + 1);
        }
    }
}

/// package-lock.json v1-v3: `packages["node_modules/x"].version`, else the
/// nested `dependencies` of v1.
fn npm_lock(text: &str, sink: &mut Sink<'_>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    // The first line of each object key, found in one pass over the text
    // (a search per package was quadratic: minutes on a 10 MB lockfile).
    let mut first_line: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('"') else {
            continue;
        };
        if let Some(end) = rest.find('"')
            && rest[end + 1..].trim_start().starts_with(':')
        {
            first_line.entry(&rest[..end]).or_insert(i + 1);
        }
    }
    let line_of = |key: &str| first_line.get(key).copied().unwrap_or(1);
    if let Some(pkgs) = v["packages"].as_object() {
        for (key, p) in pkgs {
            let Some(name) = key
                .rsplit("node_modules/")
                .next()
                .filter(|n| !n.is_empty() && key.contains("node_modules/"))
            else {
                continue;
            };
            if let Some(ver) = p["version"].as_str() {
                sink(name, ver, line_of(key));
            }
        }
        return;
    }
    fn walk(deps: &serde_json::Value, sink: &mut Sink<'_>, line_of: &dyn Fn(&str) -> usize) {
        if let Some(m) = deps.as_object() {
            for (name, p) in m {
                if let Some(ver) = p["version"].as_str() {
                    sink(name, ver, line_of(name));
                }
                walk(&p["dependencies"], sink, line_of);
            }
        }
    }
    walk(&v["dependencies"], sink, &line_of);
}

/// Splits `name@version` where the name may be scoped (`@scope/name`).
/// The name is never empty; any input (empty, multibyte) is safe.
fn split_at_version(spec: &str) -> Option<(&str, &str)> {
    let first = spec.chars().next()?.len_utf8();
    let at = spec[first..].find('@')? + first;
    Some((&spec[..at], &spec[at + 1..]))
}

/// pnpm-lock.yaml (v5-v9): keys of the top-level `packages:` map, such as
/// `/name@1.2.3:`, `name@1.2.3(peer@2.0.0):` or `/name/1.2.3:` (v5).
fn pnpm_lock(text: &str, sink: &mut Sink<'_>) {
    let mut in_packages = false;
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        if !in_packages || !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        let key = unquote(line.trim().trim_end_matches(':'));
        let key = key.strip_prefix('/').unwrap_or(key);
        let key = key.split('(').next().unwrap_or(key);
        let (name, version) = match split_at_version(key) {
            Some(x) => x,
            // v5: /name/1.2.3 or /@scope/name/1.2.3
            None => match key.rsplit_once('/') {
                Some(x) => x,
                None => continue,
            },
        };
        let version = version.split('_').next().unwrap_or(version);
        if version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            sink(name, version, i + 1);
        }
    }
}

/// yarn.lock v1 and berry: an unindented spec line (`"a@^1", a@^1.2:`)
/// followed by an indented `version "1.2.3"` or `version: 1.2.3`.
fn yarn_lock(text: &str, sink: &mut Sink<'_>) {
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let first = line.trim_end_matches(':').split(',').next().unwrap_or("");
            let spec = unquote(first);
            current = split_at_version(spec).map(|(n, _)| n.to_string());
            continue;
        }
        let t = line.trim();
        if let Some(v) = t.strip_prefix("version")
            && let Some(name) = &current
        {
            let v = unquote(v.trim_start_matches(':'));
            if !v.is_empty() {
                sink(name, v, i + 1);
            }
            current = None;
        }
    }
}

/// go.mod `require` directives, single-line and blocks.
fn go_mod(text: &str, sink: &mut Sink<'_>) {
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.split("//").next().unwrap_or("").trim();
        if in_block {
            if t == ")" {
                in_block = false;
                continue;
            }
            let mut parts = t.split_whitespace();
            if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
                sink(m, v, i + 1);
            }
        } else if t == "require (" {
            in_block = true;
        } else if let Some(rest) = t.strip_prefix("require ") {
            let mut parts = rest.split_whitespace();
            if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
                sink(m, v, i + 1);
            }
        }
    }
}

/// requirements*.txt: exact pins only (`name==1.2.3`, `name===1.2.3`),
/// extras and environment markers ignored.
fn requirements(text: &str, sink: &mut Sink<'_>) {
    for (i, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() || t.starts_with('-') {
            continue;
        }
        let t = t.split(';').next().unwrap_or(t).trim();
        if let Some((name, version)) = t.split_once("==") {
            let name = name.split('[').next().unwrap_or(name).trim();
            let version = version
                .trim_start_matches('=')
                .split(',')
                .next()
                .unwrap_or("")
                .trim();
            if !name.is_empty() && !version.is_empty() {
                sink(name, version, i + 1);
            }
        }
    }
}

/// Gemfile.lock: `name (version)` at four spaces under a `specs:` block.
fn gemfile_lock(text: &str, sink: &mut Sink<'_>) {
    let mut in_specs = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim() == "specs:" {
            in_specs = true;
            continue;
        }
        if !line.starts_with("  ") {
            in_specs = false;
            continue;
        }
        if in_specs && line.starts_with("    ") && !line.starts_with("     ") {
            let t = line.trim();
            if let Some((name, rest)) = t.split_once(" (") {
                let version = rest.trim_end_matches(')');
                let version = version.split('-').next().unwrap_or(version);
                sink(name, version, i + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(path: &str, text: &str) -> Vec<(String, String, usize)> {
        parse(path, text)
            .into_iter()
            .map(|p| (p.name, p.version, p.line))
            .collect()
    }

    fn s(n: &str, v: &str, l: usize) -> (String, String, usize) {
        (n.into(), v.into(), l)
    }

    #[test]
    fn entries_without_a_name_or_version_are_not_pins() {
        // Found by fuzzing (fuzz/fuzz_targets/lockfile.rs): `name = ""`.
        let cargo =
            "[[package]]\nname = \"\"\nversion = \"0.2.1\"\n\n[[package]]\nname = \"ok\"\nversion = \"\"\n";
        assert!(pins("Cargo.lock", cargo).is_empty());
        assert!(pins("requirements.txt", "==1.0\n").is_empty());
        assert!(
            pins("go.mod", "require (\n\t \"\" v1\n)\n")
                .iter()
                .all(|p| !p.0.is_empty())
        );
    }

    #[test]
    fn cargo_poetry_and_uv_locks() {
        let cargo = "version = 4\n\n[[package]]\nname = \"tokio\"\nversion = \"1.41.0\"\nsource = \"registry\"\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\n[metadata]\nname = \"x\"\nversion = \"9\"\n";
        assert_eq!(
            pins("Cargo.lock", cargo),
            vec![s("tokio", "1.41.0", 5), s("serde", "1.0.200", 10)]
        );
        let uv = "[[package]]\nname = \"Django\"\nversion = \"5.1.4\"\n";
        let p = parse("svc/uv.lock", uv);
        assert_eq!(p[0].ecosystem, Ecosystem::Pypi);
        assert_eq!(p[0].file, "svc/uv.lock");
    }

    #[test]
    fn npm_pnpm_and_yarn_locks() {
        let npm = r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"},
 "node_modules/react": {"version": "18.3.1"},
 "node_modules/@types/node": {"version": "20.11.5"}}}"#;
        assert_eq!(
            pins("package-lock.json", npm),
            vec![s("@types/node", "20.11.5", 3), s("react", "18.3.1", 2)]
        );
        let v1 = r#"{"lockfileVersion": 1, "dependencies": {"left-pad": {"version": "1.3.0"}}}"#;
        assert_eq!(pins("package-lock.json", v1), vec![s("left-pad", "1.3.0", 1)]);
        let pnpm = "lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      react:\n        specifier: ^18\npackages:\n  react@18.3.1:\n    resolution: {}\n  '@babel/core@7.24.0(supports-color@5.5.0)':\n    resolution: {}\n  /lodash@4.17.21:\n    dev: true\n";
        assert_eq!(
            pins("pnpm-lock.yaml", pnpm),
            vec![
                s("react", "18.3.1", 8),
                s("@babel/core", "7.24.0", 10),
                s("lodash", "4.17.21", 12)
            ]
        );
        let yarn = "# yarn lockfile v1\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.22.13\":\n  version \"7.23.5\"\n  resolved \"x\"\n\nlodash@^4.17.15:\n  version \"4.17.21\"\n";
        assert_eq!(
            pins("yarn.lock", yarn),
            vec![s("@babel/code-frame", "7.23.5", 4), s("lodash", "4.17.21", 8)]
        );
        let berry = "\"react@npm:^18.2.0\":\n  version: 18.3.1\n";
        assert_eq!(pins("yarn.lock", berry), vec![s("react", "18.3.1", 2)]);
    }

    #[test]
    fn go_requirements_and_gemfile() {
        let go = "module example.com/svc\n\ngo 1.22\n\nrequire github.com/pkg/errors v0.9.1\nrequire (\n\tgolang.org/x/sync v0.7.0 // indirect\n\tgithub.com/stretchr/testify v1.9.0\n)\n";
        assert_eq!(
            pins("go.mod", go),
            vec![
                s("github.com/pkg/errors", "v0.9.1", 5),
                s("golang.org/x/sync", "v0.7.0", 7),
                s("github.com/stretchr/testify", "v1.9.0", 8)
            ]
        );
        let req = "# pinned\nDjango==5.1.4\nrequests[socks]==2.32.3 ; python_version >= '3.8'\nnumpy>=1.26\n-r base.txt\n";
        assert_eq!(
            pins("requirements-dev.txt", req),
            vec![s("Django", "5.1.4", 2), s("requests", "2.32.3", 3)]
        );
        let gem = "GEM\n  remote: https://rubygems.org/\n  specs:\n    rails (7.1.3)\n      actioncable (= 7.1.3)\n    nokogiri (1.16.2-x86_64-linux)\n\nPLATFORMS\n  ruby\n";
        assert_eq!(
            pins("Gemfile.lock", gem),
            vec![s("rails", "7.1.3", 4), s("nokogiri", "1.16.2", 6)]
        );
    }

    #[test]
    fn names_compare_within_their_ecosystem() {
        let mut m = DependencyMap::default();
        m.add(
            parse("requirements.txt", "Django_Rest.Framework==3.15.1\n"),
            "requirements.txt",
        );
        m.add(
            parse(
                "Cargo.lock",
                "[[package]]\nname = \"serde_json\"\nversion = \"1.0.1\"\n",
            ),
            "Cargo.lock",
        );
        assert_eq!(m.lookup("django-rest-framework")[0].version, "3.15.1");
        assert_eq!(m.lookup("serde-json")[0].version, "1.0.1");
        assert!(m.lookup("flask").is_empty());
        assert!(is_lockfile("a/b/requirements-prod.txt") && !is_lockfile("README.md"));
    }
}

#[cfg(test)]
mod hostile_input {
    use super::*;

    const NAMES: [&str; 10] = [
        "Cargo.lock",
        "package-lock.json",
        "pnpm-lock.yaml",
        "yarn.lock",
        "go.mod",
        "requirements.txt",
        "poetry.lock",
        "uv.lock",
        "Gemfile.lock",
        "npm-shrinkwrap.json",
    ];

    #[test]
    fn keys_that_once_panicked_parse_to_nothing_or_a_pin() {
        for (file, text) in [
            (
                "yarn.lock",
                "# yarn lockfile v1\n\n\"é@^1.0.0\":\n  version \"1.0.0\"\n",
            ),
            ("yarn.lock", "\"\":\n  version \"1.0.0\"\n"),
            ("yarn.lock", "é:\n  version \"1.0.0\"\n"),
            (
                "pnpm-lock.yaml",
                "lockfileVersion: '9.0'\npackages:\n  :\n    resolution: x\n",
            ),
            ("pnpm-lock.yaml", "packages:\n  /ü@1.0.0:\n    resolution: x\n"),
            ("pnpm-lock.yaml", "packages:\n  '':\n  /@:\n  @:\n  /é:\n"),
        ] {
            let pins = parse(file, text);
            assert!(pins.iter().all(|p| !p.name.is_empty()), "{file}: {pins:?}");
        }
        let pins = parse("pnpm-lock.yaml", "packages:\n  /ü@1.0.0:\n    resolution: x\n");
        assert_eq!(pins.len(), 1);
        assert_eq!((pins[0].name.as_str(), pins[0].version.as_str()), ("ü", "1.0.0"));
    }

    #[test]
    fn a_large_package_lock_parses_in_linear_time() {
        let mut text = String::from("{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n");
        let n = 20_000;
        for i in 0..n {
            text.push_str(&format!(
                "    \"node_modules/pkg-{i}\": {{\n      \"version\": \"1.0.{i}\"\n    }}{}\n",
                if i + 1 < n { "," } else { "" }
            ));
        }
        text.push_str("  }\n}\n");
        let pins = parse("package-lock.json", &text);
        assert_eq!(pins.len(), n);
        let last = pins.iter().find(|p| p.name == format!("pkg-{}", n - 1)).unwrap();
        assert_eq!(last.line, 4 + 3 * (n - 1));
    }

    #[test]
    fn no_input_makes_a_lockfile_parser_panic() {
        // Every parser on short lines built from the characters that carry
        // meaning in lockfiles, multibyte ones included.
        let alphabet = [
            '@', '"', '\'', ':', '/', ' ', '\n', 'é', 'ü', '1', '.', 'a', '=', '(', '#', '[',
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let mut s = seed;
            for _ in 0..len {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push(alphabet[(s >> 59) as usize % alphabet.len()]);
            }
            for name in NAMES {
                let _ = parse(name, &format!("packages:\n  {text}\n{text}"));
            }
        }
    }
}
