//! What a runner killed while libgit2 made a worktree leaves, and its removal. libgit2 makes
//! the record `.git/worktrees/<name>/` (its `gitdir` file last of the record's), then the
//! worktree's folder with its `.git` file, then checks the files out and writes the index
//! last. Killed before the record is whole, libgit2 no longer knows the worktree, and both of
//! its folders block a new one by that name.

use std::path::Path;

/// Removes the record of worktree `name` under `common` (the project's `.git`), which libgit2
/// could not open, and the worktree folder `path` when it provably is that worktree's: empty,
/// or holding a `.git` file that names that record. A folder that is anything else stays, and
/// libgit2 then refuses it. Call with the worktrees lock held, for a worktree of autowrkers'
/// own (`autowrkers-<id>`) that is not whole.
pub(super) fn clear(common: &Path, name: &str, path: &Path) -> std::io::Result<()> {
    let record = common.join("worktrees").join(name);
    if record.is_dir() {
        std::fs::remove_dir_all(&record)?;
    }
    let Ok(mut entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    let ours = match std::fs::read_to_string(path.join(".git")) {
        // Compared as paths: libgit2 writes the record's path with a trailing `/`.
        Ok(text) => text
            .trim_end()
            .strip_prefix("gitdir: ")
            .is_some_and(|named| Path::new(named) == record),
        Err(_) => entries.next().is_none(),
    };
    if ours {
        std::fs::remove_dir_all(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_half_made_worktree_left_goes() {
        let root = tempfile::tempdir().unwrap();
        let common = root.path().join("p/.git");
        let record = common.join("worktrees/autowrkers-1");
        std::fs::create_dir_all(&record).unwrap();
        std::fs::write(record.join("commondir"), "../..\n").unwrap();
        let path = root.path().join("w");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join(".git"),
            format!("gitdir: {}/\n", record.display()),
        )
        .unwrap();
        std::fs::write(path.join("a.txt"), "a").unwrap();
        let user = root.path().join("user");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("mine.txt"), "mine").unwrap();

        clear(&common, "autowrkers-1", &user).unwrap();
        assert!(
            user.join("mine.txt").exists(),
            "a folder not the worktree's stays"
        );
        assert!(!record.exists(), "the record libgit2 could not open goes");
        clear(&common, "autowrkers-1", &path).unwrap();
        assert!(!path.exists(), "the worktree folder naming the record goes");
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        clear(&common, "autowrkers-1", &empty).unwrap();
        assert!(!empty.exists(), "a folder made and not yet written goes");
    }
}
