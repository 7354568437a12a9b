//! Finding executions: the sled index answers, and only the files an answer names are checked.
//!
//! Three rules keep the cache honest without reading every execution:
//! - each project's `executions/` folder has a stamp (inode and mtime, which change when an
//!   execution folder appears or goes); a project whose stamp moved is listed once more and the
//!   executions the index lacks are added — a missing index is rebuilt the same way;
//! - each summary carries the stamp of its `execution.yaml` and `state.json`; before an answer
//!   uses a summary, those two files are stat'ed, and a summary whose files changed is read
//!   again and stored (repair on access);
//! - a summary whose folder is gone is dropped.
//!
//! Runners do not open the index: they note a changed execution in `index/changed/` (see
//! [`note_changed`]) and the next `Catalog::open` records it.
//!
//! When the index cannot be opened (another process holds it longer than it should), every
//! answer falls back to the files, slower but the same.

use std::path::{Path, PathBuf};

use super::execution_dir::{REQUEST_FILE, STATE_FILE};
use super::{
    ExecutionDir, ExecutionSummary, Home, Index, ProjectDir, Stamp, StoreError, known_projects,
};

/// An open index brought up to date with the projects' folders.
pub struct Catalog {
    index: Index,
    /// The project the command runs in, searched first.
    first: Option<PathBuf>,
}

impl Catalog {
    /// Opens the index of `home` and adds what changed in `first` and every known project.
    /// `None` when the index cannot be opened: callers then read the files. A damaged
    /// `projects.yaml` is an error, as everywhere.
    pub fn open(home: &Home, first: Option<&Path>) -> Result<Option<Self>, StoreError> {
        let known = known_projects(home)?;
        let Ok(index) = Index::open_in(home) else {
            return Ok(None);
        };
        let mut catalog = Self {
            index,
            first: first.map(Path::to_path_buf),
        };
        let mut projects: Vec<PathBuf> = catalog.first.iter().cloned().collect();
        for p in known {
            if !projects.contains(&p) {
                projects.push(p);
            }
        }
        catalog.apply_noted(home);
        let added: usize = projects.iter().map(|p| catalog.sync_project(p)).sum();
        if added >= COMPACT_AFTER {
            // A rebuild leaves sled's log full of garbage that every later open would zero
            // and sync again: write the index afresh once instead.
            let Self { index, first } = catalog;
            let Ok(index) = index.compacted(home) else {
                return Ok(None);
            };
            catalog = Self { index, first };
        }
        Ok(Some(catalog))
    }

