//! The registry client against the on-premise registry: every call and every
//! error code of PROTOCOL.md, faults, concurrency, bad input. Each test runs
//! on every storage backend (`sqlite::*`, `postgres::*`); the Retry-After
//! tests, which exercise the client against refusals made before any storage
//! is touched, run on SQLite only.

use std::sync::Arc;
use std::time::Duration;

use corral::client::JobUploads;
use corral::client::RegistryError;
use corral::protocol::{CompletionState, FileKind, JobType};
use corral::sink::{OutputSink, OutputSpec};
use corral::upload::{UploadConfig, UploadSink};
use corral_registry::blobs::BlockId;
use corral_registry::routes::Endpoint;
use corral_registry::{Fault, RegistryConfig};
use corral_tests::backend::Backend;
use corral_tests::registry::{TestRegistry, fast_retry, lock_race, new_job, raw};

const LEASE: Duration = Duration::from_secs(60);

/// Uploads `bytes` as one file of the job through the pipeline; returns its id.
async fn upload(
    client: &corral::client::RegistryClient,
    job_id: &str,
    token: &str,
    kind: FileKind,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Result<String, corral::sink::SinkError> {
    let uploads = JobUploads::new(client.clone(), job_id, token, kind, None, None);
    let sink = UploadSink::new(
        Arc::new(uploads),
        UploadConfig {
            blocks_in_flight: 4,
            retry: fast_retry(),
        },
    );
    let spec = OutputSpec {
        name: name.into(),
        content_type: content_type.into(),
    };
    let mut file = sink.create(&spec).await?;
    for chunk in bytes.chunks(1 << 20) {
        file.write(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    file.commit(bytes.len() as u64, "").await
}

async fn the_client_passes_every_call_and_error_code(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    client
        .check(&[])
        .await
        .expect("a token from the connection file's assertion");
    let posted = registry
        .post(vec![
            new_job("mediarequest", "agent-1", Some("cam-0001")),
            new_job("thumbnail", "agent-1", Some("cam-0002")),
            new_job("discovery", "agent-1", None),
            new_job("thumbnail", "agent-2", Some("cam-0003")),
        ])
        .await;
    let (media, thumb, discovery, foreign) = (
        &posted[0].job_id,
        &posted[1].job_id,
        &posted[2].job_id,
        &posted[3].job_id,
    );

    // Poll: only this agent's jobs, filtered by type, oldest first.
    let all = client.poll(&[], None).await.unwrap();
    let ids: Vec<String> = all
        .iter()
        .map(|polled| match polled {
            corral::client::Polled::Job(job) => job.job_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [media.clone(), thumb.clone(), discovery.clone()]);
    let thumbs = client.poll(&[JobType::Thumbnail], Some(5)).await.unwrap();
    assert_eq!(thumbs.len(), 1);

    // Lock: granted once; a second attempt (another request id) is refused; 403, 404.
    let lock = client.lock(media, LEASE).await.unwrap();
    assert!(matches!(
        client.lock(media, LEASE).await,
        Err(RegistryError::LockLost(_))
    ));
    assert!(matches!(
        client.lock(foreign, LEASE).await,
        Err(RegistryError::Rejected { status: 403, .. })
    ));
    assert!(matches!(
        client.lock("000000000000000000000000", LEASE).await,
        Err(RegistryError::Rejected { status: 404, .. })
    ));
    assert_eq!(
        client.poll(&[], None).await.unwrap().len(),
        2,
        "a locked job is not offered"
    );

    // Progress, renew; a wrong token is a lost lock.
    client
        .progress(media, &lock.lock_token, 5, 10)
        .await
        .unwrap();
    assert_eq!(
        (
            registry.job(media).await.task_progress,
            registry.job(media).await.task_total
        ),
        (5, 10)
    );
    let renewed = client.renew(media, &lock.lock_token, LEASE).await.unwrap();
    assert!(renewed.lock_expiration_utc >= lock.lock_expiration_utc);
    assert!(matches!(
        client.progress(media, "not-the-token", 1, 2).await,
        Err(RegistryError::LockLost(_))
    ));

    // A file of the lock that received blocks must be committed before complete.
    let bytes = vec![0x47u8; 5 << 20];
    let file_id = upload(
        &client,
        media,
        &lock.lock_token,
        FileKind::Media,
        "clip.ts",
        "video/mp2t",
        &bytes,
    )
    .await
    .unwrap();
    client
        .complete(media, &lock.lock_token, CompletionState::Completed, None)
        .await
        .unwrap();
    client
        .complete(media, &lock.lock_token, CompletionState::Completed, None)
        .await
        .expect("complete is idempotent");
    assert_eq!(registry.job(media).await.state, "Completed");
    assert!(matches!(
        client.lock(media, LEASE).await,
        Err(RegistryError::Gone(_))
    ));
    assert!(registry.plaintext(&file_id).await == bytes);

    // Cancel needs a reason and is idempotent; release makes the job available again.
    let thumb_lock = client.lock(thumb, LEASE).await.unwrap();
    client
        .cancel(thumb, &thumb_lock.lock_token, "no such camera")
        .await
        .unwrap();
    client
        .cancel(thumb, &thumb_lock.lock_token, "no such camera")
        .await
        .unwrap();
    assert_eq!(registry.job(thumb).await.state, "Cancelled");
    let discovery_lock = client.lock(discovery, LEASE).await.unwrap();
    client
        .progress(discovery, &discovery_lock.lock_token, 1, 2)
        .await
        .unwrap();
    client
        .release(discovery, &discovery_lock.lock_token)
        .await
        .unwrap();
    client
        .release(discovery, &discovery_lock.lock_token)
        .await
        .expect("release is idempotent");
    let again = registry.job(discovery).await;
    assert_eq!(
        (again.state.as_str(), again.task_progress, again.task_total),
        ("Available", 0, 0)
    );
    assert!(matches!(
        client
            .complete(
                discovery,
                &discovery_lock.lock_token,
                CompletionState::Failed,
                None
            )
            .await,
        Err(RegistryError::LockLost(_))
    ));
}

async fn an_expired_lock_makes_the_job_available_and_its_files_dead(backend: Backend) {
    let registry = TestRegistry::start_on(
        &backend,
        RegistryConfig {
            max_lock_seconds: 2,
            ..RegistryConfig::default()
        },
    )
    .await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("mediarequest", "agent-1", Some("cam-1"))])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    client
        .progress(&job.job_id, &lock.lock_token, 1, 3)
        .await
        .unwrap();
    let uploads = JobUploads::new(
        client.clone(),
        &job.job_id,
        &lock.lock_token,
        FileKind::Media,
        None,
        None,
    );
    let sink = UploadSink::new(
        Arc::new(uploads),
        UploadConfig {
            blocks_in_flight: 1,
            retry: fast_retry(),
        },
    );
    let mut file = sink
        .create(&OutputSpec {
            name: "a.ts".into(),
            content_type: "video/mp2t".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let seen = registry.job(&job.job_id).await;
    assert_eq!(
        (seen.state.as_str(), seen.task_progress),
        ("Available", 0),
        "computed from the stored expiry"
    );
    file.write(bytes::Bytes::from(vec![1u8; 10])).await.unwrap();
    let error = file.commit(10, "").await.unwrap_err();
    assert!(error.0.contains("lock is lost"), "{error}");
    assert!(matches!(
        client.renew(&job.job_id, &lock.lock_token, LEASE).await,
        Err(RegistryError::LockLost(_))
    ));
    client
        .lock(&job.job_id, LEASE)
        .await
        .expect("another lock after expiry");
}

async fn under_thirty_percent_faults_each_call_has_exactly_one_effect(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    client.check(&[]).await.unwrap();
    let jobs = registry
        .post(
            (0..10)
                .map(|i| new_job("thumbnail", "agent-1", Some(&format!("cam-{i}"))))
                .collect(),
        )
        .await;
    registry.running.registry().faults().set_rate(0.3);
    for job in &jobs {
        let lock = client
            .lock(&job.job_id, LEASE)
            .await
            .expect("lock despite faults");
        client
            .progress(&job.job_id, &lock.lock_token, 1, 2)
            .await
            .expect("progress despite faults");
        client
            .renew(&job.job_id, &lock.lock_token, LEASE)
            .await
            .expect("renew despite faults");
        client
            .complete(
                &job.job_id,
                &lock.lock_token,
                CompletionState::Completed,
                None,
            )
            .await
            .expect("complete despite faults");
        // One lock: had a retried lock made a second one, this token would have lost it.
        let seen = registry.job(&job.job_id).await;
        assert_eq!(seen.state, "Completed");
    }
    let faults = registry.running.registry().faults();
    let counts = faults.counts();
    assert!(
        counts.lost > 0 && counts.refused > 0,
        "faults happened: {counts:?}"
    );
}

async fn two_hundred_lock_attempts_on_twenty_jobs_lock_each_once(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    client.check(&[]).await.unwrap();
    let jobs = registry
        .post(
            (0..20)
                .map(|i| new_job("thumbnail", "agent-1", Some(&format!("c{i}"))))
                .collect(),
        )
        .await;
    let ids: Vec<String> = jobs.iter().map(|job| job.job_id.clone()).collect();
    let granted = lock_race(&[client], &ids, 200).await;
    assert_eq!(granted.len(), 20);
    assert!(granted.values().all(|count| *count == 1), "{granted:?}");
}

async fn bad_input_gets_one_clear_4xx(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let base = registry.running.base_url();
    let token = registry.token("agent-1").await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("mediarequest", "agent-1", Some("cam-1"))])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let lock_path = format!("/agentservice/api/v1/jobs/{}/lock", job.job_id);
    let progress_path = format!("/agentservice/api/v1/jobs/{}/progress", job.job_id);
    let json = "application/json";
    // (method, path, token, content type, body, status, error code)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        &'a str,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            lock_path.clone(),
            None,
            json,
            b"{}".to_vec(),
            401,
            "UNAUTHORIZED",
        ),
        (
            "POST",
            lock_path.clone(),
            Some(token.as_str()),
            json,
            b"{not json".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            lock_path.clone(),
            Some(token.as_str()),
            "text/plain",
            b"{}".to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            lock_path.clone(),
            Some(token.as_str()),
            json,
            vec![b' '; (1 << 20) + 10],
            413,
            "TOO_LARGE",
        ),
        (
            "PUT",
            progress_path.clone(),
            Some(token.as_str()),
            json,
            format!(
                r#"{{"lockToken":"{}","taskProgress":3,"taskTotal":2}}"#,
                lock.lock_token
            )
            .into_bytes(),
            400,
            "BAD_REQUEST",
        ),
        (
            "GET",
            "/agentservice/api/v1/agents/agent-2/jobs".into(),
            Some(token.as_str()),
            json,
            vec![],
            403,
            "FORBIDDEN",
        ),
        (
            "GET",
            "/agentservice/api/v1/agents/agent-1/jobs?type=video".into(),
            Some(token.as_str()),
            json,
            vec![],
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/agentservice/api/v1/jobs/..%2F..%2Fetc/lock".into(),
            Some(token.as_str()),
            json,
            b"{}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "POST",
            "/agentservice/api/v1/jobs/nosuchjob/lock".into(),
            Some(token.as_str()),
            json,
            br#"{"agentId":"agent-1","lockDurationSeconds":5}"#.to_vec(),
            404,
            "NOT_FOUND",
        ),
        (
            "DELETE",
            lock_path.clone(),
            Some(token.as_str()),
            json,
            vec![],
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, token, content_type, body, status, code) in cases {
        let (got, answer) = raw(&base, method, &path, token, content_type, body).await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(
            answer.contains(code) && answer.contains("\"message\""),
            "{method} {path}: {answer}"
        );
    }
    // Blocks: too large, ids of unequal length.
    let init = format!("/agentservice/api/v1/jobs/{}/files/media", job.job_id);
    let body = format!(
        r#"{{"lockToken":"{}","fileName":"a.ts","contentType":"video/mp2t"}}"#,
        lock.lock_token
    );
    let (status, answer) = raw(&base, "POST", &init, Some(&token), json, body.into_bytes()).await;
    assert_eq!(status, 200);
    let file_id = serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["fileId"]
        .as_str()
        .unwrap()
        .to_string();
    let block = |id: &str| format!("/agentservice/api/v1/files/{file_id}/blocks/{id}");
    let octets = "application/octet-stream";
    let (status, _) = raw(
        &base,
        "PUT",
        &block("AAAAAAAAAAA%3D"),
        Some(&token),
        octets,
        vec![0; 100],
    )
    .await;
    assert_eq!(status, 201);
    let (status, answer) = raw(
        &base,
        "PUT",
        &block("AAAA"),
        Some(&token),
        octets,
        vec![0; 100],
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    let (status, _) = raw(
        &base,
        "PUT",
        &block("AAAAAAAAAAE%3D"),
        Some(&token),
        octets,
        vec![0; corral_envelope::MAX_BLOCK_LEN + 1],
    )
    .await;
    assert_eq!(status, 413);
    // A commit whose block does not decrypt is refused and names the block.
    let data = serde_json::json!({"WrappedContentKey":{"KeyId":"x","EncryptedKey":"AAAA","Algorithm":"RSA-OAEP"},
        "EncryptionAgent":{"Protocol":"2.0","EncryptionAlgorithm":"AES_GCM_256"},
        "EncryptedRegionInfo":{"DataLength":4194304,"NonceLength":12},"KeyWrappingMetadata":{"EncryptionLibrary":"x"},"EncryptionMode":"FullBlob"});
    let commit = serde_json::json!({"lockToken": lock.lock_token, "blockIds": ["AAAAAAAAAAA="], "encryptionData": data, "contentLength": 72});
    let (status, answer) = raw(
        &base,
        "POST",
        &format!("/agentservice/api/v1/files/{file_id}/complete"),
        Some(&token),
        json,
        commit.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    // Admin: an unknown job type.
    let admin = registry.running.registry().admin_token().to_string();
    let (status, answer) = raw(
        &base,
        "POST",
        "/admin/api/v1/jobs",
        Some(&admin),
        json,
        br#"{"type":"video","agentId":"a"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("unknown job type `video`"));
}

async fn a_broken_connection_file_stops_start_up_with_one_sentence(backend: Backend) {
    use corral::client::connection::ConnectionFile;
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let (path, _) = registry.add_agent("agent-1").await;
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // An unreachable token service.
    file["SecurityTokenServiceBaseAddresses"] = serde_json::json!(["http://127.0.0.1:9/connect"]);
    let parsed = ConnectionFile::parse(file.to_string().as_bytes()).unwrap();
    let client = corral::client::RegistryClient::from_connection_file(
        &parsed,
        "agent-1",
        None,
        None,
        corral::client::retry::RetryPolicy {
            deadline: Duration::from_millis(200),
            ..fast_retry()
        },
    )
    .unwrap();
    let error = client.check(&[]).await.unwrap_err().to_string();
    assert!(
        error.contains("127.0.0.1:9/connect/token") && !error.contains('\n'),
        "{error}"
    );
    // Another agent's key: the assertion does not verify.
    let (other, _) = registry.add_agent("agent-2").await;
    let mut wrong: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    wrong["ServicePrincipalId"] = serde_json::json!("agent-1");
    let parsed = ConnectionFile::parse(wrong.to_string().as_bytes()).unwrap();
    let client = corral::client::RegistryClient::from_connection_file(
        &parsed,
        "agent-1",
        None,
        None,
        fast_retry(),
    )
    .unwrap();
    let error = client.check(&[]).await.unwrap_err();
    assert!(matches!(error, RegistryError::Unauthorized(_)), "{error}");
    assert!(error.to_string().contains("signature"), "{error}");
}

async fn tokens_issued(registry: &TestRegistry) -> i64 {
    registry
        .running
        .registry()
        .store()
        .transaction(|tx| {
            let row = tx.row("SELECT COUNT(*) FROM tokens", corral_registry::params![])?;
            row.expect("COUNT(*) answers one row").get::<i64>(0)
        })
        .await
        .unwrap()
}

async fn one_token_serves_many_calls_and_is_renewed_after_expiry_and_401(backend: Backend) {
    let registry = TestRegistry::start_on(
        &backend,
        RegistryConfig {
            token_lifetime: Duration::from_secs(6),
            ..RegistryConfig::default()
        },
    )
    .await;
    let client = registry.client("agent-1").await;
    for _ in 0..5 {
        client.poll(&[], None).await.unwrap();
    }
    assert_eq!(
        tokens_issued(&registry).await,
        1,
        "one token for many calls"
    );
    // The server forgets every token: the next call gets 401, then a new token.
    registry
        .running
        .registry()
        .store()
        .transaction(|tx| tx.execute("DELETE FROM tokens", corral_registry::params![]))
        .await
        .unwrap();
    client
        .poll(&[], None)
        .await
        .expect("a fresh token after the 401");
    assert_eq!(tokens_issued(&registry).await, 1);
    // A 6 s token is renewed when 5 s are left.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.poll(&[], None).await.unwrap();
    assert_eq!(tokens_issued(&registry).await, 2, "renewed before expiry");
}

async fn an_assertion_is_accepted_once(backend: Backend) {
    use corral::client::connection::ConnectionFile;
    use josekit::jws::{JwsHeader, RS512};
    use josekit::jwt::{self, JwtPayload};

    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let (path, _) = registry.add_agent("agent-1").await;
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let parsed = ConnectionFile::load(&path).unwrap();
    let key =
        josekit::jwk::Jwk::from_bytes(file["ServicePrincipalKey"].to_string().as_bytes()).unwrap();
    let signer = RS512.signer_from_jwk(&key).unwrap();
    let sign = |audience: &str, jti: &str| {
        let mut header = JwsHeader::new();
        header.set_key_id(&parsed.kid);
        let mut payload = JwtPayload::new();
        payload.set_issuer(&parsed.client_id);
        payload.set_subject(&parsed.client_id);
        payload.set_audience(vec![audience]);
        payload.set_expires_at(&(std::time::SystemTime::now() + Duration::from_secs(60)));
        payload.set_jwt_id(jti);
        jwt::encode_with_signer(&payload, &header, &signer).unwrap()
    };
    let endpoint = parsed.token_endpoint();
    let base = registry.running.base_url();
    let post = |assertion: String| {
        let body = format!(
            "client_id={}&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}",
            urlencoding::encode(&parsed.client_id)
        );
        raw(
            &base,
            "POST",
            "/connect/token",
            None,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        )
    };
    let assertion = sign(&endpoint, "jti-1");
    assert_eq!(post(assertion.clone()).await.0, 200);
    let (status, answer) = post(assertion).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("already used"));
    let (status, answer) = post(sign("http://elsewhere/connect/token", "jti-2")).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("aud"));
}

async fn an_uploaded_file_decrypts_via_the_admin_api_and_with_the_azure_sdk(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("mediarequest", "agent-1", Some("cam-1"))])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let bytes: Vec<u8> = (0..(9u32 << 20) + 123).map(|i| (i % 251) as u8).collect();
    let file_id = upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Media,
        "clip.ts",
        "video/mp2t",
        &bytes,
    )
    .await
    .unwrap();
    client
        .complete(
            &job.job_id,
            &lock.lock_token,
            CompletionState::Completed,
            None,
        )
        .await
        .unwrap();

    let base = registry.running.base_url();
    let admin = registry.running.registry().admin_token().to_string();
    let (status, content) = raw(
        &base,
        "GET",
        &format!("/admin/api/v1/files/{file_id}/content"),
        Some(&admin),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    assert!(content == bytes, "the admin API decrypts to the original");
    let (status, listing) = raw(
        &base,
        "GET",
        "/admin/api/v1/jobs?state=Completed",
        Some(&admin),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let listing: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(listing[0]["files"][0]["length"], bytes.len());
    assert_eq!(listing[0]["files"][0]["committed"], true);

    // The stored ciphertext and metadata, read by the Azure SDK.
    let store = registry.running.registry().store().clone();
    let id = file_id.clone();
    let row = store
        .transaction(move |tx| corral_registry::files::committed(tx, &id))
        .await
        .unwrap();
    let ciphertext = corral_registry::files::ciphertext(&store, &row).unwrap();
    let azure = corral_tests::interop::azure_decrypt(
        &ciphertext,
        row.encryption_data.as_deref().unwrap(),
        &row.private_jwk,
        bytes.len() as u64,
    );
    assert!(
        azure == bytes,
        "azure-storage-blob decrypts the stored file"
    );
}

async fn a_released_lock_leaves_no_file_behind_even_a_committed_one(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("discovery", "agent-1", None)])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let json = br#"{"devices":[{"deviceId":"cam-1","name":"Lobby"}]}"#;
    let file_id = upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Discovery,
        "discovery.json",
        "application/json",
        json,
    )
    .await
    .unwrap();
    assert_eq!(registry.job(&job.job_id).await.files.unwrap().len(), 1);
    let store = registry.running.registry().store().clone();
    let id = file_id.clone();
    let row = store
        .transaction(move |tx| corral_registry::files::committed(tx, &id))
        .await
        .unwrap();
    let ids: Vec<String> = serde_json::from_str(row.block_ids.as_deref().unwrap()).unwrap();
    let ids: Vec<BlockId> = ids.iter().map(|id| BlockId::parse(id).unwrap()).collect();
    assert!(store.blobs().read_file(&file_id, &ids).is_ok(), "stored");
    client.release(&job.job_id, &lock.lock_token).await.unwrap();
    let released = registry.job(&job.job_id).await;
    assert!(
        released.files.unwrap().is_empty(),
        "the released lock's files are gone"
    );
    let id = file_id.clone();
    let missing = store
        .transaction(move |tx| corral_registry::files::committed(tx, &id))
        .await;
    assert!(missing.is_err());
    // The sweep (also started by the release) deletes the bytes, blob included.
    let sweeper = store.clone();
    tokio::task::spawn_blocking(move || corral_registry::files::sweep_abandoned(&sweeper))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store.blobs().read_file(&file_id, &ids).is_err(),
        "the file's bytes are gone from {}",
        store.blobs().describe()
    );
    // The next attempt starts clean and completes with its own file.
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Discovery,
        "discovery.json",
        "application/json",
        json,
    )
    .await
    .unwrap();
    client
        .complete(
            &job.job_id,
            &lock.lock_token,
            CompletionState::Completed,
            None,
        )
        .await
        .unwrap();
    assert_eq!(registry.job(&job.job_id).await.files.unwrap().len(), 1);
}

