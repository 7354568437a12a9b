//! Committing an execution's folder on `refs/autowrkers/executions/<id>` without redoing the
//! work of the previous commit: each project's repository is opened once per process, a file
//! is read and hashed only when its stat changed since this process last committed it, and an
//! iteration's tree is rebuilt only when one of its files changed (a runner's commit does not
//! even look at the folders of earlier iterations). With the state the size of one iteration
//! (earlier ones in `history/`), a long run's commits cost the same at iteration 50 as at
//! iteration 1. A runner's phase commits take what it recorded ([`Recorded`]: the state as
//! saved, the files it names) rather than the folder as it is when the commit is made.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use git2::{Oid, Repository};

use super::{Context, GitError, ProjectRepo, execution_ref};
use crate::store::Stamp;

/// What this process knows of one execution's committed files.
#[derive(Default)]
struct Known {
    /// Folder-relative path → (its stamp, blob).
    blobs: HashMap<String, (Stamp, Oid)>,
    /// `artifacts/<iteration>` → how its tree was last built.
    trees: HashMap<String, BuiltTree>,
}

/// (the folder's stamp, the (name, blob) entries it was built from, the tree).
type BuiltTree = (Option<Stamp>, Vec<(String, Oid)>, Oid);

/// Files up to this size are committed from one read into memory.
const SMALL_BLOB: u64 = 1 << 20;

/// The repositories this process opened (`None`: not a git project), what it committed, and
/// the commits it made whose refs it has not moved yet ([`Ref::Held`]).
struct Cache {
    repos: HashMap<PathBuf, Option<ProjectRepo>>,
    known: HashMap<String, Known>,
    /// (project, ref) → the newest commit made on it, not yet on the ref, and what the ref
    /// held when the first of them was made (it is moved only from there).
    held: HashMap<(PathBuf, String), (Oid, Option<Oid>)>,
}

/// When a commit moves its execution's ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ref {
    /// At once, with the commit.
    Now,
    /// Later, by [`publish_held`]: a run's commit thread makes several commits in a row, and
    /// each ref update is a lock file renamed over the ref, which ext4 writes out at once
    /// (the new file's blocks) and whose old file it frees. Until then the commit's objects are
    /// on disk and the next commit on the ref takes it as its parent; a kill in between loses
    /// the ref's move, and the resume commits what the folder holds, as for a commit the kill
    /// kept from being made.
    Held,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        // libgit2 checks by default that every object a tree or commit names exists: a lookup
        // in the object store per entry, for the iteration trees of every earlier iteration
        // at each commit. The entries here are objects this process just wrote or read.
        git2::opts::strict_object_creation(false);
        Mutex::new(Cache {
            repos: HashMap::new(),
            known: HashMap::new(),
            held: HashMap::new(),
        })
    })
}

/// Commits everything in `root` (the execution folder of `id`: `execution.yaml`, `state.json`,
/// `history/` and `artifacts/`) on the execution's ref, on top of its previous commit; nothing
/// when the project is not a git repository or nothing changed. Returns the commit, if one was
/// made.
pub fn commit_folder(
    project: &Path,
    id: &str,
    root: &Path,
    message: &str,
) -> Result<Option<String>, GitError> {
    commit(project, id, root, message, None, Ref::Now)
}

/// What a runner recorded at one instant: `state.json` as it was saved and the files that
/// state names. A commit made later (by [`super::Committer`]) takes these, not what the folder
/// holds by then, so each phase's commit is that phase's snapshot.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The bytes of `state.json` as saved.
    pub state: Vec<u8>,
    /// The folder-relative paths of the artifacts and history files that state names
    /// (`artifacts/1/a.json`, `history/1.json`).
    pub files: Vec<String>,
}

/// Moves the refs of these executions (`(project, id)`) whose commits were made
/// [`Ref::Held`] to their newest commit; the first failure, after trying them all.
pub(super) fn publish_held<'a>(
    executions: impl IntoIterator<Item = &'a (PathBuf, String)>,
) -> Result<(), GitError> {
    let mut guard = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Cache { repos, held, .. } = &mut *guard;
    let mut failed = Ok(());
    for (project, id) in executions {
        let key = (project.clone(), execution_ref(id));
        let Some((oid, base)) = held.remove(&key) else {
            continue;
        };
        if let Some(Some(repo)) = repos.get(project)
            && let Err(e) = move_ref(&repo.repo, &key.1, oid, base, "autowrkers: commit")
        {
            failed = failed.and(Err(e));
        }
    }
    failed
}

