//! The harness corral's end-to-end tests share: a camera-sim on loopback, the
//! runtime, a guest pointed at the camera, and a temporary output folder.
//! Everything is real; nothing is mocked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral::bundled;
use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::{Guest, JobEnv, JobReport};
use corral::manifest::Manifest;
use corral::protocol::{Job, JobType};
use corral::sandbox::progress;
use corral::secrets::Secrets;
use corral::sink::{DirSink, OutputSink};
use corral_camera_sim::{CameraSim, SimConfig};
use time::OffsetDateTime;

pub mod backend;
pub mod bench;
pub mod blockstore;
pub mod chaos;
pub mod echo;
pub mod interop;
pub mod processes;
pub mod registry;
pub mod world;

/// A language http-vms is written in: `guests/http-vms` (Rust, bundled in
/// the binary), `guests/http-vms-py` and `guests/http-vms-js` (built by
/// `tests/polyglot.sh` into `target/guests/polyglot/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `guests/http-vms`.
    Rust,
    /// `guests/http-vms-py`, built with componentize-py.
    Python,
    /// `guests/http-vms-js`, built with componentize-js.
    JavaScript,
}

impl Lang {
    /// http-vms's component in this language; `None` (said on stderr) when
    /// it was not built because its toolchain is missing.
    pub fn http_vms(self) -> Option<Vec<u8>> {
        match self {
            Lang::Rust => Some(bundled::HTTP_VMS.to_vec()),
            Lang::Python => polyglot_component("http_vms_py.wasm"),
            Lang::JavaScript => polyglot_component("http_vms_js.wasm"),
        }
    }

    /// The guest's name in its manifest.
    pub fn guest_name(self) -> &'static str {
        match self {
            Lang::Rust => "http-vms",
            Lang::Python => "http-vms-py",
            Lang::JavaScript => "http-vms-js",
        }
    }
}

