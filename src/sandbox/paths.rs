//! Which folders sandboxed commands may read: the whole system except the places secrets and
//! other people's work live (home folders, temp folders, the user's project and the autowrkers
//! home), plus the toolchains a build needs. Landlock only knows allow-lists, so "everything
//! except" is computed here as the largest folders that contain nothing protected.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Places never readable as a whole: every home folder and the shared temp folders (a command
/// gets its own TMPDIR).
pub fn always_protected() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["/home", "/root", "/tmp", "/var/tmp", "/run/user"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        out.push(PathBuf::from(home));
    }
    out.into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect()
}

/// Toolchain folders named by the clean environment (CARGO_HOME, RUSTUP_HOME) and the PATH
/// entries, which may lie inside a protected folder: readable, never writable.
pub fn toolchains(env: &[(OsString, OsString)]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (k, v) in env {
        if k == "CARGO_HOME" || k == "RUSTUP_HOME" {
            out.push(PathBuf::from(v));
        } else if k == "PATH" {
            out.extend(std::env::split_paths(v));
        }
    }
    out
}

/// The readable roots: the children of `/` (recursively, where a child holds something
/// protected) that are neither protected nor hold anything protected, plus `extra`.
pub fn readable_roots(protected: &[PathBuf], extra: &[PathBuf]) -> Vec<PathBuf> {
    let protected: Vec<PathBuf> = protected
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let mut out = Vec::new();
    allow_except(Path::new("/"), &protected, &mut out, 0);
    out.extend(
        extra
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .filter(|p| p.exists()),
    );
    out
}

fn allow_except(dir: &Path, protected: &[PathBuf], out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        // A rule on a symlink is a rule on its target: a link beside a protected folder may
        // point into it (or, like /dev/stderr, at a pipe Landlock refuses). What a link leads
        // to stays readable only where the target itself is.
        let link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if link || protected.contains(&path) {
            continue;
        }
        let holds_protected = protected.iter().any(|p| p.starts_with(&path));
        if !holds_protected {
            out.push(path);
        } else if depth < 8 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            allow_except(&path, protected, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_folders_and_their_parents_are_not_readable_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let secret = root.join("secret");
        std::fs::create_dir_all(secret.join("inner")).expect("mkdir");
        std::fs::create_dir_all(root.join("open")).expect("mkdir");
        std::os::unix::fs::symlink(&secret, root.join("link")).expect("symlink");
        let roots = readable_roots(
            &[PathBuf::from("/tmp"), secret.clone()],
            &[root.join("open")],
        );
        assert!(roots.iter().all(|r| !secret.starts_with(r)), "{roots:?}");
        // With only the secret protected, its folder is split into its children: the link
        // beside it, pointing into it, must not become a root.
        let split = readable_roots(std::slice::from_ref(&secret), &[]);
        assert!(split.contains(&root.join("open")), "{split:?}");
        assert!(
            !split.contains(&root.join("link")),
            "a link to the secret is no root: {split:?}"
        );
        assert!(roots.contains(&root.join("open")));
        assert!(roots.contains(&PathBuf::from("/usr")));
        assert!(!roots.contains(&PathBuf::from("/tmp")));
    }
}
