//! Git (DESIGN §3) with git2: the implementer's branch and worktree, the `code_diff` from the
//! base commit, and artifact commits on `refs/autowrkers/executions/<id>`. Nothing here touches
//! the user's HEAD, index or working files.

mod committer;
mod half_made;
mod pending;
mod placement;
mod snapshot;

#[cfg(test)]
pub(crate) use committer::test_support;
pub use committer::{CommitJob, Committer};
pub use pending::WorktreeGate;
pub use placement::spread_subfolders;
pub use snapshot::{Recorded, commit_folder};

use std::path::Path;

use git2::{
    BranchType, Diff, DiffFormat, DiffOptions, IndexAddOption, Oid, Repository, Signature,
    WorktreeAddOptions,
};

/// A git failure, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("git: {action}: {source}")]
pub struct GitError {
    action: String,
    source: git2::Error,
}

trait Context<T> {
    fn ctx(self, action: &str) -> Result<T, GitError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn ctx(self, action: &str) -> Result<T, GitError> {
        self.map_err(|source| GitError {
            action: action.to_owned(),
            source,
        })
    }
}

/// The project's repository.
pub struct ProjectRepo {
    repo: Repository,
    /// The committer's name and email from git's config, read at the first commit.
    committer: std::sync::OnceLock<(String, String)>,
}

/// The ref holding an execution's artifact history.
pub fn execution_ref(id: &str) -> String {
    format!("refs/autowrkers/executions/{id}")
}

fn signature(repo: &Repository) -> Result<Signature<'static>, GitError> {
    match repo.signature() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Signature::now("autowrkers", "autowrkers@localhost").ctx("make a signature"),
    }
}

impl ProjectRepo {
    /// Opens the repository whose work tree is `project`; None when it is not a git repository.
    pub fn open(project: &Path) -> Option<Self> {
        let repo = Repository::open(project).ok()?;
        (!repo.is_bare()).then_some(Self {
            repo,
            committer: std::sync::OnceLock::new(),
        })
    }

