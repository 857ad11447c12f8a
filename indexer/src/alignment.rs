//! Version alignment from what was ingested: a source's lockfiles and docs
//! are read back from the lexical index (their redacted text, with line
//! numbers intact), so alignment sees exactly what agents see and never
//! reads a file the policy did not let in.

use packages::drift::{Drift, doc_drift};
use packages::lockfile::{DependencyMap, is_lockfile, parse};
use serde::Serialize;

use crate::error::Result;
use crate::lexical::ChunkIndex;
use crate::manifest::SourceManifest;

/// A file's indexed text, each chunk at its original lines.
pub fn indexed_text(lexical: &dyn ChunkIndex, source: &str, path: &str) -> Result<String> {
    Ok(text_of(&lexical.docs_for_file(source, path)?))
}

/// The text a file's chunks make, each at its original lines.
pub fn text_of(docs: &[crate::lexical::ChunkDoc]) -> String {
    let total = docs.iter().map(|d| d.end_line as usize).max().unwrap_or(0);
    let mut lines = vec![String::new(); total];
    for d in docs {
        for (i, l) in d.content.lines().enumerate() {
            if let Some(slot) = lines.get_mut(d.start_line as usize - 1 + i) {
                *slot = l.to_string();
            }
        }
    }
    lines.join("\n")
}

/// What the source's ingested lockfiles pin.
pub fn dependency_map(lexical: &dyn ChunkIndex, manifest: &SourceManifest) -> Result<DependencyMap> {
    let mut map = DependencyMap::default();
    for path in manifest.files.keys().filter(|p| is_lockfile(p)) {
        let text = indexed_text(lexical, &manifest.source, path)?;
        map.add(parse(path, &text), path);
    }
    Ok(map)
}

/// Whether a file is documentation whose version claims are checked.
pub fn is_doc(language: &str) -> bool {
    matches!(language, "markdown" | "rst" | "text")
}

/// A drifting claim, flattened for reports.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct DriftNote {
    pub file: String,
    pub line: usize,
    pub claim: String,
    pub dependency: String,
    pub claimed: String,
    /// `version (lockfile:line)` for each pin.
    pub pinned: Vec<String>,
}

impl From<&Drift> for DriftNote {
    fn from(d: &Drift) -> Self {
        DriftNote {
            file: d.claim.file.clone(),
            line: d.claim.line,
            claim: d.claim.text.clone(),
            dependency: d.claim.name.clone(),
            claimed: format!(
                "{}{}",
                if d.claim.op == "=" { "" } else { &d.claim.op },
                d.claim.version
            ),
            pinned: d
                .pinned
                .iter()
                .map(|p| format!("{} ({}:{})", p.version, p.file, p.line))
                .collect(),
        }
    }
}

/// Drift in every ingested doc of a source.
pub fn source_drift(lexical: &dyn ChunkIndex, manifest: &SourceManifest) -> Result<Vec<DriftNote>> {
    let deps = dependency_map(lexical, manifest)?;
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (path, entry) in &manifest.files {
        if !is_doc(&entry.language) {
            continue;
        }
        let text = indexed_text(lexical, &manifest.source, path)?;
        out.extend(doc_drift(path, &text, &deps).iter().map(DriftNote::from));
    }
    Ok(out)
}

/// Drift in one chunk of text (line numbers offset to `first_line`).
pub fn chunk_drift(path: &str, text: &str, first_line: u32, deps: &DependencyMap) -> Vec<DriftNote> {
    doc_drift(path, text, deps)
        .iter()
        .map(|d| {
            let mut n = DriftNote::from(d);
            n.line += first_line as usize - 1;
            n
        })
        .collect()
}

/// A dependency a result refers to, resolved against the source's pins:
/// an import in code, or a version claim in a document.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct VersionRef {
    /// `import` (code) or `claim` (documents).
    pub kind: String,
    /// The import as written, or the claim's words.
    pub written: String,
    /// 1-based line of the import or claim in its file.
    pub line: usize,
    /// The package the import or claim names, as its ecosystem spells it.
    pub package: String,
    /// `pinned` (the import resolves to the pins listed), `matches` or
    /// `drifts` (a claim against the pins), `standard_library`, `local`
    /// (an import within the source), or `unresolved` (no pin found; see
    /// `note`: nothing is guessed).
    pub status: String,
    /// Each pin as `version (lockfile:line)`.
    pub pinned: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Python's own modules (`sys.stdlib_module_names`, private ones left out).
