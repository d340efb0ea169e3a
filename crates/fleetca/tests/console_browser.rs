//! The web console in real browsers: headless Chromium (chromedriver) and headless Firefox
//! (geckodriver), each driven over WebDriver (fantoccini) through the same scenario against
//! `fleetca serve --admin-listen` with devices enrolled over EST. An operator signs in, reads
//! the expiry chart's numbers against what was enrolled, finds a device, approves a waiting
//! request (the device's next EST poll gets its certificate), revokes a certificate (OCSP
//! answers revoked); a forged form without the CSRF token changes nothing; a viewer sees no
//! action and is refused server-side; sign-out ends the session. The Chromium run writes the
//! screenshots the README shows (docs/console/).
//!
//! Without a browser or its driver the test says so and skips, except under CI=true
//! (.ci/run installs Debian's `chromium`, `chromium-driver` and `firefox-esr`, and builds
//! geckodriver from crates.io into `target/geckodriver`, found through `FLEETCA_GECKODRIVER`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Serials whose operational enrollment waits for an operator.
const WAITING_PREFIX: &str = "WAIT-";
const PASSWORD: &str = "correct horse battery staple";

fn server() -> Server {
    Server::spawn_with(
        Server::prepare(|config| {
            *config = config.replacen(
                "[profiles.operational]\n",
                &format!(
                    "[profiles.operational]\nmanual_approval = \"request.serial_number.startsWith('{WAITING_PREFIX}')\"\n"
                ),
                1,
            );
            // A second operational profile, `sensor`, at /.well-known/est/sensors/.
            let start = config.find("[profiles.operational]\n").unwrap();
            let end = start + config[start..].find("\n[").unwrap() + 1;
            let sensor =
                config[start..end].replacen("[profiles.operational]", "[profiles.sensor]", 1);
            config.push_str(&format!("\n{sensor}"));
            *config = config.replacen("# sensors = \"operational\"", "sensors = \"sensor\"", 1);
        }),
        Vec::new(),
        &["--admin-listen", "127.0.0.1:0"],
    )
}

