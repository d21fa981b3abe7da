//! The responders' console in a real browser: headless Chromium, driven over WebDriver by
//! chromedriver, against the real `cordon` binary. A responder signs in, finds a Mac by its
//! address, isolates it (checked with a real DNS query), sees it listed, explains a name, and
//! releases it; an admin approves a critical device's isolation; a viewer gets no buttons, and
//! forged or cross-site posts change nothing. Each page's screenshot is written under
//! `target/tmp/console/` for a reviewer (and for docs/console.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{
    blocked_from, checkin, free_port, http_json, send_raw, start_upstream, webhook, Binary, ADMIN,
    RESPONDER, VIEWER,
};

/// A device name no page may run as HTML.
const XSS: &str = "<img src=x onerror=alert(1)>";
/// The Mac's own address: its binding, and where the test's DNS queries come from.
const MAC: [u8; 4] = [127, 0, 0, 42];

/// chromedriver on a free port, and the browser session it drives. Killed when dropped.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn start(http: SocketAddr) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let profile = tempfile::tempdir().unwrap();
        // As the machine's notes say: no sandbox as root, and none of Chromium's own traffic.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1100",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{port}");
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client: client.expect("a WebDriver session with headless Chromium"),
            driver,
            _profile: profile,
            base: format!("http://{http}"),
            shots,
        }
    }

    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    async fn text(&self, css: &str) -> String {
        let found = self.client.find(Locator::Css(css)).await;
        found
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks what `locator` finds, and waits for the page it leads to: every click here
    /// follows a link or sends a form, and WebDriver does not always wait for a form's answer.
    async fn follow(&self, locator: Locator<'_>) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        let found = self.client.find(locator).await;
        found
            .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
            .click()
            .await
            .unwrap();
        self.replaced(old).await;
    }

    /// Waits until the page whose root is `old` has gone.
    async fn replaced(&self, old: Element) {
        for _ in 0..400 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no new page came");
    }

    async fn click(&self, css: &str) {
        self.follow(Locator::Css(css)).await;
    }

    async fn click_link(&self, text: &str) {
        self.follow(Locator::LinkText(text)).await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, token: &str) {
        self.open("/console").await;
        assert_eq!(self.path().await, "/console/sign-in");
        self.fill("#token", token).await;
        self.click("form.card button[type=submit]").await;
        let page = self.text("body").await;
        assert_eq!(self.path().await, "/console/isolations", "{page}");
    }

    async fn sign_out(&self) {
        self.click("form.who button").await;
        let page = self.text("body").await;
        assert_eq!(self.path().await, "/console/sign-in", "{page}");
    }

    /// The session cookie the browser holds.
    async fn session(&self) -> String {
        let cookie = self
            .client
            .get_named_cookie("cordon_console")
            .await
            .unwrap();
        assert!(cookie.http_only().unwrap_or(false), "{cookie:?}");
        format!("cordon_console={}", cookie.value())
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A form POST with `cookie` and, if given, an `Origin`: the status and the whole answer.
async fn post_form(
    http: SocketAddr,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: &str,
) -> (u16, String) {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nCookie: {cookie}\r\n{origin}\
         Content-Type: application/x-www-form-urlencoded\r\n"
    );
    send_raw(http, &head, body).await
}

/// The CSRF token in a page's forms.
async fn csrf(browser: &Browser) -> String {
    let field = browser
        .client
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap();
    field.attr("value").await.unwrap().unwrap()
}

async fn isolated(cordon: &Binary) -> bool {
    blocked_from(cordon.dns, MAC).await
}

#[tokio::test]
async fn a_responder_isolates_and_releases_a_mac_from_the_console() {
    let upstream = start_upstream().await;
    let cordon = Binary::start(upstream.addr, "").await;
    let name = format!("\"deviceName\":\"{XSS}\"");
    let body = checkin("127.0.0.42").replace("\"deviceName\":\"FIN-MBP-0142\"", &name);
    assert_eq!(webhook(cordon.http, &body).await.0, 200);
    assert!(!isolated(&cordon).await, "free before the test isolates it");

    let browser = Browser::start(cordon.http).await;
    browser.open("/console/isolations").await;
    assert_eq!(
        browser.path().await,
        "/console/sign-in",
        "signed out: sign in first"
    );
    browser.shot("sign-in").await;
    browser.fill("#token", "not-a-token").await;
    browser.click("form.card button[type=submit]").await;
    assert!(browser
        .text("p.error")
        .await
        .contains("not one of this server's"));

    // Keyboard only: the token field has the focus, Enter sends it; then Tab reaches the
    // "Skip to content" link first.
    browser.open("/console/sign-in").await;
    let focused = browser.client.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("token"));
    let old = browser.client.find(Locator::Css("html")).await.unwrap();
    focused
        .send_keys(&format!("{RESPONDER}\u{E007}"))
        .await
        .unwrap();
    browser.replaced(old).await;
    assert_eq!(browser.path().await, "/console/isolations");
    let body = browser.client.find(Locator::Css("body")).await.unwrap();
    body.send_keys("\u{E004}").await.unwrap();
    let first = browser.client.active_element().await.unwrap();
    assert_eq!(first.text().await.unwrap(), "Skip to content");
    assert!(browser.text("header form.who").await.contains("responder"));
    let cookie = browser.session().await;

    // Found by its address; its name is text, never markup.
    browser.fill("#q", "127.0.0.42").await;
    browser.click("header form.search button").await;
    assert_eq!(browser.text("main td a").await, XSS);
    assert_eq!(browser.count("main img").await, 0, "the name ran as HTML");
    // Serials as the MDM reported them, found in any case.
    assert!(browser.text("main").await.contains("serial:C02ZK1ABMD6T"));
    browser.open("/console/devices?q=c02zk1abmd6t").await;
    assert_eq!(browser.text("main td a").await, XSS);
    browser.shot("search").await;

    browser.click("main td a").await;
    assert_eq!(browser.text("h1").await, XSS);
    assert_eq!(browser.count("img").await, 0);
    browser.click_link("Isolate…").await;
    assert!(browser.path().await.starts_with("/console/isolate?device="));
    browser.fill("#reason", "EDR: credential theft").await;
    browser.fill("#ticket", "IR-77").await;
    browser.shot("isolate-confirm").await;
    browser.click("button.danger").await;
    assert!(browser.path().await.starts_with("/console/device?id="));
    assert!(browser
        .text("main dl")
        .await
        .contains("EDR: credential theft"));
    assert!(
        isolated(&cordon).await,
        "a real DNS query from the Mac is blocked"
    );

    // The Mac's blocked query in its trail, beside the timeline (the trail is written in
    // batches: the page is read again until it shows).
    let mut rows = String::new();
    for _ in 0..50 {
        browser.open(&browser.path().await).await;
        if browser.count("#trail + table").await > 0 {
            rows = browser.text("#trail + table").await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        rows.contains("www.allowed.test") && rows.contains("blocked"),
        "{rows}"
    );
    // Why a name is blocked.
    browser.fill("#name", "www.allowed.test").await;
    browser.click("form.inline button").await;
    let verdict = browser.text(".verdict").await;
    assert!(verdict.contains("www.allowed.test A: block"), "{verdict}");
    assert!(browser
        .text("#timeline + table")
        .await
        .contains("responder"));
    browser.shot("device").await;

    browser.click_link("Isolations").await;
    browser.click_link(XSS).await;
    assert_eq!(browser.text("h1").await, XSS);
    browser.client.back().await.unwrap();
    assert!(browser.text("main table").await.contains("IR-77"));
    browser.shot("isolations").await;

    // A form without the session's CSRF token, or from another site, changes nothing.
    let device = "device=serial%3AC02ZK1ABMD6T&reason=forged";
    let (status, _) = post_form(cordon.http, "/console/release", &cookie, None, device).await;
    assert_eq!(status, 403, "no CSRF token at all");
    let forged = format!("csrf=guess&{device}");
    let (status, page) = post_form(cordon.http, "/console/release", &cookie, None, &forged).await;
    assert_eq!(status, 403, "{page}");
    let token = {
        browser.click_link(XSS).await;
        csrf(&browser).await
    };
    let cross = format!("csrf={token}&{device}");
    let evil = Some("http://evil.example");
    let (status, _) = post_form(cordon.http, "/console/release", &cookie, evil, &cross).await;
    assert_eq!(status, 403);
    // The right token in a body of another type is no form; nor is a body of 2 MB.
    let head = format!(
        "POST /console/release HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\
         Content-Type: application/json\r\n",
        cordon.http
    );
    let (status, page) = send_raw(cordon.http, &head, &cross).await;
    assert_eq!(status, 415, "{page}");
    assert!(page.contains("application/x-www-form-urlencoded"), "{page}");
    let huge = format!("{cross}&pad={}", "x".repeat(2 << 20));
    let (status, _) = post_form(cordon.http, "/console/release", &cookie, None, &huge).await;
    assert_eq!(status, 413);
    assert!(
        isolated(&cordon).await,
        "still isolated after the forged posts"
    );

    browser.click_link("Release…").await;
    browser.fill("#reason", "reimaged").await;
    browser.click("button.danger").await;
    assert!(browser.text("main dl").await.contains("free"));
    assert!(!isolated(&cordon).await, "released: the Mac resolves again");
    let timeline = browser.text("#timeline + table").await;
    assert!(
        timeline.contains("released") && timeline.contains("reimaged"),
        "{timeline}"
    );

    browser.click_link("Fleet").await;
    assert!(browser.text("main").await.contains("Devices per group"));
    browser.shot("fleet").await;
    browser.sign_out().await;
    // The old cookie opens nothing any more.
    let (status, _) = post_form(cordon.http, "/console/release", &cookie, None, &cross).await;
    assert_eq!(status, 303, "signed out: sent to the sign-in page");
    browser.close().await;
}

#[tokio::test]
async fn an_admin_approves_a_critical_isolation_and_a_viewer_gets_no_buttons() {
    let upstream = start_upstream().await;
    let cordon = Binary::start(upstream.addr, "").await;
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.42")).await.0, 200);
    let critical = r#"{"critical": true}"#;
    let path = "/v1/devices/serial:C02ZK1ABMD6T/critical";
    assert_eq!(
        http_json(cordon.http, "PUT", path, Some(ADMIN), critical)
            .await
            .0,
        200
    );

    let browser = Browser::start(cordon.http).await;
    browser.sign_in(RESPONDER).await;
    browser
        .open("/console/isolate?device=serial:C02ZK1ABMD6T")
        .await;
    browser.fill("#reason", "phishing click").await;
    browser.click("button.danger").await;
    assert!(browser
        .text("main")
        .await
        .contains("waiting for a second admin"));
    assert!(!isolated(&cordon).await, "not until approved");
    browser.sign_out().await;

    browser.sign_in(ADMIN).await;
    browser.click_link("Approvals").await;
    assert!(browser.text("main table").await.contains("phishing click"));
    browser.shot("approvals").await;
    browser.click_link("Approve…").await;
    browser.click("button.danger").await;
    assert!(browser.text("main dl").await.contains("isolated"));
    assert!(isolated(&cordon).await, "approved: isolated");
    browser.sign_out().await;

    browser.sign_in(VIEWER).await;
    browser.open("/console/devices?q=C02ZK1ABMD6T").await;
    browser.click("main td a").await;
    assert_eq!(
        browser.count("a.button").await,
        0,
        "a viewer sees no action"
    );
    browser.shot("device-viewer").await;
    browser
        .open("/console/release?device=serial:C02ZK1ABMD6T")
        .await;
    assert!(browser
        .text("main")
        .await
        .contains("needs the responder role"));
    // Even with its own CSRF token, a viewer's post is refused.
    let cookie = browser.session().await;
    browser.open("/console/isolations").await;
    let token = csrf(&browser).await;
    let form = format!("csrf={token}&device=serial%3AC02ZK1ABMD6T&reason=nope");
    let (status, page) = post_form(cordon.http, "/console/release", &cookie, None, &form).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("default-src 'none'"),
        "the CSP header: {page}"
    );
    assert!(isolated(&cordon).await, "still isolated");
    browser.close().await;
}
