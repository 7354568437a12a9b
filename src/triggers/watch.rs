//! `autowrkers watch`: the reconciler, re-run on change. One filesystem watcher (inotify, no
//! polling) covers each project; changes are gathered until the project has been quiet for
//! `watch.debounce_ms`, then acted on once: edited execution files are reconciled, task files
//! in the inbox become executions, changed templates and config are checked, and triggers whose
//! globs match the changed files start their pipeline. Runners are detached processes: the
//! watcher stopping does not stop them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::pool::RunnerPool;
pub use super::watch_event::WatchEvent;
use super::{glob, inbox};
use crate::engine::{Control, Engine, EngineError, StartOptions, request, short};
use crate::spec::{OnBusy, ProjectConfig, TriggerMode, WatchConfig, WatchTrigger};
use crate::store::{self, ExecutionDir, ExecutionLock, LockError, ProjectDir, StoreError};

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Another watcher holds the project.
    #[error("{project} is already watched ({holder}); stop that watcher first")]
    Busy {
        /// The project.
        project: String,
        /// "pid N on HOST".
        holder: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The project's config or the engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The filesystem watcher could not start (often: the per-user inotify watch limit).
    #[error(
        "cannot watch files: {0} (at the inotify watch limit? raise it: sysctl fs.inotify.max_user_watches=524288)"
    )]
    Notify(#[from] notify::Error),
}

/// What one trigger started last and what waits for it.
#[derive(Debug, Default)]
struct TriggerState {
    last: Option<ExecutionDir>,
    queued: Option<BTreeSet<String>>,
}

/// One watched project.
struct Watched {
    root: PathBuf,
    _lock: ExecutionLock,
    watch: WatchConfig,
    repo: Option<git2::Repository>,
    triggers: Vec<TriggerState>,
    pending: BTreeSet<PathBuf>,
    /// Task files reported as invalid, with the stamp they had: said again only once changed.
    bad_tasks: std::collections::HashMap<PathBuf, Option<store::Stamp>>,
}

/// The watcher: its projects, runners and where it reports.
pub struct Watch<'a, E: FnMut(&WatchEvent)> {
    engine: &'a Engine,
    projects: Vec<Watched>,
    pool: RunnerPool,
    emit: E,
}

/// True for folders never watched: git's own, and those git ignores (build output such as
/// `target/` or `node_modules/`), except autowrkers' own folder, whose execution files are
/// watched though git ignores them.
fn unwatched(root: &Path, dir: &Path, repo: Option<&git2::Repository>) -> bool {
    let Ok(rel) = dir.strip_prefix(root) else {
        return true;
    };
    if rel.file_name().is_some_and(|n| n == ".git") {
        return true;
    }
    if rel.starts_with(".autowrkers") {
        return false;
    }
    repo.is_some_and(|r| r.is_path_ignored(rel).unwrap_or(false))
}

/// Watches `dir` and the folders below it (not recursively by inotify: each folder on its
/// own, so ignored trees never wake the watcher); returns the files found, for a folder that
/// appeared after its parent was watched (files written into it before its watch).
fn watch_tree(
    watcher: &mut notify::RecommendedWatcher,
    root: &Path,
    dir: &Path,
    repo: Option<&git2::Repository>,
) -> (Vec<PathBuf>, Vec<notify::Error>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if unwatched(root, &d, repo) {
            continue;
        }
        if let Err(e) = watcher.watch(&d, RecursiveMode::NonRecursive) {
            errors.push(e);
            continue;
        }
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    (files, errors)
}

/// Editor droppings that are never a change of their own: swap, backup and probe files.
fn junk(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".swx")
        || name == "4913"
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
}

