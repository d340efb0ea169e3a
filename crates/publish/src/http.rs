//! The plain-HTTP listener for `/crl/<ca>.crl` and `/ocsp`, and the health probes
//! `/healthz` (liveness) and `/readyz` (readiness) for load balancers and systemd.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use fleetca_listener::AdmittedListener;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LAST_MODIFIED,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::Publisher;

const MAX_REQUEST: usize = 16 * 1024;
/// hyper's read buffer: the most bytes of a request head held per connection (its
/// minimum; an OCSP GET URL is a few hundred bytes). hyper's default is ~400 KiB.
const MAX_HEAD: usize = 8 * 1024;
/// Longest a single connection may stay open.
const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// The readiness check behind `GET /readyz`: whether this node can serve, and a
/// plain-text report (one line per check).
pub type ReadinessCheck =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = (bool, String)> + Send>> + Send + Sync>;

/// Serves CRLs and OCSP on `listener` (its admission holds the connection caps, the
/// per-source accept rate and the first-byte deadline) until `shutdown` completes.
/// `header_timeout` bounds the wait for a request's headers (and idle keep-alive).
pub async fn serve(
    listener: AdmittedListener,
    publisher: Arc<Publisher>,
    readiness: Option<ReadinessCheck>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener
        .serve_each(shutdown, move |tcp, remote| {
            let publisher = Arc::clone(&publisher);
            let readiness = readiness.clone();
            async move {
                let svc = service_fn(move |req| {
                    let publisher = Arc::clone(&publisher);
                    let readiness = readiness.clone();
                    async move { Ok::<_, Infallible>(handle(&publisher, readiness, req).await) }
                });
                let conn = http1::Builder::new()
                    .title_case_headers(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(MAX_HEAD)
                    .serve_connection(TokioIo::new(tcp), svc);
                match tokio::time::timeout(MAX_LIFETIME, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "status connection error"),
                    Err(_) => tracing::debug!(%remote, "status connection lifetime limit reached"),
                }
            }
        })
        .await;
    Ok(())
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn binary(content_type: &'static str, body: Bytes, max_age: u64) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    let cache = if max_age == 0 {
        "no-cache".to_string()
    } else {
        format!("public, max-age={max_age}, no-transform, must-revalidate")
    };
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(CACHE_CONTROL, v);
    }
    r
}

async fn handle(
    publisher: &Publisher,
    readiness: Option<ReadinessCheck>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/healthz" || path == "/readyz" {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        let mut r = if path == "/healthz" {
            // Liveness: the process answers.
            plain(StatusCode::OK, "ok")
        } else {
            match readiness {
                None => plain(StatusCode::OK, "ready"),
                Some(check) => match tokio::time::timeout(Duration::from_secs(5), check()).await {
                    Ok((true, report)) => plain(StatusCode::OK, &format!("ready\n{report}")),
                    Ok((false, report)) => plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("not ready\n{report}"),
                    ),
                    Err(_) => plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready\nreadiness checks timed out after 5 s",
                    ),
                },
            }
        };
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    if let Some(name) = path
        .strip_prefix("/crl/")
        .and_then(|n| n.strip_suffix(".crl"))
    {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        return crl(publisher, name, &req);
    }
    if path == "/ocsp" || path == "/ocsp/" {
        if req.method() != Method::POST {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST an OCSP request, or GET /ocsp/<base64 request>",
            );
        }
        let body = match tokio::time::timeout(
            Duration::from_secs(10),
            Limited::new(req.into_body(), MAX_REQUEST).collect(),
        )
        .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "OCSP request too large"),
            Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "OCSP request body timed out"),
        };
        let answer = publisher.answer(&body).await;
        return binary("application/ocsp-response", answer.der, 0);
    }
    if let Some(encoded) = path.strip_prefix("/ocsp/") {
        if req.method() != Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST /ocsp");
        }
        // RFC 6960 Appendix A.1: URL-encoded base64 of the DER request.
        let decoded = ocsp_get_request(encoded);
        let answer = publisher
            .answer(decoded.as_deref().unwrap_or_default())
            .await;
        // `public, max-age` (RFC 5019 section 6): the URL is the whole request, and a
        // cacheable answer depends only on the request's CertID (the responder's cache is
        // keyed on that exact CertID), so an HTTP cache keyed on the URL can only hand a
        // client an answer naming its own CertID. Answers with a nonce get max-age 0.
        return binary("application/ocsp-response", answer.der, answer.max_age);
    }
    plain(
        StatusCode::NOT_FOUND,
        &format!("no resource at {path}; CRLs are at /crl/<ca>.crl, OCSP at /ocsp, health at /healthz and /readyz"),
    )
}

fn crl(publisher: &Publisher, name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some((generation, crl)) = publisher.crl(name) else {
        return plain(StatusCode::NOT_FOUND, &format!("no CRL for CA '{name}'"));
    };
    let now = publisher.clock.now();
    // The generation, not the URL: `/crl/<ca>.crl` moves to the next generation, whose
    // numbers start again.
    let etag = format!("\"{generation}-{}\"", crl.number);
    if req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    // Caches may keep it until a refresh is due, never past nextUpdate.
    let until = (crl.this_update + publisher.settings.crl_refresh).min(crl.next_update);
    let max_age = u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .min(3600);
    let mut r = binary("application/pkix-crl", crl.der, max_age);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(ETAG, v);
    }
    if let Ok(date) = crl
        .this_update
        .format(&time::format_description::well_known::Rfc2822)
    {
        if let Ok(v) = HeaderValue::from_str(&date.replace("+0000", "GMT")) {
            r.headers_mut().insert(LAST_MODIFIED, v);
        }
    }
    r
}

/// The DER OCSP request of a `GET /ocsp/<encoded>` path (RFC 6960 Appendix A.1: the
/// URL-encoded base64 of the request); `None` when it does not decode. Anyone can send
/// this path without logging in (fuzz target `ocsp_get`).
pub fn ocsp_get_request(encoded: &str) -> Option<Vec<u8>> {
    percent_decode(encoded).and_then(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
    })
}

/// Decodes `%XX` escapes; `None` for a broken escape.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("MEow%2BQ%3D%3D").as_deref(),
            Some("MEow+Q==")
        );
        assert_eq!(percent_decode("a/b").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
