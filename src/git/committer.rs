//! A runner's phase commits made in a thread of their own, in order: committing a phase's
//! artifacts (hashing them, writing the trees, the commit and the ref) costs about a
//! millisecond, and it need not hold up the next phase. What each commit takes is fixed when
//! it is asked for ([`Recorded`]), so a late commit is still its phase's snapshot. The thread
//! moves the execution's ref once for the commits it makes within [`REF_DELAY`] of each
//! other (and at its end), not once per commit. A commit lost to a kill — or a ref not yet
//! moved — is made again by the resume, as one lost between saving the state and committing
//! always was (DESIGN §2).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::GitError;
use super::snapshot::{Recorded, Ref, commit, publish_held};

/// How long the commit thread may keep a commit off its ref: what `git log` of a running
/// execution's ref may lag behind its phases.
pub const REF_DELAY: Duration = Duration::from_millis(250);

/// One commit to make on the ref of execution `id`.
#[derive(Debug)]
pub struct CommitJob {
    /// The project whose repository holds the ref.
    pub project: PathBuf,
    /// The execution's id.
    pub id: String,
    /// The execution's folder.
    pub root: PathBuf,
    /// The commit message.
    pub message: String,
    /// What the commit holds: what a phase's end recorded, or (None) the folder as it is when
    /// the commit is made (a pass's last commit, made once nothing writes the folder).
    pub recorded: Option<Recorded>,
}

impl CommitJob {
    /// Makes the commit here and now, its ref moved with it.
    pub fn run(&self) -> Result<(), GitError> {
        self.make(Ref::Now)
    }

    fn make(&self, when: Ref) -> Result<(), GitError> {
        let (project, id, root, message) = (&self.project, &self.id, &self.root, &self.message);
        commit(project, id, root, message, self.recorded.as_ref(), when).map(drop)
    }
}

