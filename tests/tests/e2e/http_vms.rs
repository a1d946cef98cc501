//! The reference guest, inside the runtime, against camera-sim. The tests of
//! what http-vms does run for each language it is written in (Rust, Python,
//! JavaScript), from one body each: the same jobs, the same assertions.

use std::time::Duration;

use corral::guest::JobOutcome;
use corral::protocol::{DiscoveryResult, JobType};
use corral_camera_sim::{FaultSettings, SimConfig, recording};
use corral_tests::{Harness, Lang, job, media_job, unix_millis};
use sha2::{Digest, Sha256};
use time::macros::datetime;

async fn discovery_lists_the_devices_camera_sim_knows(lang: Lang) {
    let Some(harness) = Harness::start_in(lang, SimConfig::with_devices(6)).await else {
        return;
    };
    let report = harness.run(&job("d1", JobType::Discovery, None)).await;
    let JobOutcome::Discovered(devices) = &report.outcome else {
        panic!("discovery failed: {:?}", report.outcome);
    };
    let expected = &harness.sim.config().devices;
    assert_eq!(devices.len(), expected.len());
    for (device, sim) in devices.iter().zip(expected) {
        assert_eq!(device.device_id, sim.id);
        assert_eq!(device.name, sim.name);
        assert_eq!(device.manufacturer, sim.make);
        assert_eq!(device.model, sim.model);
        assert_eq!(device.latitude, Some(sim.latitude));
        assert_eq!(device.longitude, Some(sim.longitude));
    }
    // The host wrote PROTOCOL.md's discovery file from the list.
    let file = &report.files[0];
    assert_eq!(file.name, DiscoveryResult::FILE_NAME);
    let stored: DiscoveryResult =
        serde_json::from_slice(&std::fs::read(&file.location).unwrap()).unwrap();
    assert_eq!(&stored.devices, devices);
    assert_eq!((report.progress.done, report.progress.total), (6, 6));
}

async fn a_thumbnail_decodes_as_a_jpeg_of_the_camera(lang: Lang) {
    let Some(harness) = Harness::start_in(lang, SimConfig::with_devices(2)).await else {
        return;
    };
    let report = harness
        .run(&job("t1", JobType::Thumbnail, Some("cam-0002")))
        .await;
    assert_eq!(
        report.outcome,
        JobOutcome::Completed,
        "{:?}",
        report.log_tail
    );
    let [file] = report.files.as_slice() else {
        panic!("expected one file, got {:?}", report.files);
    };
    assert_eq!(file.content_type, "image/jpeg");
    let bytes = std::fs::read(&file.location).unwrap();
    assert_eq!(bytes.len() as u64, file.length);
    assert_eq!(format!("{:x}", Sha256::digest(&bytes)), file.sha256);
    let mut decoder = jpeg_decoder::Decoder::new(bytes.as_slice());
    let pixels = decoder.decode().expect("the thumbnail decodes as a JPEG");
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (320, 180));
    assert_eq!(pixels.len(), 320 * 180 * 3);
}

async fn a_five_minute_recording_equals_the_cameras_bytes(lang: Lang) {
    let config = SimConfig {
        bitrate_bps: 256_000,
        ..SimConfig::with_devices(2)
    };
    let Some(harness) = Harness::start_in(lang, config).await else {
        return;
    };
    let start = datetime!(2026-11-20 10:00 UTC);
    let job = media_job("m1", "cam-0001", start, Duration::from_secs(300));
    let report = harness.run(&job).await;
    assert_eq!(
        report.outcome,
        JobOutcome::Completed,
        "{:?}",
        report.log_tail
    );
    let [file] = report.files.as_slice() else {
        panic!("expected one file, got {:?}", report.files);
    };
    let from = unix_millis(start);
    let expected = recording::recording("cam-0001", 256_000, from, from + 300_000);
    assert_eq!(expected.len(), 9_600_000);
    assert_eq!(file.length, expected.len() as u64);
    assert_eq!(file.sha256, format!("{:x}", Sha256::digest(&expected)));
    let written = std::fs::read(&file.location).unwrap();
    assert!(
        written == expected,
        "the file on disk differs from the camera's bytes"
    );
    assert_eq!(file.content_type, "video/mp2t");
    assert_eq!(report.progress.done, report.progress.total);
    assert_eq!(report.progress.total, expected.len() as u64);
}