const PYTHON_STDLIB: &[&str] = &[
    "abc",
    "aifc",
    "antigravity",
    "argparse",
    "array",
    "ast",
    "asynchat",
    "asyncio",
    "asyncore",
    "atexit",
    "audioop",
    "base64",
    "bdb",
    "binascii",
    "bisect",
    "builtins",
    "bz2",
    "cProfile",
    "calendar",
    "cgi",
    "cgitb",
    "chunk",
    "cmath",
    "cmd",
    "code",
    "codecs",
    "codeop",
    "collections",
    "colorsys",
    "compileall",
    "concurrent",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "copyreg",
    "crypt",
    "csv",
    "ctypes",
    "curses",
    "dataclasses",
    "datetime",
    "dbm",
    "decimal",
    "difflib",
    "dis",
    "distutils",
    "doctest",
    "email",
    "encodings",
    "ensurepip",
    "enum",
    "errno",
    "faulthandler",
    "fcntl",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "genericpath",
    "getopt",
    "getpass",
    "gettext",
    "glob",
    "graphlib",
    "grp",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http",
    "idlelib",
    "imaplib",
    "imghdr",
    "imp",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "lib2to3",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "mailcap",
    "marshal",
    "math",
    "mimetypes",
    "mmap",
    "modulefinder",
    "msilib",
    "msvcrt",
    "multiprocessing",
    "netrc",
    "nis",
    "nntplib",
    "nt",
    "ntpath",
    "nturl2path",
    "numbers",
    "opcode",
    "operator",
    "optparse",
    "os",
    "ossaudiodev",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "pipes",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "posix",
    "posixpath",
    "pprint",
    "profile",
    "pstats",
    "pty",
    "pwd",
    "py_compile",
    "pyclbr",
    "pydoc",
    "pydoc_data",
    "pyexpat",
    "queue",
    "quopri",
    "random",
    "re",
    "readline",
    "reprlib",
    "resource",
    "rlcompleter",
    "runpy",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "site",
    "smtpd",
    "smtplib",
    "sndhdr",
    "socket",
    "socketserver",
    "spwd",
    "sqlite3",
    "sre_compile",
    "sre_constants",
    "sre_parse",
    "ssl",
    "stat",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "subprocess",
    "sunau",
    "symtable",
    "sys",
    "sysconfig",
    "syslog",
    "tabnanny",
    "tarfile",
    "telnetlib",
    "tempfile",
    "termios",
    "textwrap",
    "this",
    "threading",
    "time",
    "timeit",
    "tkinter",
    "token",
    "tokenize",
    "tomllib",
    "trace",
    "traceback",
    "tracemalloc",
    "tty",
    "turtle",
    "turtledemo",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib",
    "uu",
    "uuid",
    "venv",
    "warnings",
    "wave",
    "weakref",
    "webbrowser",
    "winreg",
    "winsound",
    "wsgiref",
    "xdrlib",
    "xml",
    "xmlrpc",
    "zipapp",
    "zipfile",
    "zipimport",
    "zlib",
    "zoneinfo",
];
/// Node's built-in modules (`require('module').builtinModules`).
const NODE_BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "sys",
    "timers",
    "tls",
    "trace_events",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "wasi",
    "worker_threads",
    "zlib",
];
/// Import names that differ from the distribution that provides them, as
/// the distributions document.
const PYTHON_DISTRIBUTIONS: &[(&str, &str)] = &[
    ("yaml", "pyyaml"),
    ("PIL", "pillow"),
    ("sklearn", "scikit-learn"),
    ("bs4", "beautifulsoup4"),
    ("cv2", "opencv-python"),
    ("dateutil", "python-dateutil"),
    ("jwt", "pyjwt"),
    ("attr", "attrs"),
    ("dotenv", "python-dotenv"),
    ("google", "protobuf"),
    ("Crypto", "pycryptodome"),
    ("OpenSSL", "pyopenssl"),
    ("serial", "pyserial"),
    ("docx", "python-docx"),
    ("jose", "python-jose"),
    ("multipart", "python-multipart"),
    ("magic", "python-magic"),
    ("psycopg2", "psycopg2-binary"),
    ("pkg_resources", "setuptools"),
];

fn pins_text(pins: &[&packages::lockfile::Pin]) -> Vec<String> {
    pins.iter()
        .map(|p| format!("{} ({}:{})", p.version, p.file, p.line))
        .collect()
}

