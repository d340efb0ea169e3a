//! `fleetca bench cmdb`: a small HTTP/1.1 JSON CMDB on loopback, for benchmarking the HTTP
//! inventory connector and for trying a `[connectors.<name>] kind = "http"` configuration.
//!
//! `GET /devices/{serial}` answers `200` with `{"serial": "...", "status": "active"}`, or
//! `404` for serials starting with `--unknown-prefix`. Every answer can be delayed by
//! `--latency` (an async sleep: requests wait in parallel, none blocks a thread). The
//! requests are counted and the counts printed to stderr when they change (every
//! `--report-every`) and on SIGINT/SIGTERM, so a benchmark shows how many lookups reached
//! the CMDB rather than the connector's cache.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use fleetca_connectors::ConfigDuration;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Path prefix of the device resource.
const DEVICES: &str = "/devices/";

/// Arguments of `fleetca bench cmdb`.
#[derive(clap::Args)]
pub struct CmdbArgs {
    /// Loopback address to listen on, e.g. 127.0.0.1:18600 (port 0: any free port; the
    /// address is printed on stdout).
    #[arg(long)]
    listen: SocketAddr,
    /// Delay before each answer, e.g. 2ms (ms, s, m or h).
    #[arg(long, default_value = "0ms")]
    latency: ConfigDuration,
    /// Serials starting with this are unknown: `404`.
    #[arg(long)]
    unknown_prefix: Option<String>,
    /// Print the request counts to stderr this often, when they changed.
    #[arg(long, default_value = "1s")]
    report_every: ConfigDuration,
}

/// Requests answered, by outcome.
#[derive(Default)]
struct Counts {
    known: AtomicU64,
    unknown: AtomicU64,
    /// Not `GET /devices/{serial}`.
    other: AtomicU64,
    /// Device requests being answered now, and the most at once: a client that serialises
    /// its lookups never has more than one.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 4] {
        [&self.known, &self.unknown, &self.other, &self.max_in_flight]
            .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Counts a device request in flight until dropped.
struct InFlight<'a>(&'a Counts);

impl<'a> InFlight<'a> {
    fn enter(counts: &'a Counts) -> Self {
        let now = counts.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counts.max_in_flight.fetch_max(now, Ordering::Relaxed);
        Self(counts)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn summary([known, unknown, other, max_in_flight]: [u64; 4]) -> String {
    format!(
        "cmdb: {} requests ({known} known, {unknown} unknown, {other} other), at most {max_in_flight} at once",
        known + unknown + other
    )
}

/// What every connection's service reads.
struct Cmdb {
    latency: Duration,
    unknown_prefix: Option<String>,
    counts: Counts,
}

/// `fleetca bench cmdb`: serves until SIGINT or SIGTERM.
pub async fn cmdb(args: CmdbArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        // It says "active" about any device it is asked about: not a service to expose.
        bail!(
            "--listen {}: the bench CMDB listens on loopback only",
            args.listen
        );
    }
    if args.report_every.0.is_zero() {
        bail!("--report-every must be more than 0ms");
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("cmdb: listening on http://{addr}{DEVICES}{{serial}}");
    println!("[connectors.cmdb]\nkind = \"http\"\nurl = \"http://{addr}{DEVICES}{{serial}}\"");
    let state = Arc::new(Cmdb {
        latency: args.latency.0,
        unknown_prefix: args.unknown_prefix.filter(|p| !p.is_empty()),
        counts: Counts::default(),
    });
    let reporter = tokio::spawn(report(Arc::clone(&state), args.report_every.0));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    eprintln!("cmdb: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, &request).await) }
            });
            // A client closing its pooled connection is normal: nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    reporter.abort();
    eprintln!("{}", summary(state.counts.snapshot()));
    Ok(())
}

/// Prints the counts every `every` when they changed since the last line.
async fn report(state: Arc<Cmdb>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = [0; 4];
    loop {
        ticks.tick().await;
        let now = state.counts.snapshot();
        if now != last {
            eprintln!("{}", summary(now));
            last = now;
        }
    }
}

/// The answer to one request.
async fn answer(cmdb: &Cmdb, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let serial = match (request.method(), request.uri().path().strip_prefix(DEVICES)) {
        (&Method::GET, Some(segment)) if !segment.is_empty() && !segment.contains('/') => {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()
        }
        _ => None,
    };
    let Some(serial) = serial else {
        cmdb.counts.other.fetch_add(1, Ordering::Relaxed);
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "GET /devices/{serial} only"}),
        );
    };
    let _in_flight = InFlight::enter(&cmdb.counts);
    if !cmdb.latency.is_zero() {
        tokio::time::sleep(cmdb.latency).await;
    }
    if cmdb
        .unknown_prefix
        .as_deref()
        .is_some_and(|prefix| serial.starts_with(prefix))
    {
        cmdb.counts.unknown.fetch_add(1, Ordering::Relaxed);
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "unknown device"}),
        );
    }
    cmdb.counts.known.fetch_add(1, Ordering::Relaxed);
    json(
        StatusCode::OK,
        serde_json::json!({"serial": serial, "status": "active"}),
    )
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// SIGINT or SIGTERM; only SIGINT (Ctrl-C) if SIGTERM cannot be watched.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
