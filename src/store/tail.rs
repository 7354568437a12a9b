//! Following an execution's `events.ndjson` as it grows: the live view, `logs --follow` (and
//! next the web socket) read the whole lines appended since they last looked. A line still
//! being written is left for the next read.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::ExecutionDir;

/// A reader of the lines appended to one `events.ndjson`.
#[derive(Debug, Clone)]
pub struct EventTail {
    path: PathBuf,
    offset: u64,
}

impl EventTail {
    /// From the first line (history included).
    pub fn from_start(dir: &ExecutionDir) -> Self {
        Self {
            path: dir.events_path(),
            offset: 0,
        }
    }

    /// From the current end: only what is appended from now on.
    pub fn from_end(dir: &ExecutionDir) -> Self {
        let path = dir.events_path();
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self { path, offset }
    }

    /// From byte `offset` (a line's start, as `read_new` reported it): a reader that saw the
    /// lines before it continues without a gap or a repeat.
    pub fn at(dir: &ExecutionDir, offset: u64) -> Self {
        Self {
            path: dir.events_path(),
            offset,
        }
    }

    /// The byte offset read up to.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The whole lines appended since the last read, each with the offset it starts at.
    pub fn read_new(&mut self) -> std::io::Result<Vec<(u64, String)>> {
        let mut fresh = String::new();
        match std::fs::File::open(&self.path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(self.offset))?;
                f.read_to_string(&mut fresh)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        let whole = fresh.rfind('\n').map_or(0, |n| n + 1);
        let mut at = self.offset;
        let mut lines = Vec::new();
        for line in fresh[..whole].lines() {
            lines.push((at, line.to_owned()));
            at += line.len() as u64 + 1;
        }
        self.offset += whole as u64;
        Ok(lines)
    }
}

/// True while a runner reconciles `dir`: it holds the execution's lock (the kernel drops the
/// lock of a runner that died). The one way the commands tell a live run from a dead one.
pub fn runner_alive(dir: &ExecutionDir) -> bool {
    super::ExecutionLock::is_held(&dir.lock_path())
}

/// The status to show for an execution whose files say `status`: `interrupted` for a
/// `running` one no runner holds (its runner was killed; `resume` continues it).
pub fn shown_status(status: &str, dir: &ExecutionDir) -> String {
    if status == crate::spec::WorkflowStatus::Running.as_str() && !runner_alive(dir) {
        "interrupted".to_owned()
    } else {
        status.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_lines_once_and_leaves_a_partial_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = ExecutionDir::new(tmp.path());
        let mut tail = EventTail::from_start(&dir);
        assert!(tail.read_new().expect("read").is_empty(), "no file yet");
        std::fs::write(dir.events_path(), "{\"a\":1}\n{\"b\"").expect("write");
        assert_eq!(
            tail.read_new().expect("read"),
            vec![(0, "{\"a\":1}".to_owned())]
        );
        std::fs::write(dir.events_path(), "{\"a\":1}\n{\"b\":2}\n").expect("write");
        assert_eq!(
            tail.read_new().expect("read"),
            vec![(8, "{\"b\":2}".to_owned())]
        );
        assert!(tail.read_new().expect("read").is_empty());
        assert_eq!(EventTail::from_end(&dir).offset(), 16);
    }
}