/// A component `tests/polyglot.sh` built (`http_vms_py.wasm`, ...); `None`
/// after saying on stderr that the test skips, when it is missing because
/// its toolchain is. Under CI (`CI=true`) a missing component panics.
pub fn polyglot_component(file: &str) -> Option<Vec<u8>> {
    let path = polyglot_dir().join(file);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            let why = format!(
                "{} ({error}): run `bash tests/polyglot.sh` (tests/run.sh does)",
                path.display()
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Where `tests/polyglot.sh` puts the Python and JavaScript guests
/// (`CORRAL_POLYGLOT_DIR` overrides it).
pub fn polyglot_dir() -> std::path::PathBuf {
    std::env::var_os("CORRAL_POLYGLOT_DIR")
        .map(Into::into)
        .unwrap_or_else(|| workspace_target().join("guests/polyglot"))
}

/// The workspace's `target/` folder.
pub fn workspace_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The compile cache the tests share, so a guest of many megabytes is
/// compiled once per change rather than once per test.
pub fn test_cache_dir() -> std::path::PathBuf {
    workspace_target().join("e2e-guest-cache")
}

/// A runtime of `max_instances` using the tests' compile cache.
pub fn cached_runtime(max_instances: u32) -> Runtime {
    Runtime::new(RuntimeConfig { max_instances })
        .expect("engine starts")
        .with_cache(&test_cache_dir())
        .expect("cache folder")
}

/// A camera-sim, a runtime and the http-vms guest wired to them.
pub struct Harness {
    /// The simulated camera system.
    pub sim: CameraSim,
    /// The engine.
    pub runtime: Runtime,
    /// The http-vms guest, granted the camera's address.
    pub guest: Guest,
    /// The language of `guest`, and its component.
    pub lang: Lang,
    wasm: Arc<Vec<u8>>,
    /// Secrets holding the camera's credentials.
    pub secrets: Arc<Secrets>,
    /// Where outputs go.
    pub out: tempfile::TempDir,
}

impl Harness {
    /// Starts everything with camera-sim serving `config`.
    pub async fn start(config: SimConfig) -> Harness {
        Harness::start_in(Lang::Rust, config)
            .await
            .expect("the Rust guest is bundled")
    }

    /// [`Harness::start`] with http-vms written in `lang`; `None` when that
    /// guest was not built (see [`polyglot_component`]).
    pub async fn start_in(lang: Lang, config: SimConfig) -> Option<Harness> {
        let wasm = Arc::new(lang.http_vms()?);
        let sim = CameraSim::start(config, loopback())
            .await
            .expect("camera-sim starts");
        let secrets = Arc::new(bundled::camera_sim_secrets(
            &sim.base_url(),
            &sim.config().username,
            &sim.config().password,
        ));
        let runtime = cached_runtime(16).with_secrets(secrets.clone());
        let manifest = http_vms_manifest(lang, &sim.base_url());
        let guest = runtime.load_bytes(&wasm, manifest).expect("http-vms loads");
        Some(Harness {
            sim,
            runtime,
            guest,
            lang,
            wasm,
            secrets,
            out: tempfile::tempdir().expect("temporary folder"),
        })
    }

    /// The harness's guest's manifest pointed at `base_url`.
    pub fn manifest(&self, base_url: &str) -> Manifest {
        http_vms_manifest(self.lang, base_url)
    }

    /// Loads http-vms again with another manifest; the test being the
    /// operator, camera-sim's secret is bound wherever the manifest asks for it.
    pub fn guest_with(&self, manifest: Manifest) -> Guest {
        self.try_guest_with(manifest).expect("http-vms loads")
    }

    /// Loads http-vms again with another manifest, against `secrets` as the
    /// operator bound them (nothing bound as asked).
    pub fn guest_with_secrets(&self, manifest: Manifest, secrets: Secrets) -> Guest {
        cached_runtime(4)
            .with_secrets(Arc::new(secrets))
            .load_bytes(&self.wasm, manifest)
            .expect("http-vms loads")
    }

    /// [`Harness::guest_with`], returning why a guest is refused.
    pub fn try_guest_with(&self, manifest: Manifest) -> Result<Guest, corral::guest::GuestError> {
        let mut secrets = self.secrets.as_ref().clone();
        secrets.bind_as_asked(&manifest.http);
        cached_runtime(4)
            .with_secrets(Arc::new(secrets))
            .load_bytes(&self.wasm, manifest)
    }

    /// The sink writing into the output folder.
    pub fn sink(&self) -> Arc<dyn OutputSink> {
        Arc::new(DirSink::new(self.out.path()).expect("output folder"))
    }

    /// Runs `job` with `guest`, writing into the output folder.
    pub async fn run_with(&self, guest: &Guest, job: &Job) -> JobReport {
        let (progress, _) = progress::channel();
        let env = JobEnv {
            sink: self.sink(),
            progress,
        };
        let mut report = guest.run(job, env).await;
        report
            .store_discovery(self.sink().as_ref())
            .await
            .expect("discovery file stored");
        report
    }

    /// Runs `job` with the http-vms guest.
    pub async fn run(&self, job: &Job) -> JobReport {
        self.run_with(&self.guest, job).await
    }

    /// The files in the output folder, sorted.
    pub fn files(&self) -> Vec<String> {
        list(self.out.path())
    }
}

/// http-vms's manifest (the same for every language but its name), pointed
/// at camera-sim on `base_url`.
pub fn http_vms_manifest(lang: Lang, base_url: &str) -> Manifest {
    let mut manifest = bundled::http_vms_manifest(base_url).expect("bundled manifest");
    manifest.name = lang.guest_name().into();
    manifest
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A job of `job_type` for `device`.
pub fn job(id: &str, job_type: JobType, device: Option<&str>) -> Job {
    Job {
        job_id: id.to_string(),
        job_type,
        agent_id: Some("agent-test".into()),
        device_id: device.map(str::to_string),
        start_time_utc: None,
        end_time_utc: None,
        parameters: Default::default(),
        state: None,
        task_progress: 0,
        task_total: 0,
    }
}

/// A media request for `device` over `[start, start + length)`.
pub fn media_job(id: &str, device: &str, start: OffsetDateTime, length: Duration) -> Job {
    Job {
        start_time_utc: Some(start),
        end_time_utc: Some(start + length),
        ..job(id, JobType::MediaRequest, Some(device))
    }
}

/// Milliseconds since the epoch of `time`.
pub fn unix_millis(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The test-only guests, built by this crate's build script.
pub mod test_guests {
    use std::path::Path;

    /// `tests/guests/hostile`: one attack per job (parameter `attack`).
    pub const HOSTILE: &[u8] = include_bytes!(env!("CORRAL_TEST_GUEST_HOSTILE"));
    /// `tests/guests/other-world`: a valid component of another world.
    pub const OTHER_WORLD: &[u8] = include_bytes!(env!("CORRAL_TEST_GUEST_OTHER_WORLD"));

    /// The hostile guest with a custom section naming `tag` appended: a valid
    /// component with other bytes (another SHA-256), for hot-swap tests.
    pub fn variant(tag: &str) -> Vec<u8> {
        let name = b"corral-test-variant";
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name);
        section.extend_from_slice(tag.as_bytes());
        let mut bytes = HOSTILE.to_vec();
        bytes.extend([0, section.len() as u8]); // custom section id, size
        bytes.extend_from_slice(&section);
        bytes
    }

    /// The hostile guest with `count` more core instances appended, each of
    /// a module whose only content is a memory of `mib` MiB: the component
    /// still serves the world, and instantiating it asks for every memory at
    /// once (the attack of several core instances, each under a per-memory
    /// limit). Appended sections shift no index that the guest's own
    /// sections use.
    pub fn with_extra_memories(count: u8, mib: u32) -> Vec<u8> {
        let modules = top_level_section_ids(HOSTILE)
            .filter(|id| *id == CORE_MODULE_SECTION)
            .count();
        let pages = mib * 16;
        let mut memory = vec![1, 0]; // one memory, limits with a minimum only
        leb128(&mut memory, pages);
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.push(5); // memory section
        leb128(&mut module, memory.len() as u32);
        module.extend(memory);
        let mut bytes = HOSTILE.to_vec();
        bytes.push(CORE_MODULE_SECTION);
        leb128(&mut bytes, module.len() as u32);
        bytes.extend(module);
        let mut instances = Vec::new();
        leb128(&mut instances, u32::from(count));
        for _ in 0..count {
            instances.push(0); // instantiate, with no arguments
            leb128(&mut instances, modules as u32);
            instances.push(0);
        }
        bytes.push(CORE_INSTANCE_SECTION);
        leb128(&mut bytes, instances.len() as u32);
        bytes.extend(instances);
        bytes
    }

    const CORE_MODULE_SECTION: u8 = 1;
    const CORE_INSTANCE_SECTION: u8 = 2;

    /// The ids of a component's top-level sections, in order.
    fn top_level_section_ids(component: &[u8]) -> impl Iterator<Item = u8> + '_ {
        let mut rest = &component[8..];
        std::iter::from_fn(move || {
            let (&id, after) = rest.split_first()?;
            let (size, after) = read_leb128(after);
            rest = &after[size as usize..];
            Some(id)
        })
    }

    fn leb128(out: &mut Vec<u8>, mut value: u32) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn read_leb128(bytes: &[u8]) -> (u32, &[u8]) {
        let mut value = 0u32;
        for (index, byte) in bytes.iter().enumerate() {
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return (value, &bytes[index + 1..]);
            }
        }
        panic!("a truncated LEB128 number");
    }

    /// Installs version `tag` of the guest `stem` in `dir` (serving thumbnails,
    /// setting `tag`) as a careful operator does: each file written beside, then
    /// renamed into place.
    pub fn install_variant(dir: &Path, stem: &str, tag: &str) {
        let manifest = format!(
            "name = \"{stem}\"\nversion = \"{tag}.0.0\"\njobs = [\"thumbnail\"]\n[settings]\ntag = \"{tag}\"\n"
        );
        let toml = dir.join(format!("{stem}.toml"));
        let wasm = dir.join(format!("{stem}.wasm"));
        std::fs::write(toml.with_extension("toml.tmp"), manifest).expect("write");
        std::fs::rename(toml.with_extension("toml.tmp"), &toml).expect("rename");
        std::fs::write(wasm.with_extension("wasm.tmp"), variant(tag)).expect("write");
        std::fs::rename(wasm.with_extension("wasm.tmp"), &wasm).expect("rename");
    }
}
