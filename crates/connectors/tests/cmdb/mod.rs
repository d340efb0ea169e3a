//! A small CMDB service on loopback (hyper, optionally behind tokio-rustls with required
//! client certificates) with the devices and failures the connector tests need:
//!
//! | path segment | answer |
//! |---|---|
//! | `SN-ACTIVE`, `SN-DECOM` | `200` with the device object |
//! | `SN-SLOW` | `200` after 2 s |
//! | `SN-DELAY-*` | `200` after 100 ms |
//! | `SN-500` | `500` |
//! | `SN-FLAKY` | `500` twice, then `200` |
//! | `SN-400` | `400` |
//! | `SN-BADJSON`, `SN-ARRAY`, `SN-BIG` | `200` with not-JSON, an array, 100 KiB |
//! | anything else | `404` |
//!
//! Under `/wrapped/` the device object is inside `{"data": ...}`. With a token, requests
//! without `Authorization: Bearer <token>` get `401`.
#![allow(dead_code)] // each test file uses a part

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Stats {
    hits: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

pub struct Cmdb {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn device(serial: &str) -> Option<serde_json::Value> {
    match serial {
        "SN-ACTIVE" | "SN-FLAKY" | "SN-SLOW" => Some(json!({
            "serial": serial,
            "status": "active",
            "owner": {"team": "plant-7"},
            "batch": 42
        })),
        "SN-DECOM" => Some(json!({"serial": serial, "status": "decommissioned"})),
        s if s.starts_with("SN-DELAY-") => Some(json!({"serial": s, "status": "active"})),
        _ => None,
    }
}

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<Incoming>,
    stats: Arc<Stats>,
    token: Option<Arc<str>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = InFlight::enter(&stats);
    let path = request.uri().path().to_owned();
    let (wrapped, serial) = if let Some(s) = path.strip_prefix("/devices/") {
        (false, s.to_owned())
    } else if let Some(s) = path.strip_prefix("/wrapped/") {
        (true, s.to_owned())
    } else {
        return Ok(answer(StatusCode::NOT_FOUND, ""));
    };
    let hits = {
        let mut hits = stats.hits.lock().unwrap();
        let n = hits.entry(serial.clone()).or_default();
        *n += 1;
        *n
    };
    if let Some(token) = token {
        let expected = format!("Bearer {token}");
        let given = request.headers().get("authorization").map(|v| v.as_bytes());
        if given != Some(expected.as_bytes()) {
            return Ok(answer(StatusCode::UNAUTHORIZED, "{}"));
        }
    }
    match serial.as_str() {
        "SN-SLOW" => tokio::time::sleep(Duration::from_secs(2)).await,
        s if s.starts_with("SN-DELAY-") => tokio::time::sleep(Duration::from_millis(100)).await,
        "SN-500" => return Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, "oops")),
        "SN-FLAKY" if hits <= 2 => return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "")),
        "SN-400" => return Ok(answer(StatusCode::BAD_REQUEST, "{}")),
        "SN-BADJSON" => return Ok(answer(StatusCode::OK, "{\"status\": ")),
        "SN-ARRAY" => return Ok(answer(StatusCode::OK, "[1, 2]")),
        "SN-BIG" => {
            let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
            return Ok(answer(StatusCode::OK, big));
        }
        _ => {}
    }
    Ok(match device(&serial) {
        None => answer(StatusCode::NOT_FOUND, "{\"error\": \"no such device\"}"),
        Some(d) => {
            let body = if wrapped { json!({"data": d}) } else { d };
            answer(StatusCode::OK, body.to_string())
        }
    })
}

impl Cmdb {
    /// Plain HTTP.
    pub async fn start(token: Option<&str>) -> Self {
        Self::start_with(token, None).await
    }

    /// HTTPS with this server configuration.
    pub async fn start_tls(token: Option<&str>, tls: rustls::ServerConfig) -> Self {
        Self::start_with(token, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn start_with(token: Option<&str>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let token: Option<Arc<str>> = token.map(Arc::from);
        let server_stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (stats, token, tls) = (Arc::clone(&server_stats), token.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(request, Arc::clone(&stats), token.clone())
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, stats }
    }

    /// Requests seen for this (still percent-encoded) path segment.
    pub fn hits(&self, serial: &str) -> usize {
        self.stats
            .hits
            .lock()
            .unwrap()
            .get(serial)
            .copied()
            .unwrap_or(0)
    }

    pub fn url(&self, scheme: &str, prefix: &str) -> String {
        format!("{scheme}://{}/{prefix}/{{serial}}", self.addr)
    }
}
