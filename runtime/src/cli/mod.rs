//! One module per subcommand; each parses its arguments and runs.

pub mod agent;
pub mod camera_sim;
pub mod demo;
pub mod guest_build;
pub mod guest_project;
pub mod guests;
pub mod registry;
pub mod run_job;

use std::io::IsTerminal;

/// How log lines are written (`--log-format`, or `CORRAL_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Targets kept at `warn` unless `RUST_LOG` names them: at `debug` the
/// compiler's internals would drown everything else.
const QUIET_TARGETS: [&str; 3] = ["wasmtime", "cranelift", "regalloc2"];

/// The filter directives: `rust_log` (the `RUST_LOG` variable) if set and not
/// empty, else `default`; either way with [`QUIET_TARGETS`] at `warn` unless
/// the directives name them.
pub fn log_directives(rust_log: Option<&str>, default: &str) -> String {
    let mut directives = rust_log
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .unwrap_or(default)
        .to_string();
    for target in QUIET_TARGETS {
        if !directives.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    directives
}

/// Logs to stderr in `format`; `RUST_LOG` overrides the `default` filter.
pub fn init_logging(default: &str, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = log_directives(rust_log.as_deref(), default);
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("RUST_LOG={directives} is not a valid filter ({error}); using {default}");
        tracing_subscriber::EnvFilter::new(log_directives(None, default))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// An error and its causes on one line, each cause once: a message that
/// already embeds its cause's text (`cannot read x: No such file`) is not
/// followed by that cause again.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.is_empty() && text.contains(part.trim()) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// `rows` under `header` in aligned columns (the last one unpadded).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|name| name.to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[column])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Formats a byte count for people: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compilers_internals_stay_quiet_unless_named() {
        assert_eq!(
            log_directives(None, "warn,corral=info"),
            "warn,corral=info,wasmtime=warn,cranelift=warn,regalloc2=warn"
        );
        assert_eq!(
            log_directives(Some("debug"), "warn"),
            "debug,wasmtime=warn,cranelift=warn,regalloc2=warn"
        );
        assert_eq!(
            log_directives(Some("debug,wasmtime=trace"), "warn"),
            "debug,wasmtime=trace,cranelift=warn,regalloc2=warn"
        );
        assert_eq!(
            log_directives(Some(" "), "info"),
            "info,wasmtime=warn,cranelift=warn,regalloc2=warn"
        );
    }

    #[test]
    fn a_cause_embedded_in_its_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot read x.toml: no such file");
        assert_eq!(error_text(&error), "cannot read x.toml: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot read x.toml");
        assert_eq!(error_text(&error), "cannot read x.toml: no such file");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let text = table(
            &["job", "state", "message"],
            vec![
                vec!["a".into(), "Completed".into(), "-".into()],
                vec!["bbbb".into(), "Failed".into(), "why".into()],
            ],
        );
        assert_eq!(
            text,
            "job   state      message\na     Completed  -\nbbbb  Failed     why\n"
        );
    }
}
