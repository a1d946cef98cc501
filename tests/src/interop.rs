//! The outside reader: azure-storage-blob's client-side encryption v2 decrypt
//! path, run through `tests/interop/azure_decrypt.py`.

use std::path::{Path, PathBuf};

/// The Python that has azure-storage-blob: `CORRAL_PYTHON`, or the venv that
/// `tests/run.sh` makes.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CORRAL_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need azure-storage-blob: run `bash tests/run.sh`, which makes target/interop-venv \
         (or set CORRAL_PYTHON to a python with azure-storage-blob)"
    );
    venv
}

/// Decrypts `ciphertext` (the blocks in commit order) with the Azure SDK, given
/// the commit's EncryptionData JSON and the private JWK of the file's key.
pub fn azure_decrypt(
    ciphertext: &[u8],
    encryption_data: &str,
    private_jwk: &str,
    length: u64,
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let paths = [
        "ciphertext",
        "encryption-data.json",
        "kek.json",
        "plaintext",
    ]
    .map(|name| dir.path().join(name));
    std::fs::write(&paths[0], ciphertext).expect("write");
    std::fs::write(&paths[1], encryption_data).expect("write");
    std::fs::write(&paths[2], private_jwk).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/azure_decrypt.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args(&paths[..3])
        .arg(length.to_string())
        .arg(&paths[3])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Azure SDK could not decrypt: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&paths[3]).expect("the plaintext")
}
