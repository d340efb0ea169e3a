//! Harness of the admin API tests (issue 16): a real `fleetca serve --admin-listen
//! 127.0.0.1:0` on a fresh data directory, API tokens and operator users made with the CLI
//! (`fleetca admin token create`, `fleetca admin user add --password-stdin`), an HTTPS
//! client that trusts only the fleet's root, and devices enrolled over EST so that the API
//! has something to show.
#![allow(dead_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;

/// The roles of the contract, least to most.
pub const ROLES: [&str; 4] = ["viewer", "auditor", "operator", "admin"];

/// The password every test user gets (strong enough for any password rule).
pub const PASSWORD: &str = "Correct-Horse-Battery-Staple-9";

/// Operational enrollments of serials starting with `NEW-` wait for a person (EST 202):
/// the approval queue has work. Every other serial is issued at once.
pub fn manual_approval_for_new(config: &mut String) {
    let from = "[profiles.operational]\n";
    assert!(config.contains(from), "{config}");
    *config = config.replacen(
        from,
        "[profiles.operational]\nmanual_approval = \"device.serial.startsWith('NEW-')\"\n",
        1,
    );
}

/// Operational certificates of 1 h backdated by 3 h: a quarter of their life is left at
/// issue, inside a notice tier at half the lifetime, so one monitor pass opens an
/// escalation that the API lists and the device detail shows.
pub fn short_lived_with_a_half_life_tier(config: &mut String) {
    manual_approval_for_new(config);
    for (from, to) in [
        ("validity = \"90d\"", "validity = \"1h\""),
        ("backdate = \"5m\"", "backdate = \"3h\""),
        (
            "name = \"notice\"\nbefore = \"14d\"",
            "name = \"notice\"\nbefore = \"50%\"",
        ),
        (
            "name = \"warning\"\nbefore = \"3d\"",
            "name = \"warning\"\nbefore = \"1s\"",
        ),
        (
            "name = \"critical\"\nbefore = \"1d\"",
            "name = \"critical\"\nbefore = \"1%\"",
        ),
    ] {
        assert!(config.contains(from), "{from}");
        *config = config.replacen(from, to, 1);
    }
}

/// A server with the admin API, and a client for it.
pub struct Api {
    pub server: Server,
    /// `https://127.0.0.1:PORT/api/v1`
    pub base: String,
    client: reqwest::blocking::Client,
}

/// An HTTP answer of the admin API.
#[derive(Debug)]
pub struct Reply {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: {} body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    /// Asserts the status, with the answer in the message.
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        self
    }

    /// Asserts success of a change whose answer the contract leaves open: 200 or 204.
    pub fn done(self) -> Self {
        assert!(
            matches!(self.status, 200 | 204),
            "{} {}: {} {}",
            self.method,
            self.path,
            self.status,
            self.text()
        );
        self
    }

    /// Asserts an RFC 9457 problem of this status: `application/problem+json` whose
    /// `status` member matches, with a title. Returns the problem.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "{} {}: {status} as {:?}: {}",
            self.method,
            self.path,
            self.content_type(),
            self.text()
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{} {}: {p}", self.method, self.path);
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{} {}: {p}",
            self.method,
            self.path
        );
        p
    }

    /// The `items` of a list answer (asserting 200).
    pub fn items(&self) -> Vec<serde_json::Value> {
        assert_eq!(
            self.status,
            200,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        let j = self.json();
        j["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{} {}: no items: {j}", self.method, self.path))
            .clone()
    }
}

impl Reply {
    /// The rows of an unpaged list answer (asserting 200): a JSON array, or the `items` of
    /// a page.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        let j = self.clone_json_200();
        match j {
            serde_json::Value::Array(a) => a,
            other => other["items"]
                .as_array()
                .unwrap_or_else(|| panic!("{} {}: not a list: {other}", self.method, self.path))
                .clone(),
        }
    }

    fn clone_json_200(&self) -> serde_json::Value {
        assert_eq!(
            self.status,
            200,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        self.json()
    }
}

