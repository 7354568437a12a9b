//! Which folders sandboxed commands may read: the whole system except the places secrets and
//! other people's work live (home folders, temp folders, the user's project and the autowrkers
//! home), plus the toolchains a build needs. Landlock only knows allow-lists, so "everything
//! except" is computed here as the largest folders that contain nothing protected.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::store::Stamp;

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
    let mut out = roots_except(protected);
    out.extend(
        extra
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .filter(|p| p.exists()),
    );
    out
}

/// The roots [`allow_except`] finds from `/` for `protected`, remembered per protected set
/// while none of the folders it listed changed (a folder's stamp moves when an entry is added
/// or removed; a folder changed in the last seconds is not trusted to show the next change):
/// every phase of a run asks again, and the walk costs more than the phase's other sandbox
/// set-up.
fn roots_except(protected: Vec<PathBuf>) -> Vec<PathBuf> {
    /// The folders listed, with their stamps then, and the roots found.
    type Walk = (Vec<(PathBuf, Option<Stamp>)>, Vec<PathBuf>);
    static CACHE: OnceLock<Mutex<HashMap<Vec<PathBuf>, Walk>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((listed, roots)) = lock().get(&protected)
        && listed.iter().all(|(dir, stamp)| Stamp::of(dir) == *stamp)
    {
        return roots.clone();
    }
    let (mut listed, mut roots) = (Vec::new(), Vec::new());
    allow_except(Path::new("/"), &protected, &mut roots, &mut listed, 0);
    if listed
        .iter()
        .all(|(_, stamp)| stamp.is_some_and(|s| s.is_settled()))
    {
        lock().insert(protected, (listed, roots.clone()));
    }
    roots
}

fn allow_except(
    dir: &Path,
    protected: &[PathBuf],
    out: &mut Vec<PathBuf>,
    listed: &mut Vec<(PathBuf, Option<Stamp>)>,
    depth: usize,
) {
    // Stamped before it is read: a change while it is read shows at the next look.
    listed.push((dir.to_path_buf(), Stamp::of(dir)));
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
            allow_except(&path, protected, out, listed, depth + 1);
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
        // Remembered, but looked at again once a folder it listed changed.
        std::fs::create_dir(root.join("new")).expect("mkdir");
        let again = readable_roots(std::slice::from_ref(&secret), &[]);
        assert!(again.contains(&root.join("new")), "{again:?}");
        assert!(roots.contains(&root.join("open")));
        assert!(roots.contains(&PathBuf::from("/usr")));
        assert!(!roots.contains(&PathBuf::from("/tmp")));
    }
}
