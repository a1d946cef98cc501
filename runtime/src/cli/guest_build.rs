//! `corral guests build`: builds an integration project into `<name>.wasm`
//! beside its manifest `<name>.toml`. The language is read off the folder
//! (`Cargo.toml`, else `app.py`, else `app.js` or `package.json`). Rust is
//! built by cargo; Python and JavaScript by the SDKs' own build scripts, which
//! install their pinned toolchain into a cache folder on first use. Those
//! SDKs and the WIT are compiled into this binary and written to a temporary
//! folder for each build, so a guest is always built against the contract of
//! the corral that runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::guest_project::{Lang, write_files};
use super::human_bytes;

/// The WIT package the guests are built against (`wit/`).
const WIT: &[(&str, &str)] = &[
    (
        "integration.wit",
        include_str!("../../../wit/integration.wit"),
    ),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// `guest-sdk/python/`: corral_guest and its build script.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "build.sh",
        include_str!("../../../guest-sdk/python/build.sh"),
    ),
    (
        "corral_guest/__init__.py",
        include_str!("../../../guest-sdk/python/corral_guest/__init__.py"),
    ),
];

/// `guest-sdk/js/`: @corral/guest and its build scripts.
const JS_SDK: &[(&str, &str)] = &[
    ("build.sh", include_str!("../../../guest-sdk/js/build.sh")),
    ("build.mjs", include_str!("../../../guest-sdk/js/build.mjs")),
    ("index.js", include_str!("../../../guest-sdk/js/index.js")),
    (
        "package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
];

/// Files named `*.toml` in a project that are not its guest manifest.
const NOT_MANIFESTS: [&str; 3] = ["Cargo.toml", "rust-toolchain.toml", "pyproject.toml"];

/// Builds the project in `dir` into `out` (default `dir/<name>.wasm`) and
/// prints its size and the next command.
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a folder: give the project folder `corral guests new` wrote",
        dir.display()
    );
    let (lang, entry) = detect(dir)?;
    let manifest = find_manifest(dir)?;
    let stem = manifest
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = match out {
        Some(path) if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') => {
            path.join(format!("{stem}.wasm"))
        }
        Some(path) => {
            anyhow::ensure!(
                path.extension().is_some_and(|ext| ext == "wasm"),
                "--out {}: give a .wasm file or a folder",
                path.display()
            );
            path.to_path_buf()
        }
        None => dir.join(format!("{stem}.wasm")),
    };
    let out_abs = std::path::absolute(&out)
        .with_context(|| format!("--out {}: cannot make it absolute", out.display()))?;
    if let Some(folder) = out_abs.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    println!(
        "building {} ({}) into {}",
        dir.display(),
        lang.label(),
        out.display()
    );
    match lang {
        Lang::Rust => {
            let built = cargo_build(dir)?;
            let partial = out_abs.with_extension("wasm.partial");
            std::fs::copy(&built, &partial).with_context(|| {
                format!("cannot copy {} to {}", built.display(), partial.display())
            })?;
            std::fs::rename(&partial, &out_abs)
                .with_context(|| format!("cannot write {}", out_abs.display()))?;
        }
        Lang::Python | Lang::Js => script_build(lang, dir, &entry, &out_abs)?,
    }
    let size = std::fs::metadata(&out_abs)
        .with_context(|| format!("the build wrote no {}", out.display()))?
        .len();
    println!(
        "wrote {} ({}, {size} bytes)",
        out.display(),
        human_bytes(size)
    );
    let mut next = format!("corral guests check {}", out.display());
    if corral::manifest::Manifest::path_for(&out) != manifest {
        next.push_str(&format!(" --manifest {}", manifest.display()));
    }
    println!("next: {next}");
    Ok(())
}