impl<'a, E: FnMut(&WatchEvent)> Watch<'a, E> {
    /// Takes each project's watch lock (a second watcher is refused with the holder) and reads
    /// its config; runners go through a pool of `exe`.
    pub fn new(
        engine: &'a Engine,
        projects: &[PathBuf],
        exe: PathBuf,
        emit: E,
    ) -> Result<(Self, super::pool::Endings), WatchError> {
        let mut watched = Vec::new();
        let mut cap = 2;
        for p in projects {
            let root = p.canonicalize().map_err(|e| StoreError::io(p, e))?;
            let lock_path = ProjectDir::new(&root).root().join("watch.lock");
            std::fs::create_dir_all(ProjectDir::new(&root).root())
                .map_err(|e| StoreError::io(&root, e))?;
            let lock = ExecutionLock::acquire(&lock_path).map_err(|e| match e {
                LockError::Held { holder } => WatchError::Busy {
                    project: root.display().to_string(),
                    holder,
                },
                other => WatchError::Store(other.into()),
            })?;
            let config = engine.project_config(&root)?;
            cap = config.max_parallel_executions.unwrap_or(2) as usize;
            let watch = config.watch.unwrap_or_default();
            watched.push(Watched {
                triggers: watch
                    .triggers
                    .iter()
                    .map(|_| TriggerState::default())
                    .collect(),
                repo: git2::Repository::open(&root).ok(),
                root,
                _lock: lock,
                watch,
                pending: BTreeSet::new(),
                bad_tasks: Default::default(),
            });
        }
        let (pool, endings) = RunnerPool::new(exe, cap);
        Ok((
            Self {
                engine,
                projects: watched,
                pool,
                emit,
            },
            endings,
        ))
    }

