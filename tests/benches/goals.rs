//! `cargo bench -p corral-tests --bench goals [-- PART...]`
//!
//! Every figure that has a goal, measured in one run, and one table: the
//! figure, the goal, and pass or miss. PART picks some of `hotswap`, `cpu`,
//! `splice` and `media` (default: all). The measurements are
//! `corral_tests::bench`'s, the same the examples print one at a time.

use corral_tests::bench::{Figure, cpu_split, hotswap, media, print_table, splice};

/// Thumbnail jobs in the CPU split.
const CPU_SPLIT_JOBS: usize = 2000;

fn main() {
    // `cargo bench` passes `--bench`; the other words pick parts.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wanted = |part: &str| picked.is_empty() || picked.iter().any(|pick| pick == part);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let figures = tokio.block_on(async {
        let mut figures: Vec<Figure> = Vec::new();
        if wanted("hotswap") {
            eprintln!("hot swap: 9 cold and 9 cached swaps…");
            figures.extend(hotswap::figures(&hotswap::measure(9).await));
        }
        if wanted("cpu") {
            eprintln!("CPU split: {CPU_SPLIT_JOBS} thumbnail jobs through three processes…");
            figures.extend(cpu_split::figures(
                &cpu_split::measure(CPU_SPLIT_JOBS, 8).await,
            ));
        }
        if wanted("splice") {
            eprintln!("the agent's own path: 1 GiB twice…");
            figures.extend(splice::figures(&splice::measure().await));
        }
        if wanted("media") {
            eprintln!("1 GiB media job and its plain copy…");
            figures.extend(media::figures(&media::measure(1).await));
        }
        figures
    });
    println!();
    print_table(&figures);
}
