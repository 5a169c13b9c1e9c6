//! Every connection's stream: each request's head must arrive within
//! `server.request_head_timeout_secs` of its first byte, on every request
//! of a keep-alive connection (actix-http's own client request timeout
//! covers only a connection's first request).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

/// The empty line that ends a request head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// Made once: building a searcher costs more than most searches.
static HEAD_END_FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(HEAD_END));

/// What a client that was too slow gets before its connection is closed:
/// the answer actix-http gives a slow first request.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A TCP stream that watches the bytes read for the end of a request head
/// (an empty line). A head's clock starts at the first byte read after a
/// response was written (or the connection opened), and stops at the empty
/// line; a head still unfinished when it runs out ends the connection.
pub struct HeadDeadline {
    stream: TcpStream,
    timeout: Duration,
    phase: Phase,
    /// Made at the first head, reset for each later one.
    timer: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read since the last response (or the connection opened).
    Idle,
    /// A head is arriving; how much of `\r\n\r\n` ended the bytes so far.
    Head { matched: u8 },
    /// The head is in: its body, and the handler's answer.
    Rest,
}

impl HeadDeadline {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        HeadDeadline {
            stream,
            timeout,
            phase: Phase::Idle,
            timer: None,
        }
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    fn received(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Idle {
            // A whole head in one read, as nearly every GET arrives: its
            // clock would stop as it starts, so it is never wound.
            if bytes.ends_with(HEAD_END) {
                self.phase = Phase::Rest;
                return;
            }
            self.phase = Phase::Head { matched: 0 };
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(sleep_until(deadline))),
            }
        }
        if let Phase::Head { matched } = self.phase {
            // The empty line may straddle reads: the bytes before these
            // ended with `matched` bytes of it.
            let matched = usize::from(matched);
            let mut joint = [0u8; 6];
            let carried = bytes.len().min(3);
            joint[..matched].copy_from_slice(&HEAD_END[..matched]);
            joint[matched..matched + carried].copy_from_slice(&bytes[..carried]);
            let joint = &joint[..matched + carried];
            if bytes.ends_with(HEAD_END)
                || joint.windows(HEAD_END.len()).any(|w| w == HEAD_END)
                || HEAD_END_FINDER.find(bytes).is_some()
            {
                self.phase = Phase::Rest;
                return;
            }
            let tail = if bytes.len() >= 3 { bytes } else { joint };
            let matched = (1..=3)
                .rev()
                .find(|&n| tail.ends_with(&HEAD_END[..n]))
                .unwrap_or(0);
            self.phase = Phase::Head {
                matched: matched as u8,
            };
        }
    }

    /// Whether the head being read has run out of time (registering the
    /// task to be woken when it does).
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.phase, Phase::Head { .. })
            && self
                .timer
                .as_mut()
                .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.received(&buf.filled()[before..]);
        }
        if this.head_expired(cx) {
            // Best effort: the socket's buffer is empty when the client is
            // this slow, and a client that reads nothing loses nothing.
            let _ = this.stream.try_write(REQUEST_TIMEOUT);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head took longer than server.request_head_timeout_secs",
            )));
        }
        read
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        // An answer is going out: the next bytes read begin a new request.
        this.phase = Phase::Idle;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connected(timeout: Duration) -> (HeadDeadline, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (HeadDeadline::new(server, timeout), client)
    }

    #[actix_rt::test]
    async fn a_head_split_anywhere_is_seen_to_end_at_its_empty_line() {
        let (mut server, _client) = connected(Duration::from_secs(5)).await;
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        server.received(head);
        assert_eq!(server.phase, Phase::Rest, "whole");
        assert!(server.timer.is_none(), "a head read whole winds no clock");
        for split in 1..head.len() {
            server.phase = Phase::Idle;
            server.received(&head[..split]);
            assert!(matches!(server.phase, Phase::Head { .. }), "{split}");
            server.received(&head[split..]);
            assert_eq!(server.phase, Phase::Rest, "{split}");
        }
        server.phase = Phase::Idle;
        for (i, byte) in head.iter().enumerate() {
            assert!(matches!(server.phase, Phase::Idle | Phase::Head { .. }), "{i}");
            server.received(&[*byte]);
        }
        assert_eq!(server.phase, Phase::Rest, "a byte at a time");
        server.phase = Phase::Idle;
        server.received(b"GET / HTTP/1.1\r\nHost: a\r\n\r");
        server.received(b"\rX: b\n\r\n");
        assert!(
            matches!(server.phase, Phase::Head { .. }),
            "\\r\\r\\n is no empty line"
        );
    }

    #[actix_rt::test]
    async fn a_second_head_trickled_on_the_same_connection_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut server, mut client) = connected(Duration::from_millis(400)).await;
        let mut buffer = [0u8; 64];

        let first = b"GET / HTTP/1.1\r\n\r\n";
        client.write_all(first).await.unwrap();
        server.read_exact(&mut buffer[..first.len()]).await.unwrap();
        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        client.write_all(b"G").await.unwrap();
        server.read_exact(&mut buffer[..1]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(b"E").await.unwrap();
        assert_eq!(server.read(&mut buffer).await.unwrap(), 1, "within the time");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let late = tokio::time::timeout(Duration::from_secs(2), server.read(&mut buffer))
            .await
            .expect("cut off, not held")
            .unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
        let mut answer = vec![0u8; REQUEST_TIMEOUT.len() + 17];
        client.read_exact(&mut answer).await.unwrap();
        assert!(answer.ends_with(REQUEST_TIMEOUT));
    }
}
