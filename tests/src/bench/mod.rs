//! The measurements behind the README's figures, as functions: the examples
//! and `cargo bench -p corral-tests --bench goals` call them, so a figure is
//! measured one way wherever it is printed.

pub mod cpu_split;
pub mod hotswap;
pub mod media;
pub mod site;
pub mod splice;

/// One row of the goals table.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub what: String,
    /// The measured value, with its unit.
    pub measured: String,
    /// The goal, in words.
    pub goal: String,
    /// Whether the goal was met; `None` for a figure without a goal.
    pub met: Option<bool>,
}

impl Figure {
    /// A figure checked against a goal.
    pub fn checked(what: &str, measured: String, goal: &str, met: bool) -> Figure {
        Figure {
            what: what.into(),
            measured,
            goal: goal.into(),
            met: Some(met),
        }
    }

    /// A figure shown beside the others, with no goal of its own.
    pub fn shown(what: &str, measured: String) -> Figure {
        Figure {
            what: what.into(),
            measured,
            goal: "—".into(),
            met: None,
        }
    }
}

/// Prints `figures` as a Markdown table: figure, measured, goal, pass or miss.
pub fn print_table(figures: &[Figure]) {
    println!("| figure | measured | goal | |");
    println!("|---|---|---|---|");
    for figure in figures {
        let verdict = match figure.met {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "",
        };
        println!(
            "| {} | {} | {} | {verdict} |",
            figure.what, figure.measured, figure.goal
        );
    }
}

/// Milliseconds, for a table.
pub fn ms(time: std::time::Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1000.0)
}

/// CPU time per job, for a table.
pub fn ms_per_job(time: std::time::Duration) -> String {
    format!("{:.3} ms", time.as_secs_f64() * 1000.0)
}

/// A throughput in MB/s (10^6 bytes), for a table.
pub fn mb_per_sec(bytes: u64, time: std::time::Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / time.as_secs_f64() / 1e6)
}