/// The imports a code chunk uses, each resolved against `deps`.
pub fn import_versions(
    language: &str,
    imports: &[&crate::chunk::imports::Import],
    deps: &DependencyMap,
) -> Vec<VersionRef> {
    use packages::lockfile::Ecosystem;
    let mut out = Vec::new();
    for i in imports {
        let mut r = VersionRef {
            kind: "import".into(),
            written: i.written.clone(),
            line: i.line as usize,
            package: i.package.clone(),
            status: "unresolved".into(),
            pinned: Vec::new(),
            note: None,
        };
        let in_eco = |eco: Ecosystem, name: &str| -> Vec<&packages::lockfile::Pin> {
            deps.pins
                .get(&(eco, eco.normalize(name)))
                .map(|v| v.iter().collect())
                .unwrap_or_default()
        };
        let (status, pins, note): (&str, Vec<&packages::lockfile::Pin>, Option<String>) = if i.local {
            ("local", Vec::new(), None)
        } else {
            match language {
                "rust"
                    if matches!(
                        i.package.as_str(),
                        "std" | "core" | "alloc" | "proc_macro" | "test"
                    ) =>
                {
                    ("standard_library", Vec::new(), None)
                }
                "rust" => {
                    let p = in_eco(Ecosystem::Cargo, &i.package);
                    let note = p
                        .is_empty()
                        .then(|| format!("no crate {} in the source's Cargo.lock", i.package));
                    ("pinned", p, note)
                }
                "python" if PYTHON_STDLIB.contains(&i.package.as_str()) => {
                    ("standard_library", Vec::new(), None)
                }
                "python" => {
                    let dist = PYTHON_DISTRIBUTIONS
                        .iter()
                        .find(|(m, _)| *m == i.package)
                        .map_or(i.package.as_str(), |(_, d)| d);
                    let p = in_eco(Ecosystem::Pypi, dist);
                    let note = p.is_empty().then(|| {
                        format!(
                            "no pinned distribution provides module {} (looked for {dist})",
                            i.package
                        )
                    });
                    ("pinned", p, note)
                }
                "javascript" | "typescript" | "tsx"
                    if i.package.starts_with("node:") || NODE_BUILTINS.contains(&i.package.as_str()) =>
                {
                    ("standard_library", Vec::new(), None)
                }
                "javascript" | "typescript" | "tsx" => {
                    let p = in_eco(Ecosystem::Npm, &i.package);
                    let note = p
                        .is_empty()
                        .then(|| format!("no npm package {} in the source's lockfiles", i.package));
                    ("pinned", p, note)
                }
                "go" if !i.package.split('/').next().unwrap_or("").contains('.') => {
                    ("standard_library", Vec::new(), None)
                }
                "go" => {
                    // The longest required module the import path lies in.
                    let best = deps
                        .pins
                        .iter()
                        .filter(|((eco, m), _)| {
                            *eco == Ecosystem::Go
                                && (i.package == *m || i.package.starts_with(&format!("{m}/")))
                        })
                        .max_by_key(|((_, m), _)| m.len());
                    match best {
                        Some(((_, m), pins)) => {
                            r.package = m.clone();
                            ("pinned", pins.iter().collect(), None)
                        }
                        None => (
                            "pinned",
                            Vec::new(),
                            Some(format!("no module in go.mod provides {}", i.package)),
                        ),
                    }
                }
                "java" if i.package.starts_with("java.") || i.package.starts_with("javax.") => {
                    ("standard_library", Vec::new(), None)
                }
                _ => (
                    "unresolved",
                    Vec::new(),
                    Some(format!("a {language} import is not mapped to a lockfile")),
                ),
            }
        };
        r.status = if status == "pinned" && pins.is_empty() {
            "unresolved".into()
        } else {
            status.into()
        };
        r.pinned = pins_text(&pins);
        r.note = note;
        out.push(r);
    }
    out
}

/// The version claims a document chunk makes, each against the pins.
pub fn claim_versions(path: &str, text: &str, first_line: u32, deps: &DependencyMap) -> Vec<VersionRef> {
    packages::drift::claims(path, text, deps)
        .into_iter()
        .map(|c| {
            let pins = deps.lookup(&c.name);
            let ok = pins
                .iter()
                .any(|p| packages::drift::satisfies(&c.op, &c.version, &p.version));
            VersionRef {
                kind: "claim".into(),
                written: c.text.clone(),
                line: c.line + first_line as usize - 1,
                package: c.name.clone(),
                status: if ok { "matches" } else { "drifts" }.into(),
                pinned: pins_text(&pins),
                note: None,
            }
        })
        .collect()
}
