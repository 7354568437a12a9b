//! One execution's folder: `execution.yaml` (desired), `state.json` (actual) with the phase runs
//! of earlier iterations in `history/<iteration>.json`, `events.ndjson`,
//! `artifacts/<iteration>/<phase-id>.<ext>`, `logs/<phase-id>.<iteration>.log` and `lock`.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::atomic::{Retired, sync_written, write_atomic, write_replace, write_replace_retiring};
use super::state_encoder::{Encoded, History, StateEncoder};
use crate::spec::{self, ExecutionRequest, WorkflowExecution};

/// The name of an execution's request file in its folder.
pub const REQUEST_FILE: &str = "execution.yaml";
/// The name of an execution's state file in its folder.
pub const STATE_FILE: &str = "state.json";

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
        self.root.join(REQUEST_FILE)
    }
    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }
    /// `history/<iteration>.json`: the phase runs and artifacts of an iteration that is over.
    pub fn history_path(&self, iteration: u32) -> PathBuf {
        self.root.join(Self::history_rel(iteration))
    }
    /// Relative path of an iteration's history file.
    pub fn history_rel(iteration: u32) -> String {
        format!("history/{iteration}.json")
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

    /// Reads `execution.yaml` (parsed again only when its bytes changed, see
    /// [`super::parsed`]).
    pub fn read_request(&self) -> Result<ExecutionRequest, StoreError> {
        let path = self.request_path();
        let text = read(&path)?;
        super::parsed::request(&path, text, |text| Ok(spec::from_yaml(text, &path)?))
    }

    /// Writes `execution.yaml` atomically and durably.
    pub fn write_request(&self, request: &ExecutionRequest) -> Result<(), StoreError> {
        let path = self.request_path();
        let text = spec::to_yaml(request)?;
        write_atomic(&path, text.as_bytes()).map_err(|e| StoreError::io(&path, e))
    }

    /// Writes a new execution's `execution.yaml` atomically, without waiting for the disk:
    /// the runner's first synced state syncs it ([`Self::sync_state`]), before which the
    /// execution has spent nothing a power cut could lose.
    pub fn create_request(&self, request: &ExecutionRequest) -> Result<(), StoreError> {
        let path = self.request_path();
        let text = spec::to_yaml(request)?;
        write_replace(&path, text.as_bytes()).map_err(|e| StoreError::io(&path, e))
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

    /// Reads `state.json`, with the phase runs and artifacts of the iterations its history
    /// files hold put back in front; a fresh state when the runner has not written one yet.
    pub fn read_state(&self) -> Result<WorkflowExecution, StoreError> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(WorkflowExecution::new(&self.id()));
        }
        let text = read(&path)?;
        let mut state: WorkflowExecution =
            serde_json::from_str(&text).map_err(|source| StoreError::Json { path, source })?;
        if state.history_through > 0 {
            let mut past = History::default();
            for iteration in 1..=state.history_through {
                let path = self.history_path(iteration);
                let text = read(&path)?;
                let one: History = serde_json::from_str(&text)
                    .map_err(|source| StoreError::Json { path, source })?;
                past.phase_executions.extend(one.phase_executions);
                past.artifacts.extend(one.artifacts);
            }
            past.phase_executions.append(&mut state.phase_executions);
            past.artifacts.append(&mut state.artifacts);
            state.phase_executions = past.phase_executions;
            state.artifacts = past.artifacts;
        }
        Ok(state)
    }

    /// Writes `state.json` (and its history files) atomically and durably, for a one-off
    /// change (a hand edit, a fetch); the runner's own writes go through
    /// [`Self::record_state_text`].
    pub fn write_state(&self, state: &WorkflowExecution) -> Result<(), StoreError> {
        let encoded = self.encode(state)?;
        self.write_history(&encoded.history)?;
        let path = self.state_path();
        write_atomic(&path, &encoded.state).map_err(|e| StoreError::io(&path, e))
    }

    /// Writes `state.json`, already encoded by a [`super::StateEncoder`] (its history files
    /// written), for the runner that holds the lock, without waiting for the disk
    /// ([`Self::sync_state`] does, when the state records work done). Each write is a new file
    /// renamed over the old one, never an old one written over: a reader that opened
    /// `state.json` a moment ago reads that state whole, and a kill leaves the old state or
    /// this one.
    ///
    /// The state it replaces is returned still on disk under a temp name: freeing a file is
    /// the slow part of a rename, and the caller removes it once nobody waits on this write.
    pub fn record_state_text(&self, text: &[u8]) -> Result<Retired, StoreError> {
        let path = self.state_path();
        write_replace_retiring(&path, text).map_err(|e| StoreError::io(&path, e))
    }

    /// Flushes `state.json` as it is now, and its name, to the disk. With `created`, also what
    /// [`Self::create_request`] left unsynced: `execution.yaml` and the execution folder's own
    /// name in `executions/`.
    pub fn sync_state(&self, created: bool) -> Result<(), StoreError> {
        let sync = |path: &Path| sync_written(path).map_err(|e| StoreError::io(path, e));
        let request = self.request_path();
        // A folder without a request (only ever a test's) has none to sync.
        if created && request.exists() {
            sync(&request)?;
            sync(&self.root)?;
        }
        sync(&self.state_path())
    }

    /// Writes history files (`(iteration, bytes)`) atomically and durably: a state that names
    /// them may be synced next. A file that already holds those bytes is left as it is (a
    /// one-off write of a long run's state rewrites none of its unchanged history).
    pub fn write_history(&self, files: &[(u32, Vec<u8>)]) -> Result<(), StoreError> {
        if !files.is_empty() {
            let dir = self.root.join("history");
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        for (iteration, bytes) in files {
            let path = self.history_path(*iteration);
            if std::fs::read(&path).is_ok_and(|on_disk| on_disk == *bytes) {
                continue;
            }
            write_atomic(&path, bytes).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(())
    }

    /// `state` encoded whole, history files and all.
    fn encode(&self, state: &WorkflowExecution) -> Result<Encoded, StoreError> {
        StateEncoder::new()
            .encode(&mut state.clone())
            .map_err(|source| StoreError::Json {
                path: self.state_path(),
                source,
            })
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
    /// make `artifact view` read, or `artifact edit` write, any other file). None of the
    /// entries below the execution's folder may be a symlink at all — the runner never makes
    /// one there — which takes a `lstat` of each (three for `artifacts/1/a.json`) instead of
    /// resolving the whole path twice: the runner reads its artifacts back some thirty times a
    /// run, and each resolution was a `readlink` per folder from `/` down.
    pub fn artifact_path(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let outside = || StoreError::OutsideArtifacts(rel.to_owned());
        let path = Path::new(rel);
        let plain = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || !path.starts_with("artifacts") {
            return Err(outside());
        }
        let mut at = self.root.clone();
        for part in path.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(outside()),
                Ok(_) => {}
                // Missing from here down: nothing to follow, and the read or write says so.
                Err(_) => break,
            }
        }
        Ok(at)
    }
}

