//! Config files read once per process while they stay as they were.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::EngineError;
use crate::spec::{self, ProjectConfig};
use crate::store::Stamp;

/// A config file checked against its schema; an absent file is the empty config. A file whose
/// stamp was settled when this process parsed it is parsed again only when its stamp moves: a
/// `run` asks for the project's config four times (the template, the checks, the pass, its
/// GitHub settings), and `serve` at every request.
pub(super) fn read_config(path: &Path) -> Result<ProjectConfig, EngineError> {
    type Parsed = HashMap<PathBuf, (Stamp, ProjectConfig)>;
    static PARSED: OnceLock<Mutex<Parsed>> = OnceLock::new();
    let Some(stamp) = Stamp::of(path) else {
        return Ok(ProjectConfig::default());
    };
    let parsed = PARSED.get_or_init(Default::default);
    let lock = || parsed.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((seen, config)) = lock().get(path)
        && *seen == stamp
    {
        return Ok(config.clone());
    }
    let config = spec::load::parse_config(&spec::load::read(path)?, path)?;
    // Only a settled stamp tells every later change (a write in the same clock tick as the
    // last can leave it as it was).
    if stamp.is_settled() {
        lock().insert(path.to_path_buf(), (stamp, config.clone()));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::set_mtime;

    /// Sets `path`'s mtime to a fixed instant long past, `secs` seconds apart for each `secs`.
    fn stamp_at(path: &Path, secs: u64) {
        let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + secs);
        set_mtime(path, then);
    }

    #[test]
    fn a_settled_config_is_parsed_once_and_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        assert_eq!(read_config(&path).unwrap(), ProjectConfig::default());
        std::fs::write(&path, "default_template: aaa\n").unwrap();
        stamp_at(&path, 10);
        let first = read_config(&path).unwrap();
        assert_eq!(first.default_template.as_deref(), Some("aaa"));
        // Rewritten in place with the stamp it had: the parse is not done again.
        std::fs::write(&path, "default_template: bbb\n").unwrap();
        stamp_at(&path, 10);
        assert_eq!(read_config(&path).unwrap(), first);
        // Any change of the stamp is seen.
        stamp_at(&path, 5);
        let changed = read_config(&path).unwrap();
        assert_eq!(changed.default_template.as_deref(), Some("bbb"));
        // A stamp taken within two seconds of its write is never trusted to tell a change: a
        // second write in the same clock tick (same size, same inode) can leave it as it was.
        let recent = std::time::SystemTime::now();
        for text in ["default_template: ccc\n", "default_template: ddd\n"] {
            std::fs::write(&path, text).unwrap();
            set_mtime(&path, recent);
            let read = read_config(&path).unwrap();
            assert_eq!(read.default_template.as_deref(), Some(&text[18..21]));
        }
    }
}
