//! Which guest owns which device, kept on disk so that a restart does not
//! reopen the race for the devices (see [`super::catalog`]).
//!
//! The record is one JSON file in the agent's compile-cache folder (the
//! agent's own folder, checked private before it is used: see
//! [`crate::cache`]), named by the agent id and the guests folder:
//! `<cache_dir>/device-owners/<agent id>-<hash of the guests folder>.json`.
//! It maps each device id to the file stem of the guest that owns it (one
//! device a line), and lists the devices several guests reported at once.
//! It is read when the agent starts and written again (to a temporary file,
//! then renamed) whenever a device gets an owner. To release a device, the
//! operator stops the agent and deletes its line (or the whole file, to
//! release every device).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The device owners as stored.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// Device id to the owning guest's file stem.
    pub owners: BTreeMap<String, String>,
    /// Devices several guests reported in the same discovery: owned by none.
    #[serde(default)]
    pub contested: BTreeSet<String>,
}

/// Where the device owners of agent `agent_id` with guests folder `guests_dir`
/// are kept, under the compile-cache folder `cache_dir`.
pub fn path_for(cache_dir: &Path, agent_id: &str, guests_dir: &Path) -> PathBuf {
    let safe: String = agent_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let folder = std::fs::canonicalize(guests_dir).unwrap_or_else(|_| guests_dir.to_path_buf());
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        folder.as_os_str().as_encoded_bytes(),
    );
    let hash = crate::sink::hex(digest.as_ref());
    cache_dir
        .join("device-owners")
        .join(format!("{safe}-{}.json", &hash[..16]))
}

/// Reads the record at `path`; a missing file is an empty record.
pub fn read(path: &Path) -> Result<Stored, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Stored::default());
        }
        Err(error) => return Err(format!("cannot be read: {error}")),
    };
    serde_json::from_str(&text).map_err(|error| {
        format!(
            "is not a device-owner record ({error}): fix it, or delete it to release every device"
        )
    })
}

/// Writes the record at `path` atomically (a temporary file, then renamed).
pub fn write(
    path: &Path,
    owners: &HashMap<String, String>,
    contested: &HashSet<String>,
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        owners: BTreeMap<&'a str, &'a str>,
        contested: BTreeSet<&'a str>,
    }
    let record = Borrowed {
        owners: owners
            .iter()
            .map(|(device, owner)| (device.as_str(), owner.as_str()))
            .collect(),
        contested: contested.iter().map(String::as_str).collect(),
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    let file = tempfile::NamedTempFile::new_in(folder)?;
    let mut buffered = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut buffered, &record)?;
    buffered.write_all(b"\n")?;
    let file = buffered.into_inner().map_err(|error| error.into_error())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), "agent/1", dir.path());
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("agent_1-")
        );
        assert_eq!(read(&path).unwrap(), Stored::default());
        let owners = HashMap::from([("cam-1".to_string(), "vms".to_string())]);
        let contested = HashSet::from(["cam-2".to_string()]);
        write(&path, &owners, &contested).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.owners["cam-1"], "vms");
        assert!(back.contested.contains("cam-2"));
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().contains("delete it"));
    }
}
