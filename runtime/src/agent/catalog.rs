//! The guests an agent runs, the routing of a job to one, and hot swap.
//!
//! Every `<name>.wasm` of the guests folder with its manifest `<name>.toml` is
//! compiled, pre-instantiated and kept by name. A job goes to the guest that
//! serves its type; when several do, to the guest whose discovery listed its
//! device; a discovery job runs every guest that serves discovery.
//!
//! The folder is watched ([`Catalog::rescan`], every 250 ms under the agent): a
//! new or changed guest is loaded once its files have settled (the same size
//! and time on two scans in a row, so a half-written file is never read; a
//! rename settles at once) and swapped in atomically; jobs already running keep
//! the version they started with. A guest that fails validation is refused
//! with one log line saying why, and the previous version keeps serving. A
//! removed guest is unloaded (its running jobs finish).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::engine::Runtime;
use crate::guest::{Guest, GuestError};
use crate::manifest::Manifest;
use crate::protocol::{Job, JobType};

/// The loaded guests, by file stem, and which guest discovered which device.
#[derive(Clone, Default)]
pub struct Catalog {
    guests: Arc<RwLock<BTreeMap<String, Guest>>>,
    device_owners: Arc<RwLock<HashMap<String, String>>>,
    source: Option<Arc<Source>>,
}

/// Where the guests come from, for rescans.
struct Source {
    dir: PathBuf,
    runtime: Runtime,
    scan: Mutex<ScanState>,
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
    #[error("cannot read the guests folder {0}: {1}")]
    Folder(String, std::io::Error),
    /// A guest failed to load.
    #[error("guest {0}: {1}")]
    Guest(String, GuestError),
    /// No guest at all.
    #[error("the guests folder {0} holds no guest (<name>.wasm with <name>.toml)")]
    Empty(String),
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

    /// Loads every guest of `dir`; any bad guest stops the start-up with its reason.
    pub fn load(runtime: &Runtime, dir: &Path) -> Result<Catalog, CatalogError> {
        let stems = wasm_stems(dir)
            .map_err(|error| CatalogError::Folder(dir.display().to_string(), error))?;
        let mut guests = BTreeMap::new();
        let mut scan = ScanState::default();
        for stem in stems {
            let path = dir.join(format!("{stem}.wasm"));
            let stamp = Stamp {
                wasm: stamp_of(&path).unwrap_or((0, SystemTime::UNIX_EPOCH)),
                manifest: stamp_of(&Manifest::path_for(&path)),
            };
            let guest = runtime
                .load(&path)
                .map_err(|error| CatalogError::Guest(path.display().to_string(), error))?;
            log_loaded(&stem, &guest);
            scan.settled.insert(stem.clone(), stamp.clone());
            scan.seen.insert(stem.clone(), stamp);
            guests.insert(stem, guest);
        }
        if guests.is_empty() {
            return Err(CatalogError::Empty(dir.display().to_string()));
        }
        Ok(Catalog {
            guests: Arc::new(RwLock::new(guests)),
            device_owners: Arc::default(),
            source: Some(Arc::new(Source {
                dir: dir.to_path_buf(),
                runtime: runtime.clone(),
                scan: Mutex::new(scan),
            })),
        })
    }

    /// Looks at the folder again and loads, swaps or unloads what changed and
    /// has settled. Compiles on the calling thread: call it off the executor.
    pub fn rescan(&self) -> Vec<Change> {
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
            let settled = scan.seen.insert(stem.clone(), stamp.clone()).as_ref() == Some(&stamp);
            if scan.settled.get(&stem) == Some(&stamp) || !settled {
                continue;
            }
            scan.settled.insert(stem.clone(), stamp);
            match source.runtime.load(&path) {
                Ok(guest) => {
                    log_loaded(&stem, &guest);
                    changes.push(Change::Loaded(
                        stem.clone(),
                        guest.manifest().version.clone(),
                        guest.sha256().to_string(),
                    ));
                    scan.refusals.remove(&stem);
                    self.write().insert(stem, guest);
                }
                Err(error) => {
                    let why = error.to_string();
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

    /// The job types some guest serves.
    pub fn served_types(&self) -> Vec<JobType> {
        let guests = self.guests();
        JobType::ALL
            .into_iter()
            .filter(|job| guests.iter().any(|guest| guest.manifest().serves(*job)))
            .collect()
    }

    /// The guests that run `job`: all discovery guests for a discovery job;
    /// otherwise one, the device's discoverer when several serve the type.
    pub fn route(&self, job: &Job) -> Vec<Guest> {
        let serving: Vec<Guest> = self
            .guests()
            .into_iter()
            .filter(|guest| guest.manifest().serves(job.job_type))
            .collect();
        if job.job_type == JobType::Discovery || serving.len() <= 1 {
            return serving;
        }
        let owner = job.device_id.as_ref().and_then(|device| {
            self.device_owners
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(device)
                .cloned()
        });
        let chosen = owner
            .and_then(|name| {
                serving
                    .iter()
                    .find(|guest| guest.manifest().name == name)
                    .cloned()
            })
            .unwrap_or_else(|| serving[0].clone());
        vec![chosen]
    }

    /// Records that `guest` discovered `devices`.
    pub fn learn_devices<'a>(&self, guest: &str, devices: impl IntoIterator<Item = &'a str>) {
        let mut owners = self
            .device_owners
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for device in devices {
            owners.insert(device.to_string(), guest.to_string());
        }
    }

    /// The loaded guests as JSON (for the status port and `corral guests list`).
    pub fn describe(&self) -> serde_json::Value {
        let guests: Vec<serde_json::Value> = self
            .guests()
            .iter()
            .map(|guest| {
                let loaded = time::OffsetDateTime::from(guest.loaded_at());
                serde_json::json!({
                    "name": guest.manifest().name,
                    "version": guest.manifest().version,
                    "sha256": guest.sha256(),
                    "serves": guest.manifest().jobs.iter().map(|job| job.as_str()).collect::<Vec<_>>(),
                    "loadedUtc": crate::protocol::format_rfc3339(loaded),
                    "jobsRun": guest.jobs_run(),
                })
            })
            .collect();
        serde_json::json!({ "guests": guests, "refused": self.refusals() })
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
