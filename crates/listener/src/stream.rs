//! An accept loop that admits before it hands a connection out.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::{Admission, Ticket};

/// A TCP listener whose connections have passed [`Admission::admit`].
#[derive(Debug)]
pub struct AdmittedListener {
    tcp: TcpListener,
    admission: Arc<Admission>,
}

impl AdmittedListener {
    /// Admits `tcp`'s connections through `admission`.
    pub fn new(tcp: TcpListener, admission: Arc<Admission>) -> Self {
        Self { tcp, admission }
    }

    /// The admission state (limits, drain).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Accepts until `shutdown` completes. Each admitted connection whose first bytes
    /// arrive within the admission's deadline goes to `handle` on a task of its own, which
    /// holds the connection's admission ticket (its place under the caps) until `handle`
    /// ends; a silent one is closed without reaching it.
    pub async fn serve_each<H, F>(&self, shutdown: impl Future<Output = ()>, handle: H)
    where
        H: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = Arc::new(handle);
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote, ticket) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.accept() => accepted,
            };
            let handle = Arc::clone(&handle);
            tokio::spawn(async move {
                if !ticket.first_bytes(&tcp).await {
                    return;
                }
                let _ticket = ticket;
                handle(tcp, remote).await;
            });
        }
    }

    /// The next admitted connection. Refused ones are closed here; accept errors (EMFILE
    /// and friends) back off for 50 ms instead of spinning, logged at most once a second.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, Ticket) {
        let mut last_error_line: Option<std::time::Instant> = None;
        loop {
            match self.tcp.accept().await {
                Ok((tcp, remote)) => {
                    if let Ok(ticket) = self.admission.admit(remote) {
                        let _ = tcp.set_nodelay(true);
                        return (tcp, remote, ticket);
                    }
                    // Dropped: closed without reading anything.
                }
                Err(e) => {
                    if last_error_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed");
                        last_error_line = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection with its admission ticket (for servers that take a stream, like axum).
#[derive(Debug)]
pub struct AdmittedStream {
    tcp: TcpStream,
    _ticket: Ticket,
}

impl AsyncRead for AdmittedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl AdmittedListener {
    /// The next admitted connection as one stream that frees its place when dropped.
    pub async fn accept_stream(&self) -> (AdmittedStream, SocketAddr) {
        let (tcp, remote, ticket) = self.accept().await;
        (
            AdmittedStream {
                tcp,
                _ticket: ticket,
            },
            remote,
        )
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
