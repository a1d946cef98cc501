//! Every fenced block of the README, checked as a reader would use it.
//!
//! A block's info string says what it is: `text` (a diagram, not run), `rust`
//! and `toml` with `file=<path>` (the file a reader writes: when the path is
//! in the repository the block must be that file, byte for byte, so the
//! workspace builds and loads exactly what the README shows; under
//! `scratch/`, the walkthrough writes it), and `sh` (commands run from the
//! repository's root). The first block, the two commands `.ci/run` reads, has
//! none.
//!
//! The walkthroughs run in a copy of the repository's root: the binaries and
//! guests the build already made (so the blocks' `cargo build` lines are
//! skipped, cargo having run them before this test), the guests' manifests,
//! and the README's ports swapped for free ones so parallel runs never clash.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use corral::agent::config::AgentConfig;

use super::support::{CORRAL, MY_VMS_WASM, arg, corral, free_port, repo_root};

/// The ports the README's commands use.
const README_PORTS: [&str; 3] = ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:9187"];

/// How long one shell block may take (a debug agent compiles its guest).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// One fenced block.
struct Block {
    /// Its language (the info string's first word).
    kind: String,
    /// The `file=` of its info string.
    file: Option<String>,
    /// Its text, each line ending in `\n`.
    text: String,
    /// The README line of its opening fence.
    line: usize,
}

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (number, line) in readme.lines().enumerate() {
        let Some(info) = line.strip_prefix("```") else {
            if let Some(block) = open.as_mut() {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        };
        match open.take() {
            Some(block) => blocks.push(block),
            None => {
                let mut words = info.split_whitespace();
                let kind = words.next().unwrap_or("").to_string();
                let file = words
                    .find_map(|word| word.strip_prefix("file="))
                    .map(str::to_string);
                open = Some(Block {
                    kind,
                    file,
                    text: String::new(),
                    line: number + 1,
                });
            }
        }
    }
    assert!(open.is_none(), "README.md: a code block is never closed");
    blocks
}

#[test]
fn the_first_block_is_the_two_commands_ci_runs() {
    let blocks = blocks(&readme());
    assert_eq!(blocks[0].kind, "");
    assert_eq!(
        blocks[0].text,
        "cargo run --release -p corral -- demo\nbash tests/run.sh\n"
    );
}

#[test]
fn every_block_is_of_a_kind_this_test_checks() {
    for block in blocks(&readme()).iter().skip(1) {
        let known = match block.kind.as_str() {
            "text" | "sh" => true,
            "rust" | "toml" => block.file.is_some(),
            _ => false,
        };
        assert!(
            known,
            "README.md line {}: a block of kind `{}`{}: use text, sh, or rust/toml with file=<path>",
            block.line,
            block.kind,
            if block.file.is_none() {
                " without file="
            } else {
                ""
            }
        );
    }
}

#[test]
fn every_block_naming_a_repository_file_is_that_file() {
    let root = repo_root();
    for block in blocks(&readme()) {
        let Some(file) = &block.file else { continue };
        if file.starts_with("scratch/") {
            continue;
        }
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|error| panic!("README.md line {}: {file}: {error}", block.line));
        assert!(
            text == block.text,
            "README.md line {}: the block differs from {file}: make them equal",
            block.line
        );
    }
}

#[test]
fn every_toml_block_parses_and_every_manifest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifests = 0;
    for block in blocks(&readme())
        .iter()
        .filter(|block| block.kind == "toml")
    {
        let file = block.file.as_deref().unwrap_or_default();
        let at = format!("README.md line {} ({file})", block.line);
        let value: toml::Table = toml::from_str(&block.text)
            .unwrap_or_else(|error| panic!("{at} does not parse: {error}"));
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &block.text).unwrap();
        if file.ends_with("agent.toml") {
            AgentConfig::load(&path).unwrap_or_else(|error| panic!("{at}: {error}"));
        } else if value.contains_key("jobs") {
            // A manifest: loaded by the real runtime beside the example guest.
            manifests += 1;
            let check = corral(&["guests", "check", MY_VMS_WASM, "--manifest", arg(&path)]);
            assert!(check.success, "{at} is refused: {}", check.stderr);
            assert!(check.stdout.starts_with("ok: "), "{}", check.stdout);
        }
    }
    assert!(manifests >= 1, "the README shows a manifest");
}

