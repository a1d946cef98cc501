//! `corral guests list`, `check <file.wasm>`, `new <name>` and `build [<dir>]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use corral::agent::catalog::Catalog;
use corral::agent::config::AgentConfig;
use corral::engine::{Runtime, RuntimeConfig};
use corral::manifest::Manifest;
use corral::policy::OperatorPolicy;
use corral::secrets::Secrets;

use super::guest_project::{self, Lang, SdkPath};

/// Arguments of `corral guests`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Load every guest of a folder and list them (name, version, SHA-256, job types).
    List {
        /// The guests folder.
        #[arg(long, default_value = "guests")]
        dir: PathBuf,
    },
    /// Validate one guest (a component of our world, with a manifest that
    /// parses and grants that make sense) without running it, and show what
    /// each of its grants would get.
    Check {
        /// The `.wasm`.
        wasm: PathBuf,
        /// Its manifest (default: the `.toml` beside the `.wasm`).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// An agent config to check the guest against: its secret bindings,
        /// with the values from `CORRAL_SECRET_*`, and its `[policy]` (without
        /// it, secrets are shown as asked for but not checked, and the default
        /// policy applies).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a new integration project `<name>/` (source, manifest `<name>.toml`,
    /// for Rust a Cargo.toml) from the templates built into corral.
    New {
        /// The guest's name: lower-case letters, digits and `-`.
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The folder to write `<name>/` in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust: the guest-sdk/ folder of a corral checkout, for corral-guest
        /// (default: the one this corral was built from, if it is still there).
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Build an integration project into `<name>.wasm` beside its `<name>.toml`.
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (a file, or a folder to write `<name>.wasm` in).
        #[arg(long, value_name = "FILE.wasm")]
        out: Option<PathBuf>,
    },
}

/// Runs a guests subcommand.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = || Runtime::new(RuntimeConfig { max_instances: 2 });
    match args.command {
        Command::New {
            name,
            lang,
            dir,
            sdk_path,
        } => new(&name, lang, &dir, sdk_path.as_deref()),
        Command::Build { dir, out } => {
            super::guest_build::build(&dir, out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::List { dir } => {
            let runtime = runtime()?.with_cache(&corral::cache::default_dir())?;
            let catalog = Catalog::load(&runtime, &dir)?;
            println!("{:<20} {:<10} {:<14} serves", "name", "version", "sha256");
            for guest in catalog.guests() {
                let (name, version, serves) = identity(&guest);
                println!(
                    "{name:<20} {version:<10} {:<14} {serves}",
                    &guest.sha256()[..12]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            wasm,
            manifest,
            config,
        } => {
            let manifest_path = manifest.unwrap_or_else(|| Manifest::path_for(&wasm));
            let manifest = Manifest::load(&manifest_path)?;
            let (secrets, policy, cache_dir, checked) = match &config {
                Some(path) => {
                    let config = AgentConfig::load(path)?;
                    let mut secrets = Secrets::from_env()?;
                    config.bind_secrets(&mut secrets);
                    (secrets, config.policy, config.cache_dir, true)
                }
                // Without a config the author is the operator: secrets bound
                // and IP grants allowed as asked (the agent's config decides).
                None => (
                    stand_in_secrets(&manifest),
                    OperatorPolicy::default().allowing_local_grants(&manifest),
                    corral::cache::default_dir(),
                    false,
                ),
            };
            // The agent's compile cache: a guest checked is then loaded by
            // the agent (and checked again) without compiling it twice.
            let runtime = runtime()?
                .with_secrets(Arc::new(secrets))
                .with_policy(Arc::new(policy))
                .with_cache(&cache_dir)?;
            let bytes = std::fs::read(&wasm)
                .with_context(|| format!("cannot read guest {}", wasm.display()))?;
            match runtime.load_bytes(&bytes, manifest) {
                Ok(guest) => {
                    let (name, version, serves) = identity(&guest);
                    println!(
                        "ok: {name} {version} (sha256 {}) serves {serves}",
                        guest.sha256()
                    );
                    for line in grant_lines(guest.manifest(), runtime.secrets(), checked) {
                        println!("  {line}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("refused {}: {error}", wasm.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `corral guests new`: writes the project and says what to run next.
fn new(name: &str, lang: Lang, parent: &Path, sdk_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        sdk_path.is_none() || lang == Lang::Rust,
        "--sdk-path is for --lang rust: the Python and JavaScript SDKs are built into corral"
    );
    let sdk = if lang == Lang::Rust {
        SdkPath::resolve(sdk_path)?
    } else {
        SdkPath::Unknown
    };
    let (dir, files) = guest_project::create(name, lang, parent, &sdk)?;
    println!(
        "created {} ({}): {}",
        dir.display(),
        lang.label(),
        files.join(", ")
    );
    if lang == Lang::Rust {
        match &sdk {
            SdkPath::Found(path) => println!("corral-guest from {}", path.display()),
            SdkPath::Unknown => println!(
                "set corral-guest's path in {} to the guest-sdk/ folder of a corral checkout \
                 (or run `corral guests new` again with --sdk-path)",
                dir.join("Cargo.toml").display()
            ),
        }
    }
    println!("next: corral guests build {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Secrets that satisfy every request of `manifest`, for a check without an
/// agent config: each asked-for secret bound where it is asked for.
fn stand_in_secrets(manifest: &Manifest) -> Secrets {
    let mut secrets = Secrets::default();
    for name in manifest
        .http
        .iter()
        .filter_map(|grant| grant.credentials.as_ref())
    {
        let _ = secrets.insert(name, "stand-in:stand-in");
    }
    secrets.bind_as_asked(&manifest.http);
    secrets
}

/// One line per grant: its origin, its methods and the secret it would get.
pub fn grant_lines(manifest: &Manifest, secrets: &Secrets, checked: bool) -> Vec<String> {
    let mut lines: Vec<String> = manifest
        .http
        .iter()
        .map(|grant| {
            let secret = match &grant.credentials {
                None => "no secret".to_string(),
                Some(name) if !checked => {
                    format!("asks for secret `{name}` (not checked: pass --config agent.toml)")
                }
                Some(name) => {
                    let bound: Vec<String> = secrets
                        .bound_origins(name)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    format!(
                        "secret `{name}` (bound by the operator to {})",
                        bound.join(", ")
                    )
                }
            };
            format!(
                "http {} [{}]: {secret}",
                grant.origin(),
                grant.methods.join(", ")
            )
        })
        .collect();
    lines.extend(manifest.tcp.iter().map(|addr| format!("tcp {addr}")));
    lines.extend(
        manifest
            .folders
            .iter()
            .map(|(host, guest)| format!("folder {} as {guest} (read-only)", host.display())),
    );
    lines
}

/// A guest's name, version, and the job types it serves as the registry spells them.
fn identity(guest: &corral::guest::Guest) -> (&str, &str, String) {
    let serves: Vec<&str> = guest
        .manifest()
        .jobs
        .iter()
        .map(|job| job.as_str())
        .collect();
    (
        &guest.manifest().name,
        &guest.manifest().version,
        serves.join(", "),
    )
}
