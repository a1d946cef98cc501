//! The registry's operator console in a real browser: Debian's headless
//! Chromium driven over WebDriver (chromedriver on a free loopback port,
//! started by each test), against a real registry, camera-sim and agent.
//! `tests/browser.sh` (run by `tests/run.sh`) installs both; without them
//! these tests fail, unless `CORRAL_ALLOW_SKIP` is set. Screenshots land in
//! `target/console-screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_camera_sim::{FaultSettings, SimConfig};
use corral_registry::RegistryConfig;
use corral_tests::registry::{TestRegistry, raw_with};
use corral_tests::world::World;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A headless Chromium session and the chromedriver serving it.
struct Browser {
    client: Client,
    _driver: Driver,
}

/// chromedriver, in a process group of its own with the Chromium it starts:
/// dropping it kills the group, so a failing test leaves no browser behind.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn tool(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `None` (the test skips)
    /// only when they are missing and `CORRAL_ALLOW_SKIP` is set.
    async fn start() -> Option<Browser> {
        let driver_path = tool("CORRAL_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = tool("CORRAL_CHROMIUM", "/usr/bin/chromium");
        if !driver_path.is_file() || !chromium.is_file() {
            let why = format!(
                "no {} or {}: run `bash tests/browser.sh` (apt-get install chromium chromium-driver)",
                driver_path.display(),
                chromium.display()
            );
            assert!(std::env::var_os("CORRAL_ALLOW_SKIP").is_some(), "{why}");
            eprintln!("skipped (CORRAL_ALLOW_SKIP): {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(Driver)
            .unwrap_or_else(|error| panic!("{} does not start: {error}", driver_path.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--disable-gpu"],
            }),
        );
        // fantoccini's rustls connector takes the process's default provider,
        // and this build has two (aws-lc-rs, and ring through wasmtime-wasi-http).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // chromedriver listens a moment after it starts: retry until it does.
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session from chromedriver at {url}: {error}"),
            }
        };
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    /// Opens `url`.
    async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// The current path (and query).
    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("a URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits (up to 10 s) until the browser shows `path`: a click that
    /// submits a form returns before the next page is there.
    async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stayed at {now}, not {path}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element `css` matches, read in one step (the
    /// live table replaces its rows every second), or `None`.
    async fn text_now(&self, css: &str) -> Option<String> {
        let script = "const found = document.querySelector(arguments[0]); \
                      return found ? found.textContent : null;";
        let value = self
            .client
            .execute(script, vec![json!(css)])
            .await
            .expect("the script runs");
        value.as_str().map(str::to_string)
    }

    /// Waits (up to 10 s) until the text of `css` contains `needle`.
    async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text_now(css).await.unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in `{css}`: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in with the admin token and waits for the jobs page.
    async fn sign_in_as_admin(&self, registry: &TestRegistry) {
        let base = registry.running.base_url();
        self.sign_in(&base, registry.running.registry().admin_token())
            .await;
        self.wait_for_path("/console/jobs").await;
    }

    /// Signs in at `base` with `token`.
    async fn sign_in(&self, base: &str, token: &str) {
        self.open(&format!("{base}/console/sign-in")).await;
        let field = self.find("#token").await;
        field.send_keys(token).await.expect("typed");
        self.find("#sign-in").await.click().await.expect("clicked");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no `{css}` on the page: {error}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("its text")
    }

    async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("the script failed: {error}\n{script}"))
    }

    async fn async_script(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|error| panic!("the script failed: {error}\n{script}"))
    }

    /// Saves a screenshot of the page as `target/console-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = corral_tests::workspace_target().join("console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("screenshot: {}", path.display());
    }

    /// The session cookie's value.
    async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("corral_console")
            .await
            .expect("the session cookie")
            .value()
            .to_string()
    }

    /// Ends the session (Chromium quits), then chromedriver.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

fn admin_token(registry: &TestRegistry) -> String {
    registry.running.registry().admin_token().to_string()
}

/// Picks `value` in the `<select>` matched by `css`.
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser
        .find(css)
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|error| panic!("cannot choose `{value}` in `{css}`: {error}"));
}

/// Replaces the text of the input matched by `css`.
async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser.find(css).await;
    field.clear().await.expect("cleared");
    field.send_keys(text).await.expect("typed");
}