/// The commit thread: each job in turn, its ref moved once no commit has come for
/// [`REF_DELAY`] since the first one held, and at the end (after a failure too, for the
/// commits made before it).
fn work(jobs: &Receiver<CommitJob>) -> Result<(), GitError> {
    let mut held_since: Option<Instant> = None;
    // The executions whose refs this thread holds back.
    let mut holding: HashSet<(PathBuf, String)> = HashSet::new();
    loop {
        let next = match held_since {
            None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => jobs.recv_timeout(REF_DELAY.saturating_sub(since.elapsed())),
        };
        match next {
            Ok(job) => {
                if let Err(e) = job.make(Ref::Held) {
                    let _ = publish_held(&holding);
                    return Err(e);
                }
                holding.insert((job.project, job.id));
                held_since.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {
                publish_held(&holding)?;
                holding.clear();
                held_since = None;
            }
            Err(RecvTimeoutError::Disconnected) => return publish_held(&holding),
        }
    }
}

type Worker = (Sender<CommitJob>, JoinHandle<Result<(), GitError>>);

/// The commit thread of one reconcile pass: started at the first commit, stopped by
/// [`Committer::finish`] (or when dropped), after the commits queued before.
#[derive(Debug, Default)]
pub struct Committer {
    worker: Mutex<Option<Worker>>,
}

impl Committer {
    /// A committer with no thread yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `job` after the commits already asked for. Returns the failure of an earlier
    /// commit, if one failed (the thread stops at the first). Where no thread can be started,
    /// commits here and now.
    pub fn commit(&self, job: CommitJob) -> Result<(), GitError> {
        let mut worker = self.lock();
        if worker.is_none() {
            let (tx, rx) = channel::<CommitJob>();
            let spawned = std::thread::Builder::new()
                .name("autowrkers-commit".into())
                .spawn(move || work(&rx));
            match spawned {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(_) => return job.run(),
            }
        }
        let Some((tx, _)) = worker.as_ref() else {
            return job.run();
        };
        if tx.send(job).is_ok() {
            return Ok(());
        }
        // The thread stopped at a failure: that failure is the answer.
        drop(worker);
        self.finish()
    }

    /// Waits until every queued commit is made; the first failure, if any. Later commits
    /// start a new thread.
    pub fn finish(&self) -> Result<(), GitError> {
        let Some((tx, handle)) = self.lock().take() else {
            return Ok(());
        };
        drop(tx);
        handle.join().unwrap_or_else(|_| {
            Err(GitError {
                action: "commit the execution's artifacts".into(),
                source: git2::Error::from_str("the commit thread stopped unexpectedly"),
            })
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Worker>> {
        self.worker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Committer {
    /// No commit thread outlives its pass: the queued commits are made first (a failure here
    /// is found again, and the commit made, by the next reconcile).
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Commit jobs and repositories for the tests of the commit thread and of the record thread
/// that feeds it.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{CommitJob, Recorded};
    use std::path::Path;

    /// A phase's commit on execution `id`'s ref: its own artifact, written once (as the runner
    /// does), and a state naming `message`.
    pub(crate) fn job(project: &Path, id: &str, message: &str) -> CommitJob {
        let root = project.join(".autowrkers/executions").join(id);
        std::fs::create_dir_all(root.join("artifacts/1")).unwrap();
        if !root.join("execution.yaml").exists() {
            std::fs::write(root.join("execution.yaml"), "id: x\n").unwrap();
        }
        let artifact = format!("artifacts/1/{message}.md");
        std::fs::write(root.join(&artifact), message).unwrap();
        CommitJob {
            project: project.to_path_buf(),
            id: id.to_owned(),
            root,
            message: message.to_owned(),
            recorded: Some(Recorded {
                state: format!("{{\"at\":\"{message}\"}}").into_bytes(),
                files: vec![artifact],
            }),
        }
    }

    /// A new repository in a temp folder.
    pub(crate) fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        dir
    }

    /// A new repository at `path` whose HEAD is one commit of `a.txt` ("a"); that commit's id.
    pub(crate) fn one_commit(path: &Path) -> (git2::Repository, String) {
        let repo = git2::Repository::init(path).unwrap();
        std::fs::write(path.join("a.txt"), "a\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let me = git2::Signature::now("t", "t@t").unwrap();
        let base = repo
            .commit(Some("HEAD"), &me, &me, "base", &tree, &[])
            .unwrap()
            .to_string();
        drop(tree);
        (repo, base)
    }

    /// The messages of execution `id`'s ref, newest first.
    pub(crate) fn messages(project: &Path, id: &str) -> Vec<String> {
        let repo = git2::Repository::open(project).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref(&format!("refs/autowrkers/executions/{id}"))
            .unwrap();
        walk.map(|oid| {
            let c = repo.find_commit(oid.unwrap()).unwrap();
            c.message().unwrap().to_owned()
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{job, messages, repo};
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn queued_commits_land_in_order_on_the_ref() {
        let dir = repo();
        let committer = Committer::new();
        for m in ["one", "two", "three"] {
            committer.commit(job(dir.path(), "e1", m)).unwrap();
        }
        committer.finish().unwrap();
        assert_eq!(messages(dir.path(), "e1"), ["three", "two", "one"]);
    }

    #[test]
    fn a_held_ref_is_moved_once_the_thread_is_idle_without_a_finish() {
        use notify::Watcher;
        let dir = repo();
        // Woken by the ref's files appearing in their folder, watched before anything is made.
        let refs = dir.path().join(".git/refs/autowrkers/executions");
        std::fs::create_dir_all(&refs).unwrap();
        let (tx, changed) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |_| {
            let _ = tx.send(());
        })
        .unwrap();
        watcher
            .watch(&refs, notify::RecursiveMode::NonRecursive)
            .unwrap();
        let committer = Committer::new();
        for m in ["one", "two"] {
            committer.commit(job(dir.path(), "e4", m)).unwrap();
        }
        // Nothing more comes: the ref moves within REF_DELAY while the thread still runs.
        let repo = git2::Repository::open(dir.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while repo
            .find_reference("refs/autowrkers/executions/e4")
            .is_err()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                changed.recv_timeout(left).is_ok(),
                "the held ref was never moved"
            );
        }
        assert_eq!(messages(dir.path(), "e4"), ["two", "one"]);
        // A later commit goes on from the moved ref.
        committer.commit(job(dir.path(), "e4", "three")).unwrap();
        committer.finish().unwrap();
        assert_eq!(messages(dir.path(), "e4"), ["three", "two", "one"]);
    }

    #[test]
    fn a_ref_moved_by_another_writer_meanwhile_is_not_overwritten() {
        let dir = repo();
        job(dir.path(), "e5", "one").run().unwrap();
        job(dir.path(), "e5", "two").make(Ref::Held).unwrap();
        // Another process commits on the ref before the held commit's ref is moved.
        let repo = git2::Repository::open(dir.path()).unwrap();
        let one = repo
            .find_reference("refs/autowrkers/executions/e5")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let sig = git2::Signature::now("x", "x@x").unwrap();
        repo.commit(
            Some("refs/autowrkers/executions/e5"),
            &sig,
            &sig,
            "other",
            &one.tree().unwrap(),
            &[&one],
        )
        .unwrap();
        let mine = [(dir.path().to_path_buf(), "e5".to_owned())];
        assert!(publish_held(&mine).is_err(), "the held move is refused");
        assert_eq!(messages(dir.path(), "e5"), ["other", "one"]);
    }

    #[test]
    fn commits_are_signed_by_the_configured_user() {
        let dir = repo();
        let repo = git2::Repository::open(dir.path()).unwrap();
        let mut config = repo.config().unwrap();
        config.set_str("user.name", "Ada Lovelace").unwrap();
        config.set_str("user.email", "ada@example.com").unwrap();
        let committer = Committer::new();
        committer.commit(job(dir.path(), "e3", "one")).unwrap();
        committer.finish().unwrap();
        let tip = || {
            repo.find_reference("refs/autowrkers/executions/e3")
                .and_then(|r| r.peel_to_commit())
                .unwrap()
        };
        let first = tip();
        assert_eq!(first.author().name(), Some("Ada Lovelace"));
        assert_eq!(first.committer().email(), Some("ada@example.com"));
        // The name is read once per process: a second commit is signed the same.
        committer.commit(job(dir.path(), "e3", "two")).unwrap();
        committer.finish().unwrap();
        let second = tip();
        assert_eq!(second.message(), Some("two"));
        assert_eq!(second.author().name(), Some("Ada Lovelace"));
    }

    #[test]
    fn a_failed_commit_is_reported_and_nothing_queued_after_it_is_made() {
        let dir = repo();
        let committer = Committer::new();
        // No ref can be named after this id.
        committer.commit(job(dir.path(), "bad..id", "x")).unwrap();
        // Queued behind the failure, or refused once the thread has stopped at it.
        let later = committer.commit(job(dir.path(), "e2", "y"));
        let finished = committer.finish();
        assert!(
            later.is_err() || finished.is_err(),
            "the failure is reported"
        );
        let repo = git2::Repository::open(dir.path()).unwrap();
        assert!(
            repo.find_reference("refs/autowrkers/executions/e2")
                .is_err(),
            "no commit is made after a failed one"
        );
    }
}
