//! Watching the guests folder for new, changed and removed guests.
//!
//! Where the file system reports changes (inotify on Linux, through the
//! `notify` crate), the agent acts on its events:
//! - a file renamed into the folder is complete at once, and its guest is
//!   loaded right away (the careful way to install: write beside, rename in);
//! - a file written in place is loaded once it has settled: its writer closed
//!   it and [`QUIET_AFTER_CLOSE`] passed with no other write, or
//!   [`QUIET_OPEN`] passed with no write at all (a writer that keeps the file
//!   open);
//! - a removed file unloads its guest at once.
//!
//! A slow scan every [`SAFETY_SCAN`] stays on beside the events, for an event
//! the kernel's queue dropped (the first two, for what changed before the
//! watch began, come [`GUEST_SCAN`] apart). Where events cannot be had (a file system
//! without them, a watch limit reached) the folder is scanned every
//! [`GUEST_SCAN`] instead, and a file is loaded once it is the same on two
//! scans in a row. `/guests` says which of the two runs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::catalog::{Catalog, WatchMode};

/// How often the folder is scanned where no events can be had.
pub const GUEST_SCAN: Duration = Duration::from_millis(250);
/// How often the folder is scanned beside the events.
pub const SAFETY_SCAN: Duration = Duration::from_secs(5);
/// The quiet after a writer closed a file before it is loaded.
pub const QUIET_AFTER_CLOSE: Duration = Duration::from_millis(50);
/// The quiet after the last write to a file still open before it is loaded.
pub const QUIET_OPEN: Duration = Duration::from_secs(1);

/// Watches the catalog's folder until the task is dropped, loading what
/// changed; `reload` asks for a full rescan at once.
pub async fn watch_guests(catalog: Catalog, reload: Arc<Notify>) {
    let Some(dir) = catalog.folder() else {
        return;
    };
    let (events, mut received) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .and_then(|mut watcher| {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let _watcher = match watcher {
        Ok(watcher) => {
            catalog.set_watch_mode(WatchMode::Events);
            tracing::debug!("watching {} for guests through file events", dir.display());
            watcher
        }
        Err(error) => {
            catalog.set_watch_mode(WatchMode::Scan);
            tracing::info!(
                "no file events for the guests folder {} ({error}): scanning it every {} ms",
                dir.display(),
                GUEST_SCAN.as_millis()
            );
            return scan_forever(catalog, reload).await;
        }
    };
    let mut pending = Pending::default();
    // What changed after the catalog was loaded and before the watch began
    // has no event: the first two scans come at the fallback's pace, so such
    // a file settles (the same on two scans) within half a second.
    let mut next_scan = Instant::now();
    let mut quick_scans = 2;
    loop {
        let wake = pending
            .next_deadline()
            .map_or(next_scan, |due| due.min(next_scan));
        let mut full = false;
        tokio::select! {
            event = received.recv() => match event {
                Some(Ok(event)) => full |= pending.note(&event, Instant::now()),
                Some(Err(error)) => {
                    tracing::debug!("guests folder watch: {error}");
                    full = true;
                }
                None => return,
            },
            () = reload.notified() => full = true,
            () = tokio::time::sleep_until(wake) => full = Instant::now() >= next_scan,
        }
        // Take whatever else already arrived before acting on it.
        while let Ok(event) = received.try_recv() {
            match event {
                Ok(event) => full |= pending.note(&event, Instant::now()),
                Err(_) => full = true,
            }
        }
        let ready = pending.take_ready(Instant::now());
        if ready.is_empty() && !full {
            continue;
        }
        if full {
            let pace = if quick_scans > 0 {
                quick_scans -= 1;
                GUEST_SCAN
            } else {
                SAFETY_SCAN
            };
            next_scan = Instant::now() + pace;
        }
        rescan(&catalog, ready).await;
    }
}

/// The fallback: a scan every [`GUEST_SCAN`], or at once when asked.
async fn scan_forever(catalog: Catalog, reload: Arc<Notify>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(GUEST_SCAN) => {}
            () = reload.notified() => {}
        }
        rescan(&catalog, HashSet::new()).await;
    }
}

/// Rescans the folder, taking the stems in `ready` as settled. Compiling is
/// CPU work: it runs off the executor's threads.
async fn rescan(catalog: &Catalog, ready: HashSet<String>) {
    let catalog = catalog.clone();
    let _ = tokio::task::spawn_blocking(move || catalog.rescan_with(&ready)).await;
}

/// Guests whose files changed and have not been loaded yet, by stem.
#[derive(Default)]
struct Pending {
    stems: HashMap<String, Written>,
}

/// What the events said of one guest's files since it was last loaded.
#[derive(Clone, Copy)]
struct Written {
    /// The last event's time.
    last: Instant,
    /// Whether the last event completed the file (renamed in, or closed
    /// after writing).
    complete_at: Option<Instant>,
}

