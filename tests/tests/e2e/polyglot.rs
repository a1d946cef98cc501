//! Guests in Python and JavaScript that go wrong: the job fails with the
//! guest's own last words (the traceback's last line; the error and its
//! stack), escaped and cut, not with the trap of the language runtime.

use corral::guest::JobOutcome;
use corral::manifest::Manifest;
use corral::protocol::JobType;
use corral_camera_sim::SimConfig;
use corral_tests::{Harness, job, polyglot_component};

async fn thumbnail_fails_with(component: &str) -> Option<String> {
    let wasm = polyglot_component(component)?;
    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let manifest = Manifest::parse(
        "name = \"crash\"\nversion = \"0.1.0\"\njobs = [\"thumbnail\"]\n",
        std::path::Path::new("crash.toml"),
    )
    .unwrap();
    let guest = corral_tests::cached_runtime(2)
        .load_bytes(&wasm, manifest)
        .expect("the guest loads");
    let report = harness
        .run_with(&guest, &job("c1", JobType::Thumbnail, Some("cam-0001")))
        .await;
    let JobOutcome::Failed(message) = report.outcome else {
        panic!("{component}: expected a failure, got {:?}", report.outcome);
    };
    assert!(
        !message.contains('\n') && !message.contains('\x1b'),
        "{message}"
    );
    assert!(message.len() <= corral::sandbox::guest_text::MAX_MESSAGE);
    Some(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_python_exception_fails_the_job_with_the_tracebacks_last_line() {
    let Some(message) = thumbnail_fails_with("crash_py.wasm").await else {
        return;
    };
    assert!(
        message.starts_with(
            r#"uncaught Python exception KeyError: 'cam-0001\nforged line' (File "/0/app.py", line 10, in lookup)"#
        ),
        "{message}"
    );
    assert!(!message.contains("Python function threw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_javascript_error_fails_the_job_with_the_error_and_its_stack() {
    let Some(message) = thumbnail_fails_with("crash_js.wasm").await else {
        return;
    };
    assert!(
        message.starts_with(
            r#"uncaught JavaScript error TypeError: can't access property "name", (intermediate value)[camera] is undefined (stack: lookup@crash_js.js:"#
        ),
        "{message}"
    );
    assert!(message.contains("<- thumbnail@crash_js.js:"), "{message}");
    assert!(!message.contains("mozalloc_abort"), "{message}");
}
