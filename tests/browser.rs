//! The operator page in a real browser (issue 11 item 9): Debian's
//! headless Chromium, driven through its chromedriver by WebDriver, against
//! `riskgate demo` with a real Mosquitto in the county's place.
//!
//! An operator logs in, sees the demo's methane power-cut alarm (level 1)
//! in red within the scenario's time, acknowledges it, and sees the page
//! change and the county receive an `acknowledged` event carrying the
//! operator's name (valid against the contract's schema). A viewer sees no
//! acknowledge button and a forged POST is refused with 403, and once the
//! viewer is removed from the users file the open page drops back to its
//! login form (the event stream ends with the session). Screenshots
//! at desktop width and at 360 px go to `test-output/browser/` in the
//! target directory, with the Chinese text drawn in the CJK font from
//! `fonts-noto-cjk`.
//!
//! Chromium missing is a failure that says how to install it (the test
//! command `scripts/test.sh` does), never a silent pass. Every wait polls
//! the page's state with a limit; none sleeps for a fixed time.

mod common;

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use common::{Mosquitto, assert_schema_valid, free_port, subscribe};

/// The demo's rule for methane at the power-cut value: level 1 (red).
const CUT_RULE: &str = "1301-t1-ch4-cut";
/// The page's colour for level 1 (`--red` in page.html).
const RED: &str = "rgb(215, 38, 61)";

/// `test-output/browser` in the target directory this test was built in
/// (the test binary is `TARGET/PROFILE/deps/browser-HASH`).
fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let d = target.join("test-output/browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Debian's chromium and its driver, or a failure saying how to get them.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = |cands: &[&str]| cands.iter().map(PathBuf::from).find(|p| p.exists());
    let chromium = find(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"]);
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        _ => panic!(
            "the browser test needs Debian's chromium and chromium-driver (and fonts-noto-cjk \
             for the Chinese text): `apt-get install chromium chromium-driver fonts-noto-cjk`; \
             scripts/test.sh installs them"
        ),
    }
}

