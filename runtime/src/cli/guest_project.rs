//! `corral guests new`: a ready integration project, written from the
//! templates in `runtime/templates/` that are compiled into the binary (as
//! `spin new` does): the source, its manifest `<name>.toml`, and for Rust a
//! `Cargo.toml`. `corral guests build` (guest_build.rs) builds it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The language of an integration project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate built with cargo for `wasm32-wasip2`, on `corral-guest`.
    Rust,
    /// `app.py`, built with componentize-py, on `corral_guest`.
    #[value(alias = "py")]
    Python,
    /// `app.js`, built with componentize-js, on `@corral/guest`.
    #[value(alias = "javascript")]
    Js,
}

impl Lang {
    /// The language's name for people.
    pub fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// The template's files (path in the project, text) besides the manifest.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => &[
                (
                    "Cargo.toml",
                    include_str!("../../templates/rust/Cargo.toml.in"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../../templates/rust/src/lib.rs"),
                ),
                (".gitignore", include_str!("../../templates/rust/gitignore")),
            ],
            Lang::Python => &[
                ("app.py", include_str!("../../templates/python/app.py")),
                (
                    ".gitignore",
                    include_str!("../../templates/python/gitignore"),
                ),
            ],
            Lang::Js => &[
                ("app.js", include_str!("../../templates/js/app.js")),
                (".gitignore", include_str!("../../templates/js/gitignore")),
            ],
        }
    }
}

/// The manifest every template shares, written as `<name>.toml`.
const MANIFEST: &str = include_str!("../../templates/manifest.toml");

/// Written as corral-guest's path when no SDK is known: cargo then names it.
const UNKNOWN_SDK: &str = "path/to/corral/guest-sdk";

/// Where `corral-guest` is for a Rust project: `--sdk-path`, else the
/// `guest-sdk/` this binary was built from if it is still there.
pub enum SdkPath {
    Found(PathBuf),
    Unknown,
}

impl SdkPath {
    /// `given` (which must hold a `Cargo.toml`), else the build's own SDK.
    pub fn resolve(given: Option<&Path>) -> anyhow::Result<SdkPath> {
        if let Some(path) = given {
            anyhow::ensure!(
                path.join("Cargo.toml").is_file(),
                "--sdk-path {}: no Cargo.toml there; give the guest-sdk/ folder of a corral checkout",
                path.display()
            );
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk-path {}", path.display()))?;
            return Ok(SdkPath::Found(path));
        }
        let built_from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk"));
        Ok(match std::fs::canonicalize(built_from) {
            Ok(path) if path.join("Cargo.toml").is_file() => SdkPath::Found(path),
            _ => SdkPath::Unknown,
        })
    }
}

/// Whether `name` can name a guest: its manifest's `name`, the file stem of
/// `<name>.wasm` and `<name>.toml` in a guests folder, and a Rust crate's name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(
        valid,
        "`{name}` is not a valid guest name: use lower-case letters, digits and `-`, \
         starting with a letter, at most 64 characters (e.g. `my-vms`)"
    );
    Ok(())
}

/// Writes the project `parent/name/` for `lang`; returns its folder and the
/// files written (relative to it).
pub fn create(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: &SdkPath,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    check_name(name)?;
    let dir = parent.join(name);
    if let Ok(mut entries) = std::fs::read_dir(&dir) {
        anyhow::ensure!(
            entries.next().is_none(),
            "{} exists and is not empty: choose another name or --dir",
            dir.display()
        );
    } else {
        anyhow::ensure!(
            !dir.exists(),
            "{} exists and is not a folder",
            dir.display()
        );
    }
    let sdk_path = match sdk {
        SdkPath::Found(path) => path.to_string_lossy().into_owned(),
        SdkPath::Unknown => UNKNOWN_SDK.to_string(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name).replace(
            "{{sdk_path}}",
            &toml::Value::String(sdk_path.clone()).to_string(),
        )
    };
    let manifest = format!("{name}.toml");
    let mut files = vec![(manifest.as_str(), fill(MANIFEST))];
    files.extend(lang.files().iter().map(|(path, text)| (*path, fill(text))));
    write_files(&dir, &files)?;
    Ok((
        dir,
        files
            .into_iter()
            .map(|(path, _)| path.to_string())
            .collect(),
    ))
}

/// Writes each `(relative path, contents)` under `root`, making folders.
pub fn write_files<T: AsRef<[u8]>>(root: &Path, files: &[(&str, T)]) -> anyhow::Result<()> {
    for (relative, contents) in files {
        let path = root.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_name_is_lower_case_letters_digits_and_dashes() {
        for good in ["my-vms", "a", "vms2", "acme-vms-v2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "My-Vms", "my_vms", "2vms", "-vms", "vms-", "my vms", "../x", "a/b",
        ] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("not a valid guest name"), "{bad}: {error}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
