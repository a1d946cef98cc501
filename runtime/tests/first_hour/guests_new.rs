//! An integration author's first steps in each language: `corral guests new`,
//! `guests build`, `guests check`, then one thumbnail job of the new
//! component through `corral run-job` against camera-sim on loopback.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use corral_camera_sim::{CameraSim, SimConfig};

use crate::support::{arg, corral_env, corral_refused, repo_root, skip, thumbnail_job};

/// The toolchain folder `tests/polyglot.sh` filled (`target/toolchains`, or
/// `$CORRAL_TOOLCHAINS`) if it holds `lang`'s `installed` file; else `None`
/// after saying the test skips.
fn toolchains(lang: &str, installed: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CORRAL_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/toolchains"));
    if dir.join(lang).join(installed).exists() {
        return Some(dir);
    }
    skip(&format!(
        "no {lang} toolchain in {}: run `bash tests/polyglot.sh` (tests/run.sh does)",
        dir.display()
    ));
    None
}

/// `corral args` with `env`, which must succeed (on a blocking thread: the
/// camera-sim of the test runs on this runtime); returns its stdout.
fn corral_ok_env(args: &[&str], env: &[(&str, OsString)]) -> String {
    let env: Vec<(&str, &std::ffi::OsStr)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_os_str()))
        .collect();
    let run = tokio::task::block_in_place(|| corral_env(args, &env));
    assert!(
        run.success,
        "corral {args:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// New project `x` in `lang`, built, checked and run; `prepare` sees the
/// project folder before the build.
async fn new_build_check_run(
    lang: &str,
    mut env: Vec<(&str, OsString)>,
    prepare: impl FnOnce(&Path),
) {
    let sim = CameraSim::start(SimConfig::with_devices(1), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The compile cache `guests check` fills and `run-job` then reads.
    env.push(("XDG_CACHE_HOME", dir.path().join("cache").into()));

    let created = corral_ok_env(
        &[
            "guests",
            "new",
            "x",
            "--lang",
            lang,
            "--dir",
            arg(dir.path()),
        ],
        &env,
    );
    let project = dir.path().join("x");
    assert!(created.contains("next: corral guests build"), "{created}");
    let manifest = project.join("x.toml");
    let text = std::fs::read_to_string(&manifest).expect("guests new wrote x.toml");
    assert!(text.contains("name = \"x\""), "{text}");
    std::fs::write(
        &manifest,
        text.replace("http://127.0.0.1:8081", &sim.base_url()),
    )
    .unwrap();
    prepare(&project);

    let built = corral_ok_env(&["guests", "build", arg(&project)], &env);
    let wasm = project.join("x.wasm");
    assert!(
        built.contains(&format!("next: corral guests check {}", wasm.display())),
        "{built}"
    );

    let checked = corral_ok_env(&["guests", "check", arg(&wasm)], &env);
    assert!(
        checked.starts_with("ok: x 0.1.0")
            && checked.contains("serves discovery, thumbnail, mediarequest"),
        "{checked}"
    );

    let out = dir.path().join("out");
    let ran = corral_ok_env(
        &[
            "run-job",
            "--guest",
            arg(&wasm),
            "--job",
            arg(&thumbnail_job(dir.path())),
            "--out",
            arg(&out),
            "--secret",
            "camera-sim=operator:sim-secret",
        ],
        &env,
    );
    assert!(ran.contains("outcome   completed"), "{ran}");
    assert!(ran.contains("from the compile cache"), "{ran}");
    let jpeg = std::fs::read(out.join("cam-0001.jpg")).expect("the thumbnail");
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_project_builds_into_a_guest_that_check_accepts_and_runs() {
    // Kept between runs, so a second run builds only the new crate.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests-new-rust");
    let env = vec![("CARGO_TARGET_DIR", target.into_os_string())];
    new_build_check_run("rust", env, |project| {
        let cargo_toml = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        let sdk = std::fs::canonicalize(repo_root().join("guest-sdk")).unwrap();
        assert!(
            cargo_toml.contains(&format!(
                "corral-guest = {{ path = \"{}\" }}",
                sdk.display()
            )),
            "corral-guest is not this checkout's guest-sdk: {cargo_toml}"
        );
        // The workspace's versions: nothing to resolve, download or build anew.
        std::fs::copy(repo_root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_project_builds_into_a_guest_that_check_accepts_and_runs() {
    let Some(toolchains) = toolchains("python", "bin/componentize-py") else {
        return;
    };
    let env = vec![("CORRAL_TOOLCHAINS", toolchains.into_os_string())];
    new_build_check_run("python", env, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_javascript_project_builds_into_a_guest_that_check_accepts_and_runs() {
    let Some(toolchains) = toolchains("js", "node_modules/@bytecodealliance/componentize-js")
    else {
        return;
    };
    let env = vec![("CORRAL_TOOLCHAINS", toolchains.into_os_string())];
    new_build_check_run("js", env, |_| {}).await;
}

#[test]
fn guests_new_and_build_refuse_what_they_cannot_use_in_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let parent = arg(dir.path());
    let refused = corral_refused(&[
        "guests", "new", "My_VMS", "--lang", "python", "--dir", parent,
    ]);
    assert!(
        refused.contains("`My_VMS` is not a valid guest name"),
        "{refused}"
    );

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/notes.txt"), "mine").unwrap();
    let refused = corral_refused(&["guests", "new", "taken", "--lang", "js", "--dir", parent]);
    assert!(
        refused.contains("taken exists and is not empty"),
        "{refused}"
    );

    let refused = corral_refused(&["guests", "new", "x", "--lang", "go", "--dir", parent]);
    assert!(refused.contains("invalid value 'go'"), "{refused}");

    let nowhere = dir.path().join("no-sdk");
    let refused = corral_refused(&[
        "guests",
        "new",
        "x",
        "--lang",
        "rust",
        "--dir",
        parent,
        "--sdk-path",
        arg(&nowhere),
    ]);
    assert!(refused.contains("no Cargo.toml there"), "{refused}");
    assert!(
        !dir.path().join("x").exists(),
        "a refused project left files"
    );

    let refused = corral_refused(&["guests", "build", arg(&dir.path().join("taken"))]);
    assert!(
        refused.contains("holds no integration project"),
        "{refused}"
    );
}