/// A thumbnail's bytes: enough of a JPEG for the registry's check.
const JPEG: [u8; 6] = [0xff, 0xd8, 0xff, 0x00, 0xff, 0xd9];

/// A 503 then a 429, each with `Retry-After: 1`, on the next two calls of
/// `endpoint`: a whole job's calls still succeed, and the client waited the
/// two seconds it was asked to (its own backoff is milliseconds).
async fn retry_after_is_honoured_on(endpoint: Endpoint) {
    let registry = TestRegistry::start(RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("thumbnail", "agent-1", Some("cam-0001"))])
        .await
        .remove(0);
    let faults = registry.running.registry().faults();
    for status in [503, 429] {
        faults.inject(
            endpoint,
            Fault::Refuse {
                status,
                retry_after: Some(1),
            },
        );
    }
    let started = std::time::Instant::now();
    client.check(&[]).await.expect("a token");
    let polled = client
        .poll(&[JobType::Thumbnail], None)
        .await
        .expect("poll");
    assert_eq!(polled.len(), 1);
    let lock = client.lock(&job.job_id, LEASE).await.expect("lock");
    let token = &lock.lock_token;
    client
        .progress(&job.job_id, token, 1, 2)
        .await
        .expect("progress");
    client
        .renew(&job.job_id, token, LEASE)
        .await
        .expect("renew");
    let ending = match endpoint {
        Endpoint::Cancel => client.cancel(&job.job_id, token, "test").await,
        Endpoint::Release => client.release(&job.job_id, token).await,
        _ => {
            upload(
                &client,
                &job.job_id,
                token,
                FileKind::Thumbnail,
                "t.jpg",
                "image/jpeg",
                &JPEG,
            )
            .await
            .expect("the upload");
            client
                .complete(&job.job_id, token, CompletionState::Completed, None)
                .await
        }
    };
    ending.expect("the ending call");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "Retry-After honoured twice: {waited:?}"
    );
    assert_eq!(faults.counts().refused, 2);
    let state = registry.job(&job.job_id).await.state;
    let expected = match endpoint {
        Endpoint::Cancel => "Cancelled",
        Endpoint::Release => "Available",
        _ => "Completed",
    };
    assert_eq!(state, expected);
}

