//! Outside API checkers against a running registry: openapi-spec-validator on
//! `/openapi.json`, and schemathesis calling every operation with generated
//! input (no 5xx, every answer as the document describes it). Both come from
//! the venv `tests/run.sh` makes; `CORRAL_SCHEMATHESIS_EXAMPLES` sets how many
//! examples schemathesis tries per operation.

use std::path::PathBuf;
use std::process::Command;

use corral_registry::RegistryConfig;
use corral_tests::registry::{TestRegistry, new_job};

/// A program of the interop venv, or `None` (with a printed line) when it is
/// missing and `CORRAL_ALLOW_SKIP` is set; otherwise a missing one fails.
fn venv_tool(name: &str) -> Option<PathBuf> {
    let python = corral_tests::interop::python();
    let tool = python.with_file_name(name);
    if tool.exists() {
        return Some(tool);
    }
    let why = format!(
        "{} is missing: run `bash tests/run.sh`, which installs it into target/interop-venv",
        tool.display()
    );
    if std::env::var_os("CORRAL_ALLOW_SKIP").is_some() {
        println!("skipped: {why}");
        return None;
    }
    panic!("{why} (or set CORRAL_ALLOW_SKIP to skip)");
}

fn run(mut command: Command) -> (bool, String) {
    let output = command.output().expect("the checker starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_passes_openapi_spec_validator() {
    let Some(validator) = venv_tool("openapi-spec-validator") else {
        return;
    };
    let registry = TestRegistry::start(RegistryConfig::default()).await;
    let url = format!("{}/openapi.json", registry.running.base_url());
    let document = get_text(&url).await;
    let file = registry.dir.path().join("openapi.json");
    std::fs::write(&file, &document).unwrap();
    let mut command = Command::new(validator);
    command.arg(&file);
    let (ok, text) = tokio::task::spawn_blocking(move || run(command))
        .await
        .unwrap();
    assert!(ok, "openapi-spec-validator refused /openapi.json:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_nor_an_answer_off_the_schema() {
    let Some(st) = venv_tool("st") else {
        return;
    };
    let registry = TestRegistry::start(RegistryConfig::default()).await;
    let agent = "agent-st";
    let token = registry.token(agent).await;
    let admin = registry.running.registry().admin_token().to_string();
    // Some real jobs, so that generated calls also meet existing rows.
    registry
        .running
        .registry()
        .store()
        .transaction(move |tx| {
            corral_registry::admin::post_jobs(tx, &[new_job("thumbnail", agent, Some("cam-1"))])
        })
        .await
        .unwrap();
    let examples = std::env::var("CORRAL_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let base = registry.running.base_url();
    // The agent token for the agent service; the admin API gets its own token
    // in a second run, so that each operation sees a caller it accepts.
    for (caller, bearer, include) in [
        ("agent", token, "^/(agentservice|connect|openapi)"),
        ("admin", admin, "^/admin"),
    ] {
        let mut command = Command::new(&st);
        command
            .args(["run", &format!("{base}/openapi.json")])
            .args(["--url", &base])
            .args(["--include-path-regex", include])
            .args(["-H", &format!("Authorization: Bearer {bearer}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", &examples])
            .args(["--seed", "1"])
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(registry.dir.path());
        let (ok, text) = tokio::task::spawn_blocking(move || run(command))
            .await
            .unwrap();
        assert!(ok, "schemathesis found problems ({caller} calls):\n{text}");
        let summary: Vec<&str> = text.lines().rev().take(12).collect();
        println!("schemathesis, {caller} calls: {}", summary.join(" | "));
    }
}

/// GETs `url` with a bare hyper client.
async fn get_text(url: &str) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let answer = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(answer.status(), 200, "GET {url}");
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}
