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

#[test]
fn an_agent_starts_on_an_empty_folder_and_refuses_a_bad_guest_without_stopping() {
    use corral::agent::catalog::Catalog;
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig { max_instances: 2 }).unwrap();
    let empty = Catalog::load(&runtime, dir.path()).expect("an empty folder waits for guests");
    assert!(empty.guests().is_empty() && empty.served_types().is_empty());
    // A guest whose camera secret the operator bound but did not set:
    // refused with the variable to set, listed, and the catalog still loads.
    let mut secrets = corral::secrets::Secrets::default();
    let camera = corral::origin::OriginPattern::parse("http://127.0.0.1:8081").unwrap();
    secrets.bind(bundled::CAMERA_SIM_SECRET, &[camera]);
    let runtime = runtime.with_secrets(std::sync::Arc::new(secrets));
    std::fs::write(dir.path().join("http-vms.wasm"), bundled::HTTP_VMS).unwrap();
    std::fs::write(dir.path().join("http-vms.toml"), bundled::HTTP_VMS_MANIFEST).unwrap();
    let catalog = Catalog::load(&runtime, dir.path()).expect("a bad guest is not fatal");
    assert!(catalog.guests().is_empty());
    let refusals = catalog.refusals();
    assert!(
        refusals["http-vms"].contains("CORRAL_SECRET_CAMERA_SIM"),
        "{refusals:?}"
    );
    assert!(
        catalog
            .describe()
            .to_string()
            .contains("CORRAL_SECRET_CAMERA_SIM")
    );
}
