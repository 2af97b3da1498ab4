//! `killswitch console` end to end: a real etcd, a real TLS replica, demo collector
//! processes and SDK collectors, the real `killswitch console` process, and the pages
//! driven in headless Chromium through chromedriver (both from Debian, installed by
//! `ops/scripts/setup.sh`).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{DEADLINE, TlsPlane, run};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use killswitch_testkit::{http_raw, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PREFIX: &str = "/killswitch/v1";

/// etcd, one TLS replica, the PKI (alice admin, bob responder) and the program `demo`,
/// running.
async fn plane() -> TlsPlane {
    let plane = TlsPlane::start(1, 4).await;
    plane
        .json(&["program", "create", "demo", "--owner", "data-team"])
        .await;
    plane
        .json(&["resume", "demo", "--reason", "collecting"])
        .await;
    plane
}

/// What an admin call changes in etcd: programs, states, audit, approvals.
async fn admin_state(plane: &TlsPlane) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for part in ["/programs/", "/state/", "/audit/", "/approvals/"] {
        all.extend(
            plane
                .etcd
                .dump(&format!("{PREFIX}{part}"))
                .await
                .expect("dump etcd"),
        );
    }
    all
}

/// `killswitch console` as `operator` on a free loopback port.
async fn console(plane: &TlsPlane, operator: &str) -> ConsoleProcess {
    let mut command = plane.cli_as(operator);
    command.args(["console", "--listen", "127.0.0.1:0"]);
    ConsoleProcess::start(command).await
}

/// A running `killswitch console`, killed when dropped.
struct ConsoleProcess {
    _child: Child,
    url: String,
}

impl ConsoleProcess {
    /// Starts `command` and reads the URL from its first line.
    async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start killswitch console");
        let stdout = child.stdout.take().expect("console stdout");
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the console prints its URL")
            .expect("read the console's stdout");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        Self { _child: child, url }
    }

    /// `host:port`.
    fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

/// Headless Chromium through chromedriver; both stop when dropped.
struct Browser {
    client: Client,
    _driver: Child,
}

