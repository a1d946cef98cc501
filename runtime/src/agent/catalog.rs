//! The guests an agent runs, the routing of a job to one, and hot swap.
//!
//! Every `<name>.wasm` of the guests folder with its manifest `<name>.toml` is
//! compiled, pre-instantiated and kept by name. A job goes to the guest that
//! serves its type; when several do, to the guest whose discovery listed its
//! device (a job for a device none of them has listed yet is released, with
//! the reason, rather than guessed); a discovery job runs every guest that
//! serves discovery.
//!
//! Devices belong to the guest that reported them first: a later discovery
//! result of another guest that names the same device id does not take it.
//! The conflict is refused, logged with both guests' names and shown on
//! `/guests`, and routing does not change. Device ids stay as the camera
//! system spells them (no per-guest prefix), because the registry, its users
//! and its posted jobs name devices by those ids; first-reporter ownership
//! keeps them unambiguous without renaming them.
//!
//! An owner is named by its file stem in the guests folder (`axis` for
//! `axis.wasm`), which the operator chooses, not by its manifest's name,
//! which the guest's author chooses: an upgrade that keeps the file name
//! keeps the devices, and no manifest can name itself into another guest's
//! devices. Ownership is decided before the per-guest cap
//! (`max_discovered_devices`, per guest: one guest's list never cuts
//! another's) and kept on disk ([`super::ownership`]), so a restart does not
//! reopen the race. A guest that is unloaded keeps its devices: their jobs
//! are released, naming the owner, until it is back or the operator releases
//! them. Every job for a device is routed by its owner, even when a single
//! guest serves the type.
//!
//! The folder is watched (`super::folder_watch`: file events where the file system
//! has them, else a scan every 250 ms): a new or changed guest is loaded once
//! its files are complete (renamed in, or written and then quiet; on scans,
//! the same size and time on two scans in a row, so a half-written file is
//! never read) and swapped in atomically; jobs already running keep
//! the version they started with. A guest that fails validation is refused
//! with one log line saying why, and the previous version keeps serving. A
//! removed guest is unloaded (its running jobs finish).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use super::backoff::GuestBreakers;
use crate::engine::Runtime;
use crate::guest::{Guest, GuestError};
use crate::manifest::Manifest;
use crate::protocol::{DiscoveredDevice, Job, JobType};

/// The loaded guests, by file stem, and which guest discovered which device.
#[derive(Clone, Default)]
pub struct Catalog {
    guests: Arc<RwLock<BTreeMap<String, Guest>>>,
    devices: Arc<RwLock<DeviceOwners>>,
    /// The generation of the owner record last written to disk; held while
    /// writing (outside the table's lock: routing reads the table).
    record_written: Arc<Mutex<u64>>,
    breakers: Arc<GuestBreakers>,
    source: Option<Arc<Source>>,
}

/// Which guest (by file stem) owns which device, which devices several
/// guests claimed at once, the claims refused, and where owners are kept.
#[derive(Default)]
struct DeviceOwners {
    owners: HashMap<String, String>,
    contested: HashSet<String>,
    conflicts: VecDeque<DeviceConflict>,
    record: Option<PathBuf>,
    /// Counts the changes to `owners` and `contested`, so that a slower
    /// writer never puts an older record over a newer one.
    generation: u64,
}

/// Conflicts kept for `/guests`.
const CONFLICTS_KEPT: usize = 100;

/// A discovery result that named a device another guest owns, or that
/// several guests reported at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConflict {
    /// The device id.
    pub device_id: String,
    /// The file stem of the guest that owns it (loaded or not); `None` when
    /// several claimed it at once.
    pub owner: Option<String>,
    /// The name of the guest whose claim was refused.
    pub claimant: String,
}

