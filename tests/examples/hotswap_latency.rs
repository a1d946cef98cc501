//! `cargo run --release -p corral-tests --example hotswap_latency [-- RUNS]`
//!
//! Time from the rename of a new guest version into the guests folder to the
//! catalog serving it and to the first job done on it, cold (compiled on the
//! swap) and cached (swapped back to a version compiled before); medians of
//! RUNS swaps each (default 9). See `corral_tests::bench::hotswap`.

use corral_tests::bench::{hotswap, print_table};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = std::env::args()
        .nth(1)
        .map_or(9, |runs| runs.parse().expect("RUNS is a number"));
    let swap = hotswap::measure(runs).await;
    print_table(&hotswap::figures(&swap));
}
