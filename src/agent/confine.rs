//! Keeps every path a tool touches inside the worktree: no `..`, no absolute path outside it,
//! no symlink that leads out, nothing at or under a `.git` (the repository's plumbing and
//! config are never a model's to read or write). A refusal is a tool error the model reads,
//! never a crash.

use std::path::{Component, Path, PathBuf};

/// Resolves `requested` against `root` (which must be canonical). Paths that do not exist yet
/// are allowed (for writes) when their deepest existing ancestor is inside `root`.
pub fn confine(root: &Path, requested: &str) -> Result<PathBuf, String> {
    let requested = requested.trim();
    if requested.is_empty() {
        return Err("path is empty".to_owned());
    }
    let as_path = Path::new(requested);
    let relative: PathBuf = if as_path.is_absolute() {
        as_path
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .map_err(|_| {
                format!("`{requested}` is outside the worktree; use a path relative to it")
            })?
    } else {
        as_path.to_path_buf()
    };
    for component in relative.components() {
        match component {
            Component::ParentDir => {
                return Err(format!(
                    "`{requested}`: `..` is not allowed; use a path inside the worktree"
                ));
            }
            Component::Prefix(_) | Component::RootDir => {
                return Err(format!("`{requested}` is not a relative path"));
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    off_limits(root, &relative, requested)?;
    let joined = root.join(&relative);
    // Follow symlinks on the part that exists: a link pointing outside is an escape.
    let mut existing = joined.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => break,
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| format!("`{requested}`: {e}"))?;
    let Ok(inside) = real.strip_prefix(root) else {
        return Err(format!(
            "`{requested}` leads outside the worktree (through a symlink)"
        ));
    };
    // A link inside the worktree may still lead into `.git` or the runner's folder.
    off_limits(root, inside, requested)?;
    Ok(rest.into_iter().rev().fold(real, |p, name| p.join(name)))
}

/// Refuses `relative` (inside `root`) when it is at or under a `.git`, or in the runner's own
/// folder of a project worked on in place.
fn off_limits(root: &Path, relative: &Path, requested: &str) -> Result<(), String> {
    if crate::sandbox::is_git_path(relative) {
        return Err(format!(
            "`{requested}`: `.git` is off limits; the runner commits your changes itself"
        ));
    }
    if crate::sandbox::is_runner_path(root, relative) {
        return Err(format!(
            "`{requested}`: `.autowrkers` is the runner's folder and off limits here"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::confine;

    #[test]
    fn refuses_escapes_and_accepts_new_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(root.join("src")).expect("mkdir");
        assert!(confine(&root, "../../etc/passwd").is_err());
        assert!(confine(&root, "/etc/passwd").is_err());
        assert!(confine(&root, "src/../../x").is_err());
        assert!(confine(&root, ".git").is_err());
        assert!(confine(&root, "sub/.git/hooks/post-commit").is_err());
        assert!(confine(&root, &root.join(".git/config").to_string_lossy()).is_err());
        assert_eq!(
            confine(&root, "src/new/file.rs").expect("ok"),
            root.join("src/new/file.rs")
        );
        assert_eq!(
            confine(&root, &root.join("src").to_string_lossy()).expect("ok"),
            root.join("src")
        );
        std::os::unix::fs::symlink("/etc", root.join("out")).expect("symlink");
        assert!(confine(&root, "out/passwd").is_err());
        assert!(confine(&root, "out").is_err());
        // A link inside the worktree to `.git` leads into it all the same.
        std::fs::create_dir_all(root.join(".git/hooks")).expect("mkdir");
        std::os::unix::fs::symlink(".git", root.join("g")).expect("symlink");
        assert!(confine(&root, "g/hooks/post-commit").is_err());
    }

    #[test]
    fn the_runner_folder_is_off_limits_only_where_it_keeps_executions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join(".autowrkers")).expect("mkdir");
        // A worktree: `.autowrkers` is the repository's code.
        assert!(confine(&root, ".autowrkers/config.yaml").is_ok());
        std::fs::create_dir_all(root.join(".autowrkers/executions/e1")).expect("mkdir");
        std::os::unix::fs::symlink(".autowrkers", root.join("aw")).expect("symlink");
        for path in [
            ".autowrkers/config.yaml",
            "./.autowrkers/executions/e1/execution.yaml",
            "aw/executions/e1/state.json",
        ] {
            assert!(confine(&root, path).is_err(), "{path}");
        }
        assert!(confine(&root, "src/lib.rs").is_ok());
    }
}