    /// A signature for a commit made now: the user's name and email from git's config (read
    /// once; a run's commit thread commits after every phase), or autowrkers' own.
    fn signature(&self) -> Result<Signature<'static>, GitError> {
        let (name, email) = self.committer.get_or_init(|| {
            signature(&self.repo)
                .ok()
                .and_then(|s| Some((s.name()?.to_owned(), s.email()?.to_owned())))
                .unwrap_or_else(|| ("autowrkers".to_owned(), "autowrkers@localhost".to_owned()))
        });
        Signature::now(name, email).ctx("make a signature")
    }

    /// The repository of the worktree at `path`, found through the project's own records
    /// (`.git/worktrees/*/gitdir`), never through the worktree's `.git` file, which a model
    /// could have rewritten to point at the user's checkout.
    pub fn worktree_repo(&self, path: &Path) -> Result<Repository, GitError> {
        let Some((wt, want)) = self.recorded_worktree(path)? else {
            return Err(GitError {
                action: format!("open worktree {}", path.display()),
                source: git2::Error::from_str("the project records no worktree there"),
            });
        };
        let repo = Repository::open_from_worktree(&wt).ctx("open worktree")?;
        let workdir = repo
            .workdir()
            .map(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf()));
        if workdir.as_deref() != Some(want.as_path()) {
            return Err(GitError {
                action: format!("open worktree {}", path.display()),
                source: git2::Error::from_str("its recorded work folder differs"),
            });
        }
        Ok(repo)
    }

    /// The project's record of the worktree at `path` (and `path` made canonical), if any.
    fn recorded_worktree(
        &self,
        path: &Path,
    ) -> Result<Option<(git2::Worktree, std::path::PathBuf)>, GitError> {
        let want = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let names = self.repo.worktrees().ctx("list worktrees")?;
        for name in names.iter().flatten() {
            let Ok(wt) = self.repo.find_worktree(name) else {
                continue;
            };
            let at = wt
                .path()
                .canonicalize()
                .unwrap_or_else(|_| wt.path().to_path_buf());
            if at == want {
                return Ok(Some((wt, want)));
            }
        }
        Ok(None)
    }

    /// Removes the lock files a killed runner left on this execution's git state: its ref,
    /// its branch, and its worktree's index and HEAD. Only the execution's own files: the
    /// user's index and refs are never the runner's to unlock. Call with the execution's lock
    /// held. Returns the files removed.
    pub fn clear_stale_locks(
        &self,
        id: &str,
        branch: Option<&str>,
        worktree: Option<&Path>,
    ) -> Vec<std::path::PathBuf> {
        let common = self.repo.commondir().to_path_buf();
        let mut candidates = vec![common.join(format!("{}.lock", execution_ref(id)))];
        if let Some(b) = branch {
            candidates.push(common.join(format!("refs/heads/{b}.lock")));
        }
        if let Some(wt) = worktree.and_then(|w| self.worktree_repo(w).ok()) {
            candidates.push(wt.path().join("index.lock"));
            candidates.push(wt.path().join("HEAD.lock"));
        }
        candidates
            .into_iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .collect()
    }

    /// The user's uncommitted work (tracked changes and untracked files git does not ignore),
    /// outside `.autowrkers/`: the paths, empty for a clean checkout.
    pub fn uncommitted(&self) -> Vec<String> {
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let Ok(statuses) = self.repo.statuses(Some(&mut opts)) else {
            return Vec::new();
        };
        statuses
            .iter()
            .filter_map(|s| s.path().map(str::to_owned))
            .filter(|p| !p.starts_with(".autowrkers/"))
            .collect()
    }

    /// A commit of HEAD plus the user's uncommitted work, made without touching their index,
    /// HEAD or any ref: the base `--include-uncommitted` starts from. None for a clean checkout.
    pub fn snapshot_uncommitted(&self) -> Result<Option<String>, GitError> {
        if self.uncommitted().is_empty() {
            return Ok(None);
        }
        let head = self
            .repo
            .head()
            .ctx("head")?
            .peel_to_commit()
            .ctx("head commit")?;
        // An in-memory copy of the index: staged, written as trees, never saved to disk.
        let mut index = self.repo.index().ctx("index")?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .ctx("stage the working files")?;
        index.update_all(["*"], None).ctx("stage deletions")?;
        let tree_id = index.write_tree().ctx("write tree")?;
        // Forget the staged copy: the user's index file stays as it was.
        index.read(true).ctx("reload the index")?;
        let tree = self.repo.find_tree(tree_id).ctx("find tree")?;
        let sig = self.signature()?;
        let oid = self
            .repo
            .commit(
                None,
                &sig,
                &sig,
                "autowrkers: the uncommitted work the run starts from",
                &tree,
                &[&head],
            )
            .ctx("commit the uncommitted work")?;
        Ok(Some(oid.to_string()))
    }

    /// Removes the worktree at `path` (its folder and the project's record of it), so its branch
    /// is free to check out. Found through the project's records, like [`Self::worktree_repo`].
    pub fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        let _lock = self.worktree_lock()?;
        if let Some((wt, _)) = self.recorded_worktree(path)? {
            let mut opts = git2::WorktreePruneOptions::new();
            opts.valid(true).working_tree(true);
            wt.prune(Some(&mut opts)).ctx("remove the worktree")?;
        }
        Ok(())
    }

    /// Deletes an execution's ref (its artifact history) and, with `branch`, its result branch.
    pub fn delete_execution_refs(&self, id: &str, branch: Option<&str>) -> Result<(), GitError> {
        if let Ok(mut reference) = self.repo.find_reference(&execution_ref(id)) {
            reference.delete().ctx("delete the execution's ref")?;
        }
        if let Some(name) = branch
            && let Ok(mut b) = self.repo.find_branch(name, BranchType::Local)
        {
            b.delete().ctx("delete the result branch")?;
        }
        Ok(())
    }

    /// The commit HEAD points to; None for a repository without commits.
    pub fn head_commit(&self) -> Option<String> {
        self.repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .map(|c| c.id().to_string())
    }

    /// Creates branch `branch` at `base` and a worktree for it at `path` (reused when present).
    pub fn ensure_worktree(
        &self,
        name: &str,
        branch: &str,
        base: &str,
        path: &Path,
    ) -> Result<(), GitError> {
        if self.worktree_whole(name, path) {
            return Ok(());
        }
        let _lock = self.worktree_lock()?;
        self.add_worktree(name, branch, base, path)
    }

    /// Whether the worktree `name` at `path` was made whole. libgit2 writes the worktree's
    /// `.git` file before it checks the project's files out, and the worktree's index (in the
    /// project's `.git/worktrees/<name>/`) after the last of them: a runner killed in between
    /// left a folder holding part of the project, which the next pass must not take for the
    /// project (an analyzer would read it, a verifier test it).
    fn worktree_whole(&self, name: &str, path: &Path) -> bool {
        path.join(".git").exists()
            && self
                .repo
                .commondir()
                .join("worktrees")
                .join(name)
                .join("index")
                .exists()
    }

    /// One runner at a time adds or removes this repository's worktrees: libgit2 reads and
    /// writes `.git/worktrees` without a lock of its own, and runs started together raced.
    fn worktree_lock(&self) -> Result<std::fs::File, GitError> {
        let path = self.repo.commondir().join("autowrkers-worktrees.lock");
        let io = |e: std::io::Error| GitError {
            action: format!("lock {}", path.display()),
            source: git2::Error::from_str(&e.to_string()),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    fn add_worktree(
        &self,
        name: &str,
        branch: &str,
        base: &str,
        path: &Path,
    ) -> Result<(), GitError> {
        if self.worktree_whole(name, path) {
            return Ok(());
        }
        let oid = Oid::from_str(base).ctx("parse base commit")?;
        let commit = self.repo.find_commit(oid).ctx("find base commit")?;
        let branch_ref = match self.repo.find_branch(branch, BranchType::Local) {
            Ok(b) => b,
            Err(_) => self
                .repo
                .branch(branch, &commit, false)
                .ctx("create branch")?,
        };
        // A worktree left half made by a crash blocks the name. One libgit2 knows (its folder
        // gone, or only part of its files checked out) is pruned, its folder with it (the
        // folder its record names); one whose record a kill cut short is cleared by hand.
        match self.repo.find_worktree(name) {
            Ok(stale) => {
                let mut opts = git2::WorktreePruneOptions::new();
                opts.valid(true).working_tree(true);
                stale.prune(Some(&mut opts)).ctx("prune stale worktree")?;
            }
            Err(_) => {
                half_made::clear(self.repo.commondir(), name, path).map_err(|e| GitError {
                    action: format!("clear the half-made worktree {}", path.display()),
                    source: git2::Error::from_str(&e.to_string()),
                })?
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError {
                action: format!("create {}", parent.display()),
                source: git2::Error::from_str(&e.to_string()),
            })?;
            spread_subfolders(parent);
        }
        // libgit2 fails when two runs create the repository's first worktree at once: make
        // the shared folder first (create_dir_all tolerates a racing creator).
        let shared = self.repo.commondir().join("worktrees");
        std::fs::create_dir_all(&shared).map_err(|e| GitError {
            action: format!("create {}", shared.display()),
            source: git2::Error::from_str(&e.to_string()),
        })?;
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(branch_ref.get()));
        self.repo
            .worktree(name, path, Some(&opts))
            .ctx("add worktree")?;
        Ok(())
    }

    /// The diff from `base` to the work of the implementer: the tip of the branch of
    /// `worktree` (opened by [`Self::worktree_repo`]), or (in place) the user's working files.
    pub fn diff_from(&self, base: &str, worktree: Option<&Repository>) -> Result<String, GitError> {
        let base_tree = self.commit_tree(base)?;
        let mut opts = DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        match worktree {
            Some(wt) => {
                let tip = wt
                    .head()
                    .ctx("worktree head")?
                    .peel_to_tree()
                    .ctx("worktree tree")?;
                let tip = self.repo.find_tree(tip.id()).ctx("find tip tree")?;
                patch_text(
                    &self
                        .repo
                        .diff_tree_to_tree(Some(&base_tree), Some(&tip), Some(&mut opts))
                        .ctx("diff")?,
                )
            }
            None => patch_text(
                &self
                    .repo
                    .diff_tree_to_workdir_with_index(Some(&base_tree), Some(&mut opts))
                    .ctx("diff")?,
            ),
        }
    }

    /// The diff from commit `from` to commit `to` (one iteration's implementer to the next).
    pub fn diff_commits(&self, from: &str, to: &str) -> Result<String, GitError> {
        let a = self.commit_tree(from)?;
        let b = self.commit_tree(to)?;
        patch_text(
            &self
                .repo
                .diff_tree_to_tree(Some(&a), Some(&b), None)
                .ctx("diff")?,
        )
    }

    /// The tree of commit `id` (a base commit recorded in `state.json`).
    fn commit_tree(&self, id: &str) -> Result<git2::Tree<'_>, GitError> {
        self.repo
            .find_commit(Oid::from_str(id).ctx("parse base")?)
            .ctx("find base")?
            .tree()
            .ctx("base tree")
    }

    /// The result branch's tip and what it changes against `base` (`git diff --stat`), for the
    /// result object scripts read.
    pub fn branch_change(&self, base: &str, branch: &str) -> Result<BranchChange, GitError> {
        let base_tree = self.commit_tree(base)?;
        let tip = self
            .repo
            .find_branch(branch, BranchType::Local)
            .ctx("find branch")?
            .get()
            .peel_to_commit()
            .ctx("branch tip")?;
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&base_tree), Some(&tip.tree().ctx("tip tree")?), None)
            .ctx("diff")?;
        let stats = diff.stats().ctx("diff stats")?;
        let files = diff
            .deltas()
            .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        Ok(BranchChange {
            head_commit: tip.id().to_string(),
            files_changed: stats.files_changed(),
            insertions: stats.insertions(),
            deletions: stats.deletions(),
            files,
        })
    }
}