/// The project's language and its entry file.
fn detect(dir: &Path) -> anyhow::Result<(Lang, PathBuf)> {
    for (file, lang) in [
        ("Cargo.toml", Lang::Rust),
        ("app.py", Lang::Python),
        ("app.js", Lang::Js),
    ] {
        if dir.join(file).is_file() {
            return Ok((lang, dir.join(file)));
        }
    }
    let package = dir.join("package.json");
    if package.is_file() {
        let text = std::fs::read_to_string(&package)
            .with_context(|| format!("cannot read {}", package.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", package.display()))?;
        let main = json["main"].as_str().unwrap_or("app.js");
        return Ok((Lang::Js, dir.join(main)));
    }
    anyhow::bail!(
        "{} holds no integration project: expected Cargo.toml (Rust), app.py (Python), or app.js \
         or package.json (JavaScript), as `corral guests new` writes",
        dir.display()
    )
}

/// The one guest manifest (`<name>.toml`) in `dir`.
fn find_manifest(dir: &Path) -> anyhow::Result<PathBuf> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter(|path| {
            let name = path.file_name().unwrap_or_default();
            !NOT_MANIFESTS.iter().any(|skip| name == *skip)
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => anyhow::bail!(
            "{} has no guest manifest (<name>.toml beside the source): the .wasm is named after it",
            dir.display()
        ),
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            anyhow::bail!(
                "{} has several manifests ({}): keep one <name>.toml beside the source",
                dir.display(),
                names.join(", ")
            )
        }
    }
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; returns the
/// `.wasm` cargo reports for the project's own cdylib.
fn cargo_build(dir: &Path) -> anyhow::Result<PathBuf> {
    check_wasm_target(dir)?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    let output = run_tool(&mut cargo, "cargo build")?;
    let own = std::fs::canonicalize(dir.join("Cargo.toml"))
        .with_context(|| format!("cannot read {}", dir.join("Cargo.toml").display()))?;
    let wasm = String::from_utf8_lossy(&output)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["manifest_path"].as_str().map(Path::new) == Some(own.as_path())
        })
        .flat_map(|message| {
            let files: Vec<String> = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|file| file.as_str().map(str::to_string))
                .collect();
            files
        })
        .find(|file| file.ends_with(".wasm"));
    wasm.map(PathBuf::from).with_context(|| {
        format!(
            "cargo built no .wasm for {}: its [lib] needs crate-type = [\"cdylib\"]",
            own.display()
        )
    })
}

/// Stops with one sentence when rustc has no `wasm32-wasip2` standard library.
fn check_wasm_target(dir: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let printed = Command::new(rustc)
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .context("cannot run rustc: install Rust with rustup (https://rustup.rs)")?;
    let libdir = String::from_utf8_lossy(&printed.stdout).trim().to_string();
    anyhow::ensure!(
        printed.status.success() && Path::new(&libdir).is_dir(),
        "the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`"
    );
    Ok(())
}

/// Runs an SDK's build script from a temporary copy of the SDK and the WIT,
/// with the toolchain in [`toolchains_dir`].
fn script_build(lang: Lang, dir: &Path, entry: &Path, out: &Path) -> anyhow::Result<()> {
    let (sdk_files, sub, tool) = match lang {
        Lang::Python => (
            PYTHON_SDK,
            "python",
            "componentize-py (guest-sdk/python/build.sh)",
        ),
        _ => (JS_SDK, "js", "componentize-js (guest-sdk/js/build.sh)"),
    };
    let scratch = tempfile::tempdir().context("cannot make a temporary folder for the SDK")?;
    let sdk = scratch.path().join(sub);
    let wit = scratch.path().join("wit");
    write_files(&sdk, sdk_files)?;
    write_files(&wit, WIT)?;
    let app = match lang {
        Lang::Python => std::path::absolute(dir)?,
        _ => std::path::absolute(entry)?,
    };
    let toolchain = toolchains_dir().join(sub);
    let mut script = Command::new("bash");
    script
        .current_dir(dir)
        .arg(sdk.join("build.sh"))
        .arg("--app")
        .arg(&app)
        .arg("--sdk")
        .arg(&sdk)
        .arg("--wit")
        .arg(&wit)
        .arg("--toolchain")
        .arg(&toolchain)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::inherit());
    run_tool(&mut script, tool)?;
    Ok(())
}

/// Where the Python and JS toolchains are installed: `$CORRAL_TOOLCHAINS`,
/// else `~/.cache/corral/toolchains`; one folder per language.
fn toolchains_dir() -> PathBuf {
    std::env::var_os("CORRAL_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| corral::cache::user_cache_dir().join("toolchains"))
}

/// Runs `command` with its stderr visible (and its stdout, unless the caller
/// piped it); returns what it piped. A tool that fails is named with its exit
/// status.
fn run_tool(command: &mut Command, tool: &str) -> anyhow::Result<Vec<u8>> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{tool} failed ({}); its output is above",
        output.status
    );
    Ok(output.stdout)
}
