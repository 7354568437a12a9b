//! The task inbox, `.autowrkers/tasks/*.md`: a file dropped there becomes an execution. Optional
//! YAML front matter between `---` lines sets `template` (an id, a name or a file),
//! `budget_limit` and `interactive_mode`; the body is the task. Once started, the execution's
//! id is written into the front matter (`execution: <id>`), so a restarted watcher does not
//! start it twice.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spec::SpecError;
use crate::store::{ProjectDir, StoreError, write_atomic};

/// What a task file asks for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFront {
    /// The template: id, name or YAML file (default: the project's).
    #[serde(default)]
    pub template: Option<String>,
    /// USD limit of the execution.
    #[serde(default)]
    pub budget_limit: Option<f64>,
    /// Pause for approval where the template says so.
    #[serde(default)]
    pub interactive_mode: bool,
    /// The execution it started (written by the watcher).
    #[serde(default)]
    pub execution: Option<String>,
}

/// One task file, read.
#[derive(Debug, Clone)]
pub struct TaskFile {
    /// The file.
    pub path: PathBuf,
    /// Its front matter.
    pub front: TaskFront,
    /// The task.
    pub body: String,
}

/// The folder of the inbox.
pub fn folder(project: &Path) -> PathBuf {
    ProjectDir::new(project).root().join("tasks")
}

/// The task files not yet started, in name order, each with its path; unreadable ones as
/// errors.
pub fn pending(project: &Path) -> Vec<(PathBuf, Result<TaskFile, SpecError>)> {
    let Ok(entries) = std::fs::read_dir(folder(project)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let read = read(&p);
            (p, read)
        })
        .filter(
            |(_, r)| !matches!(r, Ok(t) if t.front.execution.is_some() || t.body.trim().is_empty()),
        )
        .collect()
}

/// Splits `---\nfront\n---\nbody`; a file without front matter is all body.
fn split(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else {
        return (None, text);
    };
    match rest.find("\n---\n") {
        Some(end) => (Some(&rest[..end + 1]), &rest[end + 5..]),
        None => match rest.strip_suffix("\n---") {
            Some(front) => (Some(front), ""),
            None => (None, text),
        },
    }
}

/// Reads one task file; a bad front matter names the file, line and column (counted in the
/// file, not in the front matter).
pub fn read(path: &Path) -> Result<TaskFile, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (front, body) = split(&text);
    let front = match front {
        // A blank line stands for the opening `---`: lines are counted as in the file.
        Some(f) if !f.trim().is_empty() => {
            crate::spec::load::parse_yaml::<TaskFront>(&format!("\n{f}"), path, None)?
        }
        _ => TaskFront::default(),
    };
    Ok(TaskFile {
        path: path.to_path_buf(),
        front,
        body: body.trim().to_owned(),
    })
}

/// Writes `execution: <id>` into the task file's front matter, keeping the rest.
pub fn record(task: &TaskFile, id: &str) -> Result<(), StoreError> {
    let text = std::fs::read_to_string(&task.path).map_err(|e| StoreError::io(&task.path, e))?;
    let updated = match split(&text) {
        (Some(front), body) => format!("---\n{front}execution: {id}\n---\n{body}"),
        (None, body) => format!("---\nexecution: {id}\n---\n{body}"),
    };
    write_atomic(&task.path, updated.as_bytes()).map_err(|e| StoreError::io(&task.path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_is_read_and_the_execution_recorded_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = folder(tmp.path());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("a.md"),
            "---\ntemplate: quick\nbudget_limit: 2\n---\nFix the typo\n",
        )
        .expect("write");
        std::fs::write(dir.join("b.md"), "Add a test\n").expect("write");
        std::fs::write(dir.join("c.md"), "---\ntemplate: [\n---\nx\n").expect("write");
        let found = pending(tmp.path());
        assert_eq!(found.len(), 3);
        let found: Vec<_> = found.into_iter().map(|(_, r)| r).collect();
        let a = found[0].as_ref().expect("a");
        assert_eq!(a.front.template.as_deref(), Some("quick"));
        assert_eq!(a.front.budget_limit, Some(2.0));
        assert_eq!(a.body, "Fix the typo");
        let b = found[1].as_ref().expect("b");
        assert_eq!(b.body, "Add a test");
        let err = found[2].as_ref().expect_err("c").to_string();
        assert!(err.contains("c.md:3:1:"), "{err}");
        record(a, "1234").expect("record");
        record(b, "5678").expect("record");
        let again = pending(tmp.path());
        assert_eq!(again.len(), 1, "only the broken one is left");
        let a = read(&dir.join("a.md")).expect("a");
        assert_eq!(a.front.execution.as_deref(), Some("1234"));
        assert_eq!(a.front.template.as_deref(), Some("quick"));
        assert_eq!(a.body, "Fix the typo");
    }
}