/// Moves `refname` to `oid` if it still holds `base` (is still missing, for `None`): another
/// process's commit on it meanwhile is an error, never overwritten.
fn move_ref(
    repo: &Repository,
    refname: &str,
    oid: Oid,
    base: Option<Oid>,
    message: &str,
) -> Result<(), GitError> {
    match base {
        Some(base) => repo.reference_matching(refname, oid, true, base, message),
        None => repo.reference(refname, oid, false, message),
    }
    .map(drop)
    .ctx("move the execution's ref")
}

/// [`commit_folder`], or (with `recorded`) a commit of what a runner recorded: its state and
/// the files it names only; its ref moved `when`.
pub(super) fn commit(
    project: &Path,
    id: &str,
    root: &Path,
    message: &str,
    recorded: Option<&Recorded>,
    when: Ref,
) -> Result<Option<String>, GitError> {
    let mut guard = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Cache { repos, known, held } = &mut *guard;
    let repo = repos
        .entry(project.to_path_buf())
        .or_insert_with(|| ProjectRepo::open(project));
    let Some(repo) = repo else {
        return Ok(None);
    };
    let refname = execution_ref(id);
    if !git2::Reference::is_valid_name(&refname) {
        // Refused before anything is written: the ref could never be moved to the commit.
        return Err(GitError {
            action: "commit artifacts".into(),
            source: git2::Error::from_str(&format!("`{refname}` is not a valid ref name")),
        });
    }
    let known = known.entry(id.to_owned()).or_default();
    let tree = folder_tree(&repo.repo, root, known, recorded)?;
    let key = (project.to_path_buf(), refname);
    let (parent, base) = match held.get(&key) {
        Some((oid, base)) => (
            Some(repo.repo.find_commit(*oid).ctx("find the held commit")?),
            *base,
        ),
        None => {
            let tip = repo
                .repo
                .find_reference(&key.1)
                .ok()
                .and_then(|r| r.peel_to_commit().ok());
            let base = tip.as_ref().map(git2::Commit::id);
            (tip, base)
        }
    };
    if let Some(p) = &parent
        && p.tree_id() == tree
    {
        // Already committed (a resume re-committing after a crash found nothing missing).
        return Ok(Some(p.id().to_string()));
    }
    let tree = repo.repo.find_tree(tree).ctx("find tree")?;
    let sig = repo.signature()?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let oid = repo
        .repo
        .commit(None, &sig, &sig, message, &tree, &parents)
        .ctx("commit artifacts")?;
    match when {
        Ref::Held => {
            held.insert(key, (oid, base));
        }
        Ref::Now => {
            held.remove(&key);
            move_ref(&repo.repo, &key.1, oid, base, message)?;
        }
    }
    Ok(Some(oid.to_string()))
}

