//! The names in a folder that begin with a prefix, read with `readdir(3)` itself: an id
//! prefix is matched against every execution folder of a project, and the standard library's
//! listing makes two allocations per name (its entry and the name handed out) to find the one
//! or two that match.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The names in `folder` (not `.` or `..`) that begin with `prefix`, in the folder's order.
pub fn with_prefix(folder: &Path, prefix: &[u8]) -> std::io::Result<Vec<OsString>> {
    let path = CString::new(folder.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string; the stream is closed below on every path.
    let dir = unsafe { libc::opendir(path.as_ptr()) };
    if dir.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut failed = None;
    loop {
        // SAFETY: `dir` is an open stream used by this thread only; the entry it returns
        // stays valid until the next call on the stream, and is copied out before that.
        // `errno` is cleared first: a null entry is the end, or an error when `errno` is set.
        let entry = unsafe {
            *libc::__errno_location() = 0;
            libc::readdir(dir)
        };
        if entry.is_null() {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(0) {
                failed = Some(error);
            }
            break;
        }
        // SAFETY: `d_name` of a returned entry is a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name.starts_with(prefix) && name != b"." && name != b".." {
            found.push(OsString::from_vec(name.to_vec()));
        }
    }
    // SAFETY: `dir` came from opendir and is closed once.
    unsafe { libc::closedir(dir) };
    failed.map_or(Ok(found), Err)
}

#[cfg(test)]
mod tests {
    use super::with_prefix;

    #[test]
    fn finds_the_names_that_begin_with_the_prefix() {
        let tmp = tempfile::tempdir().expect("tmp");
        for name in ["abc1", "abc2", "abd", "xabc"] {
            std::fs::create_dir(tmp.path().join(name)).expect("mkdir");
        }
        let mut found = with_prefix(tmp.path(), b"abc").expect("list");
        found.sort();
        assert_eq!(found, ["abc1", "abc2"]);
        assert_eq!(with_prefix(tmp.path(), b"").expect("list").len(), 4);
        assert!(with_prefix(&tmp.path().join("missing"), b"a").is_err());
    }
}
