//! `cargo run --release -p corral-tests --example media_1gib [GiB]`
//!
//! One media job of 1 GiB (or GiB) end to end through `corral agent`, beside
//! a plain copy of the same bytes over the same path in the same run. See
//! `corral_tests::bench::media`; camera-sim, the registry and the agent are
//! processes of the `corral` binary.

use corral_tests::bench::{media, print_table};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gib = std::env::args()
        .nth(1)
        .map_or(1, |gib| gib.parse().expect("GiB is a number"));
    let run = media::measure(gib).await;
    print_table(&media::figures(&run));
}
