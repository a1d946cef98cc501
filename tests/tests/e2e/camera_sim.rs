//! camera-sim's own API over real HTTP: credentials, ranges, faults.

use bytes::Bytes;
use corral_camera_sim::{CameraSim, SimConfig, recording};
use corral_tests::loopback;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

async fn get(
    sim: &CameraSim,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header("host", sim.addr().to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    (status, headers, body)
}

/// `operator:sim-secret` in HTTP Basic.
const AUTH: (&str, &str) = ("authorization", "Basic b3BlcmF0b3I6c2ltLXNlY3JldA==");

#[tokio::test]
async fn every_call_needs_the_credentials() {
    let sim = CameraSim::start(SimConfig::with_devices(1), loopback())
        .await
        .unwrap();
    let (status, headers, _) = get(&sim, "/vms/v2/cameras", &[]).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = get(
        &sim,
        "/vms/v2/cameras",
        &[("authorization", "Basic b3BlcmF0b3I6d3Jvbmc=")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, body) = get(&sim, "/vms/v2/cameras", &[AUTH]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("cam-0001"));
}

#[tokio::test]
async fn recordings_serve_ranges_of_the_same_bytes() {
    let sim = CameraSim::start(
        SimConfig {
            bitrate_bps: 80_000,
            ..SimConfig::with_devices(1)
        },
        loopback(),
    )
    .await
    .unwrap();
    let path = "/vms/v2/cameras/cam-0001/archive?from=1000&to=61000";
    let expected = recording::recording("cam-0001", 80_000, 1000, 61_000);
    let (status, headers, whole) = get(&sim, path, &[AUTH]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-length"],
        expected.len().to_string().as_str()
    );
    assert!(whole == expected);
    let (status, headers, part) = get(&sim, path, &[AUTH, ("range", "bytes=1000-1999")]).await;
    assert_eq!(status, 206);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000-1999/{}", expected.len()).as_str()
    );
    assert_eq!(part, &expected[1000..2000]);
    let (status, _, _) = get(&sim, path, &[AUTH, ("range", "bytes=9999999-")]).await;
    assert_eq!(status, 416);
}

#[tokio::test]
async fn a_failure_switch_counts_down() {
    let sim = CameraSim::start(SimConfig::with_devices(1), loopback())
        .await
        .unwrap();
    sim.faults().set(corral_camera_sim::FaultSettings {
        fail_status: Some(503),
        fail_count: 2,
        ..Default::default()
    });
    assert_eq!(get(&sim, "/vms/v2/cameras", &[AUTH]).await.0, 503);
    assert_eq!(get(&sim, "/vms/v2/cameras", &[AUTH]).await.0, 503);
    assert_eq!(get(&sim, "/vms/v2/cameras", &[AUTH]).await.0, 200);
}