fn add_user(server: &Server, name: &str, role: &str) {
    let mut child = Command::new(fleetca_bin())
        .args([
            "admin",
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--data-dir",
        ])
        .arg(server.data())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A device with its birth certificate and a first operational enrollment; returns the
/// EST answer's status, the birth (cert, key) and the CSR file (for the next poll).
fn first_contact(server: &Server, serial: &str) -> (u16, (PathBuf, PathBuf), PathBuf) {
    first_contact_at(server, "simpleenroll", serial)
}

/// [`first_contact`] at an EST path (`sensors/simpleenroll` for the `sensor` profile).
fn first_contact_at(server: &Server, op: &str, serial: &str) -> (u16, (PathBuf, PathBuf), PathBuf) {
    let (birth_key, birth_cert) = birth(server, serial);
    let key = server.work(&format!("{serial}.key"));
    let csr = server.work(&format!("{serial}.csr.b64"));
    new_key(&key);
    new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
    let a = post_csr(
        server,
        op,
        Some((birth_cert.as_path(), birth_key.as_path())),
        &csr,
        &[],
    );
    if a.status == 200 {
        certs_only_to_pem(&a.body, &server.work(&format!("{serial}.pem")));
    }
    (a.status, (birth_cert, birth_key), csr)
}

fn ocsp(server: &Server, cert: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(server.pki("operational-ca.pem"))
        .arg("-CAfile")
        .arg(server.root())
        .arg("-cert")
        .arg(cert)
        .arg("-url")
        .arg(format!("http://{}/ocsp", server.status_addr)));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The browsers the console is tested in, each through its own WebDriver server.
enum Browser {
    /// Debian's `chromium` through `chromedriver`.
    Chromium,
    /// Firefox (Debian's `firefox-esr`) through Mozilla's geckodriver.
    Firefox {
        binary: PathBuf,
        geckodriver: PathBuf,
    },
}

impl Browser {
    /// The README's screenshots come from one browser only, so that they do not change
    /// with the order in which the two runs finish.
    fn takes_screenshots(&self) -> bool {
        matches!(self, Browser::Chromium)
    }

    /// What its `navigator.userAgent` contains.
    fn user_agent_mark(&self) -> &'static str {
        match self {
            Browser::Chromium => "Chrome/",
            Browser::Firefox { .. } => "Firefox/",
        }
    }

    /// The WebDriver server, on a free loopback port.
    fn driver(&self) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = match self {
            Browser::Chromium => {
                let mut c = Command::new("chromedriver");
                c.arg(format!("--port={port}"))
                    .arg("--allowed-ips=127.0.0.1");
                c
            }
            Browser::Firefox { geckodriver, .. } => {
                let mut c = Command::new(geckodriver);
                // Marionette (geckodriver to Firefox) takes a free port of its own.
                c.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                c
            }
        };
        // Its own process group: the browser it starts goes with it (see Drop).
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the WebDriver server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut caps = serde_json::Map::new();
        match self {
            Browser::Chromium => {
                caps.insert(
                    "goog:chromeOptions".into(),
                    json!({
                        "args": [
                            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            // The server certificate is issued by the test's own root.
                            "--ignore-certificate-errors",
                            "--window-size=1280,1800", "--hide-scrollbars",
                            // Loopback only: nothing of Chromium's own reaches out.
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--disable-default-apps", "--disable-extensions",
                        ]
                    }),
                );
            }
            Browser::Firefox { binary, .. } => {
                // The server certificate is issued by the test's own root.
                caps.insert("acceptInsecureCerts".into(), json!(true));
                caps.insert(
                    "moz:firefoxOptions".into(),
                    json!({
                        "binary": binary,
                        "args": ["-headless"],
                        // Loopback only: nothing of Firefox's own reaches out (geckodriver
                        // already turns off updates, telemetry and most background services).
                        "prefs": {
                            "network.captive-portal-service.enabled": false,
                            "network.connectivity-service.enabled": false,
                            "network.dns.disablePrefetch": true,
                            "network.prefetch-next": false,
                            "browser.safebrowsing.malware.enabled": false,
                            "browser.safebrowsing.phishing.enabled": false,
                            "browser.safebrowsing.downloads.enabled": false,
                            "browser.safebrowsing.blockedURIs.enabled": false,
                            "extensions.getAddons.cache.enabled": false,
                            "extensions.update.enabled": false,
                            "browser.search.update": false,
                            "media.gmp-manager.updateEnabled": false,
                            "security.OCSP.enabled": 0,
                            "security.remote_settings.crlite_filters.enabled": false,
                            "services.settings.server": "http://127.0.0.1:9/",
                            "datareporting.healthreport.uploadEnabled": false,
                            "toolkit.telemetry.enabled": false,
                        },
                    }),
                );
            }
        }
        caps
    }

    async fn client(&self, driver: &Driver) -> Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let c = ClientBuilder::rustls()
            .unwrap()
            .capabilities(self.capabilities())
            .connect(&driver.url)
            .await
            .unwrap();
        if let Browser::Firefox { .. } = self {
            // Chromium takes it as an argument; the same size for the same layout.
            c.set_window_size(1280, 1800).await.unwrap();
        }
        c
    }
}

/// A WebDriver server and the browser it started; both killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole process group (the driver was its leader): a browser left behind by a
        // failed run would otherwise outlive the test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// geckodriver: `FLEETCA_GECKODRIVER`, else what `.ci/run` builds in `target/geckodriver`,
/// else one on the PATH.
fn geckodriver() -> Option<PathBuf> {
    let candidates = match std::env::var_os("FLEETCA_GECKODRIVER") {
        Some(path) => vec![PathBuf::from(path)],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/geckodriver/bin/geckodriver"),
            PathBuf::from("geckodriver"),
        ],
    };
    candidates.into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Debian's `firefox-esr`, or a `firefox`, as a path (geckodriver wants one).