macro_rules! retry_after_tests {
    ($($name:ident: $endpoint:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            retry_after_is_honoured_on(Endpoint::$endpoint).await;
        }
    )*};
}

retry_after_tests! {
    a_503_and_a_429_with_retry_after_on_the_token_endpoint_are_waited_out: Token,
    a_503_and_a_429_with_retry_after_on_poll_are_waited_out: Poll,
    a_503_and_a_429_with_retry_after_on_lock_are_waited_out: Lock,
    a_503_and_a_429_with_retry_after_on_progress_are_waited_out: Progress,
    a_503_and_a_429_with_retry_after_on_renew_are_waited_out: Renew,
    a_503_and_a_429_with_retry_after_on_initialize_are_waited_out: Initialize,
    a_503_and_a_429_with_retry_after_on_a_block_are_waited_out: PutBlock,
    a_503_and_a_429_with_retry_after_on_a_commit_are_waited_out: CompleteFile,
    a_503_and_a_429_with_retry_after_on_complete_are_waited_out: Complete,
    a_503_and_a_429_with_retry_after_on_cancel_are_waited_out: Cancel,
    a_503_and_a_429_with_retry_after_on_release_are_waited_out: Release,
}

async fn a_lost_initialize_answer_leaves_an_orphan_that_complete_discards(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("thumbnail", "agent-1", Some("cam-0001"))])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let faults = registry.running.registry().faults();
    faults.inject(Endpoint::Initialize, Fault::Lose);
    faults.inject(Endpoint::Initialize, Fault::Drop);
    let file_id = upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Thumbnail,
        "t.jpg",
        "image/jpeg",
        &JPEG,
    )
    .await
    .expect("Initialize retried after a lost answer and a dropped connection");
    client
        .complete(
            &job.job_id,
            &lock.lock_token,
            CompletionState::Completed,
            None,
        )
        .await
        .expect("complete discards the orphan");
    let seen = registry.job(&job.job_id).await;
    assert_eq!(seen.state, "Completed");
    let files = seen.files.clone().unwrap_or_default();
    assert_eq!(files.len(), 1, "the orphan is discarded: {files:?}");
    assert!(
        files
            .iter()
            .any(|file| file.file_id == file_id && file.committed)
    );
    assert_eq!(registry.plaintext(&file_id).await, JPEG);
    let counts = faults.counts();
    assert_eq!((counts.lost, counts.dropped), (1, 1));
}