/// A result branch against its base: what `git diff --stat base..branch` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BranchChange {
    /// The branch's tip.
    pub head_commit: String,
    /// Files changed.
    pub files_changed: usize,
    /// Lines added.
    pub insertions: usize,
    /// Lines removed.
    pub deletions: usize,
    /// The paths changed.
    pub files: Vec<String>,
}

/// What kind of folder a project is, for git's purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// Not the top of a git repository: worked on as a plain folder.
    NotGit,
    /// A bare repository: no working files.
    Bare,
    /// A repository whose HEAD has no commit yet.
    NoCommits,
    /// A repository with a commit to branch from.
    Usable,
}

/// Tells what `path` is: plain folder, bare repository, repository without commits, or usable.
pub fn repo_kind(path: &Path) -> RepoKind {
    let Ok(repo) = Repository::open(path) else {
        return RepoKind::NotGit;
    };
    if repo.is_bare() {
        return RepoKind::Bare;
    }
    match repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
        Some(_) => RepoKind::Usable,
        None => RepoKind::NoCommits,
    }
}

/// Clones the committed files of the repository at `from` into `to`; false when `from` is not a
/// git repository.
pub fn clone_committed(from: &Path, to: &Path) -> Result<bool, GitError> {
    if Repository::open(from).is_err() {
        return Ok(false);
    }
    Repository::clone(&from.to_string_lossy(), to).ctx("clone the project")?;
    Ok(true)
}

