//! The admin listener: TLS (the server certificate, TLS 1.2/1.3, no client certificate
//! requested) over connections admitted by the listener crate, HTTP/1.1 to the router.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fleetca_listener::AdmittedListener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::extract::Remote;

pub use fleetca_listener::ConnectionLimits;

/// The listener's TLS configuration: `chain` and `key` (the server certificate), TLS 1.3
/// and 1.2, no client authentication, HTTP/1.1.
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` on `listener` until `shutdown`, then waits (up to 10 s) for open
/// connections.
pub async fn serve(
    listener: AdmittedListener,
    tls: Arc<ServerConfig>,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    listener
        .serve_each(shutdown, move |tcp, remote| {
            let acceptor = acceptor.clone();
            let router = router.clone();
            let limits = limits.clone();
            async move {
                let Some(stream) = limits
                    .handshake("admin", remote, acceptor.accept(tcp))
                    .await
                else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(Remote(remote.ip()));
                        let router = router.clone();
                        async move {
                            let response = router.oneshot(req).await;
                            Ok::<_, Infallible>(match response {
                                Ok(r) => r,
                                Err(never) => match never {},
                            })
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .max_buf_size(limits.max_header_bytes)
                    .serve_connection(TokioIo::new(stream), service)
                    .without_shutdown();
                match tokio::time::timeout(limits.max_connection_lifetime, conn).await {
                    // An early answer (413) leaves the body unread: read it away before the
                    // close, so the kernel does not reset the connection under the answer.
                    Ok(Ok(parts)) => fleetca_listener::linger(parts.io.into_inner()).await,
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "admin connection error"),
                    Err(_) => tracing::debug!(%remote, "admin connection lifetime limit reached"),
                }
            }
        })
        .await;
    listener.admission().drained(Duration::from_secs(10)).await;
    Ok(())
}
