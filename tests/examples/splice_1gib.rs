//! `cargo run --release -p corral-tests --example splice_1gib`
//!
//! Where a 1 GiB media job spends its time on the agent's side: camera-sim →
//! http-vms (splice) → the output stream, into a sink that drops the bytes;
//! then the same into the upload pipeline (loopback server that discards).
//! See `corral_tests::bench::splice`.

use corral_tests::bench::{print_table, splice};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = splice::measure().await;
    for run in &runs {
        println!("{}: guest CPU {:?}", run.sink, run.guest_time);
    }
    print_table(&splice::figures(&runs));
}
