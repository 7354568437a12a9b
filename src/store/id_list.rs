//! The names in a project's executions folder, remembered in the home
//! (`index/ids/<hash of the folder>`) with the folder's stamp when they were listed. An id
//! prefix (`workflow status 7ffa`, `resume`, `artifact`…) is matched against that list instead
//! of a listing of the folder: `getdents` of 10 000 names was about half of `workflow status`
//! in such a project. A folder's stamp moves whenever a name is added, removed or renamed in
//! it, so a list taken at the folder's current stamp — settled, so that no change can hide in
//! the same clock tick — holds the folder's names; any other list is thrown away, the folder
//! listed again, and the new list remembered. Like the index, it is a cache: losing it costs
//! one listing.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Home, Stamp, names, write_replace};

/// The names in `folder` that begin with `prefix` (not `.`, `..` or a name holding a line
/// break), from the list remembered for it in `home` when that list is current, else from a
/// listing, which is then remembered.
pub fn with_prefix(home: &Home, folder: &Path, prefix: &[u8]) -> std::io::Result<Vec<OsString>> {
    let stamp = Stamp::of(folder).filter(Stamp::is_settled);
    let file = list_file(home, folder);
    let head = stamp.map(|s| header(folder, s));
    if let Some(head) = &head
        && let Ok(text) = std::fs::read(&file)
        && let Some(names) = text.strip_prefix(head.as_slice())
    {
        return Ok(names
            .split(|b| *b == b'\n')
            .filter(|name| !name.is_empty() && name.starts_with(prefix))
            .map(|name| OsString::from_vec(name.to_vec()))
            .collect());
    }
    let all = names::with_prefix(folder, b"")?;
    // Remembered only when the folder's stamp was settled before the listing began: a name
    // added meanwhile then moved the stamp, and the list is not taken for the folder's again.
    if let Some(head) = head {
        remember(&file, &head, &all);
    }
    Ok(all
        .into_iter()
        .filter(|name| name.as_bytes().starts_with(prefix))
        .collect())
}

/// `index/ids/<sha-256 of the folder's path, 16 hex digits>`.
fn list_file(home: &Home, folder: &Path) -> PathBuf {
    let digest = Sha256::digest(folder.as_os_str().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    home.index().join("ids").join(hex)
}

/// The list's first two lines: the folder's path (two folders that share a hash never read
/// each other's list) and its stamp.
fn header(folder: &Path, stamp: Stamp) -> Vec<u8> {
    let mut head = folder.as_os_str().as_bytes().to_vec();
    head.extend_from_slice(format!("\n{stamp}\n").as_bytes());
    head
}

/// Writes the list (a new file renamed into place, not synced: a reader sees the old list or
/// the new one, and a list lost to a power cut is a listing again). A failure costs only the
/// next command a listing, so it is not reported.
fn remember(file: &Path, head: &[u8], names: &[OsString]) {
    let mut text = Vec::with_capacity(head.len() + names.len() * 37);
    text.extend_from_slice(head);
    for name in names.iter().filter(|n| !n.as_bytes().contains(&b'\n')) {
        text.extend_from_slice(name.as_bytes());
        text.push(b'\n');
    }
    let _ = write_replace(file, &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s modification time `secs` seconds into the past.
    fn age(path: &Path, secs: u64) {
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        crate::store::set_mtime(path, when);
    }

    #[test]
    fn a_settled_folder_is_answered_from_its_list_and_a_changed_one_is_listed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path().join("home"));
        let folder = tmp.path().join("executions");
        for id in ["abc1", "abc2", "abd3"] {
            std::fs::create_dir_all(folder.join(id)).unwrap();
        }
        let sorted = |mut v: Vec<OsString>| {
            v.sort();
            v
        };
        // Just changed: listed, not remembered.
        assert_eq!(with_prefix(&home, &folder, b"abc").unwrap().len(), 2);
        assert!(!list_file(&home, &folder).exists());
        age(&folder, 10);
        assert_eq!(
            sorted(with_prefix(&home, &folder, b"abc").unwrap()),
            ["abc1", "abc2"]
        );
        let list = list_file(&home, &folder);
        assert!(list.exists(), "a settled folder's names are remembered");
        // The list answers: a name it does not hold (written into it by hand) is found.
        let mut text = std::fs::read(&list).unwrap();
        text.extend_from_slice(b"abc9\n");
        std::fs::write(&list, &text).unwrap();
        assert_eq!(with_prefix(&home, &folder, b"abc").unwrap().len(), 3);
        // A new name moves the folder's stamp: the stale list is not used.
        std::fs::create_dir(folder.join("abc4")).unwrap();
        age(&folder, 10);
        assert_eq!(
            sorted(with_prefix(&home, &folder, b"abc").unwrap()),
            ["abc1", "abc2", "abc4"]
        );
        std::fs::remove_dir(folder.join("abc1")).unwrap();
        age(&folder, 10);
        assert_eq!(
            sorted(with_prefix(&home, &folder, b"ab").unwrap()),
            ["abc2", "abc4", "abd3"]
        );
    }
}