/// One chromedriver on a free port with one headless browser session.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(log: &Path) -> Browser {
        let (chromium, chromedriver) = browser_binaries();
        let port = free_port();
        // Its own process group, so that the browser it starts goes with
        // it when a failed assertion leaves the session open (Drop below).
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                // No network but loopback: nothing that phones home.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        // The driver answers once it listens: polled, with a limit.
        let client = loop {
            let mut b =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            b.capabilities(caps.as_object().unwrap().clone());
            match b.connect(&url).await {
                Ok(c) => break c,
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    panic!("no browser session from chromedriver within 30 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body) and returns its value.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null/false,
    /// at most `limit`; returns that value.
    async fn until(&self, what: &str, limit: Duration, script: &str, args: Vec<Value>) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if start.elapsed() > limit {
                let body = self.js("return document.body.innerText", vec![]).await;
                panic!("timed out after {limit:?} waiting for {what}; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(out_dir().join(name), png).unwrap();
    }

    async fn login(&self, name: &str, password: &str, shown: &str) {
        self.until(
            "the login form",
            Duration::from_secs(15),
            "return !document.getElementById('login').hidden",
            vec![],
        )
        .await;
        self.js(
            "document.getElementById('login-name').value = arguments[0];
             document.getElementById('login-password').value = arguments[1];
             document.querySelector('#login-form button[type=submit]').click();",
            vec![json!(name), json!(password)],
        )
        .await;
        self.until(
            "the user's name in the header",
            Duration::from_secs(15),
            "const u = document.getElementById('user');
             return !u.hidden && document.getElementById('user-name').textContent.includes(arguments[0])",
            vec![json!(shown)],
        )
        .await;
    }

    async fn logout(&self) {
        self.client
            .find(Locator::Id("logout"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until(
            "the login form after logout",
            Duration::from_secs(15),
            "return !document.getElementById('login').hidden",
            vec![],
        )
        .await;
    }

    async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's whole group: chromedriver and any browser left running.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// `riskgate demo` with its banner read: the page's address and the
/// demo accounts it prints.
struct Demo {
    child: Child,
    url: String,
    banner: Vec<String>,
    /// The demo's data directory (its users file is `users.toml` there).
    dir: tempfile::TempDir,
}

impl Demo {
    fn start(broker: &str) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_riskgate"))
            .args(["demo", "--broker", broker, "--http", "127.0.0.1:0"])
            .args(["--duration", "600s", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(out_dir().join("demo.log")).unwrap())
            .spawn()
            .unwrap();
        let mut banner = Vec::new();
        let mut url = None;
        // The banner is printed once the API listens; the pipe ends if the
        // demo dies, which ends this loop too.
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.map_while(Result::ok) {
            if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                url.get_or_insert_with(|| u.to_string());
            }
            let done = line.trim_start().starts_with("scenario");
            banner.push(line);
            if done {
                break;
            }
        }
        let url =
            url.unwrap_or_else(|| panic!("no page address in the demo's banner: {banner:#?}"));
        Demo {
            child,
            url,
            banner,
            dir,
        }
    }

    /// The demo account whose banner line names `role`: (name, password).
    fn account(&self, role: &str) -> (String, String) {
        self.banner
            .iter()
            .filter(|l| l.contains(role))
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let i = w.iter().position(|x| *x == "/")?;
                Some((w.get(i - 1)?.to_string(), w.get(i + 1)?.to_string()))
            })
            .unwrap_or_else(|| panic!("no {role} login in the demo's banner: {:#?}", self.banner))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_acknowledges_in_the_browser_and_a_viewer_cannot() {
    let (_, _) = browser_binaries();
    let broker = Mosquitto::start();
    let mut county = subscribe(
        broker.port,
        "riskgate/v1/demo-coal-01/alarm",
        "browser-county",
    )
    .await;
    let demo = Demo::start(&broker.addr());
    let (op_name, op_password) = demo.account("operator");
    let (viewer_name, viewer_password) = demo.account("viewer");
    let browser = Browser::start(&out_dir().join("chromedriver.log")).await;
    let c = &browser.client;
    c.goto(&demo.url).await.unwrap();

    // Before a login nothing of the site is shown, and not as "no alarm".
    let before = browser
        .until(
            "the login form before a login",
            Duration::from_secs(15),
            "return !document.getElementById('login').hidden && document.getElementById('alarms').textContent",
            vec![],
        )
        .await;
    assert_eq!(before, "请先登录", "the alarm list before a login");
    browser.screenshot("desktop-login.png").await;

    // --- the operator ---
    // The demo's display names, with the role as the page says it.
    browser
        .login(&op_name, &op_password, "值班员 · 操作员")
        .await;
    // The Chinese interface by default, drawn with a CJK font installed.
    let h2 = browser
        .js(
            "return document.querySelector('#alarms-box h2 span').textContent",
            vec![],
        )
        .await;
    assert_eq!(h2, "当前报警");
    // A font that is not installed falls back to the generic family, so
    // the text measures the same with and without it in front.
    let cjk = browser
        .js(
            "const c = document.createElement('canvas').getContext('2d');
             const w = f => { c.font = f; return c.measureText('当前报警 mmmWWWiii 1.5 %').width; };
             return ['monospace', 'serif'].some(g => w('32px \"Noto Sans CJK SC\", ' + g) !== w('32px ' + g))
                 && getComputedStyle(document.body).fontFamily.includes('Noto Sans CJK SC');",
            vec![],
        )
        .await;
    assert_eq!(
        cjk, true,
        "the page names Noto Sans CJK SC and the font (fonts-noto-cjk) is installed"
    );

    // The methane power-cut alarm, red, within the scenario's time (it is
    // raised about 14 s into each 60 s cycle), then acknowledged. The
    // alarm clears at about 30 s: when it went before the click landed,
    // the next cycle raises it again.
    let card = "return document.querySelector(`.alarm[data-rule='${arguments[0]}']:not(.acked)`)";
    let mut acked_id = None;
    let deadline = Instant::now() + Duration::from_secs(150);
    while acked_id.is_none() && Instant::now() < deadline {
        browser
            .until(
                "the raised methane power-cut alarm",
                Duration::from_secs(75),
                card,
                vec![json!(CUT_RULE)],
            )
            .await;
        let look = browser
            .js(
                "const a = document.querySelector(`.alarm[data-rule='${arguments[0]}']`);
                 if (!a) return null;
                 return { id: a.dataset.id, border: getComputedStyle(a).borderLeftColor,
                          badge: getComputedStyle(a.querySelector('.lvl')).backgroundColor,
                          level: a.querySelector('.lvl').textContent,
                          button: !!a.querySelector('button.ack') };",
                vec![json!(CUT_RULE)],
            )
            .await;
        if look.is_null() {
            continue; // cleared between the two looks
        }
        assert_eq!(look["border"], RED, "{look}");
        assert_eq!(look["badge"], RED, "{look}");
        assert_eq!(look["level"], "红 1", "{look}");
        assert_eq!(
            look["button"], true,
            "an operator has the acknowledge button: {look}"
        );
        browser.screenshot("desktop-operator-alarm.png").await;
        let id = look["id"].as_str().unwrap().to_string();
        browser
            .js(
                "const b = document.querySelector(`.alarm[data-id='${arguments[0]}'] button.ack`); if (b) b.click();",
                vec![json!(id)],
            )
            .await;
        // Acknowledged on the page (through the stream), or gone (cleared
        // first): the first means done.
        let state = browser
            .until(
                "the alarm acknowledged or cleared on the page",
                Duration::from_secs(20),
                "const a = document.querySelector(`.alarm[data-id='${arguments[0]}']`);
                 if (!a) return 'gone';
                 return a.classList.contains('acked') ? a.querySelector('.state').textContent : null;",
                vec![json!(id)],
            )
            .await;
        if state != "gone" {
            let s = state.as_str().unwrap();
            assert!(s.contains("已确认") && s.contains(&op_name), "{s}");
            acked_id = Some(id);
        }
    }
    let acked_id = acked_id.expect("the methane alarm acknowledged within 150 s");
    // All of it came over the event stream: the page asked for no state.
    let polled = browser
        .js(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
                .filter(p => ['/api/state', '/api/alarms', '/api/points'].includes(p))",
            vec![],
        )
        .await;
    assert_eq!(polled, json!([]), "the page polls nothing");
    browser.screenshot("desktop-operator-acked.png").await;

    // The county has the acknowledgement, with the operator's name.
    county
        .until("the acknowledged event", Duration::from_secs(30), |s| {
            s.alarms()
                .iter()
                .any(|a| a["alarm_id"] == acked_id.as_str() && a["state"] == "acknowledged")
        })
        .await;
    let ev = county
        .alarms()
        .into_iter()
        .find(|a| a["alarm_id"] == acked_id.as_str() && a["state"] == "acknowledged")
        .cloned()
        .unwrap();
    assert_schema_valid("alarm-event.schema.json", &ev);
    assert_eq!(ev["acked_by"], op_name.as_str(), "{ev}");

    // A phone: 360 px wide, nothing wider than the screen.
    c.set_window_size(360, 780).await.unwrap();
    let fits = browser
        .until(
            "the page laid out at 360 px",
            Duration::from_secs(10),
            "return window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await;
    assert_eq!(fits, true);
    browser.screenshot("phone-360-operator.png").await;

    // English on request, remembered across a reload.
    c.find(Locator::Id("lang"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.refresh().await.unwrap();
    browser
        .until(
            "the English page after a reload",
            Duration::from_secs(15),
            "return document.querySelector('#alarms-box h2 span').textContent === 'Active alarms'",
            vec![],
        )
        .await;
    browser.screenshot("phone-360-english.png").await;
    c.find(Locator::Id("lang"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.set_window_size(1280, 900).await.unwrap();
    browser.logout().await;

    // --- the viewer ---
    browser
        .login(&viewer_name, &viewer_password, "观察员 · 查看员")
        .await;
    // Any alarm on the list (the acknowledged one stays while its
    // condition holds; the video interlock and others come and go): with
    // one shown, the missing button means something.
    let any = "return document.querySelectorAll('.alarm').length > 0 && document.querySelector('.alarm').dataset.id";
    let shown = browser
        .until(
            "an alarm shown to the viewer",
            Duration::from_secs(75),
            any,
            vec![],
        )
        .await;
    let buttons = browser
        .js(
            "return document.querySelectorAll('button.ack').length",
            vec![],
        )
        .await;
    assert_eq!(buttons, 0, "a viewer has no acknowledge button");
    browser.screenshot("desktop-viewer.png").await;
    // A forged acknowledgement from the viewer's own session.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/alarms/ack', {method: 'POST', headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({alarm_id: arguments[0]}), credentials: 'same-origin'})
               .then(r => done(r.status), e => done(String(e)));",
            vec![shown],
        )
        .await
        .unwrap();
    assert_eq!(status, 403, "a viewer's acknowledgement is refused");

    // The viewer removed from the users file while the page is open: the
    // stream ends with the session, and the page asks for a login again
    // and shows nothing of the site.
    riskgate::auth::cli::remove(&demo.dir.path().join("users.toml"), &viewer_name).unwrap();
    let after = browser
        .until(
            "the login form once the session ended",
            Duration::from_secs(15),
            "return !document.getElementById('login').hidden
                && document.querySelectorAll('.alarm').length === 0
                && document.getElementById('alarms').textContent",
            vec![],
        )
        .await;
    assert_eq!(after, "请先登录");

    browser.stop().await;
    drop(demo);
}
