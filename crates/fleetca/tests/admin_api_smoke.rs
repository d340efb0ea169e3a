//! The admin API over real HTTPS (reqwest against `fleetca serve --admin-listen`): a token
//! made with the CLI authenticates, a device issued with the CLI is listed with its
//! lineage, its certificate comes as PEM, a revocation needs confirmation then conflicts,
//! a viewer is refused with the role it would need (and the refusal is audited with the
//! source address), a user logs in and out. The exhaustive suites (role matrix, bad input
//! on every endpoint, OpenAPI validation) live in their own files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::{birth, fleetca_bin, new_key, openssl, run_ok, Server};
use serde_json::{json, Value};

fn token(server: &Server, name: &str, role: &str) -> String {
    let out = run_ok(
        Command::new(fleetca_bin())
            .args([
                "admin",
                "token",
                "create",
                name,
                "--role",
                role,
                "--data-dir",
            ])
            .arg(server.data()),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        let root = std::fs::read(server.root()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            client,
            base: format!("https://{}/api/v1", server.admin_addr),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        secret: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(s) = secret {
            req = req.bearer_auth(s);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_serves_operators_over_https() {
    require_tools!("openssl");
    let server = Server::spawn_with(
        Server::prepare(|_| {}),
        Vec::new(),
        &["--admin-listen", "127.0.0.1:0"],
    );
    assert!(!server.admin_addr.is_empty(), "{}", server.log());
    let admin = token(&server, "ci", "admin");
    let viewer = token(&server, "dashboard", "viewer");
    assert!(admin.starts_with("fca_") && admin.len() == 47, "{admin}");
    let api = Api::new(&server);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // Who am I; nobody without a credential.
    let (status, _, me) = api.call(get.clone(), "/me", Some(&admin), None).await;
    assert_eq!((status, me["actor"].as_str()), (200, Some("token:ci")));
    let (status, headers, problem) = api.call(get.clone(), "/devices", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"fleetca-admin\""
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["status"], 401);

    // A device from the CLI, seen through the API with its lineage.
    let (_key, cert) = birth(&server, "SN-7001");
    let (status, _, devices) = api
        .call(
            get.clone(),
            "/devices?serial_prefix=SN-7",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, 200, "{devices}");
    assert_eq!(devices["items"][0]["serial_number"], "SN-7001");
    let (status, _, detail) = api
        .call(get.clone(), "/devices/SN-7001", Some(&viewer), None)
        .await;
    assert_eq!(status, 200, "{detail}");
    let serial = detail["certificates"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(detail["certificates"][0]["kind"], "birth");

    // The certificate as PEM is the one the CLI wrote.
    let pem = api
        .client
        .get(format!("{}/certificates/{serial}", api.base))
        .bearer_auth(&viewer)
        .header("accept", "application/pem-certificate-chain")
        .send()
        .await
        .unwrap();
    assert_eq!(pem.status(), 200);
    assert_eq!(
        pem.text().await.unwrap().trim(),
        std::fs::read_to_string(&cert).unwrap().trim()
    );

    // A viewer may not revoke: 403 naming the role, and the refusal is audited.
    let revoke = format!("/certificates/{serial}/revoke");
    let (status, _, problem) = api
        .call(
            post.clone(),
            &revoke,
            Some(&viewer),
            Some(json!({"reason": "superseded"})),
        )
        .await;
    assert_eq!(
        (status, problem["required_role"].as_str()),
        (403, Some("operator"))
    );

    // keyCompromise needs confirmation; then it is done; then it conflicts.
    let (status, _, problem) = api
        .call(
            post.clone(),
            &revoke,
            Some(&admin),
            Some(json!({"reason": "keyCompromise"})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/confirm");
    let body = json!({"reason": "keyCompromise", "confirm": true, "comment": "ticket 7"});
    let (status, _, revoked) = api
        .call(post.clone(), &revoke, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(
        (status, revoked["status"].as_str()),
        (200, Some("revoked")),
        "{revoked}"
    );
    let (status, _, _) = api
        .call(post.clone(), &revoke, Some(&admin), Some(body))
        .await;
    assert_eq!(status, 409);

    let (status, _, audit) = api
        .call(
            get.clone(),
            "/audit?actor=token:dashboard",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let refusal = &audit["items"][0];
    assert_eq!(refusal["outcome"], "refused");
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("from 127.0.0.1"),
        "{refusal}"
    );
    let (status, _, verify) = api
        .call(get.clone(), "/audit/verify", Some(&admin), None)
        .await;
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)));

    // A user logs in, acts with the session, logs out; the session is then refused.
    let (status, _, _) = api
        .call(
            post.clone(),
            "/users",
            Some(&admin),
            Some(json!({"name": "alice", "role": "operator", "password": "Tr0ub4dor&3x!"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, login) = api
        .call(
            post.clone(),
            "/login",
            None,
            Some(json!({"name": "alice", "password": "Tr0ub4dor&3x!"})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let session = login["token"].as_str().unwrap().to_string();
    assert!(session.starts_with("fcs_"));
    let (status, _, me) = api.call(get.clone(), "/me", Some(&session), None).await;
    assert_eq!((status, me["actor"].as_str()), (200, Some("user:alice")));
    let (status, _, _) = api
        .call(post.clone(), "/logout", Some(&session), None)
        .await;
    assert_eq!(status, 204);
    let (status, headers, _) = api.call(get.clone(), "/me", Some(&session), None).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // A station sends its CSR and gets its credential chain (station, registration CA).
    let key = server.work("line-9.key");
    let csr = server.work("line-9.csr");
    new_key(&key);
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=line-9",
        "-out",
        csr.to_str().unwrap(),
    ]);
    let body = json!({
        "name": "line-9",
        "serial_pattern": "SN-9[0-9]{3}",
        "quota": 10,
        "csr": std::fs::read_to_string(&csr).unwrap(),
    });
    let (status, _, created) = api
        .call(post.clone(), "/stations", Some(&admin), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["station"]["remaining"], 10);
    let chain = created["certificate_chain"].as_str().unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");

    // The description is public and OpenAPI 3.1.
    let (status, _, doc) = api.call(get, "/openapi.json", None, None).await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/api/v1/certificates/{serial}/revoke"]["post"].is_object());
    assert!(server.alive());
}