fn read(path: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn an_artifact_path_never_leads_out_of_the_artifacts_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ExecutionDir::new(tmp.path().join("e"));
        dir.write_artifact("artifacts/1/a.json", "{}").unwrap();
        assert_eq!(
            dir.artifact_path("artifacts/1/a.json").unwrap(),
            dir.root().join("artifacts/1/a.json")
        );
        assert_eq!(dir.read_artifact("artifacts/1/a.json").unwrap(), "{}");
        // Not written yet: the path is given, and the read fails as a missing file.
        assert!(dir.artifact_path("artifacts/2/b.md").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            "artifacts/../state.json",
            "state.json",
        ] {
            assert!(
                matches!(dir.artifact_path(bad), Err(StoreError::OutsideArtifacts(_))),
                "{bad}"
            );
        }
        let outside = tmp.path().join("secret.txt");
        std::fs::write(&outside, "secret").unwrap();
        // A file linked out, a folder linked out, and the artifacts folder itself a link.
        std::os::unix::fs::symlink(&outside, dir.root().join("artifacts/1/link.json")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.root().join("artifacts/3")).unwrap();
        for bad in ["artifacts/1/link.json", "artifacts/3/secret.txt"] {
            assert!(
                matches!(dir.read_artifact(bad), Err(StoreError::OutsideArtifacts(_))),
                "{bad}"
            );
        }
        std::fs::rename(dir.root().join("artifacts"), tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("moved"), dir.root().join("artifacts")).unwrap();
        assert!(matches!(
            dir.read_artifact("artifacts/1/a.json"),
            Err(StoreError::OutsideArtifacts(_))
        ));
    }

    #[test]
    fn a_reader_of_the_state_keeps_reading_it_whole_through_the_runners_next_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ExecutionDir::new(tmp.path());
        dir.record_state_text(b"{\"n\":1}").unwrap().remove();
        // `workflow status`, the live view, `serve`: a reader that opened the file just before
        // the runner's next writes still reads one whole state, not a newer one written over
        // its file.
        let mut reader = std::fs::File::open(dir.state_path()).unwrap();
        dir.record_state_text(b"{\"n\":2,\"longer\":true}")
            .unwrap()
            .remove();
        dir.record_state_text(b"{\"n\":3}").unwrap().remove();
        dir.sync_state(false).unwrap();
        let mut seen = String::new();
        reader.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, "{\"n\":1}");
        assert_eq!(std::fs::read(dir.state_path()).unwrap(), b"{\"n\":3}");
        // The replaced states were freed: only `state.json` is left.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
