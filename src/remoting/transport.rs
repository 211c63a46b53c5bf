//! [`Transport`]: a connection's byte stream as the `rmq-io` loop sees it, plain TCP or TLS.
//!
//! The TLS handshake is done by [`Transport::establish`] on the connecting thread, blocking with
//! the connect budget as its timeout, so a refused certificate or a peer that does not speak TLS
//! fails the call that connected with [`Error::Connect`] rather than later on the loop. After
//! that the loop drives rustls without blocking:
//!
//! * [`Read`] hands out plaintext. rustls buffers decrypted records, so a read first drains that
//!   buffer and only then reads the socket; it reports `WouldBlock` only once the socket itself
//!   did, which is what mio's edge-triggered readiness needs.
//! * [`Write`] encrypts into rustls' bounded send buffer and writes records to the socket until
//!   it blocks. Bytes can stay buffered in rustls after a write (and after a read: alerts, key
//!   updates), so the loop also asks [`Transport::wants_write`] when it decides on `WRITABLE`
//!   interest, and [`Write::flush`] sends them.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ClientConnection;

use super::tls::TlsConnector;
use crate::error::{Error, Result};

/// A connected stream: plain TCP, or TLS over TCP once its handshake is done.
pub(crate) enum Transport {
    Plain(PlainStream),
    Tls(Box<TlsStream>),
}

/// A plaintext connection, which remembers whether the peer ever sent a byte.
pub(crate) struct PlainStream {
    sock: TcpStream,
    answered: bool,
}

/// Why a plaintext connection ended before its peer said anything. A server that requires TLS
/// (a rocketmq-rust broker with `tls.server.mode` enforcing, a Java broker in enforcing mode)
/// closes a plaintext connection this way, so the reason hints at it.
const CLOSED_UNANSWERED: &str = "connection closed by peer before any answer (a server that \
                                 requires TLS closes plaintext connections like this: does it \
                                 need use_tls?)";

/// A TLS client connection over a non-blocking socket.
pub(crate) struct TlsStream {
    sock: TcpStream,
    conn: ClientConnection,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(s) => f.debug_tuple("Plain").field(&s.sock).finish(),
            Transport::Tls(t) => f.debug_tuple("Tls").field(&t.sock).finish(),
        }
    }
}

impl Transport {
    /// Prepares a freshly connected socket for the loop: `TCP_NODELAY`, the TLS handshake when
    /// `tls` is given (finished before `deadline`), then non-blocking mode.
    ///
    /// A failed handshake is [`Error::Connect`] whose source says what went wrong (untrusted
    /// certificate, name mismatch, the peer closed or answered something that is not TLS, no
    /// answer before the deadline).
    pub(crate) fn establish(
        sock: StdTcpStream,
        addr: &str,
        deadline: Instant,
        tls: Option<&TlsConnector>,
    ) -> Result<Transport> {
        let connect_err = |source: io::Error| Error::Connect {
            addr: addr.to_string(),
            source,
        };
        sock.set_nodelay(true).map_err(connect_err)?;
        let Some(tls) = tls else {
            sock.set_nonblocking(true).map_err(connect_err)?;
            return Ok(Transport::Plain(PlainStream {
                sock: TcpStream::from_std(sock),
                answered: false,
            }));
        };
        let name = tls.server_name_for(addr).map_err(connect_err)?;
        let conn = ClientConnection::new(std::sync::Arc::clone(&tls.config), name)
            .map_err(|e| connect_err(io::Error::other(e)))?;
        let mut sock = sock;
        let conn = handshake(&mut sock, conn, deadline).map_err(connect_err)?;
        sock.set_read_timeout(None).map_err(connect_err)?;
        sock.set_write_timeout(None).map_err(connect_err)?;
        sock.set_nonblocking(true).map_err(connect_err)?;
        Ok(Transport::Tls(Box::new(TlsStream {
            sock: TcpStream::from_std(sock),
            conn,
        })))
    }

    /// A second descriptor of a plain connection's socket, for writes from another thread (a
    /// TLS connection's records must all come from its one rustls session: `None`).
    pub(crate) fn try_clone_plain(&self) -> Option<StdTcpStream> {
        #[cfg(unix)]
        if let Transport::Plain(p) = self {
            use std::os::fd::AsFd;
            return p
                .sock
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(StdTcpStream::from);
        }
        None
    }

    /// Shuts a plain connection's socket down both ways, so that a second descriptor of it
    /// does not keep it open once the loop drops its own.
    pub(crate) fn shutdown_plain(&self) {
        if let Transport::Plain(p) = self {
            let _ = p.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// `true` when a read that returned fewer bytes than asked for took everything the socket
    /// held, so the edge-triggered reader need not read again to see `WouldBlock`: a plain TCP
    /// socket (data arriving later raises a new edge). Not TLS, whose reads return plaintext
    /// that rustls may hold back while socket bytes wait.
    pub(crate) fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// `true` while TLS records are buffered that the socket has not taken yet.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.conn.wants_write(),
        }
    }
}