/// The tree of the folder as it is on disk now, or of what was `recorded`.
fn folder_tree(
    repo: &Repository,
    root: &Path,
    known: &mut Known,
    recorded: Option<&Recorded>,
) -> Result<Oid, GitError> {
    let mut top = repo.treebuilder(None).ctx("tree")?;
    if let Some(oid) = blob(repo, root, "execution.yaml", known)? {
        top.insert("execution.yaml", oid, 0o100644)
            .ctx("tree entry")?;
    }
    let state = match recorded {
        Some(r) => Some(repo.blob(&r.state).ctx("write blob")?),
        None => blob(repo, root, "state.json", known)?,
    };
    if let Some(oid) = state {
        top.insert("state.json", oid, 0o100644).ctx("tree entry")?;
    }
    // Iteration folder → the names of its files to commit (`None`: whatever it holds).
    let mut iterations: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    // The history files to commit (`None`: whatever `history/` holds).
    let mut history: Option<Vec<String>> = None;
    match recorded {
        Some(r) => {
            history = Some(Vec::new());
            for rel in &r.files {
                let mut parts = rel.splitn(3, '/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("artifacts"), Some(it), Some(name)) => {
                        if let Some(names) = iterations
                            .entry(it.to_owned())
                            .or_insert_with(|| Some(Vec::new()))
                        {
                            names.push(name.to_owned());
                        }
                    }
                    (Some("history"), Some(name), None) => {
                        if let Some(names) = history.as_mut() {
                            names.push(name.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        None => {
            for it in read_names(&root.join("artifacts"), true) {
                iterations.insert(it, None);
            }
        }
    }
    // A runner writes artifacts in its current iteration only: the trees of the earlier ones it
    // recorded are taken as this process last built them, without a stat of their folders.
    let current = match recorded {
        Some(_) => iterations
            .keys()
            .filter_map(|it| it.parse::<u32>().ok())
            .max(),
        None => None,
    };
    if !iterations.is_empty() {
        let mut artifacts = repo.treebuilder(None).ctx("tree")?;
        for (it, names) in iterations {
            let dir = format!("artifacts/{it}");
            let past = current.is_some_and(|c| it.parse::<u32>().is_ok_and(|n| n < c));
            let tree = iteration_tree(repo, root, &dir, names, past, known)?;
            artifacts.insert(&it, tree, 0o040000).ctx("tree entry")?;
        }
        let artifacts = artifacts.write().ctx("write tree")?;
        top.insert("artifacts", artifacts, 0o040000)
            .ctx("tree entry")?;
    }
    let any_history = match &history {
        Some(names) => !names.is_empty(),
        None => root.join("history").is_dir(),
    };
    if any_history {
        let tree = iteration_tree(repo, root, "history", history, false, known)?;
        top.insert("history", tree, 0o040000).ctx("tree entry")?;
    }
    top.write().ctx("write tree")
}

/// The tree of one iteration's artifacts: the files `names` (all it holds when `None`). A
/// folder whose stamp is unchanged since this process last built its tree from the same names
/// is taken as it was (artifacts are replaced by rename, which moves the folder's mtime); a
/// `past` iteration's (one before a runner's current iteration, which it no longer writes) is
/// taken without even that stat. Hand edits in place are committed by `record_hand_edits`,
/// which starts a process of its own or is the first commit of a pass.
fn iteration_tree(
    repo: &Repository,
    root: &Path,
    dir: &str,
    names: Option<Vec<String>>,
    past: bool,
    known: &mut Known,
) -> Result<Oid, GitError> {
    let mut files = names.unwrap_or_else(|| read_names(&root.join(dir), false));
    files.sort();
    files.dedup();
    let built = known
        .trees
        .get(dir)
        .filter(|(_, built_from, _)| built_from.iter().map(|(n, _)| n).eq(files.iter()));
    if let Some((_, _, tree)) = built
        && past
    {
        return Ok(*tree);
    }
    let folder_stamp = Stamp::of(&root.join(dir));
    if let Some((seen, _, tree)) = built
        && seen.is_some()
        && *seen == folder_stamp
    {
        return Ok(*tree);
    }
    let mut blobs = Vec::new();
    for f in files {
        let rel = format!("{dir}/{f}");
        if let Some(oid) = blob(repo, root, &rel, known)? {
            blobs.push((f, oid));
        }
    }
    if let Some((_, built_from, tree)) = known.trees.get(dir)
        && *built_from == blobs
    {
        let tree = *tree;
        known
            .trees
            .insert(dir.to_owned(), (folder_stamp, blobs, tree));
        return Ok(tree);
    }
    let mut b = repo.treebuilder(None).ctx("tree")?;
    for (f, oid) in &blobs {
        b.insert(f, *oid, 0o100644).ctx("tree entry")?;
    }
    let tree = b.write().ctx("write tree")?;
    known
        .trees
        .insert(dir.to_owned(), (folder_stamp, blobs, tree));
    Ok(tree)
}

/// The blob of `rel` (written when its stat changed since this process last saw it); `None`
/// when the file is gone.
fn blob(
    repo: &Repository,
    root: &Path,
    rel: &str,
    known: &mut Known,
) -> Result<Option<Oid>, GitError> {
    let path = root.join(rel);
    let Some(stamp) = Stamp::of(&path) else {
        known.blobs.remove(rel);
        return Ok(None);
    };
    if let Some((seen, oid)) = known.blobs.get(rel)
        && *seen == stamp
    {
        return Ok(Some(*oid));
    }
    // A small file is read whole and written as it is; a large one (a long reply) is streamed
    // from the file, not held again to be committed. `blob_path` also looks up the
    // repository's attributes for filters, a tenth of a commit's time: none apply here.
    let oid = if stamp.size() <= SMALL_BLOB {
        match std::fs::read(&path) {
            Ok(bytes) => repo.blob(&bytes).ctx("write blob")?,
            // Removed since its stat: not part of this commit.
            Err(_) if !path.exists() => return Ok(None),
            Err(e) => return Err(git2::Error::from_str(&e.to_string())).ctx("read blob"),
        }
    } else {
        match repo.blob_path(&path) {
            Ok(oid) => oid,
            Err(_) if !path.exists() => return Ok(None),
            // Written in place while it was read (a hand edit, `echo >`): take what it holds now.
            Err(e) => match std::fs::read(&path) {
                Ok(bytes) => repo.blob(&bytes).ctx("write blob")?,
                Err(_) => return Err(e).ctx("write blob"),
            },
        }
    };
    known.blobs.insert(rel.to_owned(), (stamp, oid));
    Ok(Some(oid))
}

/// The names in `dir` that are folders (`dirs`) or files, skipping temp files of writers.
fn read_names(dir: &Path, dirs: bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() == dirs))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with('.') && n.ends_with(".tmp")))
        .collect()
}
