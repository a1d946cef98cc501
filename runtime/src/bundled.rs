//! The guests bundled with corral (built by the build script and embedded in
//! the binary), and their manifests pointed at a running camera-sim.

use std::path::Path;

use crate::manifest::{HttpGrant, Manifest, ManifestError};
use crate::origin::OriginPattern;
use crate::secrets::Secrets;

/// The reference integration for camera-sim (`guests/http-vms`).
pub const HTTP_VMS: &[u8] = include_bytes!(env!("CORRAL_GUEST_HTTP_VMS"));

/// Its manifest as shipped, written for camera-sim on `127.0.0.1:8081`.
pub const HTTP_VMS_MANIFEST: &str = include_str!(env!("CORRAL_GUEST_HTTP_VMS_MANIFEST"));

/// The name of the agent secret holding camera-sim's credentials.
pub const CAMERA_SIM_SECRET: &str = "camera-sim";

/// camera-sim's credentials as an operator gives them: secret `camera-sim`
/// with `user:password`, bound to camera-sim at `base_url` alone.
pub fn camera_sim_secrets(base_url: &str, user: &str, password: &str) -> Secrets {
    let mut secrets = Secrets::default();
    secrets
        .insert(CAMERA_SIM_SECRET, &format!("{user}:{password}"))
        .expect("user:password is a valid secret");
    if let Ok(origin) = OriginPattern::parse(base_url) {
        secrets.bind(CAMERA_SIM_SECRET, &[origin]);
    }
    secrets
}

/// http-vms's manifest, re-pointed at camera-sim on `base_url`
/// (`http://127.0.0.1:PORT`): its `base-url` setting and its one grant.
pub fn http_vms_manifest(base_url: &str) -> Result<Manifest, ManifestError> {
    let path = Path::new("guests/http-vms/http-vms.toml");
    let mut manifest = Manifest::parse(HTTP_VMS_MANIFEST, path)?;
    let grant =
        HttpGrant::parse(base_url, Some(CAMERA_SIM_SECRET.to_string())).map_err(|message| {
            ManifestError::Invalid {
                path: path.to_path_buf(),
                message,
            }
        })?;
    manifest
        .settings
        .insert("base-url".into(), base_url.to_string());
    manifest.http = vec![grant];
    Ok(manifest)
}
