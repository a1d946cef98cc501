//! What the runtime says about files that are not a guest of our world.

use corral::bundled;
use corral::engine::{Runtime, RuntimeConfig};
use corral::guest::GuestError;

fn load(bytes: &[u8]) -> Result<(), GuestError> {
    let secrets = bundled::camera_sim_secrets("http://127.0.0.1:8081", "operator", "sim-secret");
    let runtime = Runtime::new(RuntimeConfig { max_instances: 2 })
        .unwrap()
        .with_secrets(std::sync::Arc::new(secrets));
    let manifest = bundled::http_vms_manifest("http://127.0.0.1:8081").unwrap();
    runtime.load_bytes(bytes, manifest).map(drop)
}

#[test]
fn a_core_module_is_refused_as_such() {
    // The smallest core module: magic and version 1.
    let error = load(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(error, GuestError::CoreModule));
    assert!(error.to_string().contains("wasm32-wasip2"), "{error}");
}

#[test]
fn a_corrupt_component_is_refused_with_the_reason() {
    let mut bytes = bundled::HTTP_VMS.to_vec();
    bytes.truncate(bytes.len() / 2);
    let error = load(&bytes).unwrap_err();
    assert!(matches!(error, GuestError::Compile(_)), "{error}");
    assert!(
        load(b"not wasm at all")
            .unwrap_err()
            .to_string()
            .contains("not a WebAssembly file")
    );
}

#[test]
fn the_bundled_guest_loads() {
    load(bundled::HTTP_VMS).expect("http-vms is a component of our world");
}
