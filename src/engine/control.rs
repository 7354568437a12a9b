//! Noticing control requests while phases run (DESIGN §2): `pause`, `cancel`, `skip-phase`,
//! `approve` and `reject` only edit `execution.yaml`; an inotify watch on the execution folder
//! reads it again whenever it changes and publishes the control requests on a watch channel.
//! The watch asks the kernel only for files written and closed or moved in (a control
//! command's rename, an editor's save), not for every write and open of the runner's own files
//! in that folder (each event line, each state write), which a general-purpose watcher reports
//! and wakes a thread for.
//! Cancel and skip act at once (the running phase's future is dropped, which kills its process
//! group); pause acts at the next safe point, after the running step.
//!
//! The watch starts [`WATCH_DELAY`] into the pass, not at once: closing an inotify instance
//! waits for the kernel to retire its marks (an SRCU grace period, 10–20 ms on the reference
//! machine), and a process's exit waits for that close. A pass that ends sooner (a resume with
//! nothing left to do, a run of quick phases) makes no watch and exits at once; a request
//! written before the watch starts is read when it starts, or at the next safe point.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchMask, Watches};
use tokio::sync::watch;

use super::events::{EventBus, EventKind};
use crate::spec::ControlRequests;
use crate::store::ExecutionDir;

/// How long into a pass the watch on `execution.yaml` starts (see the module's doc).
pub const WATCH_DELAY: Duration = Duration::from_millis(200);

/// A running watcher; dropping it stops watching.
pub struct ControlWatch {
    watching: Arc<Mutex<Watching>>,
    /// The task that starts the watch after [`WATCH_DELAY`].
    starter: Option<tokio::task::JoinHandle<()>>,
    rx: watch::Receiver<ControlRequests>,
    announcer: Announcer,
}

/// The inotify watch once started, and whether the pass has stopped wanting one.
#[derive(Default)]
struct Watching {
    stopped: bool,
    watch: Option<(Watches, inotify::WatchDescriptor)>,
}

/// Says each control request once in a `workflow:control` event, from whichever part of the
/// runner meets it first — always before the runner acts on it.
#[derive(Clone, Default)]
pub struct Announcer {
    said: Arc<Mutex<HashSet<String>>>,
}

impl Announcer {
    /// Emits `request` with `detail` unless `key` was said already.
    pub fn say(&self, bus: &EventBus, key: &str, request: &str, detail: String) {
        let fresh = self
            .said
            .lock()
            .map(|mut s| s.insert(key.to_owned()))
            .unwrap_or(true);
        if fresh {
            bus.emit(EventKind::ControlNoticed {
                request: request.to_owned(),
                detail,
            });
        }
    }

    /// The cancel notice.
    pub fn cancel(&self, bus: &EventBus) {
        self.say(
            bus,
            "cancel",
            "cancel",
            "cancelling now: running phases are stopped and their processes killed".to_owned(),
        );
    }

    /// The notice of skipping the run `key` (`<iteration>/<phase-id>`).
    pub fn skip(&self, bus: &EventBus, key: &str) {
        self.say(
            bus,
            &format!("skip:{key}"),
            "skip-phase",
            format!("skipping {key}"),
        );
    }
}

impl ControlWatch {
    /// Watches `dir`'s `execution.yaml`, starting from `initial`, from [`WATCH_DELAY`] on
    /// (at once outside an async runtime). Without a working watch (no inotify) control
    /// requests still act at safe points.
    pub fn start(dir: &ExecutionDir, initial: ControlRequests) -> Self {
        let (tx, rx) = watch::channel(initial);
        let reader = dir.clone();
        let on_change = Arc::new(move || {
            // A half-written file cannot be seen (writes are renames), but a hand edit can be
            // invalid: keep the last good requests then.
            if let Ok(request) = reader.read_request() {
                tx.send_if_modified(|current| {
                    let changed = *current != request.control;
                    *current = request.control;
                    changed
                });
            }
        });
        let watching = Arc::new(Mutex::new(Watching::default()));
        let begin = {
            let (watching, path) = (watching.clone(), dir.request_path());
            move || begin_watch(&watching, &path, on_change)
        };
        let starter = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(runtime.spawn(async move {
                tokio::time::sleep(WATCH_DELAY).await;
                begin();
            })),
            Err(_) => {
                begin();
                None
            }
        };
        Self {
            watching,
            starter,
            rx,
            announcer: Announcer::default(),
        }
    }

    /// True once the inotify watch runs.
    #[cfg(test)]
    fn is_watching(&self) -> bool {
        lock(&self.watching).watch.is_some()
    }

    /// The announcer shared by every part of this runner that acts on control requests.
    pub fn announcer(&self) -> Announcer {
        self.announcer.clone()
    }

    /// A receiver of the latest control requests.
    pub fn subscribe(&self) -> watch::Receiver<ControlRequests> {
        self.rx.clone()
    }
}

impl Drop for ControlWatch {
    /// Removing the watch queues `IN_IGNORED`, which ends the thread reading it; a watch not
    /// started yet never starts.
    fn drop(&mut self) {
        if let Some(starter) = self.starter.take() {
            starter.abort();
        }
        let mut watching = lock(&self.watching);
        watching.stopped = true;
        if let Some((mut watches, wd)) = watching.watch.take() {
            let _ = watches.remove(wd);
        }
    }
}

/// The watch state, even if a thread panicked holding it (it is two plain fields).
fn lock(watching: &Mutex<Watching>) -> std::sync::MutexGuard<'_, Watching> {
    watching.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the watch on `request` unless the pass stopped, then reads the file once: a request
