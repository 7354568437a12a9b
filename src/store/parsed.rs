//! The `execution.yaml` files this process parsed last, by their text: a runner reads its
//! request again at each safe point (control requests, hand edits, the end's hint) and a
//! request holds the template's snapshot, so each parse costs about 0.15 ms of YAML for a file
//! that has not changed. A read still happens each time — the text is the key, so an edit
//! of any kind, in place or by rename, within the same clock tick or not, is parsed afresh.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::spec::ExecutionRequest;

/// How many files are kept: a runner needs one, `serve` one per execution it drives.
const KEPT: usize = 16;

/// (path, text, what it parsed to), the most recently used last.
type Entry = (PathBuf, String, ExecutionRequest);

static PARSED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The request the `text` of `path` parses to: from the last parse of the same text, or from
/// `parse` (whose success is kept).
pub fn request<E>(
    path: &Path,
    text: String,
    parse: impl FnOnce(&str) -> Result<ExecutionRequest, E>,
) -> Result<ExecutionRequest, E> {
    {
        let mut kept = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = kept.iter().position(|(p, t, _)| p == path && *t == text) {
            let entry = kept.remove(at);
            let request = entry.2.clone();
            kept.push(entry);
            return Ok(request);
        }
    }
    let request = parse(&text)?;
    let mut kept = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
    kept.retain(|(p, _, _)| p != path);
    if kept.len() >= KEPT {
        kept.remove(0);
    }
    kept.push((path.to_path_buf(), text, request.clone()));
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn parsed(path: &Path, yaml: &str, parses: &Cell<u32>) -> ExecutionRequest {
        request(path, yaml.to_owned(), |text| {
            parses.set(parses.get() + 1);
            crate::spec::from_yaml(text, path).map_err(|e| e.to_string())
        })
        .unwrap()
    }

    #[test]
    fn the_same_text_is_parsed_once_and_any_change_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::store::ExecutionDir::new(tmp.path().join("e1"));
        let yaml = concat!(
            "id: e1\ntrigger_mode: manual_task\nproject_path: /p\n",
            "task_description: first task\ntemplate: {name: t, phases: []}\n",
            "iteration_behavior: auto_iterate\ncreated_at: '2026-01-01T00:00:00Z'\n",
        )
        .to_owned();
        let path = dir.request_path();
        let parses = Cell::new(0);
        assert_eq!(parsed(&path, &yaml, &parses).task_description, "first task");
        assert_eq!(parsed(&path, &yaml, &parses).task_description, "first task");
        assert_eq!(parses.get(), 1, "unchanged text is not parsed again");
        // An edit of the same length, as a write in place within one clock tick would leave.
        let edited = yaml.replace("first task", "other task");
        assert_eq!(edited.len(), yaml.len());
        assert_eq!(
            parsed(&path, &edited, &parses).task_description,
            "other task"
        );
        assert_eq!(parses.get(), 2);
        // The same text at another path is another file.
        let other = tmp.path().join("e2/execution.yaml");
        parsed(&other, &edited, &parses);
        assert_eq!(parses.get(), 3);
    }
}
