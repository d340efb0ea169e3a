//! The accept loop: TCP (admitted by [`fleetca_listener`]: global and per-source caps,
//! per-source accept rate, first-byte deadline) → TLS (with a handshake deadline) →
//! HTTP/1.1 (hyper, canonical header capitalisation with `WWW-Authenticate` as RFC 7235
//! spells it, header-read deadline, header buffer
//! of `max_header_bytes`) → [`EstService`], with a bound on each connection's lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fleetca_listener::AdmittedListener;
use fleetca_ra::ChannelBinding;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_rustls::TlsAcceptor;

use crate::header_case::RfcHeaderCase;
use crate::service::{ConnectionInfo, EstService};

pub use fleetca_listener::ConnectionLimits;

/// Serves EST on `listener` until `shutdown` completes, then waits (up to 10 s) for open
/// connections to finish.
pub async fn serve(
    listener: AdmittedListener,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<EstService>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    listener
        .serve_each(shutdown, move |tcp, remote| {
            let acceptor = acceptor.clone();
            let service = Arc::clone(&service);
            let limits = limits.clone();
            async move {
                let Some(stream) = limits.handshake("EST", remote, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let (_, session) = stream.get_ref();
                let peer_chain = session.peer_certificates().map(|c| {
                    Arc::new(c.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>())
                });
                let channel_binding = match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => session
                        .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                        .map(ChannelBinding::TlsExporter)
                        .unwrap_or(ChannelBinding::Unavailable),
                    _ => ChannelBinding::Unavailable,
                };
                let info = Arc::new(ConnectionInfo {
                    peer_chain,
                    channel_binding,
                    remote,
                    verified: Default::default(),
                    tls: true,
                });
                serve_http(stream, service, info, &limits).await;
            }
        })
        .await;
    // Wait for in-flight connections: they hold their tickets.
    listener.admission().drained(Duration::from_secs(10)).await;
    Ok(())
}

/// Serves the front ends that protect their own messages (SCEP) over plain HTTP on
/// `listener` until `shutdown` completes: the same admission, HTTP settings and limits as
/// [`serve`], no TLS. EST paths are refused there (`ConnectionInfo::tls` is false).
pub async fn serve_plain(
    listener: AdmittedListener,
    service: Arc<EstService>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    listener
        .serve_each(shutdown, move |tcp, remote| {
            let service = Arc::clone(&service);
            let limits = limits.clone();
            async move {
                let info = Arc::new(ConnectionInfo {
                    peer_chain: None,
                    channel_binding: ChannelBinding::Unavailable,
                    remote,
                    verified: Default::default(),
                    tls: false,
                });
                serve_http(tcp, service, info, &limits).await;
            }
        })
        .await;
    listener.admission().drained(Duration::from_secs(10)).await;
    Ok(())
}

/// HTTP/1.1 on one accepted connection (TLS or plain), within the connection's lifetime,
/// then a lingering close.
async fn serve_http<S>(
    stream: S,
    service: Arc<EstService>,
    info: Arc<ConnectionInfo>,
    limits: &ConnectionLimits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let svc = service_fn(move |req| {
        let service = Arc::clone(&service);
        let info = Arc::clone(&info);
        async move { Ok::<_, Infallible>(service.handle(info, req).await) }
    });
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .serve_connection(TokioIo::new(RfcHeaderCase::new(stream)), svc)
        .without_shutdown();
    match tokio::time::timeout(limits.max_connection_lifetime, conn).await {
        Ok(Ok(parts)) => fleetca_listener::linger(parts.io.into_inner()).await,
        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "connection ended with an error"),
        Err(_) => tracing::debug!(%remote, "connection lifetime limit reached"),
    }
}
