//! The listening socket with bounds: at most `max_connections` open at
//! once (further clients wait in the kernel's backlog until one closes),
//! and a connection that neither sends nor receives a byte for `idle` is
//! closed, and a request head (request line and headers) must arrive in
//! full within `head` of its first byte, so neither idle nor trickling
//! sockets can hold the server's slots.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How the listener bounds its connections.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub max_connections: usize,
    pub idle: Duration,
    pub head: Duration,
}

pub struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
    head: Duration,
}

impl Bounded {
    pub fn new(inner: TcpListener, bounds: Bounds) -> Bounded {
        Bounded {
            inner,
            slots: Arc::new(Semaphore::new(bounds.max_connections.max(1))),
            idle: bounds.idle,
            head: bounds.head,
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // A slot first: at the cap, new clients wait rather than crowd out
        // the connections being served.
        let slot = match self.slots.clone().acquire_owned().await {
            Ok(s) => s,
            Err(_) => std::future::pending().await,
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (BoundedIo::new(stream, slot, self.idle, self.head), addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot until dropped, failing with `TimedOut`
/// once no byte has moved either way for the idle time, or once a request
/// head has taken longer than the head time since its first byte.
pub struct BoundedIo {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    head: Duration,
    /// When the first byte of the request head being read arrived (`None`
    /// between requests and while a body is read).
    head_started: Option<Instant>,
    /// Reading a request head (until its blank line).
    in_head: bool,
    /// How much of "\r\n\r\n" the bytes read so far end with.
    blank_line: u8,
    deadline: Pin<Box<Sleep>>,
}

impl BoundedIo {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle: Duration, head: Duration) -> BoundedIo {
        BoundedIo {
            stream,
            _slot: slot,
            idle,
            head,
            head_started: None,
            in_head: true,
            blank_line: 0,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let idle = Instant::now() + self.idle;
        let at = match self.head_started {
            Some(t) => idle.min(t + self.head),
            None => idle,
        };
        self.deadline.as_mut().reset(at);
    }

    /// Follows request heads through the bytes read.
    fn read_bytes(&mut self, bytes: &[u8]) {
        if !self.in_head {
            return;
        }
        self.head_started.get_or_insert_with(Instant::now);
        for &b in bytes {
            self.blank_line = match (self.blank_line, b) {
                (0 | 2, b'\r') => self.blank_line + 1,
                (1 | 3, b'\n') => self.blank_line + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.blank_line == 4 {
                self.in_head = false;
                self.head_started = None;
                self.blank_line = 0;
                return;
            }
        }
    }

    /// A response is going out: the next bytes read start a new head.
    fn wrote(&mut self) {
        self.in_head = true;
        self.blank_line = 0;
    }

    fn idle_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                if self.head_started.is_some() {
                    "request head took too long"
                } else {
                    "connection idle for too long"
                },
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl AsyncRead for BoundedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let this = &mut *self;
                    this.read_bytes(&buf.filled()[before..]);
                    this.progressed();
                    // A head already past its time fails now, however
                    // steadily its bytes trickle in.
                    if let Some(t) = this.head_started
                        && t.elapsed() > this.head
                    {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "request head took too long",
                        )));
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle_out(cx).map(Err),
        }
    }
}

impl AsyncWrite for BoundedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.wrote();
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle_out(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.wrote();
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle_out(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
