// Shared by the build scripts of `runtime/` (the bundled guests) and `tests/`
// (the hostile ones): builds guest crates of the workspace for wasm32-wasip2
// with a nested `cargo build` into `target/guests` (see `guests_target_dir`),
// a target directory of its own (the outer build holds the lock on its own),
// and tells rustc where each `.wasm` is through an environment variable.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `guests` (crate name, variable naming its `.wasm`), and sets
/// `<VAR>` and `<VAR>_MANIFEST` (the crate's `<name>.toml`, if any) for rustc.
fn build_guests(guests: &[(&str, &str)], crate_dirs: &Path) {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("the crate lives in the workspace");
    for watched in ["guests", "tests/guests", "guest-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    let target_dir = guests_target_dir(workspace);
    ensure_wasm_target();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (name, _) in guests {
        cargo.args(["--package", name]);
    }
    // The outer build's settings are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build the guests: {error}"));
    if !status.success() {
        panic!("building the guests for wasm32-wasip2 failed (see the output above)");
    }
    for (name, var) in guests {
        let wasm = target_dir
            .join("wasm32-wasip2/guest")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "the guest build did not produce {}", wasm.display());
        println!("cargo:rustc-env={var}={}", wasm.display());
        let manifest = workspace.join(crate_dirs).join(name).join(format!("{name}.toml"));
        println!("cargo:rustc-env={var}_MANIFEST={}", manifest.display());
    }
}

/// Where the nested build puts the guests: `target/guests` of this workspace;
/// under a `CARGO_TARGET_DIR` elsewhere (one shared by several checkouts), a
/// folder named after this checkout's path, so that one checkout's guests are
/// never built into another's.
fn guests_target_dir(workspace: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let own = workspace.join("target");
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(shared) if shared != own => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            workspace.hash(&mut hasher);
            shared.join(format!("guests-{:016x}", hasher.finish()))
        }
        _ => own.join("guests"),
    }
}

/// Installs the `wasm32-wasip2` target with rustup when it is missing, or stops
/// the build with one sentence saying how.
fn ensure_wasm_target() {
    if wasm_target_installed() {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    let installed = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .is_ok_and(|status| status.success());
    if !installed || !wasm_target_installed() {
        panic!(
            "the Rust target wasm32-wasip2 is missing and could not be installed: run `rustup target add wasm32-wasip2`"
        );
    }
}

fn wasm_target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .is_some_and(|dir| Path::new(&dir).join("libstd.rlib").exists() || has_std(&dir))
}

fn has_std(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

