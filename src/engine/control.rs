//! Noticing control requests while phases run (DESIGN §2): `pause`, `cancel`, `skip-phase`,
//! `approve` and `reject` only edit `execution.yaml`; a notify watcher on the execution folder
//! reads it again whenever it changes and publishes the control requests on a watch channel.
//! Cancel and skip act at once (the running phase's future is dropped, which kills its process
//! group); pause acts at the next safe point, after the running step.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use super::events::{EventBus, EventKind};
use crate::spec::ControlRequests;
use crate::store::ExecutionDir;

/// A running watcher; dropping it stops watching.
pub struct ControlWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    rx: watch::Receiver<ControlRequests>,
}

impl ControlWatch {
    /// Watches `dir`'s `execution.yaml`, starting from `initial`. Without a working watcher
    /// (no inotify) control requests still act at safe points.
    pub fn start(dir: &ExecutionDir, initial: ControlRequests) -> Self {
        let (tx, rx) = watch::channel(initial);
        let request_path = dir.request_path();
        let reader = dir.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !crate::store::is_change(&event) {
                return;
            }
            if !event
                .paths
                .iter()
                .any(|p| p == &request_path || p.file_name() == request_path.file_name())
            {
                return;
            }
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
        let watcher = notify::recommended_watcher(handler).ok().and_then(|mut w| {
            w.watch(Path::new(dir.root()), RecursiveMode::NonRecursive)
                .ok()
                .map(|_| w)
        });
        Self {
            _watcher: watcher,
            rx,
        }
    }

    /// A receiver of the latest control requests.
    pub fn subscribe(&self) -> watch::Receiver<ControlRequests> {
        self.rx.clone()
    }
}

/// What interrupted a running phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The execution is cancelled.
    Cancel,
    /// This phase run is skipped.
    Skip,
}

/// Resolves when a cancel request, or a skip of `key` (`<iteration>/<phase-id>`), arrives.
pub async fn interrupted(
    mut rx: watch::Receiver<ControlRequests>,
    key: String,
    skippable: bool,
) -> Interrupt {
    loop {
        {
            let c = rx.borrow_and_update();
            if c.cancel {
                return Interrupt::Cancel;
            }
            if skippable && c.skip.contains(&key) {
                return Interrupt::Skip;
            }
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
) -> std::convert::Infallible {
    let mut seen = rx.borrow_and_update().clone();
    loop {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let now = rx.borrow_and_update().clone();
        let mut notes = Vec::new();
        if now.cancel && !seen.cancel {
            notes.push((
                "cancel",
                "cancelling now: running phases are stopped and their processes killed".to_owned(),
            ));
        }
        if now.pause && !seen.pause {
            notes.push((
                "pause",
                "pausing after the running phases finish".to_owned(),
            ));
        }
        for key in now.skip.iter().filter(|k| !seen.skip.contains(k)) {
            notes.push(("skip-phase", format!("skipping {key}")));
        }
        for (it, decision) in now
            .approvals
            .iter()
            .filter(|(i, _)| !seen.approvals.contains_key(i))
        {
            notes.push(("approval", format!("iteration {it}: {decision:?}")));
        }
        for (request, detail) in notes {
            bus.emit(EventKind::ControlNoticed {
                request: request.to_owned(),
                detail,
            });
        }
        seen = now;
    }
}