async fn the_admin_api_switches_faults_and_reports_what_the_registry_counted(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let base = registry.running.base_url();
    let admin = registry.running.registry().admin_token().to_string();
    let body = br#"{"fail":0.2,"drop":0.05,"lose":0.05}"#.to_vec();
    let (status, answer) = raw(
        &base,
        "PUT",
        "/admin/api/v1/faults",
        Some(&admin),
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(registry.running.registry().faults().rates().fail, 0.2);
    // Admin calls are never faulted: fifty in a row all answer.
    for _ in 0..50 {
        let (status, _) = raw(
            &base,
            "GET",
            "/admin/api/v1/stats",
            Some(&admin),
            "",
            vec![],
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = raw(
        &base,
        "PUT",
        "/admin/api/v1/faults",
        Some(&admin),
        "application/json",
        br#"{"fail":1.5}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    // A second complete of a job by another lock is counted, and so is a
    // commit refused for what it holds.
    registry.running.registry().faults().set(Default::default());
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("thumbnail", "agent-1", Some("cam-0001"))])
        .await
        .remove(0);
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let refused = upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Thumbnail,
        "t.jpg",
        "image/jpeg",
        b"not a jpeg",
    )
    .await;
    assert!(refused.is_err());
    upload(
        &client,
        &job.job_id,
        &lock.lock_token,
        FileKind::Thumbnail,
        "t.jpg",
        "image/jpeg",
        &JPEG,
    )
    .await
    .unwrap();
    // The refused file received a block and was never committed: release
    // abandons it, and the job is done under a second lock.
    client.release(&job.job_id, &lock.lock_token).await.unwrap();
    let second = client.lock(&job.job_id, LEASE).await.unwrap();
    upload(
        &client,
        &job.job_id,
        &second.lock_token,
        FileKind::Thumbnail,
        "t.jpg",
        "image/jpeg",
        &JPEG,
    )
    .await
    .unwrap();
    client
        .complete(
            &job.job_id,
            &second.lock_token,
            CompletionState::Completed,
            None,
        )
        .await
        .unwrap();
    let again = client
        .complete(
            &job.job_id,
            &lock.lock_token,
            CompletionState::Completed,
            None,
        )
        .await;
    assert!(
        matches!(again, Err(RegistryError::LockLost(_))),
        "{again:?}"
    );
    let (status, answer) = raw(
        &base,
        "GET",
        "/admin/api/v1/stats",
        Some(&admin),
        "",
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(stats["doubleCompletes"], 1, "{stats}");
    assert_eq!(stats["refusedCommits"], 1, "{stats}");
    assert_eq!(stats["faults"]["refused"], 0, "{stats}");
}

/// What the console shows beside the protocol's state: every transition of a
/// job in its history, with the agent, and each agent's last poll, written
/// at most once a second however often it polls.
async fn a_jobs_history_and_its_agents_last_poll_are_kept(backend: Backend) {
    let registry = TestRegistry::start_on(&backend, RegistryConfig::default()).await;
    let client = registry.client("agent-1").await;
    let job = registry
        .post(vec![new_job("thumbnail", "agent-1", Some("cam-1"))])
        .await
        .remove(0);
    let store = registry.running.registry().store().clone();
    let last_poll = || {
        let store = store.clone();
        async move {
            store
                .transaction(corral_registry::store::last_polls)
                .await
                .unwrap()
        }
    };
    assert!(last_poll().await.is_empty(), "no poll yet");
    client.poll(&[], None).await.unwrap();
    let first = last_poll().await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "agent-1");
    client.poll(&[], None).await.unwrap();
    assert_eq!(
        last_poll().await,
        first,
        "a poll within a second writes nothing"
    );

    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    client
        .renew(&job.job_id, &lock.lock_token, LEASE)
        .await
        .unwrap();
    client.release(&job.job_id, &lock.lock_token).await.unwrap();
    client.release(&job.job_id, &lock.lock_token).await.unwrap();
    let lock = client.lock(&job.job_id, LEASE).await.unwrap();
    let (state, message) = (CompletionState::Failed, Some("camera said no".to_string()));
    client
        .complete(&job.job_id, &lock.lock_token, state, message)
        .await
        .unwrap();
    let id = job.job_id.clone();
    let history = store
        .transaction(move |tx| corral_registry::store::history(tx, &id))
        .await
        .unwrap();
    let events: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|entry| (entry.event.as_str(), entry.agent_id.as_deref()))
        .collect();
    let agent = Some("agent-1");
    assert_eq!(
        events,
        [
            ("posted", None),
            ("locked", agent),
            ("renewed", agent),
            ("released", agent),
            ("locked", agent),
            ("completed", agent),
        ],
        "the repeated release added nothing"
    );
    assert_eq!(history[5].detail.as_deref(), Some("Failed: camera said no"));
    assert!(
        history
            .windows(2)
            .all(|pair| pair[0].at_ms <= pair[1].at_ms)
    );
    let (counts, failed) = store
        .transaction(|tx| {
            Ok((
                corral_registry::store::job_counts(tx)?,
                corral_registry::store::newest_jobs_where(tx, "state = ?1", &[&"Failed"], 10)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(counts, [("agent-1".into(), "Failed".into(), 1)]);
    assert_eq!(failed.len(), 1);
}

/// A poll offers the jobs whose lease ran out first, then the available
/// ones, each oldest first, of the asked types only and no more than `max`:
/// the two `LIMIT`ed reads of `jobs::available`, on each engine.
async fn a_poll_offers_lapsed_leases_first_then_the_oldest_of_its_types(backend: Backend) {
    let registry = TestRegistry::start_on(
        &backend,
        RegistryConfig {
            max_lock_seconds: 1,
            ..RegistryConfig::default()
        },
    )
    .await;
    let client = registry.client("agent-1").await;
    let ids: Vec<String> = registry
        .post(vec![
            new_job("discovery", "agent-1", None),
            new_job("thumbnail", "agent-1", Some("cam-1")),
            new_job("discovery", "agent-1", None),
            new_job("thumbnail", "agent-1", Some("cam-2")),
            new_job("thumbnail", "agent-1", Some("cam-3")),
        ])
        .await
        .into_iter()
        .map(|job| job.job_id)
        .collect();
    // The last thumbnail's lease runs out.
    client.lock(&ids[4], LEASE).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let offered = |polled: Vec<corral::client::Polled>| -> Vec<String> {
        polled
            .into_iter()
            .map(|polled| match polled {
                corral::client::Polled::Job(job) => job.job_id,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let thumbnails = offered(client.poll(&[JobType::Thumbnail], Some(2)).await.unwrap());
    assert_eq!(thumbnails, [ids[4].clone(), ids[1].clone()]);
    let all = offered(client.poll(&[], Some(10)).await.unwrap());
    assert_eq!(
        all,
        [&ids[4], &ids[0], &ids[1], &ids[2], &ids[3]].map(String::clone)
    );
    let one = offered(
        client
            .poll(&[JobType::Discovery, JobType::Thumbnail], Some(1))
            .await
            .unwrap(),
    );
    assert_eq!(one, [ids[4].clone()]);
    let discoveries = offered(client.poll(&[JobType::Discovery], Some(10)).await.unwrap());
    assert_eq!(discoveries, [ids[0].clone(), ids[2].clone()]);
}

corral_tests::on_every_backend!(
    the_client_passes_every_call_and_error_code,
    an_expired_lock_makes_the_job_available_and_its_files_dead,
    under_thirty_percent_faults_each_call_has_exactly_one_effect,
    two_hundred_lock_attempts_on_twenty_jobs_lock_each_once,
    bad_input_gets_one_clear_4xx,
    a_broken_connection_file_stops_start_up_with_one_sentence,
    one_token_serves_many_calls_and_is_renewed_after_expiry_and_401,
    an_assertion_is_accepted_once,
    an_uploaded_file_decrypts_via_the_admin_api_and_with_the_azure_sdk,
    a_released_lock_leaves_no_file_behind_even_a_committed_one,
    a_lost_initialize_answer_leaves_an_orphan_that_complete_discards,
    the_admin_api_switches_faults_and_reports_what_the_registry_counted,
    a_jobs_history_and_its_agents_last_poll_are_kept,
    a_poll_offers_lapsed_leases_first_then_the_oldest_of_its_types,
);
