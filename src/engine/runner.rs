//! The runner, `Engine`: creating executions (with the checks made before any money is spent)
//! and starting a reconcile pass — the lock, the recovery after a kill, the workspace (worktree,
//! branch, base commit). The pass itself is `Reconcile` (mod.rs, step.rs, record.rs,
//! hand_edit.rs).

use std::path::{Path, PathBuf};

use super::configs::read_config;
pub use super::error::{EngineError, Unready};
use super::events::{EventBus, EventKind};
use super::{Reconcile, now, short};
use crate::git::{ProjectRepo, WorktreeGate};
use crate::keys::Keys;
use crate::prompts::PromptLibrary;
use crate::providers::{self, HttpClient, ProviderError};
use crate::spec::{
    self, ControlRequests, ExecutionRequest, IterationBehavior, ProjectConfig, ProviderType,
    SandboxMode, TriggerMode, WorkflowStatus, WorkflowTemplate, Workspace,
};
use crate::store::{self, ExecutionDir, ExecutionLock, Home, ProjectDir, StoreError};
use crate::verify;

/// What `run` asks for.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The project directory.
    pub project: PathBuf,
    /// How it was started.
    pub trigger: TriggerMode,
    /// The task.
    pub task: String,
    /// The template to snapshot.
    pub template: WorkflowTemplate,
    /// Where it came from (file path or `built-in`).
    pub template_source: String,
    /// USD limit.
    pub budget: Option<f64>,
    /// Work in the user's checkout.
    pub in_place: bool,
    /// `--sandbox`: the sandbox of every phase, over the template's.
    pub sandbox: Option<SandboxMode>,
    /// `--include-uncommitted`: start from HEAD plus the user's uncommitted work.
    pub include_uncommitted: bool,
    /// `--no-verify`: run without verification commands on purpose.
    pub no_verify: bool,
    /// A person watches (decides `configurable` iteration behaviour).
    pub interactive: bool,
    /// The GitHub issue it works on, if any.
    pub github: Option<crate::spec::GithubIssue>,
}

/// The runner: stateless apart from its HTTP client; everything else is read from files.
pub struct Engine {
    pub(crate) home: Home,
    pub(crate) http: HttpClient,
    pub(crate) keys: Keys,
}

impl Engine {
    /// An engine using `home` for global files.
    pub fn new(home: Home) -> Result<Self, EngineError> {
        Ok(Self {
            keys: Keys::new(&home),
            http: HttpClient::new()?.with_rate_limits(home.root().join("ratelimit")),
            home,
        })
    }

    /// The global folder.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The keys (environment, then key store).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The prompt library for a project: project overrides, then global, then built-in.
    pub fn prompts(&self, project: &Path) -> PromptLibrary {
        PromptLibrary::new(vec![
            ProjectDir::new(project).prompts(),
            self.home.prompts(),
        ])
    }

    /// Reads `<project>/.autowrkers/config.yaml` (empty when absent).
    pub fn project_config(&self, project: &Path) -> Result<ProjectConfig, EngineError> {
        read_config(&ProjectDir::new(project).config())
    }

    /// The default template configured for `project`: its config's `default_template`, else
    /// the global config's.
    pub fn configured_default(&self, project: &Path) -> Result<Option<String>, EngineError> {
        match self.project_config(project)?.default_template {
            Some(t) => Ok(Some(t)),
            None => Ok(self.global_config()?.default_template),
        }
    }

    /// The template `wanted` names (id, name or file) for `project`, else the one configured
    /// as its default, else the built-in pipeline.
    pub fn resolve_template(
        &self,
        wanted: Option<&str>,
        project: &Path,
    ) -> Result<crate::templates::Found, EngineError> {
        let configured = self.configured_default(project)?;
        Ok(crate::templates::resolve(
            wanted,
            project,
            &self.home,
            configured.as_deref(),
        )?)
    }