impl std::fmt::Display for DeviceConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Some(owner) => write!(
                f,
                "guest {} reported device {}, which guest {owner} ({owner}.wasm) reported first: refused, {owner} keeps it",
                self.claimant, self.device_id
            ),
            None => write!(
                f,
                "guest {} reported device {}, which another guest reported in the same discovery: neither gets its jobs until the operator removes one",
                self.claimant, self.device_id
            ),
        }
    }
}

/// Where a job goes.
#[derive(Clone)]
pub enum Route {
    /// To these guests (one, or every discovery guest).
    To(Vec<Guest>),
    /// Nowhere now, for this reason (the job is released).
    Nowhere(String),
}

/// Where the guests come from, for rescans.
struct Source {
    dir: PathBuf,
    runtime: Runtime,
    scan: Mutex<ScanState>,
    watch: Mutex<Option<WatchMode>>,
}

/// How the guests folder is watched (shown on `/guests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// File events from the kernel, with a slow scan beside them.
    Events,
    /// A scan every 250 ms (no file events on this folder).
    Scan,
}

impl WatchMode {
    fn describe(self) -> &'static str {
        match self {
            WatchMode::Events => "file events (inotify), and a scan every 5 s",
            WatchMode::Scan => "a scan every 250 ms (no file events here)",
        }
    }
}

#[derive(Default)]
struct ScanState {
    /// The stamps of what is loaded (or was refused), by stem.
    settled: HashMap<String, Stamp>,
    /// The stamps seen on the last scan, by stem.
    seen: HashMap<String, Stamp>,
    /// Why the latest version of a guest was refused.
    refusals: BTreeMap<String, String>,
}

/// Why a guest's files were not loaded.
enum Refusal {
    /// Another file already serves a guest of this name.
    NameTaken(String),
    /// Anything else: the files, the manifest, the module.
    Other(GuestError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NameTaken(why) => f.write_str(why),
            Refusal::Other(error) => write!(f, "{error}"),
        }
    }
}

/// Loads `<stem>.wasm` at `path` as a guest, unless its files are links the
/// policy does not allow, or another loaded file already serves its name (an
/// upgrade keeps its file name and changes its version).
fn admit(
    runtime: &Runtime,
    stem: &str,
    path: &Path,
    loaded: &BTreeMap<String, Guest>,
) -> Result<Guest, Refusal> {
    for file in [path.to_path_buf(), Manifest::path_for(path)] {
        check_link(&file, runtime.policy().allow_symlinks)
            .map_err(|why| Refusal::Other(GuestError::Link(why)))?;
    }
    let guest = runtime.load(path).map_err(Refusal::Other)?;
    let name = &guest.manifest().name;
    if let Some((other, serving)) = loaded
        .iter()
        .find(|(other, serving)| other.as_str() != stem && &serving.manifest().name == name)
    {
        return Err(Refusal::NameTaken(format!(
            "its manifest names it `{name}`, which {other}.wasm (version {}) already serves: remove one of {stem}.wasm and {other}.wasm (an upgrade keeps the file name)",
            serving.manifest().version
        )));
    }
    Ok(guest)
}

/// Refuses a guest file that is a symbolic link, unless links are allowed and
/// the file it points to is owned by the agent's user or root.
fn check_link(file: &Path, allowed: bool) -> Result<(), String> {
    let Ok(metadata) = std::fs::symlink_metadata(file) else {
        return Ok(()); // a missing manifest is reported by the load itself
    };
    if !metadata.file_type().is_symlink() {
        return Ok(());
    }
    if !allowed {
        return Err(format!(
            "{} is a symbolic link: copy the file into the guests folder, or set policy.allow_symlinks = true",
            file.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let target = std::fs::metadata(file)
            .map_err(|error| format!("{} is a broken link: {error}", file.display()))?;
        let me = crate::cache::current_uid();
        if target.uid() != me && target.uid() != 0 {
            return Err(format!(
                "{} links to a file owned by user {}, neither the agent's user nor root",
                file.display(),
                target.uid()
            ));
        }
    }
    Ok(())
}

/// Size and modification time of a guest's two files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    wasm: (u64, SystemTime),
    manifest: Option<(u64, SystemTime)>,
}

fn stamp_of(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// Why the guests folder could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The folder cannot be read.
    #[error("cannot read the guests folder {0} (guests_dir): {1}")]
    Folder(String, std::io::Error),
    /// The record of device owners cannot be read.
    #[error("the device-owner record {0} {1}")]
    Owners(String, String),
}

/// What a rescan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A guest was loaded or swapped: its stem, version and SHA-256.
    Loaded(String, String, String),
    /// A guest was refused; the previous version (if any) keeps serving.
    Refused(String, String),
    /// A guest was removed.
    Unloaded(String),
}

