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
//! result of another loaded guest that names the same device id does not take
//! it. The conflict is refused, logged with both guests' names and shown on
//! `/guests`, and routing does not change. Device ids stay as the camera
//! system spells them (no per-guest prefix), because the registry, its users
//! and its posted jobs name devices by those ids; first-reporter ownership
//! keeps them unambiguous without renaming them. A guest that is unloaded
//! gives its devices up.
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
    breakers: Arc<GuestBreakers>,
    source: Option<Arc<Source>>,
}

/// Which guest owns which device, which devices several guests claimed at
/// once, and the claims refused.
#[derive(Default)]
struct DeviceOwners {
    owners: HashMap<String, String>,
    contested: HashSet<String>,
    conflicts: VecDeque<DeviceConflict>,
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
    /// The guest that owns it; `None` when several claimed it at once.
    pub owner: Option<String>,
    /// The guest whose claim was refused.
    pub claimant: String,
}

impl std::fmt::Display for DeviceConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Some(owner) => write!(
                f,
                "guest {} reported device {}, which guest {owner} reported first: refused, {owner} keeps it",
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

    /// The guests that run `job`: all discovery guests for a discovery job;
    /// otherwise one: the only guest serving the type, or the device's owner.
    pub fn route(&self, job: &Job) -> Route {
        let serving: Vec<Guest> = self
            .guests()
            .into_iter()
            .filter(|guest| guest.manifest().serves(job.job_type))
            .collect();
        if serving.is_empty() {
            return Route::Nowhere(format!(
                "no guest of this agent serves {} jobs now",
                job.job_type
            ));
        }
        if job.job_type == JobType::Discovery || serving.len() == 1 {
            return Route::To(serving);
        }
        let names = || {
            serving
                .iter()
                .map(|guest| guest.manifest().name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(device) = job.device_id.as_ref() else {
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
        match owner.and_then(|name| serving.iter().find(|guest| guest.manifest().name == name)) {
            Some(guest) => Route::To(vec![guest.clone()]),
            None if contested => Route::Nowhere(format!(
                "device {device} was reported by several guests at once; none of them gets its jobs until the operator removes one (see /guests)"
            )),
            None => Route::Nowhere(format!(
                "no guest serving {} jobs ({}) has discovered device {device}: run a discovery job first",
                job.job_type,
                names()
            )),
        }
    }

    fn read_devices(&self) -> std::sync::RwLockReadGuard<'_, DeviceOwners> {
        self.devices.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what one discovery job's guests found, and returns the merged
    /// device list it reports: each device once, and only from its owner. A
    /// device another loaded guest reported first stays that guest's; a new
    /// device that several guests report in the same job goes to none of them
    /// (its jobs are released until the operator removes one). Refused claims
    /// are logged with both names and kept for `/guests`. Linear in the number
    /// of devices.
    pub fn claim_devices(
        &self,
        found: Vec<(String, Vec<DiscoveredDevice>)>,
    ) -> Vec<DiscoveredDevice> {
        let loaded: HashSet<String> = self
            .guests()
            .iter()
            .map(|guest| guest.manifest().name.clone())
            .collect();
        let mut reporters: HashMap<String, Vec<String>> = HashMap::new();
        for (guest, devices) in &found {
            for device in devices {
                let names = reporters.entry(device.device_id.clone()).or_default();
                if !names.contains(guest) {
                    names.push(guest.clone());
                }
            }
        }
        let mut table = self.devices.write().unwrap_or_else(PoisonError::into_inner);
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
        let mut merged = Vec::new();
        let mut reported = HashSet::new();
        for (guest, devices) in found {
            for device in devices {
                let id = device.device_id.clone();
                let owner = table
                    .owners
                    .get(&id)
                    .filter(|owner| loaded.contains(*owner))
                    .cloned();
                let may_report = match owner {
                    Some(owner) if owner == guest => true,
                    Some(owner) => {
                        refuse(
                            &mut table,
                            DeviceConflict {
                                device_id: id.clone(),
                                owner: Some(owner),
                                claimant: guest.clone(),
                            },
                        );
                        false
                    }
                    None if reporters[&id].len() > 1 => {
                        table.contested.insert(id.clone());
                        refuse(
                            &mut table,
                            DeviceConflict {
                                device_id: id.clone(),
                                owner: None,
                                claimant: guest.clone(),
                            },
                        );
                        false
                    }
                    None if table.contested.contains(&id) => false,
                    None => {
                        table.owners.insert(id.clone(), guest.clone());
                        true
                    }
                };
                if may_report && reported.insert(id) {
                    merged.push(device);
                }
            }
        }
        if logged > 3 {
            tracing::warn!("{logged} device claims refused in this discovery (see /guests)");
        }
        merged
    }

    /// The device claims refused lately, newest last.
    pub fn device_conflicts(&self) -> Vec<DeviceConflict> {
        self.read_devices().conflicts.iter().cloned().collect()
    }

    /// The loaded guests as JSON (for the status port and `corral guests list`).
    pub fn describe(&self) -> serde_json::Value {
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
            "watch": self.watch_mode().map(WatchMode::describe),
        })
    }
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
            "each job goes to the guest whose discovery reported its device; a job for a device none reported is released"
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
