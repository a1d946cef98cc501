//! The chaos suite at CI size: three `corral agent` processes sharing one
//! identity, one killed with `kill -9` and restarted every 2 s, the registry
//! killed once and restarted on the same data, 20% / 5% / 5% faults on every
//! call; afterwards every job is Completed exactly once and every recording
//! decrypts to camera-sim's bytes. The full size: `cargo run --release -p
//! corral-tests --example chaos -- --jobs 1000`.

use corral_tests::chaos::{self, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kills_and_faults_every_job_completes_exactly_once() {
    let report = chaos::run(ChaosConfig::ci()).await;
    println!("{report}");
    assert!(report.problems.is_empty(), "{report}");
    assert_eq!(
        (report.lost, report.doubled, report.refused_commits),
        (0, 0, 0)
    );
    assert_eq!(report.registry_kills, 1, "{report}");
    assert!(report.agent_kills >= 3, "{report}");
    assert!(
        report.faults.refused > 0 && report.faults.dropped > 0 && report.faults.lost > 0,
        "every kind of fault happened: {report}"
    );
    assert!(report.recordings > 0, "{report}");
}