/// Drives `conn`'s handshake over the blocking `sock` until done or `deadline`.
fn handshake(
    sock: &mut StdTcpStream,
    mut conn: ClientConnection,
    deadline: Instant,
) -> io::Result<ClientConnection> {
    let started = Instant::now();
    while conn.is_handshaking() || conn.wants_write() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(handshake_timeout(started.elapsed()));
        }
        // A zero timeout means "none" to std; `left` is not zero here.
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))?;
        if !conn.is_handshaking() {
            // Handshake messages queued after the last one read (a TLS 1.3 client Finished).
            conn.write_tls(sock)
                .map_err(|e| handshake_io_error(e, started))?;
            continue;
        }
        match conn.complete_io(sock) {
            Ok(_) => {}
            Err(e) => return Err(handshake_io_error(e, started)),
        }
    }
    Ok(conn)
}

fn handshake_timeout(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "TLS handshake not finished after {after:?}: the peer sent no TLS answer (is it a TLS server?)"
        ),
    )
}

/// Turns what `complete_io` reports into an error that says it was the TLS handshake.
fn handshake_io_error(e: io::Error, started: Instant) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => handshake_timeout(started.elapsed()),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => io::Error::new(
            e.kind(),
            format!(
                "TLS handshake failed: the peer closed the connection ({e}); it may not accept \
                 TLS, or it refused this client"
            ),
        ),
        kind => {
            // rustls errors come wrapped in `InvalidData`; keep them as the source.
            let detail = match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidMessage(m)) => {
                    format!("the peer's answer is not TLS ({m:?}); it may be a plaintext server")
                }
                Some(other) => other.to_string(),
                None => e.to_string(),
            };
            io::Error::new(kind, format!("TLS handshake failed: {detail}"))
        }
    }
}

impl TlsStream {
    /// Writes buffered TLS records until none are left (`Ok(false)`) or the socket blocks
    /// (`Ok(true)`).
    fn send_records(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // `Ok(0)` after the peer's close_notify: EOF, as on a plain socket.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket closed without close_notify (brokers just close): EOF too.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Nothing decrypted is left: take more records off the socket. `WouldBlock` from
            // here means the socket is drained.
            self.conn.read_tls(&mut self.sock)?;
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the peer why (the alert rustls queued), without letting that mask `e`.
                let _ = self.conn.write_tls(&mut self.sock);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS error: {e}"),
                ));
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            // Accepted up to rustls' send-buffer limit (64 KiB of records).
            let n = self.conn.writer().write_vectored(bufs)?;
            let blocked = self.send_records()?;
            if n > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Ok(n);
            }
            if blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // The buffer was full and the socket has just taken it: try again.
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.send_records()? {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        // A polite close_notify if the socket takes it at once; never waits.
        self.conn.send_close_notify();
        let _ = self.conn.write_tls(&mut self.sock);
    }
}

impl PlainStream {
    /// A reset before the first byte from the peer, as an error that says what it may mean.
    fn unanswered(&self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Err(e)
                if !self.answered
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
            {
                Err(io::Error::new(
                    e.kind(),
                    format!("{e}: {CLOSED_UNANSWERED}"),
                ))
            }
            other => other,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => {
                let result = s.sock.read(buf);
                match result {
                    // EOF before the first byte: an error that says what it may mean.
                    Ok(0) if !s.answered => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        CLOSED_UNANSWERED,
                    )),
                    // A TLS record (alert 0x15 or handshake 0x16, version 3.x) where a frame
                    // length should be: as a length it would be over 350 MB, a codec error.
                    Ok(n) if !s.answered && n >= 2 && matches!(buf[..2], [0x15 | 0x16, 0x03]) => {
                        Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the peer answered with a TLS record: it requires TLS (use_tls)",
                        ))
                    }
                    Ok(n) => {
                        s.answered |= n > 0;
                        Ok(n)
                    }
                    Err(e) => s.unanswered(Err(e)),
                }
            }
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => {
                let result = s.sock.write(buf);
                s.unanswered(result)
            }
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => {
                let result = s.sock.write_vectored(bufs);
                s.unanswered(result)
            }
            Transport::Tls(t) => t.write_vectored(bufs),
        }
    }

    /// Sends buffered TLS records; `WouldBlock` if some are still waiting for the socket.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t) => t.flush(),
        }
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket().deregister(registry)
    }
}

impl Transport {
    fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => &mut s.sock,
            Transport::Tls(t) => &mut t.sock,
        }
    }
}

#[cfg(test)]
mod tests;
