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

/// Downloads blob `blob` of the container `container` under `account_url`
/// (Azurite: `http://127.0.0.1:PORT/devstoreaccount1`) with the Azure SDK's
/// `BlobClient.download_blob`, which decrypts it itself with the key
/// `private_jwk` (`require_encryption=True`); returns the plaintext.
pub fn azure_download(
    account_url: &str,
    account_key: &str,
    container: &str,
    blob: &str,
    private_jwk: &str,
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (kek, out) = (dir.path().join("kek.json"), dir.path().join("plaintext"));
    std::fs::write(&kek, private_jwk).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/azure_download.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args([account_url, container, blob])
        .arg(&kek)
        .arg(&out)
        .env("AZURE_STORAGE_KEY", account_key)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Azure SDK could not download and decrypt {container}/{blob}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("the plaintext")
}
