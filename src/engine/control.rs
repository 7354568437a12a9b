//! Noticing control requests while phases run (DESIGN §2): `pause`, `cancel`, `skip-phase`,
//! `approve` and `reject` only edit `execution.yaml`; an inotify watch on the execution folder
//! reads it again whenever it changes and publishes the control requests on a watch channel.
//! The watch asks the kernel only for files written and closed or moved in (a control
//! command's rename, an editor's save), not for every write and open of the runner's own files
//! in that folder (each event line, each state write), which a general-purpose watcher reports
//! and wakes a thread for.
//! Cancel and skip act at once (the running phase's future is dropped, which kills its process
//! group); pause acts at the next safe point, after the running step.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchMask, Watches};
use tokio::sync::watch;

use super::events::{EventBus, EventKind};
use crate::spec::ControlRequests;
use crate::store::ExecutionDir;

/// A running watcher; dropping it stops watching.
pub struct ControlWatch {
    watch: Option<(Watches, inotify::WatchDescriptor)>,
    rx: watch::Receiver<ControlRequests>,
    announcer: Announcer,
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
    /// Watches `dir`'s `execution.yaml`, starting from `initial`. Without a working watch
    /// (no inotify) control requests still act at safe points.
    pub fn start(dir: &ExecutionDir, initial: ControlRequests) -> Self {
        let (tx, rx) = watch::channel(initial);
        let reader = dir.clone();
        let on_change = move || {
            // A half-written file cannot be seen (writes are renames), but a hand edit can be
            // invalid: keep the last good requests then.
            if let Ok(request) = reader.read_request() {
                tx.send_if_modified(|current| {
                    let changed = *current != request.control;
                    *current = request.control;
                    changed
                });
            }
        };
        Self {
            watch: watch_requests(&dir.request_path(), on_change),
            rx,
            announcer: Announcer::default(),
        }
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
    /// Removing the watch queues `IN_IGNORED`, which ends the thread reading it.
    fn drop(&mut self) {
        if let Some((mut watches, wd)) = self.watch.take() {
            let _ = watches.remove(wd);
        }
    }
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