async fn a_host_the_manifest_does_not_grant_is_denied_and_named(lang: Lang) {
    let Some(harness) = Harness::start_in(lang, SimConfig::with_devices(1)).await else {
        return;
    };
    // The guest is told to call camera-sim, but its grant names another port.
    let mut manifest = harness.manifest("http://127.0.0.1:9");
    manifest
        .settings
        .insert("base-url".into(), harness.sim.base_url());
    let guest = harness.guest_with(manifest);
    let report = harness
        .run_with(&guest, &job("d2", JobType::Discovery, None))
        .await;
    let JobOutcome::Failed(message) = &report.outcome else {
        panic!("expected a failure, got {:?}", report.outcome);
    };
    let origin = format!(
        "http://{} is not granted by the manifest",
        harness.sim.addr()
    );
    assert!(message.contains(&origin), "{message}");
    assert!(message.contains("HttpRequestDenied"), "{message}");
}

async fn an_unknown_device_is_unsupported_and_a_dead_camera_unavailable(lang: Lang) {
    let Some(harness) = Harness::start_in(lang, SimConfig::with_devices(1)).await else {
        return;
    };
    let report = harness
        .run(&job("t2", JobType::Thumbnail, Some("cam-9999")))
        .await;
    assert!(
        matches!(report.outcome, JobOutcome::Unsupported(ref why) if why.contains("404")),
        "{:?}",
        report.outcome
    );

    harness.sim.faults().set(FaultSettings {
        fail_status: Some(503),
        ..Default::default()
    });
    let report = harness
        .run(&job("t3", JobType::Thumbnail, Some("cam-0001")))
        .await;
    assert!(
        matches!(report.outcome, JobOutcome::Unavailable(ref why) if why.contains("503")),
        "{:?}",
        report.outcome
    );
    assert!(
        harness.files().is_empty(),
        "nothing is stored: {:?}",
        harness.files()
    );
}

async fn a_recording_cut_mid_stream_keeps_no_file(lang: Lang) {
    let Some(harness) = Harness::start_in(lang, SimConfig::with_devices(1)).await else {
        return;
    };
    harness.sim.faults().set(FaultSettings {
        cut_after_bytes: Some(3_000_000),
        ..Default::default()
    });
    let start = datetime!(2026-11-20 10:00 UTC);
    let report = harness
        .run(&media_job("m2", "cam-0001", start, Duration::from_secs(60)))
        .await;
    assert!(
        matches!(report.outcome, JobOutcome::Unavailable(ref why) if why.contains("interrupted")),
        "{:?}",
        report.outcome
    );
    assert!(report.files.is_empty());
    assert!(
        harness.files().is_empty(),
        "no file or partial file is left: {:?}",
        harness.files()
    );
}

/// One test per language for each behaviour above, named
/// `http_vms::<language>::<behaviour>`.
macro_rules! in_every_language {
    ($($behaviour:ident),* $(,)?) => {
        in_every_language!(@lang rust, Lang::Rust, $($behaviour),*);
        in_every_language!(@lang python, Lang::Python, $($behaviour),*);
        in_every_language!(@lang javascript, Lang::JavaScript, $($behaviour),*);
    };
    (@lang $module:ident, $lang:expr, $($behaviour:ident),*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour($lang).await
                }
            )*
        }
    };
}

