//! An in-process TCP proxy that speaks just enough RocketMQ remoting to stand between a client and
//! a real name server or broker, and to break the connection on command (issue 9, scenarios 4
//! and 9).
//!
//! The proxy listens on `127.0.0.1:0` and opens one upstream connection per accepted client
//! connection. Each direction is read frame by frame (the 4-byte length prefix) by one thread and
//! written by another, with a FIFO queue between them, so that the proxy can hold frames back,
//! delay them, drop them or answer a request itself at a frame boundary. At runtime it can:
//!
//! * [`sever`](Proxy::sever) every open connection: both sockets are shut down at once (the client
//!   reads EOF). New connections are still accepted unless [`refuse`](Proxy::refuse) is on.
//! * [`stall`](Proxy::stall) the connections open at that moment: nothing is forwarded either way
//!   and nothing is closed, a half-open connection as after a firewall dropped its state. The
//!   bytes pile up in the proxy. Connections opened later are not stalled, so a client that gives
//!   up a stalled connection gets through on a new one. [`resume`](Proxy::resume) forwards again,
//!   the piled-up frames first. When the client closes a stalled connection, the proxy closes
//!   the server side **without** delivering what piled up: what a client wrote into a black hole
//!   never arrives, so a request the client gave up on does not reach the broker later. When the
//!   server closes a stalled connection, the client learns of it only on resume.
//! * [`refuse`](Proxy::refuse) new connections: they are accepted and closed at once, before
//!   any upstream connection is made (as a load balancer without a backend does); the client
//!   reads EOF.
//! * [`set_delay`](Proxy::set_delay) every frame by a fixed latency in each direction (both ways:
//!   a request and its response each wait once), keeping the order.
//! * [`inject_system_busy`](Proxy::inject_system_busy): answer `SEND_MESSAGE`,
//!   `SEND_MESSAGE_V2` and `SEND_BATCH_MESSAGE` requests itself with `SYSTEM_BUSY` (code 2, the
//!   request's opaque, a broker-like `[TIMEOUT_CLEAN_QUEUE]` remark) instead of forwarding them,
//!   as a broker's flow control does before storing anything; one-way sends are dropped, as a busy
//!   broker sheds them. [`system_busy_every`](Proxy::system_busy_every) answers only every n-th
//!   send and forwards the others.
//!
//! A proxy made with [`ProxyBuilder::rewrite`] replaces a byte string in the body of every
//! response from upstream (the frame length is recomputed): in front of a name server it makes
//! the routes name the broker proxy instead of the broker, which is how the tests put a proxy
//! between a client and a real broker (the rocketmq-rust broker advertises the port it listens
//! on, so it cannot be registered under another one).
//!
//! Counters ([`stats`](Proxy::stats)) let a test assert what went through. Dropping the proxy
//! severs everything and stops accepting.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Largest frame the proxy accepts (the client's own limit, 16 MiB, plus room).
const MAX_FRAME: usize = 32 * 1024 * 1024;

/// The remark of an injected `SYSTEM_BUSY` answer: a broker's fast-failure wording, marked as
/// the proxy's.
pub const BUSY_REMARK: &str =
    "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while (injected by the test proxy)";

/// What went through a proxy so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted (refused ones included).
    pub accepted: u64,
    /// Connections open now.
    pub open: usize,
    /// Connections open now and stalled.
    pub stalled: usize,
    /// Bytes written to the upstream server.
    pub bytes_up: u64,
    /// Bytes written to clients (injected answers included).
    pub bytes_down: u64,
    /// Send requests (`SEND_MESSAGE`, `_V2`, `SEND_BATCH_MESSAGE`) forwarded upstream.
    pub sends_forwarded: u64,
    /// Send requests answered `SYSTEM_BUSY` by the proxy.
    pub sends_answered_busy: u64,
    /// One-way send requests dropped while `SYSTEM_BUSY` was injected.
    pub sends_shed: u64,
    /// Connections closed by [`Proxy::sever`].
    pub severed: u64,
    /// Response bodies changed by the rewrite.
    pub rewritten: u64,
}

