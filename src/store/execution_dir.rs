//! One execution's folder: `execution.yaml` (desired), `state.json` (actual), `events.ndjson`,
//! `artifacts/<iteration>/<phase-id>.<ext>`, `logs/<phase-id>.<iteration>.log` and `lock`.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::atomic::{write_atomic, write_replace, write_swapped};
use crate::spec::{self, ExecutionRequest, WorkflowExecution};

/// Handle on `<project>/.autowrkers/executions/<id>/`.
#[derive(Debug, Clone)]
pub struct ExecutionDir {
    root: PathBuf,
}

impl ExecutionDir {
    /// Wraps an existing or future execution folder.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The execution id (the folder's name).
    pub fn id(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    /// The project the execution belongs to (three levels up).
    pub fn project(&self) -> Option<&Path> {
        self.root.ancestors().nth(3)
    }
    /// `execution.yaml`.
    pub fn request_path(&self) -> PathBuf {
        self.root.join("execution.yaml")
    }
    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `events.ndjson`.
    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.ndjson")
    }
    /// `lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// Relative path of an artifact, as recorded in state.json.
    pub fn artifact_rel(iteration: u32, phase_id: &str, ext: &str) -> String {
        format!("artifacts/{iteration}/{phase_id}.{ext}")
    }
    /// `logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// `logs/runner.log`: the output of a runner started in the background (the live view).
    pub fn runner_log_path(&self) -> PathBuf {
        self.logs_dir().join("runner.log")
    }
    /// `logs/<phase-id>.<iteration>.log`.
    pub fn log_path(&self, phase_id: &str, iteration: u32) -> PathBuf {
        self.logs_dir().join(format!("{phase_id}.{iteration}.log"))
    }

    /// Reads `execution.yaml`.
    pub fn read_request(&self) -> Result<ExecutionRequest, StoreError> {
        let path = self.request_path();
        let text = read(&path)?;
        Ok(spec::from_yaml(&text, &path)?)
    }

    /// Writes `execution.yaml` atomically.
    pub fn write_request(&self, request: &ExecutionRequest) -> Result<(), StoreError> {
        let path = self.request_path();
        let text = spec::to_yaml(request)?;
        write_atomic(&path, text.as_bytes()).map_err(|e| StoreError::io(&path, e))
    }

    /// Reads `execution.yaml`, applies `edit`, writes it back: how control requests are made.
    pub fn edit_request(
        &self,
        edit: impl FnOnce(&mut ExecutionRequest),
    ) -> Result<ExecutionRequest, StoreError> {
        let mut request = self.read_request()?;
        edit(&mut request);
        self.write_request(&request)?;
        Ok(request)
    }

    /// Reads `state.json`; a fresh state when the runner has not written one yet.
    pub fn read_state(&self) -> Result<WorkflowExecution, StoreError> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(WorkflowExecution::new(&self.id()));
        }
        let text = read(&path)?;
        serde_json::from_str(&text).map_err(|source| StoreError::Json { path, source })
    }

    /// Writes `state.json` atomically and durably, for a one-off change (a hand edit, a fetch);
    /// the runner's own writes go through [`Self::record_state`].
    pub fn write_state(&self, state: &WorkflowExecution) -> Result<(), StoreError> {
        let (path, text) = self.state_text(state)?;
        write_atomic(&path, &text).map_err(|e| StoreError::io(&path, e))
    }

    /// Writes `state.json` for the runner that holds the lock, through a swap file kept beside
    /// it (`store::write_swapped`: the two names exchanged in one step): durably for a state
    /// transition, without waiting for the disk for a step the next transition makes durable.
    /// [`Self::end_state_writes`] removes the swap.
    pub fn record_state(&self, state: &WorkflowExecution, durable: bool) -> Result<(), StoreError> {
        let (_, text) = self.state_text(state)?;
        self.record_state_text(&text, durable)
    }

    /// [`Self::record_state`] of a state already encoded (by a [`super::StateEncoder`]).
    pub fn record_state_text(&self, text: &[u8], durable: bool) -> Result<(), StoreError> {
        let path = self.state_path();
        write_swapped(&path, &self.state_swap_path(), text, durable)
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Removes the swap file of [`Self::record_state`]: the runner's writes are over.
    pub fn end_state_writes(&self) {
        let _ = std::fs::remove_file(self.state_swap_path());
    }

    fn state_text(&self, state: &WorkflowExecution) -> Result<(PathBuf, Vec<u8>), StoreError> {
        let path = self.state_path();
        match serde_json::to_vec(state) {
            Ok(text) => Ok((path, text)),
            Err(source) => Err(StoreError::Json { path, source }),
        }
    }

    fn state_swap_path(&self) -> PathBuf {
        self.root.join(".state.json.swap")
    }

    /// `events.ndjson`, opened for appending (created with its folder when missing).
    pub fn open_events(&self) -> Result<std::fs::File, StoreError> {
        let path = self.events_path();
        std::fs::create_dir_all(&self.root).map_err(|e| StoreError::io(&self.root, e))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))
    }

    /// Writes an artifact atomically at its relative path; the state that records it, written
    /// next, is the durable write.
    pub fn write_artifact(&self, rel: &str, content: &str) -> Result<(), StoreError> {
        let path = self.root.join(rel);
        write_replace(&path, content.as_bytes()).map_err(|e| StoreError::io(&path, e))
    }

    /// Reads an artifact by its relative path.
    pub fn read_artifact(&self, rel: &str) -> Result<String, StoreError> {
        read(&self.artifact_path(rel)?)
    }

    /// The file of an artifact recorded as `rel`; only `artifacts/…` inside this folder, with
    /// no `..`, no absolute path and no symlink leading out (a tampered `state.json` must not
    /// make `artifact view` read, or `artifact edit` write, any other file).
    pub fn artifact_path(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let outside = || StoreError::OutsideArtifacts(rel.to_owned());
        let path = Path::new(rel);
        let plain = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || !path.starts_with("artifacts") {
            return Err(outside());
        }
        let full = self.root.join(path);
        if let (Ok(real), Ok(base)) = (
            full.canonicalize(),
            self.root.join("artifacts").canonicalize(),
        ) && !real.starts_with(&base)
        {
            return Err(outside());
        }
        Ok(full)
    }
}

fn read(path: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))
}