fn firefox() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["firefox-esr", "firefox"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(c: &Client, base: &str, name: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert!(
        url.path().starts_with("/login"),
        "{url}: {}",
        c.source().await.unwrap()
    );
    c.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#signed-in-user"))
        .await
        .unwrap();
    assert_eq!(text_of(c, "#signed-in-user").await, name);
}

async fn screenshot(browser: &Browser, c: &Client, name: &str) {
    if !browser.takes_screenshots() {
        return;
    }
    let png = c.screenshot().await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Submits a form built in the page (what a forged cross-site form would send, minus
/// what the attacker cannot know).
async fn post_form(c: &Client, action: &str, fields: serde_json::Value) {
    let before = c.current_url().await.unwrap();
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of Object.entries(arguments[1])) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
           f.appendChild(i);
         }
         document.body.appendChild(f); HTMLFormElement.prototype.submit.call(f);",
        vec![json!(action), fields],
    )
    .await
    .unwrap();
    c.wait()
        .for_url(&before.join(action).unwrap())
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("main")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_operator_runs_the_fleet_from_the_console_and_a_viewer_only_reads() {
    require_tools!("chromium", "chromedriver", "openssl", "curl");
    the_operator_and_the_viewer(&Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_firefox_an_operator_runs_the_fleet_from_the_console_and_a_viewer_only_reads() {
    require_tools!("openssl", "curl");
    let (Some(binary), Some(geckodriver)) = (firefox(), geckodriver()) else {
        if std::env::var_os("CI").is_some() {
            panic!("firefox-esr and geckodriver are required in CI: .ci/run installs firefox-esr and builds geckodriver into target/geckodriver (or set FLEETCA_GECKODRIVER)");
        }
        eprintln!("SKIPPED: firefox-esr or geckodriver not found (apt-get install firefox-esr; cargo install geckodriver --locked --root target/geckodriver, or set FLEETCA_GECKODRIVER)");
        return;
    };
    the_operator_and_the_viewer(&Browser::Firefox {
        binary,
        geckodriver,
    })
    .await;
}

/// The scenario, the same in every browser.
async fn the_operator_and_the_viewer(browser: &Browser) {
    let server = server();
    assert!(!server.admin_addr.is_empty(), "{}", server.log());
    let base = format!("https://{}", server.admin_addr);
    add_user(&server, "alice", "operator");
    add_user(&server, "bob", "viewer");

    // The inventory: four devices with `operational` certificates (90 days), one waiting.
    let enrolled = ["SN-C001", "SN-C002", "SN-C003", "SN-C004"];
    for serial in enrolled {
        let (status, _, _) = first_contact(&server, serial);
        assert_eq!(status, 200, "{serial}: {}", server.log());
    }
    // Two more under the `sensor` profile (same validity: their bars stack in the same week).
    for serial in ["SN-S001", "SN-S002"] {
        let (status, _, _) = first_contact_at(&server, "sensors/simpleenroll", serial);
        assert_eq!(status, 200, "{serial}: {}", server.log());
    }
    let waiting = format!("{WAITING_PREFIX}001");
    let (status, waiting_birth, waiting_csr) = first_contact(&server, &waiting);
    assert_eq!(status, 202);

    let driver = browser.driver();
    let c = browser.client(&driver).await;
    // The browser asked for is the one that runs.
    let agent = c
        .execute("return navigator.userAgent", vec![])
        .await
        .unwrap();
    let agent = agent.as_str().unwrap();
    assert!(agent.contains(browser.user_agent_mark()), "{agent}");

    // Sign in; the overview's expiry timeline counts the six certificates, in the week
    // of their not_after, under their profile.
    sign_in(&c, &base, "alice").await;
    assert_eq!(text_of(&c, "#expiring-total").await, "6");
    let chart = c.find(Locator::Css("#expiry-chart svg")).await.unwrap();
    assert!(chart.html(false).await.unwrap().contains("<rect"));
    let not_after = {
        let out = openssl(&[
            "x509",
            "-in",
            server.work("SN-C001.pem").to_str().unwrap(),
            "-noout",
            "-enddate",
        ]);
        let text = String::from_utf8(out.stdout).unwrap();
        text.trim().trim_start_matches("notAfter=").to_string()
    };
    let rows = c
        .find_all(Locator::Css("#expiry-table tbody tr"))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1,
        "all four expire in the same week ({not_after})"
    );
    let cells: Vec<String> = {
        let mut v = Vec::new();
        for td in rows[0].find_all(Locator::Css("td")).await.unwrap() {
            v.push(td.prop("textContent").await.unwrap().unwrap());
        }
        v
    };
    let headers: Vec<String> = {
        let mut v = Vec::new();
        for th in c
            .find_all(Locator::Css("#expiry-table thead th"))
            .await
            .unwrap()
        {
            v.push(th.prop("textContent").await.unwrap().unwrap());
        }
        v
    };
    assert_eq!(headers, ["Week from", "operational", "sensor", "Total"]);
    assert_eq!(&cells[1..], ["4", "2", "6"]);
    // 90 days ahead: the week that starts 84 days from today (week 12).
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(cells[0], (today + time::Duration::days(84)).to_string());
    assert_eq!(text_of(&c, "#pending-total").await, "1");
    screenshot(browser, &c, "overview.png").await;

    // Search by serial prefix; the device page shows its lineage and the actions.
    c.goto(&format!("{base}/devices")).await.unwrap();
    c.find(Locator::Css("#serial_prefix"))
        .await
        .unwrap()
        .send_keys("SN-C002")
        .await
        .unwrap();
    c.find(Locator::Css("#search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The list page before the search has a #devices table too: wait for the search's
    // own page (its URL carries the prefix) before reading the rows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("serial_prefix=SN-C002")
    {
        assert!(Instant::now() < deadline, "the search did not load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.wait()
        .for_element(Locator::Css("#devices"))
        .await
        .unwrap();
    let found = c
        .find_all(Locator::Css("#devices tbody tr a"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text().await.unwrap(), "SN-C002");
    found[0].click().await.unwrap();
    c.wait()
        .for_element(Locator::Css("#device-serial"))
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#device-serial").await, "SN-C002");
    assert_eq!(text_of(&c, "#device-status").await, "active");
    assert_eq!(
        c.find_all(Locator::Css("#lineage tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(c.find(Locator::Css("#lineage-chart svg")).await.is_ok());
    assert!(c.find(Locator::Css("#action-suspend")).await.is_ok());
    screenshot(browser, &c, "device.png").await;
    // The console's one script (console.js) loads and runs under the strict CSP: a relative
    // time shows its exact UTC time when clicked, and goes back on a second click.
    let when = c.find(Locator::Css("time[title]")).await.unwrap();
    let relative = when.text().await.unwrap();
    let exact = when.attr("title").await.unwrap().unwrap();
    assert_ne!(relative, exact);
    when.click().await.unwrap();
    assert_eq!(when.text().await.unwrap(), exact);
    when.click().await.unwrap();
    assert_eq!(when.text().await.unwrap(), relative);

    // A forged form without the CSRF token: refused, nothing changes.
    post_form(&c, "/devices/SN-C002/suspend", json!({"comment": "forged"})).await;
    assert!(c.source().await.unwrap().contains("Form refused"));
    c.goto(&format!("{base}/devices/SN-C002")).await.unwrap();
    assert_eq!(text_of(&c, "#device-status").await, "active");

    // Approve the waiting request; the device's next poll gets its certificate.
    c.goto(&format!("{base}/approvals")).await.unwrap();
    let approve = c.find(Locator::Css("button[id^=approve-]")).await.unwrap();
    let card = text_of(&c, "section.approval").await;
    assert!(card.contains(&waiting), "{card}");
    screenshot(browser, &c, "approvals.png").await;
    approve.click().await.unwrap();
    c.wait().for_element(Locator::Css("#notice")).await.unwrap();
    assert!(c.find(Locator::Css("#no-approvals")).await.is_ok());
    let poll = post_csr(
        &server,
        "simpleenroll",
        Some((waiting_birth.0.as_path(), waiting_birth.1.as_path())),
        &waiting_csr,
        &[],
    );
    assert_eq!(poll.status, 200, "{}", poll.text());

    // Revoke SN-C001's operational certificate, with the confirmation step; OCSP says so.
    let op_cert = server.work("SN-C001.pem");
    let op_serial = serial_of(&op_cert);
    assert!(ocsp(&server, &op_cert).contains(": good"));
    c.goto(&format!("{base}/devices/SN-C001")).await.unwrap();
    c.find(Locator::Css(&format!("#revoke-{op_serial}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#confirm-form"))
        .await
        .unwrap();
    c.find(Locator::Css("#comment"))
        .await
        .unwrap()
        .send_keys("lost in the field")
        .await
        .unwrap();
    c.find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#notice")).await.unwrap();
    assert!(text_of(&c, "#lineage").await.contains("revoked"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = ocsp(&server, &op_cert);
        if answer.contains(": revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "OCSP still says: {answer}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Sign out: the session ends, pages send back to the login.
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#sign-in"))
        .await
        .unwrap();
    c.goto(&format!("{base}/devices")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));

    // A viewer: no action anywhere, and a form with a valid CSRF token is still refused
    // for the role (the operations check it, as for the API).
    sign_in(&c, &base, "bob").await;
    c.goto(&format!("{base}/devices/SN-C003")).await.unwrap();
    assert!(c.find(Locator::Css("#actions")).await.is_err());
    assert!(c
        .find_all(Locator::Css("a.button"))
        .await
        .unwrap()
        .is_empty());
    c.goto(&format!("{base}/stations")).await.unwrap();
    assert_eq!(
        c.find_all(Locator::Css("form")).await.unwrap().len(),
        1,
        "only sign-out"
    );
    let csrf = c
        .find(Locator::Css("form[action='/logout'] input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    post_form(&c, "/devices/SN-C003/suspend", json!({"csrf": csrf})).await;
    let page = c.source().await.unwrap();
    assert!(page.contains("needs the operator role"), "{page}");
    c.goto(&format!("{base}/devices/SN-C003")).await.unwrap();
    assert_eq!(text_of(&c, "#device-status").await, "active");
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#sign-in"))
        .await
        .unwrap();
    c.close().await.unwrap();

    // Every action above is in the audit trail under the user who took it.
    let out = run_ok(
        Command::new(fleetca_bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(server.data()),
    );
    assert!(out.status.success());
    let db = rusqlite::Connection::open(server.data().join("fleetca.db")).unwrap();
    let actions: Vec<(String, String, String)> = db
        .prepare("SELECT actor, action, outcome FROM audit WHERE actor LIKE 'user:%' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for expected in [
        ("user:alice", "request-approve", "granted"),
        ("user:alice", "cert-revoke", "granted"),
        ("user:bob", "device-suspend", "refused"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == expected),
            "{expected:?} not in {actions:?}"
        );
    }
}

/// The same console without a browser (runs everywhere): security headers on every page,
/// the cookie's attributes, the CSRF refusal of a form that lacks the token, the API still
/// under /api/v1/ on the same listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_carry_strict_headers_and_forms_need_the_csrf_token() {
    require_tools!("openssl");
    let server = server();
    add_user(&server, "carol", "operator");
    let (_key, _cert) = birth(&server, "SN-H001");
    let root = std::fs::read(server.root()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("https://{}", server.admin_addr);
    let strict = |r: &reqwest::Response| {
        let h = r.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    };

    // Signed out: pages send to the login page, which is not cached.
    let r = http.get(format!("{base}/devices")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    strict(&r);
    let r = http.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    strict(&r);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        !r.text().await.unwrap().contains("<script>"),
        "no inline script"
    );

    // A wrong password: 401, no cookie.
    let login = |password: &'static str| {
        http.post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "name=carol&password={}",
                password.replace(' ', "+")
            ))
            .send()
    };
    let r = login("not the password").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // The right one: the session cookie with every attribute.
    let r = login(PASSWORD).await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute}: {cookie}"
        );
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(pair.starts_with("fleetca_session=fcs_"), "{pair}");

    let r = http
        .get(format!("{base}/devices/SN-H001"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    strict(&r);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(page.contains("action-suspend"));

    // A form without the token, or with another session's: 403, the device unchanged.
    for body in [
        "comment=x",
        "csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&comment=x",
    ] {
        let r = http
            .post(format!("{base}/devices/SN-H001/suspend"))
            .header("cookie", &pair)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        strict(&r);
    }
    let r = http
        .get(format!("{base}/devices/SN-H001"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert!(r
        .text()
        .await
        .unwrap()
        .contains(r#"id="device-status">manufactured<"#));

    // The API is still on the same listener, and the static files are served embedded.
    let r = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(pair.trim_start_matches("fleetca_session="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/static/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    let r = http
        .get(format!("{base}/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    strict(&r);
    let r = http
        .get(format!("{base}/api/v1/no-such"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // An operator has no audit page; an auditor reads the trail by actor and verifies it.
    let r = http
        .get(format!("{base}/audit"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    add_user(&server, "erin", "auditor");
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=erin&password={}", PASSWORD.replace(' ', "+")))
        .send()
        .await
        .unwrap();
    let auditor = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = http
        .get(format!("{base}/audit?actor=user%3Acarol"))
        .header("cookie", &auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("admin-login"), "{page}");
    assert!(!page.contains("user:erin"), "filtered by actor");
    let r = http
        .get(format!("{base}/audit/verify"))
        .header("cookie", &auditor)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Chain intact"), "{page}");

    // Stations: an operator sees the quota but no button, and a form from her session
    // (valid token) is refused for the role; an admin suspends the station.
    server.add_station("line-1");
    let csrf_of = |page: &str| {
        page.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string()
    };
    let page = http
        .get(format!("{base}/stations"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("line-1") && !page.contains("/stations/line-1/suspend"));
    let suspend = |cookie: String, csrf: String| {
        http.post(format!("{base}/stations/line-1/suspend"))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
    };
    let r = suspend(pair.clone(), csrf_of(&page)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("needs the admin role"));
    add_user(&server, "frank", "admin");
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=frank&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    let admin = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{base}/stations"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/stations/line-1/suspend"));
    let r = suspend(admin.clone(), csrf_of(&page)).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/stations?done=station");
    let page = http
        .get(format!("{base}/stations"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(">suspended<") && page.contains("/stations/line-1/resume"));
}

/// A console session unused for `[admin] session_idle` ends: the next page sends to the
/// login page saying so, and removes the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_console_session_ends() {
    require_tools!("openssl");
    let server = Server::spawn_with(
        Server::prepare(|config| {
            config.push_str("\n[admin]\nsession_idle = \"2s\"\n");
        }),
        Vec::new(),
        &["--admin-listen", "127.0.0.1:0"],
    );
    add_user(&server, "dave", "viewer");
    let root = std::fs::read(server.root()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("https://{}", server.admin_addr);
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=dave&password={}", PASSWORD.replace(' ', "+")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Idle past the limit (the session's idle clock is the server's wall clock).
    std::thread::sleep(Duration::from_millis(3_500));
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?ended=1");
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("fleetca_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let r = http
        .get(format!("{base}/login?ended=1"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Your session ended"));
}