/// Builds a [`Proxy`].
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    upstream: String,
    rewrite: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ProxyBuilder {
    /// In every response body from upstream, replace `from` with `to` (for example the quoted
    /// address of a broker with its proxy's).
    pub fn rewrite(mut self, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) -> Self {
        let from = from.into();
        assert!(!from.is_empty(), "nothing to rewrite");
        self.rewrite.push((from, to.into()));
        self
    }

    /// Listens on `127.0.0.1:0` and starts accepting.
    pub fn start(self) -> Proxy {
        let upstream = self
            .upstream
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve the upstream address {}", self.upstream));
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy binds a port");
        let addr = listener.local_addr().expect("the proxy has an address");
        let shared = Arc::new(Shared {
            upstream,
            rewrite: self.rewrite,
            stopping: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            delay_micros: AtomicU64::new(0),
            busy_every: AtomicU32::new(0),
            sends_seen: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            sends_forwarded: AtomicU64::new(0),
            sends_answered_busy: AtomicU64::new(0),
            sends_shed: AtomicU64::new(0),
            severed: AtomicU64::new(0),
            rewritten: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("the proxy's accept thread starts");
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }
}

/// A running proxy; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Shared {
    upstream: SocketAddr,
    rewrite: Vec<(Vec<u8>, Vec<u8>)>,
    stopping: AtomicBool,
    refuse: AtomicBool,
    delay_micros: AtomicU64,
    /// 0: forward every send; n: answer every n-th send `SYSTEM_BUSY`.
    busy_every: AtomicU32,
    sends_seen: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    next_id: AtomicUsize,
    accepted: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    sends_forwarded: AtomicU64,
    sends_answered_busy: AtomicU64,
    sends_shed: AtomicU64,
    severed: AtomicU64,
    rewritten: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_micros.load(Ordering::Acquire))
    }

    fn live_conns(&self) -> Vec<Arc<Conn>> {
        let mut conns = self.conns.lock();
        conns.retain(|c| c.strong_count() > 0);
        conns.iter().filter_map(Weak::upgrade).collect()
    }
}

impl Proxy {
    /// A proxy in front of `upstream` (`host:port`).
    pub fn builder(upstream: impl Into<String>) -> ProxyBuilder {
        ProxyBuilder {
            upstream: upstream.into(),
            rewrite: Vec::new(),
        }
    }

    /// A plain proxy in front of `upstream`.
    pub fn start(upstream: impl Into<String>) -> Proxy {
        Proxy::builder(upstream).start()
    }

    /// `127.0.0.1:port` where the proxy listens.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes every open connection, both sides, now. Returns how many there were.
    pub fn sever(&self) -> usize {
        let conns = self.shared.live_conns();
        let mut n = 0;
        for c in &conns {
            if c.close("severed") {
                n += 1;
            }
        }
        self.shared.severed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// While on, new connections are accepted and closed at once.
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::Release);
    }

    /// Stops forwarding on every connection open now, without closing any (see the module
    /// docs). Returns how many were stalled.
    pub fn stall(&self) -> usize {
        let conns = self.shared.live_conns();
        for c in &conns {
            c.stalled.store(true, Ordering::Release);
        }
        conns.len()
    }

    /// Forwards again on every stalled connection, what piled up first.
    pub fn resume(&self) {
        for c in self.shared.live_conns() {
            c.stalled.store(false, Ordering::Release);
            c.to_server.wake();
            c.to_client.wake();
        }
    }

    /// Holds every frame this long before writing it on (each direction), from now on. Order
    /// is kept.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_micros
            .store(delay.as_micros() as u64, Ordering::Release);
        for c in self.shared.live_conns() {
            c.to_server.wake();
            c.to_client.wake();
        }
    }

    /// Answers every send request `SYSTEM_BUSY` while on (see the module docs).
    pub fn inject_system_busy(&self, on: bool) {
        self.system_busy_every(u32::from(on));
    }

    /// Answers every `n`-th send request `SYSTEM_BUSY` and forwards the others; 0 forwards all.
    pub fn system_busy_every(&self, n: u32) {
        self.shared.sends_seen.store(0, Ordering::Release);
        self.shared.busy_every.store(n, Ordering::Release);
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        let open: Vec<Arc<Conn>> = s
            .live_conns()
            .into_iter()
            .filter(|c| !c.is_closed())
            .collect();
        ProxyStats {
            accepted: s.accepted.load(Ordering::Acquire),
            open: open.len(),
            stalled: open
                .iter()
                .filter(|c| c.stalled.load(Ordering::Acquire))
                .count(),
            bytes_up: s.bytes_up.load(Ordering::Acquire),
            bytes_down: s.bytes_down.load(Ordering::Acquire),
            sends_forwarded: s.sends_forwarded.load(Ordering::Acquire),
            sends_answered_busy: s.sends_answered_busy.load(Ordering::Acquire),
            sends_shed: s.sends_shed.load(Ordering::Acquire),
            severed: s.severed.load(Ordering::Acquire),
            rewritten: s.rewritten.load(Ordering::Acquire),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self.shared.live_conns() {
            c.close("proxy stopped");
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let client = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("proxy: accept failed: {e}");
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        if shared.refuse.load(Ordering::Acquire) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(3)) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("proxy: cannot reach {}: {e}", shared.upstream);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        if let Err(e) = start_conn(&shared, client, server) {
            log::warn!("proxy: cannot start a connection: {e}");
        }
    }
}

