//! What `corral registry jobs` and `corral registry file` show people: the
//! jobs table, and a committed file written where `--out` says.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use corral_registry::JobJson;

use crate::cli::{human_bytes, table};

/// The jobs as an aligned table: every column a person needs to act on a job
/// (the agent it is for, the file ids `corral registry file` takes, the
/// message of a failure or a cancel), sizes in human units.
pub fn jobs_table(list: &[JobJson]) -> String {
    let rows = list
        .iter()
        .map(|job| {
            let files: Vec<String> = job
                .files
                .iter()
                .flatten()
                .filter(|file| file.committed)
                .map(|file| {
                    format!(
                        "{} {} ({})",
                        file.file_id,
                        file.file_name,
                        human_bytes(file.length.unwrap_or(0))
                    )
                })
                .collect();
            vec![
                job.job_id.clone(),
                job.job_type.clone(),
                job.agent_id.clone(),
                job.device_id.clone().unwrap_or_else(|| "-".into()),
                job.state.clone(),
                format!("{}/{}", job.task_progress, job.task_total),
                or_dash(files.join(", ")),
                or_dash(job.message.clone().unwrap_or_default().replace('\n', " ")),
            ]
        })
        .collect();
    table(
        &[
            "job", "type", "agent", "device", "state", "progress", "files", "message",
        ],
        rows,
    )
}

fn or_dash(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

/// Writes a committed file's `bytes` to `out`: standard output for `-`, the
/// file's own name inside `out` when it is a folder (or ends with `/`),
/// otherwise `out` itself.
pub fn write_file(out: &Path, file_name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    if out.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .context("cannot write to standard output")?;
        return Ok(());
    }
    let is_folder = out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/');
    let path = if is_folder {
        // The name came from a guest: only its last part, never a path.
        let name = Path::new(file_name)
            .file_name()
            .filter(|name| !name.is_empty())
            .with_context(|| {
                format!("the file's name `{file_name}` is not a file name: give --out a file path")
            })?;
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create --out folder {}", out.display()))?;
        out.join(name)
    } else {
        out.to_path_buf()
    };
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {} ({})",
        path.display(),
        human_bytes(bytes.len() as u64)
    );
    Ok(())
}