    /// Watches until `stop` resolves; returns when it has said so.
    pub async fn run(
        mut self,
        mut endings: super::pool::Endings,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), WatchError> {
        let (tx, mut changes) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res
                    && store::is_change(&event)
                {
                    for p in event.paths {
                        let _ = tx.send(p);
                    }
                }
            })?;
        for i in 0..self.projects.len() {
            let root = self.projects[i].root.clone();
            let (_, errors) =
                watch_tree(&mut watcher, &root, &root, self.projects[i].repo.as_ref());
            if let Some(e) = errors.into_iter().next() {
                // Typically the inotify watch limit (fs.inotify.max_user_watches).
                return Err(WatchError::Notify(e));
            }
            let (project, triggers) = (
                self.projects[i].root.display().to_string(),
                self.projects[i].watch.triggers.len(),
            );
            (self.emit)(&WatchEvent::Started { project, triggers });
            self.reconcile(i, None);
            self.inbox(i);
        }
        tokio::pin!(stop);
        let far = Duration::from_secs(365 * 24 * 3600);
        let mut deadline: Option<Instant> = None;
        loop {
            let wake = deadline.unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                () = &mut stop => break,
                Some(path) = changes.recv() => {
                    if let Some(i) = self.projects.iter().position(|p| path.starts_with(&p.root)) {
                        // A new folder is watched from the moment it is seen: files written
                        // into it before that are found by listing it.
                        if path.is_dir() {
                            let p = &mut self.projects[i];
                            let (files, errors) = watch_tree(&mut watcher, &p.root, &path, p.repo.as_ref());
                            p.pending.extend(files);
                            for e in errors {
                                self.error(format!("cannot watch {}: {e}", path.display()));
                            }
                        }
                        self.projects[i].pending.insert(path);
                        let quiet = Duration::from_millis(self.projects[i].watch.debounce_ms);
                        deadline = Some(Instant::now() + quiet);
                    }
                }
                () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                    deadline = None;
                    for i in 0..self.projects.len() {
                        let batch = std::mem::take(&mut self.projects[i].pending);
                        if !batch.is_empty() {
                            self.act(i, batch);
                        }
                    }
                }
                Some((dir, code)) = endings.next() => {
                    let done = self.pool.ended(dir, code);
                    self.ended(&done.dir);
                }
            }
        }
        (self.emit)(&WatchEvent::Stopped {
            running: self.pool.running(),
        });
        Ok(())
    }

    fn error(&mut self, message: String) {
        (self.emit)(&WatchEvent::Error { message });
    }

    /// Acts on one quiet project's changed paths.
    fn act(&mut self, i: usize, batch: BTreeSet<PathBuf>) {
        let root = self.projects[i].root.clone();
        let mut executions = BTreeSet::new();
        let (mut tasks, mut config) = (false, false);
        let mut templates = Vec::new();
        let mut files = Vec::new();
        for path in batch {
            let Ok(rel) = path.strip_prefix(&root) else {
                continue;
            };
            let rel_s = rel.to_string_lossy().replace('\\', "/");
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if rel_s.starts_with(".git/") || junk(&name) {
                continue;
            }
            if let Some(sub) = rel_s.strip_prefix(".autowrkers/") {
                if let Some(rest) = sub.strip_prefix("executions/") {
                    let mut parts = rest.splitn(2, '/');
                    if let (Some(id), Some(file)) = (parts.next(), parts.next())
                        && (file == "execution.yaml"
                            || (file.starts_with("artifacts/") && !name.starts_with('.')))
                    {
                        executions.insert(id.to_owned());
                    }
                } else if sub.starts_with("tasks/") && name.ends_with(".md") {
                    tasks = true;
                } else if sub == "config.yaml" {
                    config = true;
                } else if sub.starts_with("templates/")
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && path.is_file()
                {
                    templates.push(path.clone());
                }
                continue;
            }
            // Only files that exist now: a temp file renamed over its target, or a swap file
            // gone, is not a change of its own.
            if !path.is_file() || self.ignored(i, rel) {
                continue;
            }
            files.push(rel_s);
        }
        if config {
            self.reload(i);
        }
        for t in templates {
            if let Err(e) = crate::spec::load::load_template(&t) {
                self.error(e.to_string());
            }
        }
        if !executions.is_empty() {
            self.reconcile(i, Some(&executions));
        }
        if tasks {
            self.inbox(i);
        }
        if !files.is_empty() {
            self.triggers(i, &files);
        }
    }

    /// True when git ignores `rel` in this project.
    fn ignored(&self, i: usize, rel: &Path) -> bool {
        self.projects[i]
            .repo
            .as_ref()
            .is_some_and(|r| r.is_path_ignored(rel).unwrap_or(false))
    }

    /// Reads the config again; a bad one is reported and the previous triggers stay.
    fn reload(&mut self, i: usize) {
        match self.engine.project_config(&self.projects[i].root) {
            Ok(ProjectConfig { watch, .. }) => {
                let watch = watch.unwrap_or_default();
                let p = &mut self.projects[i];
                if watch.triggers != p.watch.triggers {
                    p.triggers = watch
                        .triggers
                        .iter()
                        .map(|_| TriggerState::default())
                        .collect();
                }
                p.watch = watch;
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    /// Hands every execution (or those in `only`) whose files ask for it to a runner.
    fn reconcile(&mut self, i: usize, only: Option<&BTreeSet<String>>) {
        let root = self.projects[i].root.clone();
        let dirs: Vec<ExecutionDir> = match only {
            Some(ids) => ids
                .iter()
                .map(|id| ExecutionDir::new(ProjectDir::new(&root).execution(id)))
                .filter(|d| d.request_path().exists())
                .collect(),
            None => store::executions_of(&root),
        };
        for dir in dirs {
            if self.pool.holds(&dir.id()) {
                continue;
            }
            match self.engine.need(&dir) {
                Ok(None) => {}
                Ok(Some(need)) => {
                    let reason = need.describe();
                    let ready = self.engine.ready_for(&dir, &need);
                    match ready
                        .map_err(WatchError::from)
                        .and_then(|()| Ok(self.pool.submit(dir.clone())?))
                    {
                        Ok(()) => (self.emit)(&WatchEvent::Reconcile {
                            execution_id: dir.id(),
                            reason,
                        }),
                        Err(e) => self.error(format!("{}: {e}", short(&dir.id()))),
                    }
                }
                Err(e) => self.error(format!("{}: {e}", short(&dir.id()))),
            }
        }
    }

    /// Creates an execution of `template` for `task` and hands it to a runner.
    fn start(
        &mut self,
        i: usize,
        template: Option<&str>,
        task: String,
        budget: Option<f64>,
        interactive: bool,
    ) -> Result<ExecutionDir, WatchError> {
        let root = self.projects[i].root.clone();
        let engine = self.engine;
        let found = engine.resolve_template(template, &root)?;
        engine.check_startable(&found.template, &root, false)?;
        let config = engine.project_config(&root)?;
        let dir = engine.create(StartOptions {
            trigger: TriggerMode::ManualTask,
            project: root,
            task,
            template: found.template,
            template_source: found.source,
            budget: budget.or(config.budget_limit),
            in_place: false,
            sandbox: None,
            include_uncommitted: false,
            no_verify: false,
            interactive,
            github: None,
        })?;
        self.pool.submit(dir.clone())?;
        Ok(dir)
    }

    /// Starts an execution for every task file not started yet, and records it in the file.
    fn inbox(&mut self, i: usize) {
        for (path, found) in inbox::pending(&self.projects[i].root) {
            let task = match found {
                Ok(t) => t,
                Err(e) => {
                    let stamp = store::Stamp::of(&path);
                    if self.projects[i].bad_tasks.insert(path, stamp) != Some(stamp) {
                        self.error(e.to_string());
                    }
                    continue;
                }
            };
            let front = task.front.clone();
            let file = task.path.display().to_string();
            match self.start(
                i,
                front.template.as_deref(),
                task.body.clone(),
                front.budget_limit,
                front.interactive_mode,
            ) {
                Ok(dir) => {
                    if let Err(e) = inbox::record(&task, &dir.id()) {
                        self.error(e.to_string());
                    }
                    (self.emit)(&WatchEvent::Task {
                        file,
                        execution_id: dir.id(),
                    });
                }
                Err(e) => self.error(format!("{file}: {e}")),
            }
        }
    }

    /// Runs the triggers whose globs match `files`, as their `on_busy` says.
    fn triggers(&mut self, i: usize, files: &[String]) {
        let triggers: Vec<WatchTrigger> = self.projects[i].watch.triggers.clone();
        for (t, trigger) in triggers.iter().enumerate() {
            let matched: BTreeSet<String> = files
                .iter()
                .filter(|f| trigger.paths.iter().any(|g| glob::matches(g, f)))
                .cloned()
                .collect();
            if matched.is_empty() {
                continue;
            }
            let busy = self.projects[i].triggers[t]
                .last
                .clone()
                .filter(|d| self.pool.holds(&d.id()) || store::runner_alive(d));
            let label = trigger.label().to_owned();
            match (busy, trigger.on_busy) {
                (None, _) => self.fire(i, t, trigger, matched),
                (Some(d), OnBusy::Skip) => (self.emit)(&WatchEvent::Skipped {
                    trigger: label,
                    busy_with: d.id(),
                }),
                (Some(d), OnBusy::Queue) => {
                    self.projects[i].triggers[t]
                        .queued
                        .get_or_insert_with(BTreeSet::new)
                        .extend(matched);
                    (self.emit)(&WatchEvent::Queued {
                        trigger: label,
                        waiting_for: d.id(),
                    });
                }
                (Some(d), OnBusy::Restart) => {
                    if let Err(e) = request(&d, Control::Cancel) {
                        self.error(format!("{}: {e}", short(&d.id())));
                    }
                    (self.emit)(&WatchEvent::Restarted {
                        trigger: label,
                        cancelled: d.id(),
                    });
                    self.fire(i, t, trigger, matched);
                }
            }
        }
    }

    /// Starts trigger `t` for `changed`.
    fn fire(&mut self, i: usize, t: usize, trigger: &WatchTrigger, changed: BTreeSet<String>) {
        let changed: Vec<String> = changed.into_iter().collect();
        let env = minijinja::Environment::new();
        let task = match env.render_str(
            &trigger.task,
            minijinja::context! { changed_files => changed },
        ) {
            Ok(task) => task,
            Err(e) => {
                self.error(format!("trigger {}: its task: {e}", trigger.label()));
                return;
            }
        };
        match self.start(
            i,
            Some(&trigger.template),
            task,
            trigger.budget_limit,
            false,
        ) {
            Ok(dir) => {
                (self.emit)(&WatchEvent::Trigger {
                    trigger: trigger.label().to_owned(),
                    execution_id: dir.id(),
                    changed_files: changed,
                });
                self.projects[i].triggers[t].last = Some(dir);
            }
            Err(e) => self.error(format!("trigger {}: {e}", trigger.label())),
        }
    }

    /// A runner ended: say so, and start the trigger that queued behind it.
    fn ended(&mut self, dir: &ExecutionDir) {
        let status = dir
            .read_state()
            .map(|s| s.status.as_str().to_owned())
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        (self.emit)(&WatchEvent::Ended {
            execution_id: dir.id(),
            status,
        });
        let mut due: Vec<(usize, usize, BTreeSet<String>)> = Vec::new();
        for (i, p) in self.projects.iter_mut().enumerate() {
            for (t, state) in p.triggers.iter_mut().enumerate() {
                if state.last.as_ref().is_some_and(|d| d.id() == dir.id())
                    && let Some(files) = state.queued.take()
                {
                    due.push((i, t, files));
                }
            }
        }
        for (i, t, files) in due {
            let trigger = self.projects[i].watch.triggers[t].clone();
            self.fire(i, t, &trigger, files);
        }
    }
}
