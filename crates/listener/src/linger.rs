//! The graceful end of a connection that was answered early.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Closes a connection gracefully: close_notify and FIN first, then read and discard what
/// the client is still sending (bounded in time and bytes) before the socket is dropped.
/// Without this, answering early (413 for an oversized body) and closing with unread data
/// in the receive buffer makes the kernel send RST, and the client may lose the answer.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    const LINGER_TIME: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 4 * 1024 * 1024;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 16 * 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