/// One direction's frames between its reader and its writer.
struct Pipe {
    queue: Mutex<PipeState>,
    ready: Condvar,
}

#[derive(Default)]
struct PipeState {
    frames: VecDeque<(Instant, Bytes)>,
    /// The reader saw the end of its side: close the connection once `frames` are written.
    ended: bool,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            queue: Mutex::new(PipeState::default()),
            ready: Condvar::new(),
        }
    }

    fn push(&self, due: Instant, frame: Bytes) {
        self.queue.lock().frames.push_back((due, frame));
        self.ready.notify_all();
    }

    fn end(&self) {
        self.queue.lock().ended = true;
        self.ready.notify_all();
    }

    fn wake(&self) {
        let _guard = self.queue.lock();
        self.ready.notify_all();
    }

    fn clear(&self) {
        let mut q = self.queue.lock();
        q.frames.clear();
        q.ended = true;
        drop(q);
        self.ready.notify_all();
    }
}

struct Conn {
    id: usize,
    client: TcpStream,
    server: TcpStream,
    stalled: AtomicBool,
    closed: AtomicBool,
    to_server: Pipe,
    to_client: Pipe,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Shuts both sockets down and drops what is queued. Returns whether this call closed it.
    fn close(&self, why: &str) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        log::debug!("proxy: connection {} closed: {why}", self.id);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
        self.to_server.clear();
        self.to_client.clear();
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

fn start_conn(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let conn = Arc::new(Conn {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        client: client.try_clone()?,
        server: server.try_clone()?,
        stalled: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        to_server: Pipe::new(),
        to_client: Pipe::new(),
    });
    shared.conns.lock().push(Arc::downgrade(&conn));
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(format!("proxy-{name}-{}", conn.id))
            .spawn(f)
            .map(|_| ())
    };
    {
        let (c, s, src) = (conn.clone(), shared.clone(), client.try_clone()?);
        spawn(
            "c2s-read",
            Box::new(move || reader(&c, &s, src, Direction::ToServer)),
        )?;
    }
    {
        let (c, s, src) = (conn.clone(), shared.clone(), server.try_clone()?);
        spawn(
            "s2c-read",
            Box::new(move || reader(&c, &s, src, Direction::ToClient)),
        )?;
    }
    {
        let (c, s) = (conn.clone(), shared.clone());
        spawn(
            "c2s-write",
            Box::new(move || writer(&c, &s, server, Direction::ToServer)),
        )?;
    }
    {
        let (c, s) = (conn.clone(), shared.clone());
        spawn(
            "s2c-write",
            Box::new(move || writer(&c, &s, client, Direction::ToClient)),
        )?;
    }
    Ok(())
}

/// Reads one whole frame (with its length prefix), or `None` at the end of the stream.
fn read_frame(src: &mut TcpStream) -> io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match src.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if !(4..=MAX_FRAME).contains(&n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {n}"),
        ));
    }
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    src.read_exact(&mut frame[4..])?;
    Ok(Some(Bytes::from(frame)))
}

fn reader(conn: &Arc<Conn>, shared: &Shared, mut src: TcpStream, dir: Direction) {
    loop {
        let frame = match read_frame(&mut src) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => break,
        };
        if conn.is_closed() {
            return;
        }
        let due = Instant::now() + shared.delay();
        match dir {
            Direction::ToServer => match busy_answer(shared, &frame) {
                Verdict::Forward => conn.to_server.push(due, frame),
                Verdict::Answer(answer) => conn.to_client.push(due, answer),
                Verdict::Drop => {}
            },
            Direction::ToClient => conn.to_client.push(due, rewrite(shared, frame)),
        }
    }
    // This side ended. The other side gets what was read, then the connection closes; a stalled
    // connection delivers nothing, so the client learns of a server's close only on resume. A
    // client that gives up a stalled connection wrote into a black hole: what piled up is
    // dropped, and the server side is closed.
    match dir {
        Direction::ToServer if conn.stalled.load(Ordering::Acquire) => {
            conn.close("the client closed a stalled connection");
        }
        Direction::ToServer => conn.to_server.end(),
        Direction::ToClient => conn.to_client.end(),
    }
}