/// A request to send: method, path under `/api/v1` (with its query), credentials, body.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub bearer: Option<&'a str>,
    /// (content type, bytes)
    pub body: Option<(&'a str, Vec<u8>)>,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            bearer: None,
            body: None,
            headers: Vec::new(),
        }
    }
    pub fn bearer(mut self, secret: &'a str) -> Self {
        self.bearer = Some(secret);
        self
    }
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(("application/json", serde_json::to_vec(body).unwrap()));
        self
    }
    pub fn raw(mut self, content_type: &'a str, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type, bytes));
        self
    }
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl Api {
    /// A server whose `NEW-*` devices wait for approval.
    pub fn start() -> Self {
        Self::start_with(manual_approval_for_new)
    }

    pub fn start_with(edit_config: impl FnOnce(&mut String)) -> Self {
        Self::serve(Server::prepare(edit_config))
    }

    /// Serves a prepared data directory (`Server::prepare`) with the admin API.
    pub fn serve(dir: tempfile::TempDir) -> Self {
        let server = Server::spawn_with(dir, Vec::new(), &["--admin-listen", "127.0.0.1:0"]);
        let admin = server.admin_addr.clone();
        assert!(
            !admin.is_empty(),
            "no admin listener announced:\n{}",
            server.log()
        );
        let base = format!("https://{admin}/api/v1");
        let client = client_trusting(&server, None);
        Self {
            server,
            base,
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that connects from another loopback address (`127.0.0.N`): rate limits
    /// are per source, so a test that trips one does not lock the others out.
    pub fn client_from(&self, source: IpAddr) -> reqwest::blocking::Client {
        client_trusting(&self.server, Some(source))
    }

    pub fn send(&self, call: Call) -> Reply {
        self.send_with(&self.client, call)
    }

    pub fn send_with(&self, client: &reqwest::blocking::Client, call: Call) -> Reply {
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).unwrap();
        let mut req = client.request(method, self.url(call.path));
        if let Some(b) = call.bearer {
            req = req.bearer_auth(b);
        }
        for (k, v) in &call.headers {
            req = req.header(*k, *v);
        }
        if let Some((ct, bytes)) = call.body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = match req.send() {
            Ok(r) => r,
            // No answer at all: status 0, the error as the body (tests report it).
            Err(e) => {
                let mut why = format!("no answer: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(&format!(": {s}"));
                    source = s.source();
                }
                return Reply {
                    method: call.method.to_string(),
                    path: call.path.to_string(),
                    status: 0,
                    headers: reqwest::header::HeaderMap::new(),
                    body: why.into_bytes(),
                };
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().unwrap().to_vec();
        Reply {
            method: call.method.to_string(),
            path: call.path.to_string(),
            status,
            headers,
            body,
        }
    }

    /// Sends the call with the `curl` command-line tool instead (it reads an answer that
    /// comes while it is still sending the body).
    pub fn send_curl(&self, call: Call) -> Reply {
        let body_file = tempfile::NamedTempFile::new().unwrap();
        let mut args: Vec<String> = vec!["-X".into(), call.method.into()];
        if let Some(b) = call.bearer {
            args.extend(["-H".into(), format!("Authorization: Bearer {b}")]);
        }
        for (k, v) in &call.headers {
            args.extend(["-H".into(), format!("{k}: {v}")]);
        }
        if let Some((ct, bytes)) = &call.body {
            std::fs::write(body_file.path(), bytes).unwrap();
            args.extend([
                "-H".into(),
                format!("Content-Type: {ct}"),
                "--data-binary".into(),
                format!("@{}", body_file.path().display()),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = curl(&self.server, &args, &self.url(call.path));
        let mut headers = reqwest::header::HeaderMap::new();
        for line in a.headers.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if let (Ok(k), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                    reqwest::header::HeaderValue::from_str(v.trim()),
                ) {
                    headers.append(k, v);
                }
            }
        }
        Reply {
            method: call.method.to_string(),
            path: call.path.to_string(),
            status: a.status,
            headers,
            body: a.body,
        }
    }

    pub fn get(&self, bearer: &str, path: &str) -> Reply {
        self.send(Call::new("GET", path).bearer(bearer))
    }

    pub fn post(&self, bearer: &str, path: &str, body: serde_json::Value) -> Reply {
        self.send(Call::new("POST", path).bearer(bearer).json(&body))
    }

    pub fn put(&self, bearer: &str, path: &str, body: serde_json::Value) -> Reply {
        self.send(Call::new("PUT", path).bearer(bearer).json(&body))
    }

    pub fn delete(&self, bearer: &str, path: &str) -> Reply {
        self.send(Call::new("DELETE", path).bearer(bearer))
    }

    /// `fleetca ARGS --data-dir DATA`, asserting success.
    pub fn fleetca(&self, args: &[&str]) -> Output {
        fleetca_ok(&self.server, args, None)
    }

    /// `fleetca admin token create NAME --role ROLE`: the secret it prints once.
    pub fn token(&self, name: &str, role: &str) -> String {
        let out = self.fleetca(&["admin", "token", "create", name, "--role", role]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let re = regex::Regex::new(r"fca_[A-Za-z0-9_-]{43}").unwrap();
        re.find(&stdout)
            .unwrap_or_else(|| panic!("no token in {stdout}"))
            .as_str()
            .to_string()
    }

    /// `fleetca admin user add NAME --role ROLE --password-stdin` with [`PASSWORD`].
    pub fn user(&self, name: &str, role: &str) {
        fleetca_ok(
            &self.server,
            &[
                "admin",
                "user",
                "add",
                name,
                "--role",
                role,
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// `POST /login` as `name` with [`PASSWORD`]: the session secret.
    pub fn login(&self, name: &str) -> String {
        let r = self.send(
            Call::new("POST", "/login")
                .json(&serde_json::json!({"name": name, "password": PASSWORD})),
        );
        let token = r.expect(200).json()["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("fcs_"), "{token}");
        token
    }

    /// One admin token for the test's own bookkeeping.
    pub fn admin(&self) -> String {
        self.token("harness-admin", "admin")
    }

    /// The audit trail's verification by the CLI (`fleetca audit verify`), asserted.
    pub fn audit_verifies(&self) {
        let out = self.fleetca(&["audit", "verify"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("audit chain intact"), "{text}");
    }
}

fn client_trusting(server: &Server, source: Option<IpAddr>) -> reqwest::blocking::Client {
    let root = std::fs::read(server.root()).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(ip) = source {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

/// `fleetca ARGS --data-dir DATA` with `stdin`, asserting success.
pub fn fleetca_ok(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(fleetca_bin());
    cmd.args(args)
        .arg("--data-dir")
        .arg(server.data())
        .env("USER", "api-tests")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fleetca {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A device with a birth certificate and an operational one, enrolled over EST.
#[derive(Debug, Clone)]
pub struct Device {
    pub serial: String,
    pub birth_key: PathBuf,
    pub birth_cert: PathBuf,
    /// Current operational key and certificate.
    pub key: PathBuf,
    pub cert: PathBuf,
    renewals: u32,
}

impl Device {
    /// Birth certificate (CLI), then `simpleenroll` with it.
    pub fn enroll(server: &Server, serial: &str) -> Self {
        let (birth_key, birth_cert) = birth(server, serial);
        let subj = format!("/CN={serial}/serialNumber={serial}");
        let (key, cert) = enroll(
            server,
            "simpleenroll",
            (birth_cert.as_path(), birth_key.as_path()),
            &subj,
            &format!("{serial}-op"),
        );
        Self {
            serial: serial.into(),
            birth_key,
            birth_cert,
            key,
            cert,
            renewals: 0,
        }
    }

    /// `simplereenroll` with the current operational certificate (a real renewal).
    pub fn renew(&mut self, server: &Server) {
        self.renewals += 1;
        let subj = format!("/CN={0}/serialNumber={0}", self.serial);
        let (key, cert) = enroll(
            server,
            "simplereenroll",
            (self.cert.as_path(), self.key.as_path()),
            &subj,
            &format!("{}-renewal-{}", self.serial, self.renewals),
        );
        self.key = key;
        self.cert = cert;
    }

    pub fn birth_serial(&self) -> String {
        serial_of(&self.birth_cert)
    }

    pub fn cert_serial(&self) -> String {
        serial_of(&self.cert)
    }
}

/// A `NEW-*` device whose first enrollment waits for approval: the same CSR is polled.
pub struct Pending {
    pub serial: String,
    pub birth_key: PathBuf,
    pub birth_cert: PathBuf,
    pub key: PathBuf,
    pub csr: PathBuf,
}

impl Pending {
    /// Birth certificate, then a first `simpleenroll` that must answer 202.
    pub fn start(server: &Server, serial: &str) -> Self {
        assert!(serial.starts_with("NEW-"), "only NEW-* serials wait");
        let (birth_key, birth_cert) = birth(server, serial);
        let key = server.work(&format!("{serial}-pending.key"));
        let csr = server.work(&format!("{serial}-pending.csr.b64"));
        new_key(&key);
        new_csr_b64(&key, &format!("/CN={serial}/serialNumber={serial}"), &csr);
        let p = Self {
            serial: serial.into(),
            birth_key,
            birth_cert,
            key,
            csr,
        };
        let a = p.poll(server);
        assert_eq!(a.status, 202, "{serial}: {}", a.text());
        p
    }

    /// The device asks again with the same CSR.
    pub fn poll(&self, server: &Server) -> Answer {
        post_csr(
            server,
            "simpleenroll",
            Some((self.birth_cert.as_path(), self.birth_key.as_path())),
            &self.csr,
            &[],
        )
    }
}

/// The approval request of `device` (the newest), by the API.
pub fn approval_id(api: &Api, bearer: &str, device: &str) -> i64 {
    let items = api
        .get(bearer, &format!("/approvals?device={device}&state=pending"))
        .items();
    items
        .iter()
        .find_map(|a| a["id"].as_i64())
        .unwrap_or_else(|| panic!("no pending approval for {device}: {items:?}"))
}

/// A PEM PKCS#10 request for a station's own key (the key stays here).
pub fn station_csr(server: &Server, name: &str) -> String {
    let key = server.work(&format!("station-{name}.key"));
    let csr = server.work(&format!("station-{name}.csr"));
    new_key(&key);
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-out",
        csr.to_str().unwrap(),
    ]);
    std::fs::read_to_string(csr).unwrap()
}

/// Walks a listing with `limit` per page from `path` (which has a `?`): every item.
pub fn all_pages(api: &Api, bearer: &str, path: &str, limit: u32) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let r = api.get(bearer, &url);
        let page = r.items();
        assert!(page.len() <= limit as usize, "{url}: {} items", page.len());
        items.extend(page);
        match r.json()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
    panic!("{path}: the listing never ended");
}
