//! Where a new worktree's files go on the disk.
//!
//! A run writes a worktree (every file of the project) and removes it when it ends, so the
//! next run's files are made where the last run's were just freed. On ext4 without a journal
//! (a common set-up for virtual machines and CI runners) that is slow: to make a file, ext4
//! passes over every inode of the folder's block group freed in the last one to six minutes
//! (`recently_deleted`), reading each from the inode table. A 5 000-file project's worktree
//! took 2 to 5 s to make, more with each run in a row, where writing its files takes 0.4 s.
//!
//! The worktrees folder is therefore marked a *top directory* (`chattr +T`, `FS_TOPDIR_FL`):
//! ext4 then places each new worktree in a block group chosen from its name, as it does for
//! the folders at the root of the file system, and consecutive worktrees seldom share one.
//! The mark only changes where ext4 allocates; other file systems refuse or ignore it, and
//! nothing depends on it having been set.

use std::os::fd::AsRawFd;
use std::path::Path;

/// `FS_TOPDIR_FL` of `<linux/fs.h>` (libc does not export it): "top of directory hierarchies".
const TOPDIR: libc::c_int = 0x0002_0000;

/// Marks `folder` (which must exist) so that the file system spreads its sub-folders over the
/// disk; true when the mark is there afterwards. Best effort: a file system without the flag
/// leaves the folder as it was.
pub fn spread_subfolders(folder: &Path) -> bool {
    let Ok(dir) = std::fs::File::open(folder) else {
        return false;
    };
    let Some(flags) = flags(&dir) else {
        return false;
    };
    if flags & TOPDIR != 0 {
        return true;
    }
    let marked = flags | TOPDIR;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, which outlives the call.
    unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &marked) == 0 }
}

/// The inode flags of the open folder `dir` (what `lsattr -d` shows); None where the file
/// system has none.
fn flags(dir: &std::fs::File) -> Option<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    (rc == 0).then_some(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the folder's flags back, as `lsattr -d` would.
    fn flags_of(folder: &Path) -> Option<libc::c_int> {
        flags(&std::fs::File::open(folder).unwrap())
    }

    /// Whether `path` is on an ext2/3/4 file system (they share one magic number).
    fn on_ext4(path: &Path) -> bool {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs fills the struct it is given; both pointers outlive the call.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statfs(c.as_ptr(), &mut fs) == 0 && fs.f_type == libc::EXT4_SUPER_MAGIC }
    }

    #[test]
    fn the_folder_is_marked_a_top_directory_where_the_file_system_has_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let Some(before) = flags_of(dir.path()) else {
            // No inode flags here (tmpfs, overlayfs): the call must be harmless.
            assert!(!spread_subfolders(dir.path()));
            return;
        };
        assert_eq!(before & TOPDIR, 0, "a new folder has no mark");
        let marked = spread_subfolders(dir.path());
        let after = flags_of(dir.path()).unwrap();
        assert_eq!(marked, after & TOPDIR != 0, "it says what it did");
        assert!(
            marked || !on_ext4(dir.path()),
            "ext4 takes the mark from the folder's owner"
        );
        if marked {
            // Only the mark was added, and asking again changes nothing.
            assert_eq!(after & !TOPDIR, before);
            assert!(spread_subfolders(dir.path()));
            assert_eq!(flags_of(dir.path()), Some(after));
        }
    }

    #[test]
    fn a_missing_folder_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!spread_subfolders(&dir.path().join("gone")));
    }

    #[test]
    fn a_worktree_is_made_in_a_marked_folder() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let (_, base) = super::super::test_support::one_commit(&project);
        let worktrees = dir.path().join("home/worktrees");
        let project = super::super::ProjectRepo::open(&project).unwrap();
        project
            .ensure_worktree("w", "b", &base, &worktrees.join("w"))
            .unwrap();
        assert!(worktrees.join("w/a.txt").exists());
        if on_ext4(&worktrees) {
            assert_ne!(flags_of(&worktrees).unwrap() & TOPDIR, 0);
        }
    }
}