    /// Refreshes the executions runners noted as changed (see [`note_changed`]). Each note is
    /// removed before its files are read, so a note written meanwhile is kept for next time.
    fn apply_noted(&self, home: &Home) {
        let folder = noted_folder(home);
        let mut changed = Vec::new();
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(dir) = std::fs::read_to_string(&path) else {
                continue;
            };
            if std::fs::remove_file(&path).is_ok() {
                let dir = ExecutionDir::new(dir.trim());
                if dir.request_path().exists() {
                    changed.push(summarize(&dir));
                } else {
                    self.forget(&dir.id());
                }
            }
        }
        let _ = self.index.put_all(&changed);
    }

    /// Adds the executions of `project` the index lacks, when its folder changed since;
    /// returns how many.
    fn sync_project(&self, project: &Path) -> usize {
        let folder = ProjectDir::new(project).executions();
        let Some(now) = folder_stamp(&folder) else {
            return 0;
        };
        if self.index.project_stamp(project).as_deref() == Some(now.as_str()) {
            return 0;
        }
        let mut added = Vec::new();
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let dir = ExecutionDir::new(entry.path());
            if !self.index.contains(&dir.id()) && dir.request_path().exists() {
                added.push(summarize(&dir));
            }
        }
        if self.index.put_all(&added).is_ok() {
            let _ = self.index.set_project_stamp(project, &now);
        }
        added.len()
    }

    /// `summary` as its files are now: the same when their stamp is unchanged, read again and
    /// stored when not; `None` when the execution is gone (and then forgotten).
    pub fn fresh(&self, summary: ExecutionSummary) -> Option<ExecutionSummary> {
        let stamp = files_stamp(&ExecutionDir::new(&summary.dir));
        self.settle(summary, stamp)
    }

    /// `summary` against the stamp its files have now (`None`: gone).
    fn settle(&self, summary: ExecutionSummary, stamp: Option<String>) -> Option<ExecutionSummary> {
        match stamp {
            None => {
                let _ = self.index.remove(&summary.id);
                None
            }
            Some(stamp) if stamp == summary.stamp => Some(summary),
            Some(_) => {
                let again = summarize(&ExecutionDir::new(&summary.dir));
                let _ = self.index.put(&again);
                Some(again)
            }
        }
    }

    /// Lets go of the index at the end of a command that does not open it again before it
    /// exits ([`Index::leave`]: without sled's closing sync when nothing was written).
    pub fn leave(self) {
        self.index.leave();
    }

    /// The execution `prefix` names (an id or its unique beginning, like git): in the current
    /// project first, then in every known project.
    pub fn find(&self, prefix: &str) -> Result<ExecutionDir, StoreError> {
        let matches: Vec<ExecutionSummary> = self
            .index
            .with_prefix(prefix)
            .into_iter()
            .filter_map(|s| self.fresh(s))
            .collect();
        let here: Vec<&ExecutionSummary> = matches
            .iter()
            .filter(|s| self.first.as_deref() == Some(Path::new(&s.project)))
            .collect();
        let pick: Vec<&ExecutionSummary> =
            if here.is_empty() || matches.iter().any(|s| s.id == prefix) {
                matches.iter().collect()
            } else {
                here
            };
        super::pick_one(
            prefix,
            pick.into_iter()
                .map(|s| (s.id.clone(), ExecutionDir::new(&s.dir)))
                .collect(),
        )
    }

    /// Every execution, newest first, each checked against its files as it is read.
    pub fn newest_first(&self) -> impl Iterator<Item = ExecutionSummary> + '_ {
        self.index.newest_first().filter_map(|s| self.fresh(s))
    }

    /// Every execution, newest first, checked against its files: for a whole listing, where
    /// the `stat`s are most of the time. They are spread over the machine's cores and start
    /// while the index is still being read: each batch of summaries goes to the workers as
    /// soon as it is decoded.
    pub fn all(&self) -> Vec<ExecutionSummary> {
        const BATCH: usize = 512;
        type Batch = std::sync::Arc<Vec<ExecutionSummary>>;
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let (to_workers, jobs) = std::sync::mpsc::channel::<(usize, Batch)>();
        let jobs = std::sync::Mutex::new(jobs);
        let (to_main, done) = std::sync::mpsc::channel::<(usize, Vec<Option<String>>)>();
        let (batches, stamps) = std::thread::scope(|scope| {
            for _ in 0..workers {
                let (jobs, to_main) = (&jobs, to_main.clone());
                scope.spawn(move || {
                    loop {
                        let job = jobs
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok((n, batch)) = job else { break };
                        if to_main.send((n, stamp_batch(&batch))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(to_main);
            let mut batches: Vec<Batch> = Vec::new();
            let mut next = Vec::with_capacity(BATCH);
            let hand_over = |next: &mut Vec<ExecutionSummary>, batches: &mut Vec<Batch>| {
                let batch = std::mem::replace(next, Vec::with_capacity(BATCH));
                let batch: Batch = std::sync::Arc::new(batch);
                // A batch no worker takes is stamped below, here.
                let _ = to_workers.send((batches.len(), batch.clone()));
                batches.push(batch);
            };
            for summary in self.index.newest_first() {
                next.push(summary);
                if next.len() == BATCH {
                    hand_over(&mut next, &mut batches);
                }
            }
            if !next.is_empty() {
                hand_over(&mut next, &mut batches);
            }
            drop(to_workers);
            let mut stamps: Vec<Option<Vec<Option<String>>>> = vec![None; batches.len()];
            for (n, batch_stamps) in done {
                stamps[n] = Some(batch_stamps);
            }
            (batches, stamps)
        });
        batches
            .into_iter()
            .zip(stamps)
            // A batch whose worker died is stamped here: every summary gets its own stamp.
            .flat_map(|(batch, stamps)| {
                let stamps = stamps.unwrap_or_else(|| stamp_batch(&batch));
                // The workers are done: the batch is this thread's alone.
                let batch = std::sync::Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
                batch.into_iter().zip(stamps)
            })
            .filter_map(|(summary, stamp)| self.settle(summary, stamp))
            .collect()
    }

    /// Every execution of `project`, newest first, checked against its files.
    pub fn of_project<'a>(
        &'a self,
        project: &'a Path,
    ) -> impl Iterator<Item = ExecutionSummary> + 'a {
        self.index
            .newest_first()
            .filter(move |s| Path::new(&s.project) == project)
            .filter_map(|s| self.fresh(s))
    }

    /// Tree `name` of the index the catalog reads ([`Index::tree`]).
    pub fn tree(&self, name: &str) -> Result<super::KvTree, StoreError> {
        self.index.tree(name)
    }

    /// The executions of `project` that are [`ExecutionSummary::is_live`], checked against
    /// their files. Only the index's live ones are read: an ended execution that comes back
    /// (resumed, reopened, given a budget) is noted by whoever changes it.
    pub fn live_of(&self, project: &Path) -> Vec<ExecutionSummary> {
        let mut live: Vec<ExecutionSummary> = self
            .index
            .live()
            .into_iter()
            .filter(|s| Path::new(&s.project) == project)
            .filter_map(|s| self.fresh(s))
            .filter(ExecutionSummary::is_live)
            .collect();
        live.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        live
    }

    /// Forgets an execution whose folder was deleted.
    fn forget(&self, id: &str) {
        let _ = self.index.remove(id);
    }
}

/// Notes that `dir`'s status or budget changed, for the next command that opens the index to
/// record: how runners write through without opening sled (whose open costs milliseconds and
/// which one process at a time may hold). One small file per execution under
/// `index/changed/`; failures are ignored, as a stale entry is repaired when read. A note
/// still waiting is left as it is: the command that takes it removes it before it reads the
/// files, so it reads this change too (a run notes its creation and its end, and replacing
/// the note made ext4 write it out at once).
pub fn note_changed(home: &Home, dir: &ExecutionDir) {
    let note = noted_folder(home).join(dir.id());
    let folder = dir.root().to_string_lossy();
    if std::fs::read(&note).is_ok_and(|waiting| waiting == folder.as_bytes()) {
        return;
    }
    let _ = super::write_replace(&note, folder.as_bytes());
}

fn noted_folder(home: &Home) -> PathBuf {
    home.index().join("changed")
}

/// The summary of an execution from its files. One whose files cannot be read is summarised
/// as `damaged`, with the reason as its task, so it is listed, never hidden.
pub fn summarize(dir: &ExecutionDir) -> ExecutionSummary {
    let stamp = files_stamp(dir).unwrap_or_default();
    let project = dir
        .project()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let request = dir.read_request();
    let state = dir.read_state();
    let why = match (&request, &state) {
        (Ok(request), Ok(state)) => {
            return ExecutionSummary {
                id: request.id.clone(),
                dir: dir.root().to_string_lossy().into_owned(),
                project: request.project_path.clone(),
                status: state.status.as_str().to_owned(),
                task: request.task_description.clone(),
                template: request.template.name.clone(),
                created_at: request.created_at.clone(),
                cost_usd: state.total_cost_usd,
                budget_limit: request.budget_limit,
                stamp,
            };
        }
        (Err(e), _) | (_, Err(e)) => e.to_string(),
    };
    ExecutionSummary {
        id: dir.id(),
        dir: dir.root().to_string_lossy().into_owned(),
        project,
        status: DAMAGED.to_owned(),
        task: why,
        template: String::new(),
        created_at: request.map(|r| r.created_at).unwrap_or_default(),
        cost_usd: 0.0,
        budget_limit: None,
        stamp,
    }
}

/// How many executions one command must add before the index is rewritten compactly.
const COMPACT_AFTER: usize = 500;

/// The status a summary has when its files cannot be read.
pub const DAMAGED: &str = "damaged";

/// [`files_stamp`] of each summary of a batch: each `stat` walks from the executions folder,
/// opened once per batch and project, not from `/` (most of a `stat` of a long path).
fn stamp_batch(part: &[ExecutionSummary]) -> Vec<Option<String>> {
    let mut folder: Option<(&Path, Option<std::fs::File>)> = None;
    part.iter()
        .map(|s| {
            let dir = Path::new(&s.dir);
            let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
                return files_stamp(&ExecutionDir::new(dir));
            };
            if folder.as_ref().is_none_or(|(p, _)| *p != parent) {
                folder = Some((parent, open_folder(parent)));
            }
            match folder.as_ref().and_then(|(_, f)| f.as_ref()) {
                Some(f) => files_stamp_at(f, Path::new(name)),
                None => files_stamp(&ExecutionDir::new(dir)),
            }
        })
        .collect()
}

/// The stamps of `execution.yaml` and `state.json` (none for a state not written yet), hashed
/// into one short string; `None` when `execution.yaml` is gone. A whole listing computes ten
/// thousand of these, so they are numbers hashed, not text formatted.
fn files_stamp(dir: &ExecutionDir) -> Option<String> {
    let request = Stamp::of(&dir.request_path())?;
    Some(stamp_text(request, Stamp::of(&dir.state_path())))
}

/// [`files_stamp`] of the execution folder `name` in the folder open as `executions`.
fn files_stamp_at(executions: &std::fs::File, name: &Path) -> Option<String> {
    let request = Stamp::at(executions, &name.join(REQUEST_FILE))?;
    Some(stamp_text(
        request,
        Stamp::at(executions, &name.join(STATE_FILE)),
    ))
}

fn stamp_text(request: Stamp, state: Option<Stamp>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (request, state).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `folder` opened for `stat`s relative to it (`O_PATH`: nothing of it is read).
fn open_folder(folder: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(folder)
        .ok()
}

fn folder_stamp(folder: &Path) -> Option<String> {
    Stamp::of(folder).map(|s| s.to_string())
}

#[cfg(test)]
mod tests;
