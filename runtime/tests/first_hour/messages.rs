//! Messages a newcomer meets: each names the flag or key to change, with an
//! example where a format is expected, and says its cause once.

use super::support::{
    MY_VMS_WASM, arg, corral, corral_refused, my_vms_manifest, registry_with_agent, thumbnail_job,
};

#[test]
fn post_job_errors_name_the_flags_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = registry_with_agent(dir.path(), "http://127.0.0.1:1");
    let post = |args: &[&str]| {
        let mut all = vec![
            "registry",
            "post-job",
            "--data",
            arg(&data),
            "--agent",
            "agent-1",
        ];
        all.extend_from_slice(args);
        corral_refused(&all)
    };
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--type", "mediarequest", "--device", "cam-0001"],
            &["--start and --end", "--start 2026-11-20T10:00:00Z"],
        ),
        (
            &[
                "--type",
                "mediarequest",
                "--device",
                "cam-0001",
                "--start",
                "10:00",
                "--end",
                "2026-11-20T10:01:00Z",
            ],
            &[
                "--start 10:00 is not an RFC 3339 time",
                "2026-11-20T10:00:00Z",
            ],
        ),
        (
            &["--type", "thumbnail"],
            &["needs --device", "--device cam-0001"],
        ),
        (
            &["--type", "thumb", "--device", "cam-0001"],
            &["--type thumb", "thumbnail"],
        ),
        (
            &["--type", "discovery", "--param", "quality"],
            &["--param quality", "NAME=VALUE", "--param quality=high"],
        ),
    ];
    for (args, expected) in cases {
        let refused = post(args);
        for text in expected {
            assert!(refused.contains(text), "{args:?}: {refused}");
        }
        for field in ["startTimeUtc", "endTimeUtc", "deviceId"] {
            assert!(
                !refused.contains(field),
                "{args:?} names a JSON field: {refused}"
            );
        }
    }
}

#[test]
fn run_job_refuses_a_setting_the_manifest_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let job = thumbnail_job(dir.path());
    let manifest = my_vms_manifest();
    let out = dir.path().join("out");
    let refused = corral_refused(&[
        "run-job",
        "--guest",
        MY_VMS_WASM,
        "--manifest",
        arg(&manifest),
        "--job",
        arg(&job),
        "--out",
        arg(&out),
        "--set",
        "bas-url=http://127.0.0.1:1",
    ]);
    assert!(refused.contains("--set bas-url"), "{refused}");
    assert!(refused.contains("its settings: base-url"), "{refused}");
    assert!(!out.exists(), "refused before running");
}

#[test]
fn an_agent_toml_parse_error_keeps_its_lines_and_causes_are_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "agent_id = \"agent-1\"\nmax_jobs = four\n").unwrap();
    let refused = corral_refused(&[
        "guests",
        "check",
        MY_VMS_WASM,
        "--manifest",
        arg(&my_vms_manifest()),
        "--config",
        arg(&config),
    ]);
    let message = refused.trim_end();
    assert!(message.lines().count() > 2, "one line: {message}");
    assert!(
        message.contains("max_jobs = four"),
        "the offending line shown: {message}"
    );

    let missing = dir.path().join("nowhere.toml");
    let refused = corral_refused(&["guests", "check", MY_VMS_WASM, "--manifest", arg(&missing)]);
    let cause = "No such file or directory";
    assert_eq!(refused.matches(cause).count(), 1, "{refused}");
}

#[test]
fn each_subcommands_help_shows_what_is_required() {
    for (args, required) in [
        (
            &["run-job", "--help"][..],
            &["--guest <GUEST>", "--job <FILE>", "--out <OUT>"][..],
        ),
        (
            &["registry", "post-job", "--help"],
            &["--data <DIR>", "--type <TYPE>", "--agent <AGENT_ID>"],
        ),
        (
            &["registry", "add-agent", "--help"],
            &[
                "--data <DIR>",
                "--name <AGENT_ID>",
                "--url <URL>",
                "--out <FILE>",
            ],
        ),
        (
            &["registry", "cancel-job", "--help"],
            &["--data <DIR>", "--job <JOB_ID>"],
        ),
        (
            &["registry", "file", "--help"],
            &["--data <DIR>", "--file <FILE_ID>", "--out <PATH>"],
        ),
    ] {
        let help = corral(args);
        assert!(help.success, "{args:?}");
        let usage = help
            .stdout
            .lines()
            .find(|line| line.starts_with("Usage:"))
            .unwrap_or_default();
        for flag in required {
            assert!(
                usage.contains(flag),
                "{args:?}: usage does not require {flag}: {usage}"
            );
        }
    }
}