impl Browser {
    async fn start() -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "start chromedriver (Debian's chromium-driver; ops/scripts/setup.sh installs it)",
            );
        let mut lines = BufReader::new(driver.stdout.take().expect("chromedriver stdout")).lines();
        let port = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("read chromedriver") {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().expect("port");
                }
            }
            panic!("chromedriver ended without starting");
        })
        .await
        .expect("chromedriver starts");
        // Keep reading its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromedriver session");
        Self {
            client,
            _driver: driver,
        }
    }

    /// The text of the first element `css` selects. The live page replaces elements as
    /// statuses arrive, so one found may be gone before its text is read: then it is
    /// looked up again.
    async fn text(&self, css: &str) -> String {
        let read = async {
            loop {
                if let Ok(element) = self.client.find(Locator::Css(css)).await {
                    if let Ok(text) = element.text().await {
                        return text;
                    }
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .unwrap_or_else(|_| panic!("no text for {css} within {DEADLINE:?}"))
    }

    /// Opens `url`.
    async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element with this id.
    async fn element(&self, id: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
    }

    /// Runs `script` (a function body) in the page.
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the text of `css` is `expected`.
    async fn until_text(&self, css: &str, expected: &str) {
        let what = format!("{css} to read {expected:?}");
        wait_until(DEADLINE, &what, || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.is_ok_and(|text| text == expected),
                Err(_) => false,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// `fetch(url, {method: "POST", ...})` from the page: the status and the JSON answer.
    async fn post(&self, url: &str, body: &str, csrf: Option<&str>) -> (u16, Value) {
        let headers = match csrf {
            Some(token) => json!({"Content-Type": "application/x-www-form-urlencoded",
                                  "X-CSRF-Token": token}),
            None => json!({"Content-Type": "application/x-www-form-urlencoded"}),
        };
        let script = format!(
            "const done = arguments[arguments.length - 1];
             fetch({url}, {{method: 'POST', headers: {headers}, body: {body}}})
               .then(async r => done([r.status, await r.json()]))
               .catch(e => done([0, String(e)]));",
            url = json!(url),
            body = json!(body),
        );
        let answer = self
            .client
            .execute_async(&script, Vec::new())
            .await
            .expect("fetch from the page");
        let status = answer[0].as_u64().expect("status") as u16;
        (status, answer[1].clone())
    }

    async fn close(self) {
        self.client.close().await.expect("close the browser");
    }
}

/// The counts the program page shows.
async fn page_counts(browser: &Browser) -> Value {
    let mut counts = serde_json::Map::new();
    for field in ["connected", "acked", "pending", "errored", "generation"] {
        let text = browser
            .text(&format!("main [data-field=\"{field}\"]"))
            .await;
        counts.insert(
            field.to_owned(),
            json!(
                text.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{field}: {text:?}"))
            ),
        );
    }
    Value::Object(counts)
}

/// The same counts from `status --output json`.
fn status_counts(status: &Value) -> Value {
    let c = &status["collectors"];
    json!({
        "connected": c["connected"],
        "acked": c["acked"],
        "pending": c["pending_count"],
        "errored": c["errored_count"],
        "generation": status["generation"],
    })
}

/// Where the test's screenshots go (`target/tmp/console/`), kept as artifacts.
fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

/// The program page shows what `status --output json` shows; a pause run from the CLI
/// appears on the open page within a second and its acknowledged count reaches the
/// collectors' total without a reload; the page fits 1,280 px and a phone's width.
#[tokio::test]
async fn the_program_page_follows_a_cli_pause_live() {
    let plane = plane().await;
    let _collectors = [
        plane.process(1, "emea"),
        plane.process(2, "emea"),
        plane.process(3, "us"),
    ];
    let running = plane
        .status_until("three collectors running", |s| {
            s["collectors"]["acked"] == 3
        })
        .await;
    let console = console(&plane, "bob").await;
    let browser = Browser::start().await;

    // The list of programs.
    browser.open(&console.url).await;
    let row = "tr[data-program=\"demo\"]";
    assert_eq!(browser.text(&format!("{row} .badge")).await, "RUNNING");
    assert_eq!(
        browser
            .text(&format!("{row} [data-field=\"generation\"]"))
            .await,
        running["generation"].to_string()
    );

    // One program, live.
    browser
        .open(&format!("{}/programs/demo", console.url))
        .await;
    assert_eq!(page_counts(&browser).await, status_counts(&running));
    // Set a mark a reload would wipe.
    browser.eval("window.noReload = true; return true;").await;

    let (code, _, stderr) = plane
        .cli(&["pause", "demo", "--reason", "leak", "--incident", "INC-9"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let committed = Instant::now();
    let paused = plane.json(&["status", "demo"]).await;
    let generation = paused["generation"].to_string();
    // The bound: the pause shows within one second of the CLI returning.
    loop {
        let shown = browser.text("main [data-field=\"generation\"]").await;
        if shown == generation {
            break;
        }
        assert!(
            committed.elapsed() < Duration::from_secs(1),
            "the page still shows generation {shown}, not {generation}, 1 s after the pause"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser.until_text("main h1 .badge", "PAUSED").await;
    browser.until_text("main [data-field=\"acked\"]", "3").await;
    assert_eq!(
        browser.eval("return window.noReload === true;").await,
        json!(true),
        "the page reloaded"
    );
    let settled = plane
        .status_until("all three acknowledged", |s| {
            s["collectors"]["acked"] == 3 && s["generation"] == paused["generation"]
        })
        .await;
    assert_eq!(page_counts(&browser).await, status_counts(&settled));
    let curve_points = browser
        .eval("return document.querySelectorAll('#curve polyline').length;")
        .await;
    assert_eq!(curve_points, json!(1), "the confirmation curve is drawn");
    std::fs::write(
        artifact("program-paused.png"),
        browser.client.screenshot().await.expect("screenshot"),
    )
    .expect("save the screenshot");

    // Readable without sideways scrolling at 1,280 px and at a phone's 390 px.
    for (width, height) in [(1280, 900), (390, 844)] {
        browser
            .client
            .set_window_size(width, height)
            .await
            .expect("resize");
        let overflow = browser
            .eval(
                "return document.documentElement.scrollWidth - \
                 document.documentElement.clientWidth;",
            )
            .await;
        assert!(
            overflow.as_i64().expect("a number") <= 0,
            "the page scrolls sideways by {overflow} px at {width} px"
        );
    }
    browser.close().await;
}

/// A responder sees resume disabled with the role it needs; a resume forced past the
/// page is refused by the control plane (its words shown) and etcd is unchanged; a change
/// without the CSRF token is refused before it reaches the control plane.
#[tokio::test]
async fn a_responder_cannot_resume_and_changes_need_the_csrf_token() {
    let plane = plane().await;
    plane.json(&["pause", "demo", "--reason", "leak"]).await;
    let console = console(&plane, "bob").await;
    let browser = Browser::start().await;
    browser
        .open(&format!("{}/programs/demo", console.url))
        .await;

    assert_eq!(browser.text("#role").await, "responder");
    let resume = browser
        .client
        .find(Locator::Id("resume-button"))
        .await
        .expect("the resume button");
    assert!(
        !resume.is_enabled().await.expect("enabled?"),
        "resume is enabled for a responder"
    );
    assert!(
        browser
            .text("#resume-needs")
            .await
            .contains("needs role owner"),
        "{}",
        browser.text("#resume-needs").await
    );
    let pause = browser
        .client
        .find(Locator::Id("pause-button"))
        .await
        .expect("the pause button");
    assert!(pause.is_enabled().await.expect("enabled?"));

    let csrf = browser
        .eval("return document.querySelector('meta[name=\"csrf-token\"]').content;")
        .await;
    let csrf = csrf.as_str().expect("the page's CSRF token").to_owned();
    let before = admin_state(&plane).await;
    let (status, answer) = browser
        .post("/programs/demo/resume", "reason=forced", Some(&csrf))
        .await;
    assert_eq!(status, 403, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("needs role owner"), "{answer}");
    assert_eq!(
        admin_state(&plane).await,
        before,
        "a refused resume changed etcd"
    );

    // Without the token (and with a wrong one): refused, nothing sent on.
    for token in [None, Some("not-the-token")] {
        let (status, answer) = browser
            .post("/programs/demo/pause", "reason=no+token", token)
            .await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("CSRF"),
            "{answer}"
        );
    }
    // Resumed by nobody, paused again by nobody.
    assert_eq!(
        admin_state(&plane).await,
        before,
        "a request without CSRF token changed etcd"
    );
    browser.close().await;
}

/// A pause made on the page, with a selector checked as it is typed, reaches the matching
/// collectors (hook run, gate closed), leaves the others collecting, and is audited under
/// the operator who runs the console.
#[tokio::test]
async fn a_pause_made_on_the_page_reaches_the_collectors_and_is_audited() {
    let plane = plane().await;
    let emea = plane.collector(1, "emea", 0);
    let us = plane.collector(2, "us", 0);
    plane
        .status_until("two collectors running", |s| s["collectors"]["acked"] == 2)
        .await;
    // Either may have paused for the initial PAUSED state (a replica cache behind the resume).
    let (emea_pauses, us_pauses) = (emea.pauses(), us.pauses());
    let console = console(&plane, "bob").await;
    let browser = Browser::start().await;
    browser
        .open(&format!("{}/programs/demo", console.url))
        .await;

    browser
        .client
        .find(Locator::Id("pause-button"))
        .await
        .expect("pause button")
        .click()
        .await
        .expect("open the pause dialog");
    browser
        .element("pause-reason")
        .await
        .send_keys("leak found on the page")
        .await
        .expect("type the reason");
    browser
        .element("pause-incident")
        .await
        .send_keys("INC-42")
        .await
        .expect("type the incident");
    let selector = browser.element("pause-selector").await;
    selector
        .send_keys("region in (emea")
        .await
        .expect("type a broken selector");
    wait_until(DEADLINE, "the selector to be flagged", || async {
        browser.text("#pause-selector-check").await.contains('^')
    })
    .await
    .expect("the caret under the broken selector");
    assert!(
        !browser
            .element("pause-confirm")
            .await
            .is_enabled()
            .await
            .expect("enabled?"),
        "a broken selector can be sent"
    );
    selector.send_keys(")").await.expect("finish the selector");
    wait_until(DEADLINE, "the selector to be accepted", || async {
        browser
            .text("#pause-selector-check")
            .await
            .starts_with("valid")
    })
    .await
    .expect("the fixed selector accepted");
    browser
        .element("pause-confirm")
        .await
        .click()
        .await
        .expect("confirm the pause");
    wait_until(DEADLINE, "the page to confirm the pause", || async {
        browser.text("#toast").await.starts_with("Paused demo")
    })
    .await
    .unwrap_or_else(|_| panic!("no confirmation; toast: {}", "timed out"));

    common::until("the emea collector to pause", || {
        !emea.gate("demo").is_active() && emea.pauses() == emea_pauses + 1
    })
    .await;
    // emea's pause says nothing of us: wait until us has applied the same generation.
    let paused = plane.json(&["status", "demo"]).await;
    let generation = paused["generation"].as_u64().expect("generation");
    common::until("the us collector to apply the pause", || {
        us.applied("demo") == Some(generation)
    })
    .await;
    assert!(us.gate("demo").is_active(), "the us collector paused too");
    assert_eq!(us.pauses(), us_pauses);

    let audit = plane.json(&["audit", "--program", "demo"]).await;
    let last = audit
        .as_array()
        .and_then(|entries| entries.last())
        .cloned()
        .expect("an audit entry");
    assert_eq!(last["actor"], "bob", "{last}");
    assert_eq!(last["action"], "pause", "{last}");
    assert_eq!(last["reason"], "leak found on the page", "{last}");
    assert_eq!(last["incident_id"], "INC-42", "{last}");

    // The audit page, filtered, and the incident's report.
    browser
        .open(&format!("{}/audit?actor=bob&incident=INC-42", console.url))
        .await;
    let rows = browser
        .client
        .find_all(Locator::Css("#audit tbody tr"))
        .await
        .expect("audit rows");
    assert_eq!(rows.len(), 1, "one pause by bob in INC-42");
    assert_eq!(
        browser
            .text("#audit tbody tr [data-field=\"action\"]")
            .await,
        "pause"
    );
    browser
        .open(&format!("{}/report?incident=INC-42", console.url))
        .await;
    let title = browser.text("h1").await;
    assert!(title.contains("INC-42"), "{title}");
    let evidence = browser
        .eval("return document.getElementById('evidence') !== null;")
        .await;
    assert_eq!(evidence, json!(true), "the report embeds its evidence");
    browser.close().await;
}

/// One raw HTTP/1.1 request to `authority`: the status code and the whole response.
async fn http(authority: &str, request: &str) -> (u16, String) {
    let addr = authority.parse().expect("the console's address");
    let (code, head, body) = http_raw(addr, request).await.expect("an HTTP exchange");
    (code, format!("{head}\r\n\r\n{body}"))
}

/// A console on another address needs --allow-remote, then its access token; a loopback
/// console answers only requests addressed to itself.
#[tokio::test]
async fn the_console_refuses_requests_it_cannot_trust() {
    let plane = plane().await;
    let mut refused = plane.cli_as("bob");
    refused.args(["console", "--listen", "0.0.0.0:0"]);
    let (code, _, stderr) = run(refused).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");

    let mut command = plane.cli_as("bob");
    command.args(["console", "--listen", "0.0.0.0:0", "--allow-remote"]);
    let remote = ConsoleProcess::start(command).await;
    let (authority, token) = remote
        .authority()
        .split_once("/?token=")
        .expect("a URL with the access token");
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\n{extra}Connection: close\r\n\r\n")
    };
    let (code, _) = http(authority, &get("/", "")).await;
    assert_eq!(code, 401);
    let (code, _) = http(authority, &get("/?token=wrong", "")).await;
    assert_eq!(code, 401);
    let (code, response) = http(authority, &get(&format!("/?token={token}"), "")).await;
    assert_eq!(code, 303, "{response}");
    assert!(response.contains("HttpOnly; SameSite=Strict"), "{response}");
    let cookie = format!("Cookie: killswitch_console={token}\r\n");
    let (code, response) = http(authority, &get("/", &cookie)).await;
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("tr data-program=\"demo\""), "{response}");

    let local = console(&plane, "bob").await;
    let rebound = format!(
        "GET / HTTP/1.1\r\nHost: attacker.example:{}\r\nConnection: close\r\n\r\n",
        local.authority().rsplit(':').next().expect("port")
    );
    let (code, _) = http(local.authority(), &rebound).await;
    assert_eq!(code, 421);
    let (code, response) = http(
        local.authority(),
        &format!(
            "POST /stop-all HTTP/1.1\r\nHost: {}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: 8\r\nConnection: \
             close\r\n\r\nreason=x",
            local.authority()
        ),
    )
    .await;
    assert_eq!(code, 403, "{response}");
    assert!(response.contains("CSRF"), "{response}");
}
