//! The guests an agent runs: every `<name>.wasm` of the guests folder with its
//! manifest, compiled and pre-instantiated, and the routing of a job to one.
//!
//! A job goes to the guest that serves its type; when several do, to the guest
//! whose discovery listed its device. A discovery job runs every guest that
//! serves discovery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::Runtime;
use crate::guest::{Guest, GuestError};
use crate::protocol::{Job, JobType};

/// The loaded guests, by name, and which guest discovered which device.
#[derive(Clone, Default)]
pub struct Catalog {
    guests: Arc<RwLock<Vec<Guest>>>,
    device_owners: Arc<RwLock<HashMap<String, String>>>,
}

/// Why the guests folder could not be loaded.
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

impl Catalog {
    /// A catalog of the given guests.
    pub fn new(guests: Vec<Guest>) -> Catalog {
        let mut guests = guests;
        guests.sort_by(|a, b| a.manifest().name.cmp(&b.manifest().name));
        Catalog {
            guests: Arc::new(RwLock::new(guests)),
            device_owners: Arc::default(),
        }
    }

    /// Loads every guest of `dir`; any bad guest stops the load with its reason.
    pub fn load(runtime: &Runtime, dir: &Path) -> Result<Catalog, CatalogError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|error| CatalogError::Folder(dir.display().to_string(), error))?;
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        let mut guests = Vec::new();
        for path in paths {
            let guest = runtime
                .load(&path)
                .map_err(|error| CatalogError::Guest(path.display().to_string(), error))?;
            tracing::info!(
                "loaded guest {} {} ({}) serving {:?}",
                guest.manifest().name,
                guest.manifest().version,
                &guest.sha256()[..12],
                guest.manifest().jobs
            );
            guests.push(guest);
        }
        if guests.is_empty() {
            return Err(CatalogError::Empty(dir.display().to_string()));
        }
        Ok(Catalog::new(guests))
    }

    /// All guests.
    pub fn guests(&self) -> Vec<Guest> {
        self.guests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
}
