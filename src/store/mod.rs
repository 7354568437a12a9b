//! Files as the truth (DESIGN §2): folder layout, atomic writes, the runner's lock, the known
//! projects, the event tail, and the sled index that caches lookups (`catalog` keeps it true to
//! the files). sled is used only in `index` (its `Index`, and `KvTree` for the ledger's sums).

mod atomic;
mod catalog;
mod execution_dir;
mod id_list;
mod index;
mod lock;
mod names;
mod parsed;
mod paths;
mod stamp;
mod state_encoder;
mod tail;

pub use atomic::{
    append_line, clean_temp_files, crash_point, crash_points_armed, sync_written, write_atomic,
    write_line, write_private, write_replace,
};
pub use catalog::{Catalog, DAMAGED, note_changed, summarize};
pub use execution_dir::ExecutionDir;
pub use index::{ExecutionSummary, Index, KvTree};
pub use lock::{ExecutionLock, LockError};
pub use paths::{Home, ProjectDir};
pub use stamp::Stamp;
#[cfg(test)]
pub(crate) use stamp::set_mtime;
pub use state_encoder::{Encoded, History, StateEncoder};
pub use tail::{EventTail, runner_alive, shown_status};

use std::path::{Path, PathBuf};

use crate::spec::SpecError;
use execution_dir::REQUEST_FILE;

/// Why a stored file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file is damaged.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A YAML file is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The execution is locked by another runner.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The sled index failed; callers fall back to the files.
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    /// A path recorded in `state.json` leads outside the execution's `artifacts/` folder.
    #[error(
        "{0}: an artifact path must stay inside the execution's artifacts/ folder; state.json was changed by hand"
    )]
    OutsideArtifacts(String),
    /// No execution matches.
    #[error("no execution matches `{0}` (see `autowrkers workflow list`)")]
    NotFound(String),
    /// Several executions match a prefix.
    #[error("`{prefix}` matches several executions: {}; give more characters", candidates.join(", "))]
    Ambiguous {
        /// What the user typed.
        prefix: String,
        /// The matching ids.
        candidates: Vec<String>,
    },
}