    /// What must hold before an execution of `template` is created in `project`, whoever
    /// starts it (`run`, `serve`, `watch`): the [`preflight`](Self::preflight), and a template
    /// that verifies has verification commands to run (unless `no_verify`), since a verifier
    /// with nothing to run always fails and the money before it would be lost.
    pub fn check_startable(
        &self,
        template: &WorkflowTemplate,
        project: &Path,
        no_verify: bool,
    ) -> Result<(), EngineError> {
        self.preflight(template, project)?;
        let verifies = template
            .phases
            .iter()
            .any(|p| p.role == spec::PhaseRole::Verifier);
        let config = self.project_config(project)?;
        if verifies
            && !no_verify
            && verify::resolve(config.verify.as_ref(), project)
                .commands
                .is_empty()
        {
            return Err(EngineError::Project(format!(
                "the template verifies, but {} has no verification commands: set `verify:` (lint, test, build) in .autowrkers/config.yaml, or pass --no-verify to run without verification",
                project.display()
            )));
        }
        Ok(())
    }

    /// Reads `~/.autowrkers/config.yaml` (empty when absent).
    pub fn global_config(&self) -> Result<ProjectConfig, EngineError> {
        read_config(&self.home.config())
    }

    /// Everything that can be checked before money is spent: prompts render-check, and every
    /// provider the template names can be built (keys, URLs, scripts).
    pub fn preflight(
        &self,
        template: &WorkflowTemplate,
        project: &Path,
    ) -> Result<(), EngineError> {
        let problems: Vec<String> = self
            .prompts(project)
            .check(template)
            .into_iter()
            .map(|(phase, e)| format!("  {phase}: {e}"))
            .collect();
        if !problems.is_empty() {
            return Err(EngineError::Prompts(problems));
        }
        let mut missing = Vec::new();
        for phase in template
            .phases
            .iter()
            .filter(|p| p.provider_config.provider_type != ProviderType::None)
        {
            // Ready when some provider of the chain can run; else every reason counts.
            let mut errors: Vec<ProviderError> = Vec::new();
            for c in phase.provider_config.chain() {
                match providers::answerer(c, project, &self.http, &self.keys) {
                    Ok(_) => {
                        errors.clear();
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            if !errors.is_empty() {
                missing.push(Unready {
                    phase: format!("{} ({})", phase.name, phase.id),
                    errors,
                });
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(EngineError::NotReady(missing))
        }
    }

    /// Writes a new execution's `execution.yaml` and returns its folder.
    pub fn create(&self, opts: StartOptions) -> Result<ExecutionDir, EngineError> {
        let project = opts.project.canonicalize().map_err(|e| StoreError::Io {
            path: opts.project.clone(),
            source: e,
        })?;
        check_project(&project, opts.in_place)?;
        let id = uuid::Uuid::new_v4().to_string();
        let pdir = ProjectDir::new(&project);
        let dir = ExecutionDir::new(pdir.execution(&id));
        // Run-time files stay out of the user's commits and diffs.
        let ignore = pdir.root().join(".gitignore");
        if !ignore.exists() {
            store::write_atomic(&ignore, b"# written by autowrkers: run-time files stay out of your commits\nexecutions/\n.gitignore\n")
                .map_err(|e| StoreError::Io { path: ignore.clone(), source: e })?;
        }
        let behavior = opts.template.iteration_behavior;
        let request = ExecutionRequest {
            id: id.clone(),
            trigger_mode: opts.trigger,
            project_path: project.to_string_lossy().into_owned(),
            task_description: opts.task,
            budget_limit: opts.budget.or(opts.template.budget_limit),
            template: opts.template,
            template_source: opts.template_source,
            iteration_behavior: behavior,
            interactive_mode: opts.interactive && behavior == IterationBehavior::Configurable,
            in_place: opts.in_place,
            sandbox: opts.sandbox,
            include_uncommitted: opts.include_uncommitted,
            no_verify: opts.no_verify,
            created_at: now(),
            control: ControlRequests::default(),
            github: opts.github,
        };
        dir.create_request(&request)?;
        store::register_project(&self.home, &project)?;
        Ok(dir)
    }

    /// Reconciles one execution until it is terminal, paused or waiting; returns its status.
    /// A control request written while a pass was ending (a resume, a cancel, an approval:
    /// the command saw this live runner and left the request to it) is never left unread:
    /// after letting go of the lock the runner reads `execution.yaml` once more and, when it
    /// holds a request the pass did not read, takes the lock again for another pass — unless
    /// a runner started for that request holds it by then. The control commands check for a
    /// runner again after writing (see `server::executions::control`, `cli::run::control`).
    pub async fn reconcile(
        &self,
        dir: &ExecutionDir,
        bus: &EventBus,
    ) -> Result<WorkflowStatus, EngineError> {
        let mut first = true;
        loop {
            let lock = match ExecutionLock::acquire(&dir.lock_path()) {
                Ok(lock) => lock,
                Err(e) if first => return Err(StoreError::from(e).into()),
                // Another runner took it for the request: it applies it.
                Err(_) => return Ok(dir.read_state()?.status),
            };
            first = false;
            let (status, seen) = self.pass(dir, bus).await?;
            drop(lock);
            // Only a request the pass did not read: a pause for a failure is no pause to lift.
            let unread = store::Stamp::of(&dir.request_path()) != seen;
            if status.is_terminal() || !unread || !matches!(self.requested_of(dir), Ok(Some(_))) {
                return Ok(status);
            }
        }
    }

    /// One reconcile pass, under the execution's lock; its end status, and the stamp of
    /// `execution.yaml` when it last read its control requests.
    async fn pass(
        &self,
        dir: &ExecutionDir,
        bus: &EventBus,
    ) -> Result<(WorkflowStatus, Option<store::Stamp>), EngineError> {
        // A runner killed at any instant left at most temp files and git locks: clear them.
        store::clean_temp_files(dir.root());
        let request_seen = store::Stamp::of(&dir.request_path());
        let request = dir.read_request()?;
        let mut state = dir.read_state()?;
        let project = PathBuf::from(&request.project_path);
        let repo = ProjectRepo::open(&project);
        if let (Some(ws), Some(repo)) = (&state.workspace, &repo) {
            let worktree = ws.branch.as_ref().map(|_| Path::new(&ws.dir));
            repo.clear_stale_locks(&request.id, ws.branch.as_deref(), worktree);
        }
        let config = self.project_config(&project)?;
        let resumed = state.status != WorkflowStatus::Pending;
        // A new execution's worktree is made with its workspace, not looked for again.
        let made = state.workspace.is_none();
        let mut encoder = crate::store::StateEncoder::resumed(&state);
        let recorder = super::recorder::Recorder::new(dir);
        let mut worktree = WorktreeGate::open();
        if made {
            let (workspace, making) = self.make_workspace(&request, &project, repo.as_ref())?;
            state.workspace = Some(workspace);
            worktree = making;
            // Written while the pass sets up; its first phase waits for it (recorder).
            recorder.write(&mut encoder, &mut state, true)?;
        }
        let workspace = state.workspace.clone().ok_or(EngineError::NoWorkspace)?;
        // An ended execution gets its worktree back only when a hand edit reopens it.
        let needs_worktree =
            !made && (!state.status.is_terminal() || super::context::any_edited(dir, &state));
        if let (Some(branch), Some(base)) = (&workspace.branch, &workspace.base_commit)
            && needs_worktree
            && let Some(repo) = &repo
        {
            repo.ensure_worktree(
                &format!("autowrkers-{}", short(&request.id)),
                branch,
                base,
                Path::new(&workspace.dir),
            )?;
        }
        if config.verify.is_none() {
            // The checks are then found from the worktree's files.
            worktree.wait().await.map_err(EngineError::Worktree)?;
        }
        let mut checks = verify::resolve(config.verify.as_ref(), Path::new(&workspace.dir));
        checks.off = request.no_verify;
        if !state.status.is_terminal() {
            bus.emit(EventKind::Started {
                task: request.task_description.clone(),
                template: request.template.name.clone(),
                workspace: workspace.dir.clone(),
                resumed,
            });
        }
        let budget = crate::budget::BudgetGuard::new(&self.home, &request)?;
        let control = super::control::ControlWatch::start(dir, request.control.clone());
        let notices = control.subscribe();
        let announcer = control.announcer();
        let mut pass = Reconcile {
            control,
            budget,
            engine: self,
            dir,
            bus,
            prompts: self.prompts(&project),
            sandbox: super::sandboxing::SandboxBase::new(&request, &config, self.home.root()),
            limits: config.output_limits.unwrap_or_default(),
            request,
            state,
            repo,
            worktree,
            checks,
            bad_edit: None,
            request_seen,
            recorder,
            encoder,
        };
        pass.note_hand_edits()?;
        if resumed {
            // state.json saved but its commit lost to a kill: commit it now (a no-op otherwise).
            pass.commit("autowrkers: state recorded before an interruption")?;
        }
        let status = tokio::select! {
            status = pass.run() => status,
            never = super::control::announce(notices, bus, announcer) => match never {},
        };
        // A worktree still being made when the pass ended early (nothing needed it yet) is
        // finished before its removal, or before the lock is let go.
        let made = pass.worktree.wait().await;
        if let Ok(s) = &status {
            // The ref's tip always tells how the execution stands: committed in the commit
            // thread while the worktree is removed, and waited for before the lock is let go.
            pass.commit_last(format!("autowrkers: {}", s.as_str()))?;
            let releasing = s.is_terminal().then(|| release_branch(&pass));
            let written = pass.wait_for_writes();
            if let Some(released) = releasing {
                released.wait()?;
            }
            written?;
            made.map_err(EngineError::Worktree)?;
        }
        // Every status change was noted for the index as it happened (`set_status`).
        Ok((status?, pass.request_seen))
    }

    /// A new execution's workspace, and the gate its worktree's making opens: the branch and
    /// worktree are made on a thread of their own (see [`WorktreeGate`]) while the pass goes on.
    fn make_workspace(
        &self,
        request: &ExecutionRequest,
        project: &Path,
        repo: Option<&ProjectRepo>,
    ) -> Result<(Workspace, WorktreeGate), EngineError> {
        let here = |base| {
            let workspace = Workspace {
                dir: project.to_string_lossy().into_owned(),
                base_commit: base,
                branch: None,
            };
            (workspace, WorktreeGate::open())
        };
        let Some(repo) = repo else {
            return Ok(here(None));
        };
        let Some(head) = repo.head_commit() else {
            return Ok(here(None));
        };
        let base = match request.include_uncommitted && !request.in_place {
            true => repo.snapshot_uncommitted()?.unwrap_or(head),
            false => head,
        };
        if request.in_place {
            return Ok(here(Some(base)));
        }
        let short_id = short(&request.id);
        let branch = format!("autowrkers/{short_id}-{}", slug(&request.task_description));
        // A runner killed while it made this branch (before the state recorded it) left its
        // lock: the branch is this execution's alone, and the pass holds its lock.
        repo.clear_stale_locks(&request.id, Some(&branch), None);
        // Its canonical path, recorded before the folder exists: the folder it is made in,
        // made canonical, and its name.
        let path = self.home.worktree(short_id);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(EngineError::Project(format!(
                "no worktree path in {}",
                path.display()
            )));
        };
        let io = |e| StoreError::Io {
            path: parent.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(parent).map_err(io)?;
        let dir = parent.canonicalize().map_err(io)?.join(name);
        let making = {
            let (project, dir) = (project.to_path_buf(), dir.clone());
            let (branch, base) = (branch.clone(), base.clone());
            let name = format!("autowrkers-{short_id}");
            WorktreeGate::making(move || {
                let repo = ProjectRepo::open(&project).ok_or_else(|| {
                    format!("{} is no longer a git repository", project.display())
                })?;
                repo.ensure_worktree(&name, &branch, &base, &dir)
                    .map_err(|e| e.to_string())
            })
        };
        let workspace = Workspace {
            dir: dir.to_string_lossy().into_owned(),
            base_commit: Some(base),
            branch: Some(branch),
        };
        Ok((workspace, making))
    }

    /// Notes that `dir` changed, for the sled index: the next command that opens it records
    /// the execution's summary (the runner never waits on the index).
    pub fn note_changed(&self, dir: &ExecutionDir) {
        store::note_changed(&self.home, dir);
    }
}

/// An execution that ended gives its branch back: its worktree (everything is committed on the
/// branch) is removed, so `git checkout <branch>` and `git branch -D` work at once. A reopened
/// execution gets its worktree again from the branch. The removal (a file freed per file of
/// the project, and libgit2's records) runs in a thread of its own while the pass waits for
/// its last commit and sync; the pass waits for both before it lets go of the execution.
fn release_branch(pass: &Reconcile<'_>) -> Releasing {
    let (Some(ws), Some(repo)) = (&pass.state.workspace, &pass.repo) else {
        return Releasing::Over(Ok(()));
    };
    if ws.branch.is_none() {
        return Releasing::Over(Ok(()));
    }
    let project = PathBuf::from(&pass.request.project_path);
    let dir = PathBuf::from(&ws.dir);
    let remove = move || match ProjectRepo::open(&project) {
        Some(repo) => Ok(repo.remove_worktree(&dir)?),
        None => Err(EngineError::Project(format!(
            "cannot open the repository of {} again to remove the worktree {}",
            project.display(),
            dir.display()
        ))),
    };
    let spawned = std::thread::Builder::new()
        .name("autowrkers-release".into())
        .spawn(remove);
    match spawned {
        Ok(thread) => Releasing::Thread(thread),
        // No thread to be had: the repository the pass holds does it here.
        Err(_) => Releasing::Over(
            repo.remove_worktree(Path::new(&ws.dir))
                .map_err(EngineError::from),
        ),
    }
}

/// A worktree's removal by [`release_branch`]: under way, or over (or none to make).
enum Releasing {
    Thread(std::thread::JoinHandle<Result<(), EngineError>>),
    Over(Result<(), EngineError>),
}

impl Releasing {
    /// Waits for the removal; its failure, if any.
    fn wait(self) -> Result<(), EngineError> {
        match self {
            Self::Over(result) => result,
            Self::Thread(thread) => thread.join().unwrap_or_else(|_| {
                Err(EngineError::Project(
                    "the thread removing the worktree stopped".into(),
                ))
            }),
        }
    }
}

/// Refuses, before anything is written or spent, a bare repository (no files to change) and a
/// repository without commits unless `--in-place` (its implementer branch needs a base).
fn check_project(project: &Path, in_place: bool) -> Result<(), EngineError> {
    let shown = project.display();
    match crate::git::repo_kind(project) {
        crate::git::RepoKind::Bare => Err(EngineError::Project(format!(
            "{shown} is a bare git repository: it has no working files to change; run in a clone of it (`git clone {shown} work`, then `autowrkers run --path work --task \"…\"`)"
        ))),
        crate::git::RepoKind::NoCommits if !in_place => Err(EngineError::Project(format!(
            "{shown} is a git repository with no commits: the implementer's branch needs a base commit; commit once (`git commit --allow-empty -m init`), or pass `--in-place` to edit your files in place"
        ))),
        _ => Ok(()),
    }
}

/// A branch-safe slug of the task: lowercase words joined by `-`, at most 40 characters.
fn slug(task: &str) -> String {
    let mut out = String::new();
    for word in task
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if out.len() + word.len() + 1 > 40 {
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    if out.is_empty() {
        "task".to_owned()
    } else {
        out
    }
}
