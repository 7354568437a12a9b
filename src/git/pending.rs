//! A worktree made on a thread of its own while the run goes on. A run's first phases (an
//! analyzer, a planner answering through an API) need only the worktree's path for their
//! prompts, so libgit2's checkout of the project — a few milliseconds in a small one, seconds
//! in a large one — runs beside their model calls. Whatever reads or runs in the worktree (a
//! tool call, an agent CLI, the implementer, the verifier, the worktree's removal) waits on
//! the [`WorktreeGate`] first.

use futures_util::future::{BoxFuture, FutureExt, Shared};

/// Opens when the worktree is there: at once for one that already was (or for a run without
/// one), else when the thread making it is done. Clones share the one thread.
#[derive(Clone)]
pub struct WorktreeGate(Option<Shared<BoxFuture<'static, Result<(), String>>>>);

impl WorktreeGate {
    /// A gate that is open: the worktree is there, or there is none to wait for.
    pub fn open() -> Self {
        Self(None)
    }

    /// Runs `make` on a thread named `autowrkers-worktree`; the gate opens when it returns,
    /// with its failure, if any.
    pub fn making(make: impl FnOnce() -> Result<(), String> + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("autowrkers-worktree".into())
            .spawn(move || {
                // The receiver is gone only when the run ended first; nothing waits then.
                let _ = tx.send(make());
            });
        let made = async move {
            match spawned {
                Ok(_) => rx
                    .await
                    .unwrap_or_else(|_| Err("the thread making the worktree stopped".to_owned())),
                Err(e) => Err(format!("no thread to make the worktree in: {e}")),
            }
        };
        Self(Some(made.boxed().shared()))
    }

    /// Whether the worktree may still be in the making.
    pub fn pending(&self) -> bool {
        self.0.is_some()
    }

    /// Waits until the worktree is made; why it could not be, if so.
    pub async fn wait(&self) -> Result<(), String> {
        match &self.0 {
            None => Ok(()),
            Some(made) => made
                .clone()
                .await
                .map_err(|e| format!("the worktree could not be made: {e}")),
        }
    }
}

impl std::fmt::Debug for WorktreeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.pending() {
            "WorktreeGate(making)"
        } else {
            "WorktreeGate(open)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_gets_what_the_one_thread_made() {
        let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = runs.clone();
        let gate = WorktreeGate::making(move || {
            wait_for_go.recv().map_err(|e| e.to_string())?;
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("disk full".to_owned())
        });
        assert!(gate.pending());
        let other = gate.clone();
        go.send(()).unwrap();
        let (a, b) = tokio::join!(gate.wait(), other.wait());
        assert_eq!(
            a,
            Err("the worktree could not be made: disk full".to_owned())
        );
        assert_eq!(a, b);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(WorktreeGate::open().wait().await, Ok(()));
    }
}
