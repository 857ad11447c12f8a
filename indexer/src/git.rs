//! The HEAD commit of a git working tree, read from the repository files
//! (plain, linked worktree or submodule layouts; loose or packed refs).

use std::path::{Path, PathBuf};

/// The commit id HEAD points at, or None if `root` is not a git work tree
/// or HEAD is unborn.
pub fn head_commit(root: &Path) -> Option<String> {
    let git_dir = git_dir(root)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref:") {
        None => is_object_id(head).then(|| head.to_string()),
        Some(name) => resolve_ref(&git_dir, name.trim()),
    }
}

fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    // A `.git` file: "gitdir: <path>" (worktrees, submodules).
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let p = Path::new(target);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    })
}

fn resolve_ref(git_dir: &Path, name: &str) -> Option<String> {
    if name.contains("..") {
        return None;
    }
    // Linked worktrees keep shared refs in the common dir.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    for dir in [git_dir, common.as_path()] {
        if let Ok(id) = std::fs::read_to_string(dir.join(name)) {
            let id = id.trim();
            if let Some(next) = id.strip_prefix("ref:") {
                return resolve_ref(git_dir, next.trim());
            }
            if is_object_id(id) {
                return Some(id.to_string());
            }
        }
        if let Ok(packed) = std::fs::read_to_string(dir.join("packed-refs")) {
            for line in packed.lines() {
                if let Some((id, r)) = line.split_once(' ')
                    && r == name
                    && is_object_id(id)
                {
                    return Some(id.to_string());
                }
            }
        }
    }
    None
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_packed_and_detached_heads() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join(".git");
        std::fs::create_dir_all(g.join("refs/heads")).unwrap();
        std::fs::write(g.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(head_commit(dir.path()), None, "unborn branch");
        let id = "a".repeat(40);
        std::fs::write(
            g.join("packed-refs"),
            format!("# pack-refs with: peeled\n{id} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(head_commit(dir.path()), Some(id.clone()));
        let loose = "b".repeat(40);
        std::fs::write(g.join("refs/heads/main"), format!("{loose}\n")).unwrap();
        assert_eq!(head_commit(dir.path()), Some(loose));
        std::fs::write(g.join("HEAD"), format!("{id}\n")).unwrap();
        assert_eq!(head_commit(dir.path()), Some(id));
        assert_eq!(head_commit(&dir.path().join("nowhere")), None);
    }
}
