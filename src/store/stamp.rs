//! What tells that a file or folder changed without reading it: its inode, modification time
//! and size. A write by rename (ours, an editor's) gives a new inode; a write in place moves the
//! mtime; a file made or removed in a folder moves the folder's mtime.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The stat fields of a file or folder that change when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    ino: u64,
    secs: i64,
    nanos: i64,
    size: u64,
}

impl Stamp {
    /// The stamp of `path` now; `None` when it is gone.
    pub fn of(path: &Path) -> Option<Self> {
        std::fs::metadata(path)
            .ok()
            .map(|m| Self::from_metadata(&m))
    }

    /// The stamp of `name` in the folder open as `folder` (`O_PATH` is enough): the same stamp
    /// as [`Self::of`] gives, with the kernel walking only `name` — for thousands of files in
    /// one folder, the walk of the folder's own path is most of each `stat`. `None` when it is
    /// gone.
    pub fn at(folder: &std::fs::File, name: &Path) -> Option<Self> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(name.as_os_str().as_bytes()).ok()?;
        // SAFETY: fstatat writes into a zeroed struct we own; the name is a valid C string and
        // the folder's descriptor is open for the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatat(folder.as_raw_fd(), name.as_ptr(), &mut st, 0) };
        (rc == 0).then_some(Self {
            ino: st.st_ino,
            secs: st.st_mtime,
            nanos: st.st_mtime_nsec,
            size: st.st_size as u64,
        })
    }

    /// Whether its mtime is at least two seconds old: a file system stamps with a coarse
    /// clock, so a change in the same tick as a recent write can leave the stamp as it was. A
    /// cache may trust an unchanged stamp only when it was settled ("racy git").
    pub fn is_settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.secs + 2 <= now
    }

    /// The size in bytes when it was taken.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stamp of metadata already read.
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        Self {
            ino: m.ino(),
            secs: m.mtime(),
            nanos: m.mtime_nsec(),
            size: m.size(),
        }
    }
}

/// Sets the modification time of the file or folder `path` to `when` (opened for reading:
/// its owner may set its times), for tests of the caches that trust a settled stamp.
#[cfg(test)]
pub(crate) fn set_mtime(path: &Path, when: std::time::SystemTime) {
    let file = std::fs::File::open(path);
    file.and_then(|f| f.set_modified(when)).expect("set mtime");
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}.{}", self.ino, self.secs, self.nanos, self.size)
    }
}