/// A copy of the repository's root as a fresh clone after its build: the
/// binary, the guests, their manifests; `ports` replace the README's.
fn repository_copy(root: &Path, ports: &[(String, String)]) {
    let swap = |text: &str| {
        ports
            .iter()
            .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
    };
    let place = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(CORRAL, root.join("target/release/corral")).unwrap();
    place(
        "target/wasm32-wasip2/release/my_vms.wasm",
        &std::fs::read(MY_VMS_WASM).unwrap(),
    );
    place(
        "target/guests/wasm32-wasip2/guest/http_vms.wasm",
        corral::bundled::HTTP_VMS,
    );
    for guest in std::fs::read_dir(repo_root().join("guests"))
        .unwrap()
        .flatten()
    {
        let name = guest.file_name().to_string_lossy().into_owned();
        let manifest = guest.path().join(format!("{name}.toml"));
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            place(
                &format!("guests/{name}/{name}.toml"),
                swap(&text).as_bytes(),
            );
        }
    }
}

/// Runs one `sh` block with bash from `root`, stopping on the first failing
/// command; afterwards (or at the timeout) whatever it left running is killed.
fn run_shell(root: &Path, script_dir: &Path, block: &Block, text: &str) -> String {
    let script = script_dir.join(format!("block-{}.sh", block.line));
    let prelude = "set -euo pipefail\n\
        # cargo already built these before the test ran\n\
        cargo() { echo \"(built before the test) cargo $*\" >&2; }\n";
    std::fs::write(&script, format!("{prelude}{text}")).unwrap();
    let stdout_path = script.with_extension("stdout");
    let stderr_path = script.with_extension("stderr");
    let mut child = Command::new("bash")
        .arg(&script)
        .current_dir(root)
        .env_remove("CORRAL_SECRET_CAMERA_SIM")
        .env_remove("CAMERA_SIM_PASSWORD")
        .env_remove("CORRAL_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let group = child.id() as i32;
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    let status = finished.recv_timeout(BLOCK_TIMEOUT);
    // SAFETY: kill(2) on the process group this test made for the block.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let read = |path: &Path| {
        let mut text = String::new();
        let _ = std::fs::File::open(path).and_then(|mut file| file.read_to_string(&mut text));
        text
    };
    let (stdout, stderr) = (read(&stdout_path), read(&stderr_path));
    match status {
        Ok(Ok(status)) if status.success() => stdout,
        Ok(status) => panic!(
            "README.md line {}: the block failed ({status:?})\n--- block\n{text}--- stdout\n{stdout}--- stderr\n{stderr}",
            block.line
        ),
        Err(_) => panic!(
            "README.md line {}: the block ran past {BLOCK_TIMEOUT:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            block.line
        ),
    }
}

#[test]
fn the_walkthroughs_run_as_written_from_the_repository_root() {
    let root = tempfile::tempdir().unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let ports: Vec<(String, String)> = README_PORTS
        .iter()
        .map(|addr| (addr.to_string(), format!("127.0.0.1:{}", free_port())))
        .collect();
    let swap = |text: &str| {
        ports
            .iter()
            .fold(text.to_string(), |text, (from, to)| text.replace(from, to))
    };
    repository_copy(root.path(), &ports);
    let mut ran = Vec::new();
    for block in blocks(&readme()) {
        match (block.kind.as_str(), &block.file) {
            (_, Some(file)) if file.starts_with("scratch/") => {
                let path = root.path().join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, swap(&block.text)).unwrap();
            }
            ("sh", _) => {
                let stdout = run_shell(root.path(), scripts.path(), &block, &swap(&block.text));
                ran.push(stdout);
            }
            _ => {}
        }
    }
    assert_eq!(ran.len(), 2, "the dev loop and the agent walkthrough");

    // The dev loop: the README's integration stored camera-sim's snapshot.
    assert!(ran[0].contains("outcome   completed"), "{}", ran[0]);
    let jpeg = std::fs::read(root.path().join("scratch/out/snapshot.jpg")).unwrap();
    assert!(jpeg.starts_with(&[0xff, 0xd8, 0xff]), "a JPEG");

    // The agent: the job completed, with its file listed by id and size.
    let listed = ran[1].lines().find(|line| line.contains("thumbnail"));
    let listed = listed.unwrap_or_else(|| panic!("no job listed:\n{}", ran[1]));
    assert!(listed.contains("Completed"), "{}", ran[1]);
    assert!(listed.contains("agent-1"), "{}", ran[1]);
    assert!(listed.contains("cam-0001.jpg ("), "{}", ran[1]);
}
