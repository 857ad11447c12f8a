//! What a pass records about each file: its kind (never prose by default)
//! and, for any source that is a git checkout, `dir` sources included,
//! the commit.
#![allow(clippy::unwrap_used)]

use indexer::{Indexer, PassOptions};
use registry::{Clock, FixedClock, Registry};

#[test]
fn a_dir_source_in_a_git_checkout_records_its_commit_and_files_get_their_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("checkout");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(root.join(".git/refs/heads")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(root.join(".git/refs/heads/main"), format!("{commit}\n")).unwrap();
    let files = [
        (
            "bin/tool",
            "#!/usr/bin/env python3\nprint('hello from a tool')\n",
            "python",
        ),
        (
            "docs/logo.svg",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M0 0\"/></svg>\n",
            "svg",
        ),
        ("nb/intro.ipynb", "{\"cells\": [], \"nbformat\": 4}\n", "notebook"),
        (
            "locale/de.po",
            "msgid \"Hello\"\nmsgstr \"Hallo\"\n",
            "translation",
        ),
        (
            "Cargo.lock",
            "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n",
            "lockfile",
        ),
        ("CHANGES", "Version 2: fixed the tool.\n", "text"),
        ("data/blob", "opaque data nobody wrote as prose\n", "other"),
        ("README.md", "# Tool\n\nRun it.\n", "markdown"),
    ];
    for (path, text, _) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let reg_path = tmp.path().join("registry.toml");
    std::fs::write(
        &reg_path,
        "version = 1\n\n[[sources]]\nid = \"tool\"\nkind = \"dir\"\nlocation = \"checkout\"\nowner = \"t\"\ntier = 1\nstatus = \"approved\"\n",
    )
    .unwrap();
    let reg = Registry::load(&reg_path).unwrap();
    let data = tmp.path().join("data");
    let indexer = Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default()).unwrap();
    let clock = FixedClock(jiff::Timestamp::now());
    let pass = indexer
        .run_pass(&reg, &reg.policy(&clock), clock.now(), &mut |_, _, _| {})
        .unwrap();
    assert_eq!(pass.sources[0].commit.as_deref(), Some(commit));
    let manifest = indexer.manifests().load("tool").unwrap();
    for (path, _, kind) in files {
        let entry = &manifest.files[path];
        assert_eq!(entry.language, kind, "{path}");
        assert_eq!(entry.commit.as_deref(), Some(commit), "{path}");
    }
    let chunks = indexer.lexical().docs_for_file("tool", "bin/tool").unwrap();
    assert_eq!(chunks[0].commit.as_deref(), Some(commit));
    assert_eq!(chunks[0].language, "python");

    // Not a checkout: no commit, and no error.
    std::fs::remove_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("README.md"), "# Tool\n\nRun it twice.\n").unwrap();
    indexer
        .run_pass(&reg, &reg.policy(&clock), clock.now(), &mut |_, _, _| {})
        .unwrap();
    let manifest = indexer.manifests().load("tool").unwrap();
    assert_eq!(manifest.files["README.md"].commit, None);
}