impl Catalog {
    /// A fixed catalog of the given guests (no folder behind it).
    pub fn new(guests: Vec<Guest>) -> Catalog {
        let guests = guests
            .into_iter()
            .map(|guest| (guest.manifest().name.clone(), guest))
            .collect();
        Catalog {
            guests: Arc::new(RwLock::new(guests)),
            ..Catalog::default()
        }
    }

    /// Loads every guest of `dir`, older files first. A guest that cannot be
    /// loaded (a bad manifest, a secret it asks for that the agent lacks, a
    /// second guest of a name already loaded) is refused with its reason,
    /// logged and listed ([`Catalog::refusals`]), and the others serve; an
    /// empty folder is a catalog that waits for guests to be dropped in.
    pub fn load(runtime: &Runtime, dir: &Path) -> Result<Catalog, CatalogError> {
        let mut stems = wasm_stems(dir)
            .map_err(|error| CatalogError::Folder(dir.display().to_string(), error))?;
        let modified = |stem: &String| {
            std::fs::symlink_metadata(dir.join(format!("{stem}.wasm")))
                .and_then(|metadata| metadata.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        stems.sort_by_key(|stem| (modified(stem), stem.clone()));
        let mut guests = BTreeMap::new();
        let mut scan = ScanState::default();
        for stem in stems {
            let path = dir.join(format!("{stem}.wasm"));
            let stamp = Stamp {
                wasm: stamp_of(&path).unwrap_or((0, SystemTime::UNIX_EPOCH)),
                manifest: stamp_of(&Manifest::path_for(&path)),
            };
            scan.settled.insert(stem.clone(), stamp.clone());
            scan.seen.insert(stem.clone(), stamp);
            match admit(runtime, &stem, &path, &guests) {
                Ok(guest) => {
                    log_loaded(&stem, &guest);
                    guests.insert(stem, guest);
                }
                Err(refusal) => {
                    let why = refusal.to_string();
                    tracing::warn!("refused guest {stem}: {why}");
                    scan.refusals.insert(stem, why);
                }
            }
        }
        if guests.is_empty() {
            tracing::warn!(
                "the guests folder {} holds no guest that loads (<name>.wasm with <name>.toml): waiting for one",
                dir.display()
            );
        }
        log_routing(&guests);
        Ok(Catalog {
            guests: Arc::new(RwLock::new(guests)),
            devices: Arc::default(),
            record_written: Arc::default(),
            breakers: Arc::default(),
            source: Some(Arc::new(Source {
                dir: dir.to_path_buf(),
                runtime: runtime.clone(),
                scan: Mutex::new(scan),
                watch: Mutex::new(None),
            })),
        })
    }

    /// Looks at the folder again and loads, swaps or unloads what changed and
    /// has settled (the same on two rescans in a row). Compiles on the calling
    /// thread: call it off the executor.
    pub fn rescan(&self) -> Vec<Change> {
        self.rescan_with(&HashSet::new())
    }

    /// [`Catalog::rescan`], with the guests of `settled` known to be complete
    /// (their files were renamed in, or their writers are done): they load
    /// on this rescan.
    pub fn rescan_with(&self, settled: &HashSet<String>) -> Vec<Change> {
        let Some(source) = &self.source else {
            return Vec::new();
        };
        let Ok(stems) = wasm_stems(&source.dir) else {
            return Vec::new();
        };
        let mut scan = source.scan.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        let mut present = Vec::new();
        for stem in stems {
            let path = source.dir.join(format!("{stem}.wasm"));
            let Some(wasm) = stamp_of(&path) else {
                continue;
            };
            let stamp = Stamp {
                wasm,
                manifest: stamp_of(&Manifest::path_for(&path)),
            };
            present.push(stem.clone());
            let same_as_last_scan =
                scan.seen.insert(stem.clone(), stamp.clone()).as_ref() == Some(&stamp);
            let complete = same_as_last_scan || settled.contains(&stem);
            if scan.settled.get(&stem) == Some(&stamp) || !complete {
                continue;
            }
            scan.settled.insert(stem.clone(), stamp);
            let loaded = {
                let guests = self.guests.read().unwrap_or_else(PoisonError::into_inner);
                admit(&source.runtime, &stem, &path, &guests)
            };
            match loaded {
                Ok(guest) => {
                    log_loaded(&stem, &guest);
                    changes.push(Change::Loaded(
                        stem.clone(),
                        guest.manifest().version.clone(),
                        guest.sha256().to_string(),
                    ));
                    scan.refusals.remove(&stem);
                    self.write().insert(stem, guest);
                    log_routing(&self.guests.read().unwrap_or_else(PoisonError::into_inner));
                }
                Err(refusal) => {
                    let why = refusal.to_string();
                    let keeps = match self
                        .guests
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&stem)
                    {
                        Some(previous) => {
                            format!("version {} keeps serving", previous.manifest().version)
                        }
                        None => "nothing was loaded".to_string(),
                    };
                    tracing::warn!("refused guest {stem}: {why}; {keeps}");
                    scan.refusals.insert(stem.clone(), why.clone());
                    changes.push(Change::Refused(stem, why));
                }
            }
        }
        let gone: Vec<String> = scan
            .settled
            .keys()
            .filter(|stem| !present.contains(stem))
            .cloned()
            .collect();
        for stem in gone {
            scan.settled.remove(&stem);
            scan.seen.remove(&stem);
            scan.refusals.remove(&stem);
            if self.write().remove(&stem).is_some() {
                tracing::info!("unloaded guest {stem} (its running jobs finish)");
                changes.push(Change::Unloaded(stem));
            }
        }
        changes
    }

    /// The folder the guests come from, if any.
    pub fn folder(&self) -> Option<PathBuf> {
        self.source.as_ref().map(|source| source.dir.clone())
    }

    /// Records how the folder is watched.
    pub fn set_watch_mode(&self, mode: WatchMode) {
        if let Some(source) = &self.source {
            *source.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(mode);
        }
    }

    /// How the folder is watched, once the watch has started.
    pub fn watch_mode(&self) -> Option<WatchMode> {
        let source = self.source.as_ref()?;
        *source.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why guests were refused on the latest rescans, by stem.
    pub fn refusals(&self) -> BTreeMap<String, String> {
        self.source.as_ref().map_or_else(BTreeMap::new, |source| {
            source
                .scan
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refusals
                .clone()
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Guest>> {
        self.guests.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// All guests, by stem.
    pub fn guests(&self) -> Vec<Guest> {
        self.guests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Which guests are paused, and why (see [`GuestBreakers`]).
    pub fn breakers(&self) -> &GuestBreakers {
        &self.breakers
    }

    /// The job types some guest serves and may be given a job now.
    pub fn served_types(&self) -> Vec<JobType> {
        let guests = self.guests();
        JobType::ALL
            .into_iter()
            .filter(|job| {
                guests
                    .iter()
                    .any(|guest| guest.manifest().serves(*job) && self.breakers.admits(guest))
            })
            .collect()
    }

    /// The loaded guests that are degraded, with why.
    pub fn degraded(&self) -> Vec<(String, String)> {
        self.guests()
            .iter()
            .filter_map(|guest| {
                self.breakers
                    .degraded(guest)
                    .map(|why| (guest.manifest().name.clone(), why))
            })
            .collect()
    }

    /// The loaded guests with their file stems.
    fn by_stem(&self) -> Vec<(String, Guest)> {
        self.guests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(stem, guest)| (stem.clone(), guest.clone()))
            .collect()
    }

    /// The guests that run `job`: all discovery guests for a discovery job;
    /// otherwise one: the device's owner whenever the device has one (even if
    /// another guest alone serves the type), else the only guest serving the
    /// type. A job for a device whose owner is not loaded, or does not serve
    /// the type, is released with the owner's name.
    pub fn route(&self, job: &Job) -> Route {
        let serving: Vec<(String, Guest)> = self
            .by_stem()
            .into_iter()
            .filter(|(_, guest)| guest.manifest().serves(job.job_type))
            .collect();
        if serving.is_empty() {
            return Route::Nowhere(format!(
                "no guest of this agent serves {} jobs now",
                job.job_type
            ));
        }
        if job.job_type == JobType::Discovery {
            return Route::To(serving.into_iter().map(|(_, guest)| guest).collect());
        }
        let names = || {
            serving
                .iter()
                .map(|(_, guest)| guest.manifest().name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(device) = job.device_id.as_ref() else {
            if serving.len() == 1 {
                return Route::To(vec![serving[0].1.clone()]);
            }
            return Route::Nowhere(format!(
                "the job names no device, and several guests serve {} jobs ({})",
                job.job_type,
                names()
            ));
        };
        let (owner, contested) = {
            let table = self.read_devices();
            (
                table.owners.get(device).cloned(),
                table.contested.contains(device),
            )
        };
        if let Some(owner) = owner {
            return match serving.iter().find(|(stem, _)| *stem == owner) {
                Some((_, guest)) => Route::To(vec![guest.clone()]),
                None => {
                    let loaded = self
                        .guests
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&owner);
                    let state = if loaded {
                        format!("which does not serve {} jobs", job.job_type)
                    } else {
                        "which is not loaded now".to_string()
                    };
                    Route::Nowhere(format!(
                        "device {device} belongs to guest {owner} ({owner}.wasm), {state}: no other guest gets its jobs (see /guests)"
                    ))
                }
            };
        }
        if contested {
            return Route::Nowhere(format!(
                "device {device} was reported by several guests at once; none of them gets its jobs until the operator releases it (see /guests)"
            ));
        }
        if serving.len() == 1 {
            return Route::To(vec![serving[0].1.clone()]);
        }
        Route::Nowhere(format!(
            "no guest serving {} jobs ({}) has discovered device {device}: run a discovery job first",
            job.job_type,
            names()
        ))
    }

    fn read_devices(&self) -> std::sync::RwLockReadGuard<'_, DeviceOwners> {
        self.devices.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the device owners of agent `agent_id` on disk, in the compile
    /// cache folder (when the runtime has one the agent accepted as its own),
    /// reading what an earlier run recorded. Returns the record's path;
    /// `None` when owners are kept in memory only (no folder, or no cache).
    pub fn keep_owners(&self, agent_id: &str) -> Result<Option<PathBuf>, CatalogError> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let Some(cache) = source.runtime.cache_dir() else {
            tracing::warn!(
                "no compile cache folder: the owners of devices are kept in memory only, and a restart lets the first guest to report a device own it again"
            );
            return Ok(None);
        };
        let path = super::ownership::path_for(cache, agent_id, &source.dir);
        let stored = super::ownership::read(&path)
            .map_err(|why| CatalogError::Owners(path.display().to_string(), why))?;
        let mut table = self.devices.write().unwrap_or_else(PoisonError::into_inner);
        table.owners.extend(stored.owners);
        table.contested.extend(stored.contested);
        table.record = Some(path.clone());
        tracing::info!(
            "the owners of {} devices are kept in {}",
            table.owners.len(),
            path.display()
        );
        Ok(Some(path))
    }

    /// Records what one discovery job's guests found (by guest name), and
    /// returns the merged device list it reports, each device once and only
    /// from its owner, and how many devices were left out over the cap.
    ///
    /// In order: a device another guest owns (loaded or not) stays that
    /// guest's, and the claim is refused; a new device that several guests
    /// report in the same job goes to none of them (its jobs are released
    /// until the operator releases it); then each guest's list is cut to
    /// `cap` devices, its own: one guest's list never cuts another's. A
    /// guest also never owns more than `cap` devices in all (new ones past
    /// that are left out). Refused claims are logged with both names and
    /// kept for `/guests`; new owners are written to the record. Linear in
    /// the number of devices.
    pub fn claim_devices(
        &self,
        found: Vec<(String, Vec<DiscoveredDevice>)>,
        cap: usize,
    ) -> (Vec<DiscoveredDevice>, usize) {
        let stems: HashMap<String, String> = self
            .by_stem()
            .into_iter()
            .map(|(stem, guest)| (guest.manifest().name.clone(), stem))
            .collect();
        // A guest unloaded since it ran claims nothing.
        let found: Vec<(String, String, Vec<DiscoveredDevice>)> = found
            .into_iter()
            .filter_map(|(name, devices)| {
                let stem = stems.get(&name)?.clone();
                Some((name, stem, devices))
            })
            .collect();
        let (merged, dropped, snapshot) = {
            let mut table = self.devices.write().unwrap_or_else(PoisonError::into_inner);
            let (merged, dropped, changed) = claim(&mut table, found, cap);
            let snapshot = match (&table.record, changed) {
                (Some(path), true) => {
                    let path = path.clone();
                    table.generation += 1;
                    let copy = (table.owners.clone(), table.contested.clone());
                    Some((path, table.generation, copy))
                }
                _ => None,
            };
            (merged, dropped, snapshot)
        };
        // Written with the table unlocked: a record of 100,000 owners takes a
        // while to write and sync, and jobs are routed meanwhile.
        if let Some((path, generation, (owners, contested))) = snapshot {
            let mut written = self
                .record_written
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if generation > *written {
                match super::ownership::write(&path, &owners, &contested) {
                    Ok(()) => *written = generation,
                    Err(error) => tracing::warn!(
                        "cannot write the device-owner record {}: {error}; the new owners hold until the agent restarts",
                        path.display()
                    ),
                }
            }
        }
        (merged, dropped)
    }

    /// How many devices each guest owns, by file stem (loaded or not).
    pub fn device_owners(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for owner in self.read_devices().owners.values() {
            *counts.entry(owner.clone()).or_default() += 1;
        }
        counts
    }

    /// The owner (file stem) of `device`, if it has one.
    pub fn owner_of(&self, device: &str) -> Option<String> {
        self.read_devices().owners.get(device).cloned()
    }

    /// The device claims refused lately, newest last.
    pub fn device_conflicts(&self) -> Vec<DeviceConflict> {
        self.read_devices().conflicts.iter().cloned().collect()
    }

    /// The loaded guests as JSON (for the status port and `corral guests list`).
    pub fn describe(&self) -> serde_json::Value {
        let record = self
            .read_devices()
            .record
            .as_ref()
            .map(|path| path.display().to_string());
        let guests: Vec<serde_json::Value> = self
            .guests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(stem, guest)| {
                let loaded = time::OffsetDateTime::from(guest.loaded_at());
                serde_json::json!({
                    "file": format!("{stem}.wasm"),
                    "name": guest.manifest().name,
                    "version": guest.manifest().version,
                    "sha256": guest.sha256(),
                    "serves": guest.manifest().jobs.iter().map(|job| job.as_str()).collect::<Vec<_>>(),
                    "loadedUtc": crate::protocol::format_rfc3339(loaded),
                    "jobsRun": guest.jobs_run(),
                    "degraded": self.breakers.degraded(guest),
                    "pausedSecs": self.breakers.paused_for(guest).map(|left| left.as_secs()),
                })
            })
            .collect();
        serde_json::json!({
            "guests": guests,
            "refused": self.refusals(),
            "deviceConflicts": self.device_conflicts(),
            "deviceOwners": self.device_owners(),
            "deviceOwnersFile": record,
            "watch": self.watch_mode().map(WatchMode::describe),
        })
    }
}

/// [`Catalog::claim_devices`] on `table`, with each guest's file stem
/// (`(name, stem, devices)`): the merged list, how many devices were left out
/// over the cap, and whether an owner or a contested device was added.
fn claim(
    table: &mut DeviceOwners,
    found: Vec<(String, String, Vec<DiscoveredDevice>)>,
    cap: usize,
) -> (Vec<DiscoveredDevice>, usize, bool) {
    let mut reporters: HashMap<&str, Vec<&str>> = HashMap::new();
    for (_, stem, devices) in &found {
        for device in devices {
            let stems = reporters.entry(device.device_id.as_str()).or_default();
            if !stems.contains(&stem.as_str()) {
                stems.push(stem);
            }
        }
    }
    let several: HashSet<String> = reporters
        .into_iter()
        .filter(|(_, stems)| stems.len() > 1)
        .map(|(id, _)| id.to_string())
        .collect();
    let mut owned: HashMap<String, usize> = HashMap::new();
    for owner in table.owners.values() {
        *owned.entry(owner.clone()).or_default() += 1;
    }
    let mut logged = 0usize;
    let mut refuse = |table: &mut DeviceOwners, conflict: DeviceConflict| {
        if logged < 3 {
            tracing::warn!("{conflict}");
        }
        logged += 1;
        if table.conflicts.len() == CONFLICTS_KEPT {
            table.conflicts.pop_front();
        }
        table.conflicts.push_back(conflict);
    };
    let mut changed = false;
    let mut dropped = 0;
    let mut merged = Vec::new();
    for (guest, stem, devices) in found {
        let mut listed = HashSet::new();
        for device in devices {
            let id = device.device_id.clone();
            match table.owners.get(&id).cloned() {
                Some(owner) if owner == stem => {}
                Some(owner) => {
                    refuse(
                        table,
                        DeviceConflict {
                            device_id: id,
                            owner: Some(owner),
                            claimant: guest.clone(),
                        },
                    );
                    continue;
                }
                None if several.contains(&id) => {
                    changed |= table.contested.insert(id.clone());
                    refuse(
                        table,
                        DeviceConflict {
                            device_id: id,
                            owner: None,
                            claimant: guest.clone(),
                        },
                    );
                    continue;
                }
                None if table.contested.contains(&id) => continue,
                None => {}
            }
            if listed.contains(&id) {
                continue;
            }
            let count = owned.entry(stem.clone()).or_default();
            let new = !table.owners.contains_key(&id);
            if listed.len() == cap || (new && *count >= cap) {
                dropped += 1;
                continue;
            }
            if new {
                table.owners.insert(id.clone(), stem.clone());
                *count += 1;
                changed = true;
            }
            listed.insert(id);
            merged.push(device);
        }
    }
    if logged > 3 {
        tracing::warn!("{logged} device claims refused in this discovery (see /guests)");
    }
    (merged, dropped, changed)
}

fn log_loaded(stem: &str, guest: &Guest) {
    tracing::info!(
        "loaded guest {stem}: {} {} ({}…) serving {:?}",
        guest.manifest().name,
        guest.manifest().version,
        &guest.sha256()[..12],
        guest.manifest().jobs
    );
}

/// Says, for each job type several guests serve, how its jobs are routed.
fn log_routing(guests: &BTreeMap<String, Guest>) {
    for job in JobType::ALL {
        let serving: Vec<&str> = guests
            .values()
            .filter(|guest| guest.manifest().serves(job))
            .map(|guest| guest.manifest().name.as_str())
            .collect();
        if serving.len() < 2 {
            continue;
        }
        let rule = if job == JobType::Discovery {
            "every one of them runs each discovery job and the device lists are merged"
        } else {
            "each job goes to the guest that owns its device (reported it first); a job for a device none owns is released"
        };
        tracing::info!(
            "{} guests serve {job} jobs ({}): {rule}",
            serving.len(),
            serving.join(", ")
        );
    }
}

/// The stems of the `.wasm` files of `dir`, sorted.
fn wasm_stems(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "wasm"))
        .filter_map(|path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .collect();
    stems.sort();
    Ok(stems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(guest: &str, ids: &[&str]) -> (String, String, Vec<DiscoveredDevice>) {
        let list = ids
            .iter()
            .map(|id| {
                serde_json::from_value(serde_json::json!({
                    "deviceId": id, "name": "n", "manufacturer": "m", "model": "x", "capabilities": []
                }))
                .expect("a device")
            })
            .collect();
        (format!("{guest} name"), guest.to_string(), list)
    }

    fn ids(devices: &[DiscoveredDevice]) -> Vec<&str> {
        devices
            .iter()
            .map(|device| device.device_id.as_str())
            .collect()
    }

    #[test]
    fn the_cap_is_per_guest_and_applies_after_ownership() {
        let mut table = DeviceOwners::default();
        let (merged, dropped, changed) = claim(
            &mut table,
            vec![devices("vms", &["a", "b"]), devices("other", &["x"])],
            2,
        );
        assert_eq!(
            (ids(&merged), dropped, changed),
            (vec!["a", "b", "x"], 0, true)
        );
        // A flood listing the victim's devices first, then its own, over the cap.
        let (merged, dropped, _) = claim(
            &mut table,
            vec![
                devices("flood", &["a", "b", "f1", "f2", "f3"]),
                devices("vms", &["a", "b"]),
            ],
            2,
        );
        assert_eq!((ids(&merged), dropped), (vec!["f1", "f2", "a", "b"], 1));
        assert_eq!(table.owners["a"], "vms");
        assert_eq!(table.conflicts.len(), 2);
        assert!(
            table
                .conflicts
                .iter()
                .all(|c| c.owner.as_deref() == Some("vms"))
        );
        // A guest never owns more than the cap in all.
        let (merged, dropped, changed) = claim(&mut table, vec![devices("flood", &["f4"])], 2);
        assert_eq!((ids(&merged), dropped, changed), (vec![], 1, false));
    }

    #[test]
    fn an_owner_keeps_its_devices_when_it_is_not_loaded() {
        let mut table = DeviceOwners::default();
        table.owners.insert("a".into(), "gone".into());
        let (merged, _, changed) = claim(&mut table, vec![devices("new", &["a", "n"])], 10);
        assert_eq!((ids(&merged), changed), (vec!["n"], true));
        assert_eq!(table.owners["a"], "gone");
    }

    #[test]
    fn a_device_several_guests_report_at_once_goes_to_none() {
        let mut table = DeviceOwners::default();
        let (merged, _, _) = claim(
            &mut table,
            vec![devices("one", &["a", "b"]), devices("two", &["a"])],
            10,
        );
        assert_eq!(ids(&merged), vec!["b"]);
        assert!(table.contested.contains("a") && !table.owners.contains_key("a"));
        let (merged, _, _) = claim(&mut table, vec![devices("one", &["a"])], 10);
        assert!(merged.is_empty());
    }
}
