//! Crash-safe writes: a file is either its old or its new content, never torn (DESIGN §2).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temp file in the same folder, fsync and rename: after a
/// crash or a power cut the file is its old or its new content, and the new one once this
/// returns. For the user's files and each state transition of an execution.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true, 0o666)
}

/// [`write_atomic`] for a file only its owner may read (mode 0600 from its first byte): the
/// key store, the server's token.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true, 0o600)
}

/// Writes `bytes` to `path` through a temp file and rename, without waiting for the disk: a
/// killed process leaves the old or the new content, never a torn file. For what the next
/// durable write (the state that records it) follows at once: artifacts, the state of a
/// phase just started.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, false, 0o666)
}

/// The file a [`write_replace_retiring`] replaced, kept under a temp name so that the rename
/// did not free it. [`Retired::remove`] frees it, when the writer has nobody waiting.
#[derive(Debug)]
#[must_use = "the replaced file stays on disk until it is removed"]
pub struct Retired(Option<std::path::PathBuf>);

impl Retired {
    /// Removes the replaced file (nothing when there was none, or it could not be kept).
    pub fn remove(self) {
        if let Some(old) = self.0 {
            let _ = fs::remove_file(old);
        }
    }
}

/// [`write_replace`] for a file rewritten often while someone waits for each write (an
/// execution's `state.json`): the file it replaces gets a second name first
/// (`.NAME.old.PID.tmp`), so the rename only drops a name and the file is freed by
/// [`Retired::remove`] later. On ext4 the rename that frees the old file took three times as
/// long as one that does not (185 µs against 57 µs). Where the link cannot be made (no old
/// file, a file system without hard links), this is a plain [`write_replace`]. A kill in
/// between leaves the temp name, which [`clean_temp_files`] removes.
pub fn write_replace_retiring(path: &Path, bytes: &[u8]) -> std::io::Result<Retired> {
    let old = temp_name(path, ".old");
    let kept = fs::hard_link(path, &old).is_ok();
    match replace(path, bytes, false, 0o666) {
        Ok(()) => Ok(Retired(kept.then_some(old))),
        Err(e) => {
            if kept {
                let _ = fs::remove_file(&old);
            }
            Err(e)
        }
    }
}

/// `.NAME{infix}.PID.tmp` beside `path`: a temp name [`clean_temp_files`] knows.
fn temp_name(path: &Path, infix: &str) -> std::path::PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    dir.join(format!(".{name}{infix}.{}.tmp", std::process::id()))
}

fn replace(path: &Path, bytes: &[u8], durable: bool, mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = temp_name(path, "");
    let create = || open_own(&tmp, mode);
    let created = create().or_else(|e| {
        // The folder is made on first use only: one failed open is cheaper than a mkdir each time.
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        fs::create_dir_all(dir)?;
        create()
    });
    {
        let mut file = created?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    crash_point(&format!("temp:{name}"));
    fs::rename(&tmp, path)?;
    // The rename itself is durable only once the folder is synced.
    if durable && let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Flushes `path`'s content to the disk, then its folder (its name): what [`write_atomic`]
/// does at once, made later for a file written by [`write_replace`] — by whoever must not wait
/// for the disk now. A folder its file system will not sync is no failure (as in
/// [`write_atomic`]).
pub fn sync_written(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()?;
    if let Ok(d) = File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Opens `path` — a temp file of ours — for writing (emptied, created with `mode` when
/// missing), never through a symlink: with `--in-place` a model's commands can
/// write in the project's `.autowrkers/`, and a link planted under one of these names would
/// otherwise make this process write the state over the file it points to. A link found there
/// is removed and the file made anew.
fn open_own(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// Removes the temp files that killed writers left in `dir` and its subfolders (`.NAME.PID.tmp`
/// whose PID is no longer alive); returns how many. Call with the execution's lock held.
pub fn clean_temp_files(dir: &Path) -> usize {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += clean_temp_files(&path);
            continue;
        }
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let pid = stem.rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if pid.is_some() && !alive && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A named instant at which the crash tests kill the process: when `AUTOWRKERS_CRASH_AT` is
/// `NAME#N`, the process aborts on the spot (as a `kill -9` there would stop it) the N-th time
/// it passes `NAME`. Costs one cached environment lookup otherwise.
pub fn crash_point(name: &str) {
    if let Some((point, n)) = armed_crash_point()
        && point == name
        && CRASH_PASSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *n
    {
        std::process::abort();
    }
}

/// True when a test armed a crash point (`AUTOWRKERS_CRASH_AT`).
pub fn crash_points_armed() -> bool {
    armed_crash_point().is_some()
}

static CRASH_PASSED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `AUTOWRKERS_CRASH_AT`'s point and which of its passes aborts (`point#n`, the first by
/// default), read once.
fn armed_crash_point() -> Option<&'static (String, u32)> {
    static AT: std::sync::OnceLock<Option<(String, u32)>> = std::sync::OnceLock::new();
    AT.get_or_init(|| {
        let spec = std::env::var("AUTOWRKERS_CRASH_AT").ok()?;
        let (point, n) = spec.rsplit_once('#').unwrap_or((&spec, "1"));
        Some((point.to_owned(), n.parse().unwrap_or(1)))
    })
    .as_ref()
}

/// Appends one line (a newline is added) with a single `write` on an `O_APPEND` file, so
/// concurrent writers never interleave inside a line.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    write_line(&mut file, line)
}

/// Writes `line` and its newline with a single `write` (on an `O_APPEND` file, other writers
/// never interleave inside it).
pub fn write_line(file: &mut File, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    file.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_as_a_temp_file_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim.txt");
        fs::write(&victim, "the user's file\n").unwrap();
        let temp = tmp
            .path()
            .join(format!(".a.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        write_atomic(&tmp.path().join("a.json"), b"{}").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "the user's file\n");
        assert_eq!(fs::read(tmp.path().join("a.json")).unwrap(), b"{}");
    }

    #[test]
    fn a_retiring_write_keeps_the_replaced_file_until_it_is_removed() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        // No old file: nothing to keep.
        write_replace_retiring(&path, b"1").unwrap().remove();
        let first = fs::metadata(&path).unwrap().ino();
        let retired = write_replace_retiring(&path, b"2").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"2");
        let kept = tmp
            .path()
            .join(format!(".state.json.old.{}.tmp", std::process::id()));
        // The replaced file itself, not a copy: the rename freed nothing.
        assert_eq!(fs::metadata(&kept).unwrap().ino(), first);
        assert_eq!(fs::read(&kept).unwrap(), b"1");
        retired.remove();
        assert!(!kept.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_replaced_file_a_killed_writer_kept_is_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        // No process has this id (above the kernel's pid_max).
        let stale = tmp.path().join(".state.json.old.4194305.tmp");
        fs::write(&stale, b"old").unwrap();
        fs::write(tmp.path().join("state.json"), b"new").unwrap();
        assert_eq!(clean_temp_files(tmp.path()), 1);
        assert!(!stale.exists());
        assert!(tmp.path().join("state.json").exists());
    }
}