/// Commits everything in the worktree `repo` (from [`ProjectRepo::worktree_repo`]) on its
/// branch; returns the branch tip (the new commit, or the old tip when nothing changed).
pub fn commit_worktree(repo: &Repository, message: &str) -> Result<String, GitError> {
    let mut index = repo.index().ctx("worktree index")?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .ctx("stage changes")?;
    index.update_all(["*"], None).ctx("stage deletions")?;
    let tree_id = index.write_tree().ctx("write tree")?;
    let head = repo
        .head()
        .ctx("head")?
        .peel_to_commit()
        .ctx("head commit")?;
    if head.tree_id() == tree_id {
        // Nothing changed: the index on disk already says so (not rewritten for nothing).
        return Ok(head.id().to_string());
    }
    index.write().ctx("write index")?;
    let tree = repo.find_tree(tree_id).ctx("find tree")?;
    let sig = signature(repo)?;
    let oid = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&head])
        .ctx("commit")?;
    Ok(oid.to_string())
}

/// Resets the worktree at `path` (and its branch) to `to` — the code as the implementer must
/// find it — or to its branch tip when `to` is None, and removes untracked files: an
/// interrupted or repeated implementer run never builds on its own earlier attempt. A worktree
/// already there (its branch at `to`, nothing changed or added) is left as it is: no index
/// rewritten, no ref moved. Never used on the user's checkout.
pub fn reset_worktree(repo: &Repository, to: Option<&str>) -> Result<(), GitError> {
    let path = repo.workdir().ok_or_else(|| GitError {
        action: "reset worktree".to_owned(),
        source: git2::Error::from_str("it has no work folder"),
    })?;
    let target = match to {
        Some(id) => repo
            .find_commit(Oid::from_str(id).ctx("parse commit")?)
            .ctx("find commit")?,
        None => repo
            .head()
            .ctx("head")?
            .peel_to_commit()
            .ctx("head commit")?,
    };
    let mut options = git2::StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let at_target = repo.head().ok().and_then(|h| h.target()) == Some(target.id());
    if at_target && repo.statuses(Some(&mut options)).ctx("status")?.is_empty() {
        return Ok(());
    }
    repo.reset(target.as_object(), git2::ResetType::Hard, None)
        .ctx("reset")?;
    let statuses = repo.statuses(Some(&mut options)).ctx("status")?;
    for entry in statuses.iter() {
        if let (true, Some(p)) = (entry.status().is_wt_new(), entry.path()) {
            let full = path.join(p);
            let _ = if full.is_dir() {
                std::fs::remove_dir_all(&full)
            } else {
                std::fs::remove_file(&full)
            };
        }
    }
    Ok(())
}

fn patch_text(diff: &Diff<'_>) -> Result<String, GitError> {
    let mut out = String::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin());
        }
        out.push_str(&String::from_utf8_lossy(line.content()));
        true
    })
    .ctx("print diff")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_reset_undoes_half_work_and_leaves_a_clean_worktree_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, base) = test_support::one_commit(dir.path());
        // An interrupted attempt: a changed file and a new one.
        std::fs::write(dir.path().join("a.txt"), "half\n").unwrap();
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new/b.txt"), "b\n").unwrap();
        reset_worktree(&repo, Some(&base)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "a\n"
        );
        assert!(!dir.path().join("new/b.txt").exists());
        // Clean and at the target: the index is not written again.
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| (m.ino(), m.mtime_nsec()))
                .unwrap()
        };
        let before = stamp(&dir.path().join(".git/index"));
        reset_worktree(&repo, Some(&base)).unwrap();
        assert_eq!(stamp(&dir.path().join(".git/index")), before);
    }
}
