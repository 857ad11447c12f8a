//! Shared fixtures for ctxplane's benchmarks.

pub mod secrets_eval;

use std::path::{Path, PathBuf};

use registry::Registry;

/// A registry shaped like a mid-sized organisation: 50 sources with include,
/// exclude and never-ingest rules, built-in rules on, a few exceptions.
pub fn org_registry() -> Registry {
    let mut text = String::from("[never_ingest]\npatterns = [\"**/customer-exports/**\", \"*.sql.gz\"]\n");
    for i in 0..50 {
        text.push_str(&format!(
            "[[sources]]\nid = \"svc-{i}\"\nkind = \"git\"\nlocation = \"repos/svc-{i}\"\nowner = \"team-{}\"\ntier = {}\nstatus = \"approved\"\ninclude = [\"src/**\", \"docs/**\", \"*.md\"]\nexclude = [\"**/vendor/**\", \"**/*.snap\"]\nnever_ingest = [\"fixtures/live/\"]\n",
            i % 7,
            1 + i % 4
        ));
    }
    for i in 0..10 {
        text.push_str(&format!(
            "[[exceptions]]\nid = \"x{i}\"\nsource = \"svc-{i}\"\npath = \"docs/.env.example\"\npermits = [\"never_ingest\"]\napprover = \"a\"\nreason = \"r\"\ngranted_at = 2026-01-01T00:00:00Z\nexpires_at = 2026-12-01T00:00:00Z\n"
        ));
    }
    Registry::parse(&text, Path::new("/")).expect("benchmark registry is valid")
}

/// Realistic relative paths: mostly source files, some docs, some
/// never-ingest hits.
pub fn paths(n: usize) -> Vec<String> {
    let shapes = [
        "src/module_{i}/handler.rs",
        "src/api/v1/routes_{i}.py",
        "docs/guide/chapter-{i}.md",
        "docs/.env.example",
        "config/.env.{i}",
        "src/vendor/lib_{i}/mod.go",
        "deploy/certs/server-{i}.pem",
        "README.md",
    ];
    (0..n)
        .map(|i| shapes[i % shapes.len()].replace("{i}", &i.to_string()))
        .collect()
}

/// Copies the directory tree `from` into `to` (regular files only; symlinks
/// are not followed) and returns the paths of the copies.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(from: &Path, to: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let ty = e.file_type()?;
            let dest = to.join(e.file_name());
            if ty.is_dir() {
                walk(&e.path(), &dest, files)?;
            } else if ty.is_file() {
                std::fs::copy(e.path(), &dest)?;
                files.push(dest);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(from, to, &mut files)?;
    Ok(files)
}