impl Pending {
    /// Takes note of one event; true when the whole folder should be looked
    /// at again (a file left, or the kernel's queue overflowed).
    fn note(&mut self, event: &notify::Event, now: Instant) -> bool {
        if event.need_rescan() {
            return true;
        }
        let stems = || event.paths.iter().filter_map(|path| guest_stem(path));
        match event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                stems().for_each(|stem| self.complete(stem, now));
                false
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                // paths: [from, to]
                if let Some(to) = event.paths.get(1).and_then(|path| guest_stem(path)) {
                    self.complete(to, now);
                }
                event
                    .paths
                    .first()
                    .and_then(|path| guest_stem(path))
                    .is_some()
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                stems().next().is_some()
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                for stem in stems() {
                    let written = self.written(stem, now);
                    written.complete_at = Some(now + QUIET_AFTER_CLOSE);
                }
                false
            }
            EventKind::Create(_) | EventKind::Modify(_) => {
                for stem in stems() {
                    let written = self.written(stem, now);
                    written.last = now;
                    written.complete_at = None;
                }
                false
            }
            _ => false,
        }
    }

    fn written(&mut self, stem: String, now: Instant) -> &mut Written {
        self.stems.entry(stem).or_insert(Written {
            last: now,
            complete_at: None,
        })
    }

    fn complete(&mut self, stem: String, now: Instant) {
        let written = self.written(stem, now);
        written.last = now;
        written.complete_at = Some(now);
    }

    /// When the next pending guest settles.
    fn next_deadline(&self) -> Option<Instant> {
        self.stems.values().map(Written::due).min()
    }

    /// The guests settled by `now`, no longer pending.
    fn take_ready(&mut self, now: Instant) -> HashSet<String> {
        let ready: HashSet<String> = self
            .stems
            .iter()
            .filter(|(_, written)| written.due() <= now)
            .map(|(stem, _)| stem.clone())
            .collect();
        self.stems.retain(|stem, _| !ready.contains(stem));
        ready
    }
}

impl Written {
    fn due(&self) -> Instant {
        self.complete_at.unwrap_or(self.last + QUIET_OPEN)
    }
}

/// The guest a file of the folder belongs to: `<stem>.wasm` or `<stem>.toml`.
fn guest_stem(path: &Path) -> Option<String> {
    let extension = path.extension()?;
    if extension != "wasm" && extension != "toml" {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut event = notify::Event::new(kind);
        for path in paths {
            event = event.add_path(path.into());
        }
        event
    }

    #[test]
    fn a_renamed_in_file_is_ready_at_once_and_one_written_in_place_after_its_quiet() {
        let start = Instant::now();
        let mut pending = Pending::default();
        pending.note(
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/g/a.wasm"],
            ),
            start,
        );
        pending.note(
            &event(EventKind::Create(CreateKind::File), &["/g/b.wasm"]),
            start,
        );
        pending.note(
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                &["/g/b.wasm"],
            ),
            start,
        );
        pending.note(
            &event(EventKind::Create(CreateKind::File), &["/g/notes.txt"]),
            start,
        );
        assert_eq!(pending.take_ready(start), HashSet::from(["a".to_string()]));
        // Still open: it waits for the long quiet.
        assert!(pending.take_ready(start + QUIET_AFTER_CLOSE).is_empty());
        pending.note(
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/g/b.wasm"],
            ),
            start,
        );
        assert!(pending.take_ready(start).is_empty());
        assert_eq!(
            pending.take_ready(start + QUIET_AFTER_CLOSE),
            HashSet::from(["b".to_string()])
        );
        assert!(pending.next_deadline().is_none());
    }

    #[test]
    fn a_writer_that_never_closes_is_loaded_after_the_long_quiet() {
        let start = Instant::now();
        let mut pending = Pending::default();
        pending.note(
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                &["/g/c.toml"],
            ),
            start,
        );
        assert_eq!(pending.next_deadline(), Some(start + QUIET_OPEN));
        assert_eq!(
            pending.take_ready(start + QUIET_OPEN),
            HashSet::from(["c".to_string()])
        );
    }

    #[test]
    fn a_removed_or_renamed_away_file_asks_for_a_full_look() {
        let now = Instant::now();
        let mut pending = Pending::default();
        assert!(pending.note(
            &event(
                EventKind::Remove(notify::event::RemoveKind::File),
                &["/g/a.wasm"]
            ),
            now
        ));
        assert!(pending.note(
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/g/a.wasm", "/g/a.wasm.old"]
            ),
            now
        ));
        assert!(!pending.note(
            &event(
                EventKind::Remove(notify::event::RemoveKind::File),
                &["/g/a.wasm.tmp"]
            ),
            now
        ));
    }
}