/// Posts a job from the jobs page's form; returns its id.
async fn post_from_form(browser: &Browser, job_type: &str, device: &str) -> String {
    submit_post_form(browser, job_type, device).await;
    browser.text("#posted a").await
}

/// Fills the post-a-job form for agent-1 and submits it.
async fn submit_post_form(browser: &Browser, job_type: &str, device: &str) {
    choose(browser, "#post-type", job_type).await;
    choose(browser, "#post-agent", "agent-1").await;
    fill(browser, "#post-device", device).await;
    browser
        .find("#post-submit")
        .await
        .click()
        .await
        .expect("posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signing_in_takes_the_admin_token_only_and_sets_a_strict_http_only_cookie() {
    let registry = TestRegistry::start(RegistryConfig::default()).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = registry.running.base_url();
    browser.open(&format!("{base}/")).await;
    assert_eq!(
        browser.path().await,
        "/console/sign-in",
        "nothing is shown before sign-in"
    );

    browser.sign_in(&base, "not-the-admin-token").await;
    assert!(
        browser
            .text("#problem")
            .await
            .contains("not the registry's admin token")
    );
    let agent_token = registry.token("agent-1").await;
    browser.sign_in(&base, &agent_token).await;
    assert!(
        browser
            .text("#problem")
            .await
            .contains("not the registry's admin token")
    );
    assert_eq!(browser.path().await, "/console/sign-in");
    // An agent's bearer token opens neither data nor pages.
    let bearer = format!("Bearer {agent_token}");
    let (status, _, _) = get(&base, "/console/api/jobs", Some(("authorization", &bearer))).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(&base, "/console/files/abc", None).await;
    assert_eq!(status, 401, "no file without a session");
    let (status, headers, _) = get(&base, "/console/jobs", Some(("authorization", &bearer))).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in");
    let (_, headers, _) = get(&base, "/console/sign-in", None).await;
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");

    browser.sign_in(&base, &admin_token(&registry)).await;
    browser.wait_for_path("/console/jobs").await;
    let cookie = browser
        .client
        .get_named_cookie("corral_console")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    let same_site = cookie.same_site().map(|same_site| same_site.to_string());
    assert_eq!(same_site.as_deref(), Some("Strict"), "{cookie:?}");
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    assert_ne!(
        cookie.value(),
        admin_token(&registry),
        "the cookie holds a session id, not the token"
    );
    let header = format!("corral_console={}", cookie.value());
    let (status, _, body) = get(&base, "/console/api/jobs", Some(("cookie", &header))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    browser
        .find("#sign-out")
        .await
        .click()
        .await
        .expect("signed out");
    browser.wait_for_path("/console/sign-in").await;
    let (status, _, _) = get(&base, "/console/api/jobs", Some(("cookie", &header))).await;
    assert_eq!(status, 401, "a signed-out session opens nothing");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thumbnail_posted_from_the_form_turns_completed_without_a_reload() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(8)).await;
    let agent = world.agent(world.config());
    // Something to look at in the screenshot, and devices for the form.
    let discovery = world.post(vec![world.job("discovery", None)]).await;
    world.wait_final(&discovery, Duration::from_secs(60)).await;
    let earlier = world.post_thumbnails(3).await;
    world.wait_final(&earlier, Duration::from_secs(60)).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = world.registry.running.base_url();
    browser.sign_in_as_admin(&world.registry).await;

    // Each camera answer now takes 1.5 s, so the page sees the job before it ends.
    world.sim.faults().set(FaultSettings {
        delay_ms: 1500,
        ..FaultSettings::default()
    });
    let job_id = post_from_form(&browser, "thumbnail", "cam-0005").await;
    browser
        .script("window.corralMarker = 'kept'; return true;")
        .await;
    let state_cell = format!("tr[data-job-id=\"{job_id}\"] td.state");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = browser.text_now(&state_cell).await.unwrap_or_default();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "Completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the row never showed Completed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.len() >= 2 && ["Available", "Locked"].contains(&seen[0].as_str()),
        "the row changed while the page stayed open: {seen:?}"
    );
    let marker = browser.script("return window.corralMarker || null;").await;
    assert_eq!(marker, json!("kept"), "the page was not reloaded");
    assert_eq!(world.registry.job(&job_id).await.state, "Completed");
    world.sim.faults().clear();

    browser.open(&format!("{base}/console/jobs/{job_id}")).await;
    let history = browser.text("#history").await;
    for event in ["posted", "locked", "completed"] {
        assert!(
            history.contains(event),
            "no `{event}` in the history:\n{history}"
        );
    }
    // Filters hold through the live refresh (the script asks with the page's query).
    let rows = "return document.querySelectorAll('#jobs tbody tr').length;";
    for (query, expected) in [
        ("type=discovery", 1),
        ("state=Failed", 0),
        ("agent=agent-1", 5),
    ] {
        browser.open(&format!("{base}/console/jobs?{query}")).await;
        browser.wait_for_text("#live", "live ·").await;
        assert_eq!(browser.script(rows).await, json!(expected), "{query}");
    }
    browser.open(&format!("{base}/console/agents")).await;
    let poll = browser
        .text("tr[data-agent-id=\"agent-1\"] td.last-poll")
        .await;
    assert!(poll.starts_with("20"), "a last poll: {poll}");
    let completed = browser
        .text("tr[data-agent-id=\"agent-1\"] td:nth-child(4)")
        .await;
    assert_eq!(completed, "5", "the discovery and four thumbnails");
    browser.screenshot("agents").await;

    browser.open(&format!("{base}/console/jobs")).await;
    browser.find(&state_cell).await;
    browser.screenshot("jobs").await;
    browser.close().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_devices_grid_loads_every_thumbnail_and_shows_a_script_name_as_text() {
    let hostile = "<script>window.corralInjected = 1</script>Dock <img src=x onerror=\"window.corralInjected = 2\">";
    let mut sim = SimConfig::with_devices(8);
    sim.devices[2].name = hostile.to_string();
    let world = World::start(RegistryConfig::default(), sim).await;
    let agent = world.agent(world.config());
    let discovery = world.post(vec![world.job("discovery", None)]).await;
    world.wait_final(&discovery, Duration::from_secs(60)).await;
    let thumbnails = world.post_thumbnails(8).await;
    let jobs = world.wait_final(&thumbnails, Duration::from_secs(60)).await;
    assert!(jobs.iter().all(|job| job.state == "Completed"), "{jobs:#?}");
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = world.registry.running.base_url();
    browser.sign_in_as_admin(&world.registry).await;
    browser.open(&format!("{base}/console/devices")).await;

    let cards = browser
        .client
        .find_all(Locator::Css("article.device"))
        .await
        .expect("cards");
    assert_eq!(cards.len(), 8);
    let widths = browser
        .async_script(
            "const done = arguments[arguments.length - 1];
             const images = [...document.querySelectorAll('article.device img')];
             Promise.all(images.map(image => image.complete ? null :
                 new Promise(settled => { image.onload = settled; image.onerror = settled; })))
               .then(() => done(images.map(image => image.naturalWidth)));",
            vec![],
        )
        .await;
    let widths: Vec<u64> = serde_json::from_value(widths).expect("widths");
    assert_eq!(widths.len(), 8, "one thumbnail per device");
    assert!(
        widths.iter().all(|width| *width > 0),
        "every thumbnail loaded: {widths:?}"
    );

    let shown = browser
        .text("article[data-device-id=\"cam-0003\"] h2.name")
        .await;
    assert_eq!(shown, hostile, "the name is shown as the characters it is");
    let injected = browser
        .script(
            "return [window.corralInjected === undefined,
                     document.querySelectorAll('main script, main article h2 img').length];",
        )
        .await;
    assert_eq!(
        injected,
        json!([true, 0]),
        "the name's markup never ran nor became elements"
    );
    let position = browser
        .text("article[data-device-id=\"cam-0001\"] .position")
        .await;
    assert!(position.starts_with("45.5"), "{position}");
    browser.screenshot("devices").await;
    browser.close().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_downloads_through_the_job_page_with_the_recorded_sha256() {
    let world = World::start(RegistryConfig::default(), SimConfig::with_devices(8)).await;
    let agent = world.agent(world.config());
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = world.registry.running.base_url();
    browser.sign_in_as_admin(&world.registry).await;
    fill(&browser, "#post-start", "2026-11-20T10:00:00Z").await;
    fill(&browser, "#post-end", "2026-11-20T10:00:20Z").await;
    let job_id = post_from_form(&browser, "mediarequest", "cam-0002").await;
    let jobs = world
        .wait_final(std::slice::from_ref(&job_id), Duration::from_secs(60))
        .await;
    assert_eq!(jobs[0].state, "Completed", "{jobs:#?}");
    let files = jobs[0].files.clone().expect("files");
    assert_eq!(files.len(), 1, "{files:#?}");
    let recorded = files[0].sha256.clone().expect("a committed file's SHA-256");

    browser.open(&format!("{base}/console/jobs/{job_id}")).await;
    assert_eq!(browser.text("#files code.sha256").await, recorded);
    browser.screenshot("job").await;
    let link = browser.find("#files a.download").await;
    let href = link.attr("href").await.expect("href").expect("a link");
    let downloaded = browser
        .async_script(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(answer => answer.arrayBuffer())
               .then(bytes => crypto.subtle.digest('SHA-256', bytes))
               .then(digest => done([...new Uint8Array(digest)]
                   .map(byte => byte.toString(16).padStart(2, '0')).join('')))
               .catch(error => done('failed: ' + error));",
            vec![json!(href)],
        )
        .await;
    let from = corral_tests::unix_millis(
        corral_registry::store::parse_rfc3339("2026-11-20T10:00:00Z").unwrap(),
    );
    let camera = corral_camera_sim::recording::recording(
        "cam-0002",
        world.sim.config().bitrate_bps,
        from,
        from + 20_000,
    );
    let camera_sha = hex(&Sha256::digest(&camera));
    assert_eq!(
        downloaded,
        json!(recorded),
        "the download is the recorded file"
    );
    assert_eq!(recorded, camera_sha, "and the camera's bytes");
    browser.close().await;
    agent.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_form_without_its_csrf_token_or_from_another_origin_is_refused() {
    let registry = TestRegistry::start(RegistryConfig::default()).await;
    registry.add_agent("agent-1").await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let base = registry.running.base_url();
    browser.sign_in_as_admin(&registry).await;
    let csrf = browser
        .find("#post-job input[name=csrf]")
        .await
        .attr("value")
        .await
        .expect("value")
        .expect("a CSRF token");
    browser
        .script("document.querySelector('#post-job input[name=csrf]').remove(); return true;")
        .await;
    submit_post_form(&browser, "thumbnail", "cam-0001").await;
    browser.wait_for_text("body", "CSRF token is missing").await;
    assert!(
        registry
            .running
            .registry()
            .store()
            .transaction(|tx| corral_registry::jobs::list(tx, None, None))
            .await
            .unwrap()
            .is_empty()
    );

    let cookie = format!("corral_console={}", browser.session_cookie().await);
    let fields = "type=thumbnail&agent=agent-1&device=cam-0001";
    let other = if csrf.starts_with('0') { "1" } else { "0" };
    let forged = format!("{fields}&csrf={other}{}", &csrf[1..]);
    let with_token = format!("{fields}&csrf={csrf}");
    let status = form_post(&base, &cookie, fields, None).await;
    assert_eq!(status, 403, "no token");
    let status = form_post(&base, &cookie, &forged, None).await;
    assert_eq!(status, 403, "another token");
    let status = form_post(&base, &cookie, &with_token, Some("http://evil.example")).await;
    assert_eq!(status, 403, "another site");
    let status = form_post(&base, &cookie, &with_token, Some(&base)).await;
    assert_eq!(status, 303, "the same form from the console");
    let form = [("content-type", FORM)];
    let (status, _, _) = raw_with(&base, "POST", "/console/sign-out", &form, vec![]).await;
    assert_eq!(status, 303, "no session: to the sign-in page");
    browser.close().await;
}

const FORM: &str = "application/x-www-form-urlencoded";

/// POSTs the form `body` to `/console/jobs` with the session `cookie`; the status.
async fn form_post(base: &str, cookie: &str, body: &str, origin: Option<&str>) -> u16 {
    let mut headers = vec![("cookie", cookie), ("content-type", FORM)];
    headers.extend(origin.map(|origin| ("origin", origin)));
    raw_with(
        base,
        "POST",
        "/console/jobs",
        &headers,
        body.as_bytes().to_vec(),
    )
    .await
    .0
}

/// GETs `path` with at most one header: (status, headers, body).
async fn get(
    base: &str,
    path: &str,
    header: Option<(&str, &str)>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    raw_with(base, "GET", path, &headers, vec![]).await
}
