//! Running `corral` itself as child processes (camera-sim, the registry,
//! agents) on loopback, for the suites that measure or kill real processes:
//! the chaos run and the CPU split of the benches.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::registry::raw;

/// The `corral` binary: `CORRAL_BIN`, or the one cargo builds for this
/// profile (built now if needed; a no-op when it is up to date).
pub fn corral_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CORRAL_BIN").filter(|path| !path.is_empty()) {
        return path.into();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "build",
            "--quiet",
            "-p",
            "corral",
            "--bin",
            "corral",
            "--message-format=json",
        ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "building the corral binary failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .find(|path| path.file_stem().is_some_and(|stem| stem == "corral"))
        .expect("cargo names the corral executable")
}

/// A child process, killed (`SIGKILL`) when dropped.
pub struct Process {
    /// The running child.
    pub child: Child,
}

impl Process {
    /// Kills it (`SIGKILL`) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `corral args...` with its output in `log`; returns it and, if
/// `first_line`, the first line it prints (an address).
pub fn start(
    corral: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
    first_line: bool,
) -> (Process, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(corral);
    command
        .args(args)
        .stdin(Stdio::null())
        .stderr(stderr)
        .stdout(if first_line {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("corral starts");
    let mut line = String::new();
    if first_line {
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("first line");
        if line.trim().is_empty() {
            let status = child.wait().expect("the child ends");
            let said = std::fs::read_to_string(log).unwrap_or_default();
            panic!(
                "`corral {}` ended ({status}) before printing its address; its log:\n{said}",
                args.join(" ")
            );
        }
        // Keep draining, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|read| read > 0) {
                sink.clear();
            }
        });
    }
    (Process { child }, line.trim().to_string())
}

/// A free port on loopback (the registry restarts on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// The registry's admin API.
pub struct Admin {
    /// The registry's base URL.
    pub base: String,
    /// The admin token.
    pub token: String,
}

impl Admin {
    /// The admin API of the registry at `base` serving the data folder `data`
    /// (whose `admin-token` file it wrote when it started).
    pub fn of(base: &str, data: &Path) -> Admin {
        Admin {
            base: base.to_string(),
            token: std::fs::read_to_string(data.join("admin-token"))
                .expect("the registry wrote its admin token")
                .trim()
                .to_string(),
        }
    }

    /// Calls `method path` with a JSON `body`; `None` when there is no 2xx
    /// answer within 10 s (the registry may be down).
    pub async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> Option<serde_json::Value> {
        let (base, token) = (self.base.clone(), self.token.clone());
        let (method, path) = (method.to_string(), path.to_string());
        let call = async move {
            raw(
                &base,
                &method,
                &path,
                Some(&token),
                "application/json",
                body,
            )
            .await
        };
        // The registry may be down (killed): no answer is an answer (`raw`
        // panics in its task, which ends it).
        let (status, answer) = tokio::time::timeout(Duration::from_secs(10), tokio::spawn(call))
            .await
            .ok()?
            .ok()?;
        (200..300)
            .contains(&status)
            .then(|| serde_json::from_slice(&answer).ok())
            .flatten()
    }

    /// `GET /admin/api/v1/stats`.
    pub async fn stats(&self) -> Option<serde_json::Value> {
        self.call("GET", "/admin/api/v1/stats", Vec::new()).await
    }

    /// `GET /admin/api/v1/jobs`.
    pub async fn jobs(&self) -> Option<Vec<serde_json::Value>> {
        self.call("GET", "/admin/api/v1/jobs", Vec::new())
            .await
            .and_then(|json| json.as_array().cloned())
    }
}