/// written before the watch existed is not missed.
fn begin_watch(
    watching: &Mutex<Watching>,
    request: &Path,
    on_change: Arc<impl Fn() + Send + Sync + 'static>,
) {
    let mut state = lock(watching);
    if state.stopped {
        return;
    }
    let notify = on_change.clone();
    state.watch = watch_requests(request, move || notify());
    drop(state);
    on_change();
}

/// Starts a thread that calls `on_change` whenever the file `request` (`execution.yaml`) is
/// written and closed, or moved into its folder; it ends when its watch is removed. `None`
/// when inotify is unavailable.
fn watch_requests(
    request: &Path,
    on_change: impl Fn() + Send + 'static,
) -> Option<(Watches, inotify::WatchDescriptor)> {
    let (folder, name) = (request.parent()?, request.file_name()?.to_owned());
    let mut inotify = Inotify::init().ok()?;
    let wd = inotify
        .watches()
        .add(folder, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)
        .ok()?;
    let watches = inotify.watches();
    std::thread::Builder::new()
        .name("autowrkers-control".into())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let Ok(events) = inotify.read_events_blocking(&mut buffer) else {
                    return;
                };
                let mut changed = false;
                for event in events {
                    if event.mask.contains(EventMask::IGNORED) {
                        return;
                    }
                    changed |= event.name.is_some_and(|n| n == name);
                }
                if changed {
                    on_change();
                }
            }
        })
        .ok()?;
    Some((watches, wd))
}

/// What interrupted a running phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The execution is cancelled.
    Cancel,
    /// This phase run is skipped.
    Skip,
}

/// Resolves when a cancel request, or a skip of `key` (`<iteration>/<phase-id>`), arrives,
/// after announcing it (so the event comes before the phase is stopped).
pub async fn interrupted(
    mut rx: watch::Receiver<ControlRequests>,
    key: String,
    skippable: bool,
    (announcer, bus): (Announcer, &EventBus),
) -> Interrupt {
    loop {
        let seen = {
            let c = rx.borrow_and_update();
            if c.cancel {
                Some(Interrupt::Cancel)
            } else if skippable && c.skip.contains(&key) {
                Some(Interrupt::Skip)
            } else {
                None
            }
        };
        match seen {
            Some(Interrupt::Cancel) => {
                announcer.cancel(bus);
                return Interrupt::Cancel;
            }
            Some(Interrupt::Skip) => {
                announcer.skip(bus, &key);
                return Interrupt::Skip;
            }
            None => {}
        }
        if rx.changed().await.is_err() {
            // The watcher is gone: nothing can interrupt any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Says in the events what a control request will do, as soon as it is noticed. Never returns.
pub async fn announce(
    mut rx: watch::Receiver<ControlRequests>,
    bus: &EventBus,
    announcer: Announcer,
) -> std::convert::Infallible {
    let mut seen = rx.borrow_and_update().clone();
    loop {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let now = rx.borrow_and_update().clone();
        if now.cancel && !seen.cancel {
            announcer.cancel(bus);
        }
        if now.pause && !seen.pause {
            announcer.say(
                bus,
                "pause",
                "pause",
                "pausing after the running phases finish".to_owned(),
            );
        }
        for key in now.skip.iter().filter(|k| !seen.skip.contains(k)) {
            announcer.skip(bus, key);
        }
        for (it, decision) in now
            .approvals
            .iter()
            .filter(|(i, _)| !seen.approvals.contains_key(i))
        {
            announcer.say(
                bus,
                &format!("approval:{it}"),
                "approval",
                format!("iteration {it}: {decision:?}"),
            );
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ExecutionRequest, IterationBehavior, TriggerMode, default_template};

    fn execution(root: &Path) -> ExecutionDir {
        let dir = ExecutionDir::new(root.join("e1"));
        std::fs::create_dir_all(dir.root()).unwrap();
        let template = default_template().unwrap();
        dir.write_request(&ExecutionRequest {
            id: "e1".into(),
            trigger_mode: TriggerMode::ManualTask,
            project_path: root.to_string_lossy().into_owned(),
            task_description: "t".into(),
            iteration_behavior: IterationBehavior::default(),
            template,
            template_source: String::new(),
            budget_limit: None,
            interactive_mode: false,
            in_place: false,
            no_verify: false,
            include_uncommitted: false,
            sandbox: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            control: ControlRequests::default(),
            github: None,
        })
        .unwrap();
        dir
    }

    /// A watch started on a new execution in `tmp`, and a receiver of its requests.
    fn started(tmp: &Path) -> (ExecutionDir, ControlWatch, watch::Receiver<ControlRequests>) {
        let dir = execution(tmp);
        let control = ControlWatch::start(&dir, ControlRequests::default());
        let rx = control.subscribe();
        (dir, control, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_starts_after_its_delay_and_reads_what_was_written_before() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, control, mut rx) = started(tmp.path());
        assert!(!control.is_watching(), "no inotify watch before the delay");
        dir.edit_request(|r| r.control.pause = true).unwrap();
        tokio::time::sleep(WATCH_DELAY).await;
        rx.changed().await.unwrap();
        assert!(control.is_watching());
        assert!(
            rx.borrow_and_update().pause,
            "an edit made before the watch is read"
        );
        // From now on the watch itself reports edits.
        dir.edit_request(|r| r.control.cancel = true).unwrap();
        rx.changed().await.unwrap();
        assert!(rx.borrow().cancel);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_dropped_before_its_delay_never_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let (_dir, control, mut rx) = started(tmp.path());
        let watching = control.watching.clone();
        drop(control);
        tokio::time::sleep(WATCH_DELAY * 2).await;
        assert!(lock(&watching).watch.is_none());
        assert!(
            rx.changed().await.is_err(),
            "the starter and its sender are gone"
        );
    }
}
