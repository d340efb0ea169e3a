//! `WWW-Authenticate` spelled as RFC 7235 spells it on the wire.
//!
//! hyper writes header names lower-case, or title-cased (`title_case_headers`), which
//! gives `Www-Authenticate`. Widely embedded EST clients look for `WWW-Authenticate`
//! case-sensitively and never send their credentials otherwise. hyper 1 can write
//! original case only from a case map it builds while parsing (not constructible by a
//! server), so this writer puts the one name that title case gets wrong right, in the
//! bytes hyper writes: `\r\nWww-Authenticate:` becomes `\r\nWWW-Authenticate:` (same
//! length, so no framing changes). Every other EST header (`Content-Type`,
//! `Content-Length`, `Content-Transfer-Encoding`, `Retry-After`, `Allow`) is already
//! right in title case. Vectored writes are turned off so that hyper hands over each
//! response head in one buffer; a write never ends inside the pattern after its `\r\nW`,
//! and a write that ended with `\r\n` is remembered, so a name split there is found too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const TITLE_CASE: &[u8] = b"\r\nWww-Authenticate:";
const RFC_CASE: &[u8] = b"\r\nWWW-Authenticate:";

/// An I/O stream whose writes carry `WWW-Authenticate` in RFC spelling.
#[derive(Debug)]
pub(crate) struct RfcHeaderCase<S> {
    inner: S,
    /// The bytes written last ended with `\r\n`.
    after_crlf: bool,
}

impl<S> RfcHeaderCase<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            after_crlf: false,
        }
    }
}

/// How much of `buf` to write now: all of it, unless it ends with `\r\nW` or more of the
/// pattern (then up to there, so the next write holds the whole pattern). A lone trailing
/// `\r\n` is written and remembered instead, which costs no extra write.
fn writable_len(buf: &[u8]) -> usize {
    let tail_start = buf.len().saturating_sub(TITLE_CASE.len() - 1);
    for start in tail_start..buf.len() {
        let tail = buf.get(start..).unwrap_or_default();
        if start > 0 && tail.len() >= 3 && TITLE_CASE.starts_with(tail) {
            return start;
        }
    }
    buf.len()
}

/// `buf` with every `\r\nWww-Authenticate:` rewritten (and a leading `Www-Authenticate:`
/// when the previous write ended with `\r\n`), or `None` when there is none.
fn rewritten(buf: &[u8], after_crlf: bool) -> Option<Vec<u8>> {
    let name = TITLE_CASE.get(2..).unwrap_or_default();
    let leading = after_crlf && buf.starts_with(name);
    let first = buf.windows(TITLE_CASE.len()).position(|w| w == TITLE_CASE);
    if !leading && first.is_none() {
        return None;
    }
    let mut out = buf.to_vec();
    if leading {
        if let Some(head) = out.get_mut(..name.len()) {
            head.copy_from_slice(RFC_CASE.get(2..).unwrap_or_default());
        }
    }
    let mut at = first.unwrap_or(out.len());
    while let Some(window) = out.get_mut(at..at + TITLE_CASE.len()) {
        if window == TITLE_CASE {
            window.copy_from_slice(RFC_CASE);
            at += TITLE_CASE.len();
        } else {
            at += 1;
        }
    }
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for RfcHeaderCase<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RfcHeaderCase<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let buf = buf.get(..writable_len(buf)).unwrap_or(buf);
        let this = &mut *self;
        let result = match rewritten(buf, this.after_crlf) {
            // Same length: bytes written of the copy are bytes written of `buf`.
            Some(copy) => Pin::new(&mut this.inner).poll_write(cx, &copy),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &result {
            if *n > 0 {
                this.after_crlf = buf.get(..*n).is_some_and(|w| w.ends_with(b"\r\n"));
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_cased_name_is_rewritten_and_nothing_else() {
        let head = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nWww-Authenticate: Basic realm=\"fleetca\"\r\n\r\nWww-Authenticate: in a body line";
        let out = rewritten(head, false).unwrap_or_default();
        assert_eq!(out.len(), head.len());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\r\nWWW-Authenticate: Basic"), "{text}");
        assert!(text.contains("Content-Type: text/plain"));
        assert!(rewritten(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).is_none());
        // Split right after a line end: the next write starts with the name.
        let next = rewritten(b"Www-Authenticate: Basic\r\n", true).unwrap_or_default();
        assert!(next.starts_with(b"WWW-Authenticate: Basic"));
        assert!(rewritten(b"Www-Authenticate: Basic\r\n", false).is_none());
    }

    #[test]
    fn a_write_never_ends_inside_the_pattern() {
        let buf = b"HTTP/1.1 401 Unauthorized\r\nWww-Auth";
        assert_eq!(writable_len(buf), buf.len() - b"\r\nWww-Auth".len());
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        // A trailing "\r\n" is written (and remembered), not held back.
        assert_eq!(writable_len(buf), buf.len());
        assert_eq!(writable_len(b"abc"), 3);
        assert_eq!(writable_len(b"\r"), 1);
    }
}