in_every_language!(
    discovery_lists_the_devices_camera_sim_knows,
    a_thumbnail_decodes_as_a_jpeg_of_the_camera,
    a_five_minute_recording_equals_the_cameras_bytes,
    a_host_the_manifest_does_not_grant_is_denied_and_named,
    an_unknown_device_is_unsupported_and_a_dead_camera_unavailable,
    a_recording_cut_mid_stream_keeps_no_file,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_refused_at_load_and_a_wrong_one_fails_with_the_status() {
    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let mut manifest = corral::bundled::http_vms_manifest(&harness.sim.base_url()).unwrap();
    manifest.http[0].credentials = Some("no-such-secret".into());
    let refused = harness.try_guest_with(manifest).map(drop).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("set CORRAL_SECRET_NO_SUCH_SECRET=user:password"),
        "{refused}"
    );

    let base = harness.sim.base_url();
    let wrong = corral::bundled::camera_sim_secrets(&base, "operator", "wrong");
    let guest = corral::engine::Runtime::new(corral::engine::RuntimeConfig { max_instances: 2 })
        .unwrap()
        .with_secrets(std::sync::Arc::new(wrong))
        .load_bytes(
            corral::bundled::HTTP_VMS,
            corral::bundled::http_vms_manifest(&base).unwrap(),
        )
        .unwrap();
    let report = harness
        .run_with(&guest, &job("d3", JobType::Discovery, None))
        .await;
    assert!(
        matches!(report.outcome, JobOutcome::Failed(ref why) if why.contains("401")),
        "{:?}",
        report.outcome
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_type_the_guest_does_not_serve_is_unsupported() {
    let harness = Harness::start(SimConfig::with_devices(1)).await;
    let mut manifest = corral::bundled::http_vms_manifest(&harness.sim.base_url()).unwrap();
    manifest.jobs = vec![JobType::Discovery];
    let guest = harness.guest_with(manifest);
    let report = harness
        .run_with(&guest, &job("t4", JobType::Thumbnail, Some("cam-0001")))
        .await;
    assert!(
        matches!(report.outcome, JobOutcome::Unsupported(ref why) if why.contains("does not serve thumbnail")),
        "{:?}",
        report.outcome
    );
}

/// camera-sim behind TLS, with a certificate for 127.0.0.1 from a CA of its own.
/// Returns the proxy's address and the CA's PEM.
async fn tls_camera(camera: std::net::SocketAddr) -> (std::net::SocketAddr, String) {
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(camera).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_camera_with_its_own_ca_is_verified() {
    let harness = Harness::start(SimConfig::with_devices(3)).await;
    let (addr, ca_pem) = tls_camera(harness.sim.addr()).await;
    let base = format!("https://{addr}");
    let ca_path = harness.out.path().join("vms-ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();

    // The operator binds the camera's secret with the camera's CA (a grant
    // with credentials cannot bring its own): the certificate checks out and
    // discovery works.
    let manifest = corral::bundled::http_vms_manifest(&base).unwrap();
    let mut operator = harness.secrets.as_ref().clone();
    operator.bind_with(
        corral::bundled::CAMERA_SIM_SECRET,
        corral::secrets::SecretBinding {
            tls_ca: Some(ca_path),
            ..corral::secrets::SecretBinding::to(&[
                corral::origin::OriginPattern::parse(&base).unwrap()
            ])
        },
    );
    let report = harness
        .run_with(
            &harness.guest_with_secrets(manifest, operator),
            &job("d-tls", JobType::Discovery, None),
        )
        .await;
    assert!(
        matches!(&report.outcome, JobOutcome::Discovered(devices) if devices.len() == 3),
        "{:?}",
        report.outcome
    );

    // Without it, the certificate is refused: no request goes out unverified.
    let manifest = corral::bundled::http_vms_manifest(&base).unwrap();
    let report = harness
        .run_with(
            &harness.guest_with(manifest),
            &job("d-tls2", JobType::Discovery, None),
        )
        .await;
    let (JobOutcome::Unavailable(message) | JobOutcome::Failed(message)) = &report.outcome else {
        panic!("an unknown CA must fail: {:?}", report.outcome);
    };
    assert!(message.to_ascii_lowercase().contains("tls"), "{message}");
}