enum Verdict {
    Forward,
    Answer(Bytes),
    Drop,
}

/// Whether a client frame goes on, is answered `SYSTEM_BUSY`, or is dropped.
fn busy_answer(shared: &Shared, frame: &Bytes) -> Verdict {
    let Ok(cmd) = RemotingCommand::decode(frame.slice(4..)) else {
        return Verdict::Forward;
    };
    if cmd.is_response()
        || !matches!(
            cmd.request_code(),
            RequestCode::SEND_MESSAGE
                | RequestCode::SEND_MESSAGE_V2
                | RequestCode::SEND_BATCH_MESSAGE
        )
    {
        return Verdict::Forward;
    }
    let every = shared.busy_every.load(Ordering::Acquire);
    let seen = shared.sends_seen.fetch_add(1, Ordering::AcqRel) + 1;
    if every == 0 || !seen.is_multiple_of(u64::from(every)) {
        shared.sends_forwarded.fetch_add(1, Ordering::AcqRel);
        return Verdict::Forward;
    }
    if cmd.is_oneway() {
        shared.sends_shed.fetch_add(1, Ordering::AcqRel);
        return Verdict::Drop;
    }
    let answer = RemotingCommand::response_to(
        &cmd,
        ResponseCode::SYSTEM_BUSY,
        Some(BUSY_REMARK.to_owned()),
    );
    match answer.encode_to_bytes() {
        Ok(bytes) => {
            shared.sends_answered_busy.fetch_add(1, Ordering::AcqRel);
            Verdict::Answer(bytes)
        }
        Err(e) => panic!("cannot encode a SYSTEM_BUSY answer: {e}"),
    }
}

/// The frame with every rewrite applied to its body, if it is a response and one applies.
fn rewrite(shared: &Shared, frame: Bytes) -> Bytes {
    if shared.rewrite.is_empty() || frame.len() < 8 {
        return frame;
    }
    let word = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let header_len = (word & 0x00FF_FFFF) as usize;
    let body_at = 8 + header_len;
    if body_at > frame.len() {
        return frame;
    }
    let Ok(cmd) = RemotingCommand::decode(frame.slice(4..)) else {
        return frame;
    };
    if !cmd.is_response() {
        return frame;
    }
    let mut body = frame[body_at..].to_vec();
    let mut changed = false;
    for (from, to) in &shared.rewrite {
        if let Some(new) = replace_all(&body, from, to) {
            body = new;
            changed = true;
        }
    }
    if !changed {
        return frame;
    }
    shared.rewritten.fetch_add(1, Ordering::AcqRel);
    let mut out = Vec::with_capacity(body_at + body.len());
    let total = (body_at - 4 + body.len()) as u32;
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&frame[4..body_at]);
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// `haystack` with every `from` replaced by `to`, or `None` when there is none.
fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut found = false;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            found = true;
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    found.then_some(out)
}

fn writer(conn: &Arc<Conn>, shared: &Shared, mut dst: TcpStream, dir: Direction) {
    let pipe = match dir {
        Direction::ToServer => &conn.to_server,
        Direction::ToClient => &conn.to_client,
    };
    let counter = match dir {
        Direction::ToServer => &shared.bytes_up,
        Direction::ToClient => &shared.bytes_down,
    };
    loop {
        let frame = {
            let mut q = pipe.queue.lock();
            loop {
                if conn.is_closed() {
                    return;
                }
                let stalled = conn.stalled.load(Ordering::Acquire);
                match q.frames.front() {
                    Some(&(due, _)) if !stalled => {
                        let now = Instant::now();
                        if due <= now {
                            break q.frames.pop_front().expect("a front frame").1;
                        }
                        pipe.ready.wait_until(&mut q, due);
                    }
                    None if q.ended && !stalled => {
                        drop(q);
                        conn.close("the other side closed");
                        return;
                    }
                    // Stalled, or nothing to write: wait for a frame, a resume or a close.
                    _ => pipe.ready.wait(&mut q),
                }
            }
        };
        if dst.write_all(&frame).is_err() {
            conn.close("write failed");
            return;
        }
        counter.fetch_add(frame.len() as u64, Ordering::AcqRel);
    }
}
