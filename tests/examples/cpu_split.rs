//! `cargo run --release -p corral-tests --example cpu_split [-- JOBS [MAX_JOBS]]`
//!
//! Where a thumbnail job's CPU goes, with camera-sim, the registry and the
//! agent in three processes: see `corral_tests::bench::cpu_split`. For a
//! profile, run it under `perf record -a -g` and sort by pid
//! (docs/performance.md).

use corral_tests::bench::{cpu_split, print_table};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs = args.next().map_or(2000, |jobs| jobs.parse().expect("JOBS"));
    let max_jobs = args.next().map_or(8, |max| max.parse().expect("MAX_JOBS"));
    let split = cpu_split::measure(jobs, max_jobs).await;
    println!(
        "{jobs} jobs in {:.2} s; CPU: {}",
        split.wall.as_secs_f64(),
        split
            .parts
            .iter()
            .map(|(name, cpu)| format!("{name} {:.2} s", cpu.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_table(&cpu_split::figures(&split));
}
