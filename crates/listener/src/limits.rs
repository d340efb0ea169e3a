//! Time and size limits of one connection, after admission.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Connection-level limits of an HTTPS listener (EST and admin alike).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request's headers to arrive (also bounds idle keep-alive).
    pub header_timeout: Duration,
    /// Longest a single connection may stay open.
    pub max_connection_lifetime: Duration,
    /// hyper's read buffer: the most bytes of a request head (request line and headers)
    /// held per connection; a longer head gets 431 and the connection is closed. EST and
    /// admin heads are well under 8 KiB; tens of KiB leave room for long Authorization headers
    /// while a flood of partial heads costs tens of KiB per connection, not hyper's
    /// ~400 KiB default.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connection_lifetime: Duration::from_secs(300),
            max_header_bytes: 32 * 1024,
        }
    }
}

impl ConnectionLimits {
    /// Runs a connection's handshake (`listener` names it in the log: "EST", "admin")
    /// within [`ConnectionLimits::handshake_timeout`]. `None` if it failed or timed out:
    /// logged at debug (a client's failed handshake is its own business), the caller drops
    /// the connection.
    pub async fn handshake<T, E: Display>(
        &self,
        listener: &'static str,
        remote: SocketAddr,
        handshake: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(listener, %remote, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(listener, %remote, "TLS handshake timed out");
                None
            }
        }
    }
}