impl StoreError {
    /// A failed read or write of `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// True for file events that change something; reads (inotify `IN_ACCESS`/`IN_OPEN`) are not
/// changes, and reacting to them by reading the file again would feed itself forever.
pub fn is_change(event: &notify::Event) -> bool {
    matches!(
        event.kind,
        notify::EventKind::Create(_) | notify::EventKind::Modify(_) | notify::EventKind::Remove(_)
    )
}

/// The registry of known projects (`~/.autowrkers/projects.yaml`): absolute paths. A damaged
/// file is an error with its line and column, never an empty registry.
pub fn known_projects(home: &Home) -> Result<Vec<PathBuf>, StoreError> {
    match std::fs::read_to_string(home.projects()) {
        Ok(text) => Ok(crate::spec::from_yaml::<Vec<PathBuf>>(
            &text,
            &home.projects(),
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(&home.projects(), e)),
    }
}

/// Adds a project to the registry (no-op when known).
pub fn register_project(home: &Home, project: &Path) -> Result<(), StoreError> {
    // Most runs are in a known project: a read answers without the lock.
    if known_projects(home).is_ok_and(|known| known.iter().any(|p| p == project)) {
        return Ok(());
    }
    // Runs starting together in several projects each read, add and write: one at a time.
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::create_dir_all(home.root()).map_err(io(home.root()))?;
    let lock_path = home.root().join("projects.yaml.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let mut projects = match std::fs::read_to_string(home.projects()) {
        Ok(text) => {
            crate::spec::from_yaml::<Vec<PathBuf>>(&text, &home.projects()).map_err(|e| {
                // Never replace a file the user may have edited: say what is wrong instead.
                io(&home.projects())(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a YAML list of project paths ({e}); fix or remove it"),
                ))
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&home.projects())(e)),
    };
    if projects.iter().any(|p| p == project) {
        return Ok(());
    }
    projects.push(project.to_path_buf());
    let text = crate::spec::to_yaml(&projects).unwrap_or_default();
    write_atomic(&home.projects(), text.as_bytes()).map_err(|e| StoreError::io(&home.projects(), e))
}

/// Every execution folder of a project.
pub fn executions_of(project: &Path) -> Vec<ExecutionDir> {
    let dir = ProjectDir::new(project).executions();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<ExecutionDir> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("execution.yaml").exists())
        .map(|e| ExecutionDir::new(e.path()))
        .collect();
    out.sort_by_key(|d| d.id());
    out
}

/// Every execution of `first` (when given) and of every known project, without duplicates.
pub fn all_executions(home: &Home, first: Option<&Path>) -> Result<Vec<ExecutionDir>, StoreError> {
    let mut projects: Vec<PathBuf> = first.map(Path::to_path_buf).into_iter().collect();
    for p in known_projects(home)? {
        if !projects.contains(&p) {
            projects.push(p);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<ExecutionDir> = Vec::new();
    for project in projects {
        for dir in executions_of(&project) {
            if seen.insert(dir.id()) {
                out.push(dir);
            }
        }
    }
    Ok(out)
}

/// Finds an execution by id or unique prefix, like git: in `project` first, then every known
/// project. The index answers; the files are scanned only when it cannot be opened.
pub fn find_execution(
    home: &Home,
    project: Option<&Path>,
    prefix: &str,
) -> Result<ExecutionDir, StoreError> {
    let project = project.and_then(|p| p.canonicalize().ok());
    // The current project first, by the names in its folder alone: no file is read, and the
    // index (whose open costs more than listing thousands of names) is not needed.
    if let Some(found) = project
        .as_deref()
        .and_then(|p| find_in_project(home, p, prefix))
    {
        return found;
    }
    if let Some(catalog) = Catalog::open(home, project.as_deref())? {
        return catalog.find(prefix);
    }
    let matches = all_executions(home, project.as_deref())?
        .into_iter()
        .filter(|d| d.id().starts_with(prefix))
        .map(|d| (d.id(), d))
        .collect();
    pick_one(prefix, matches)
}

/// The one execution among those `prefix` matched: the one whose id it is exactly, else the
/// only one; none is `NotFound`, several are `Ambiguous` (listed sorted).
fn pick_one(
    prefix: &str,
    mut matches: Vec<(String, ExecutionDir)>,
) -> Result<ExecutionDir, StoreError> {
    if let Some(at) = matches.iter().position(|(id, _)| id == prefix) {
        return Ok(matches.swap_remove(at).1);
    }
    match matches.len() {
        0 => Err(StoreError::NotFound(prefix.to_owned())),
        1 => Ok(matches.swap_remove(0).1),
        _ => {
            let mut candidates: Vec<String> = matches.into_iter().map(|(id, _)| id).collect();
            candidates.sort();
            Err(StoreError::Ambiguous {
                prefix: prefix.to_owned(),
                candidates,
            })
        }
    }
}

/// The execution of `project` whose id is `prefix` or begins with it: `None` when none does,
/// an error when several do (and none is exactly `prefix`).
fn find_in_project(
    home: &Home,
    project: &Path,
    prefix: &str,
) -> Option<Result<ExecutionDir, StoreError>> {
    let folder = ProjectDir::new(project).executions();
    // A whole id (what `--json`, the REST API and scripts pass) is looked up by its name: the
    // folder's thousands of names are listed only for a prefix.
    let exact = folder.join(prefix);
    if !prefix.is_empty() && !prefix.contains(['/', '.']) && exact.join(REQUEST_FILE).exists() {
        return Some(Ok(ExecutionDir::new(exact)));
    }
    // Matched against the folder's names as remembered at its current stamp, else as
    // `readdir` hands them out (compared as bytes: a project's thousands of names are not each
    // copied to find the one or two the prefix names).
    let matches: Vec<(String, ExecutionDir)> =
        id_list::with_prefix(home, &folder, prefix.as_bytes())
            .ok()?
            .into_iter()
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| folder.join(name).join(REQUEST_FILE).exists())
            .map(|name| (name.clone(), ExecutionDir::new(folder.join(name))))
            .collect();
    (!matches.is_empty()).then(|| pick_one(prefix, matches))
}

#[cfg(test)]
mod tests {
    use super::is_change;
    use notify::event::{AccessKind, CreateKind, EventKind, ModifyKind};

    #[test]
    fn reads_are_not_changes() {
        let event = |kind| notify::Event::new(kind);
        assert!(
            !is_change(&event(EventKind::Access(AccessKind::Any))),
            "reacting to reads loops forever"
        );
        assert!(is_change(&event(EventKind::Create(CreateKind::File))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Any))));
    }

    #[test]
    fn ids_resolve_in_the_current_project_by_folder_names() {
        use super::{StoreError, find_in_project};
        let tmp = tempfile::tempdir().expect("tmp");
        let folder = super::ProjectDir::new(tmp.path()).executions();
        for (id, real) in [
            ("abc1", true),
            ("abc2", true),
            ("abd3", true),
            ("abx9", false),
        ] {
            std::fs::create_dir_all(folder.join(id)).expect("mkdir");
            if real {
                std::fs::write(folder.join(id).join("execution.yaml"), "id: x\n").expect("write");
            }
        }
        let home = super::Home::at(tmp.path().join("home"));
        let found = |p: &str| find_in_project(&home, tmp.path(), p).map(|r| r.map(|d| d.id()));
        assert_eq!(found("abd").expect("some").expect("one"), "abd3");
        assert_eq!(found("abc1").expect("some").expect("exact"), "abc1");
        assert!(matches!(
            found("abc"),
            Some(Err(StoreError::Ambiguous { candidates, .. })) if candidates == ["abc1", "abc2"]
        ));
        assert!(
            found("abx").is_none(),
            "a folder without execution.yaml is no execution"
        );
        assert!(found("zzz").is_none());
    }
}
