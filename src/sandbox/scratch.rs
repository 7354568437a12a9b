//! A phase run's scratch folder (its private HOME and TMPDIR) in the temp folder, named
//! `autowrkers-sandbox-<pid>-<random>`. It is removed when the sandbox is dropped; a runner
//! killed before that leaves it behind, so the first sandbox of each process removes those
//! whose process is gone (a crash leaves nothing for good).

use std::path::Path;
use std::sync::Once;

const PREFIX: &str = "autowrkers-sandbox-";

/// A new scratch folder for this process; left-overs of dead processes removed first.
pub fn create() -> std::io::Result<tempfile::TempDir> {
    static SWEPT: Once = Once::new();
    let temp = std::env::temp_dir();
    SWEPT.call_once(|| {
        sweep(&temp);
    });
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(&temp)
}

/// Removes the scratch folders in `temp` whose process no longer runs; returns how many.
pub fn sweep(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_dead_processes_are_removed_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let dead = temp.path().join(format!("{PREFIX}999999999-abc"));
        let live = temp
            .path()
            .join(format!("{PREFIX}{}-abc", std::process::id()));
        let other = temp.path().join("someone-else");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d.join("home")).unwrap();
        }
        assert_eq!(sweep(temp.path()), 1);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
