//! The `rmq-io` thread: one mio loop for every connection of a [`RemotingClient`].
//!
//! # Ownership
//!
//! [`EventLoop`] is moved into the `rmq-io` thread and only that thread touches its fields: the
//! `Poll` registry, the connections keyed by [`Token`], and `response_table` (opaque → pending
//! call). The hot path therefore takes no lock on the io thread. Handles talk to it through
//! [`Shared`]: a command channel plus a mio [`Waker`] (`Token(0)`).
//!
//! Callers connect on their own thread (`std::net::TcpStream::connect_timeout`), then hand the
//! stream over with [`Command::Register`]. Frames are encoded on the caller's thread and queued as
//! [`Bytes`]; the loop coalesces everything queued for a connection into `writev` calls.
//!
//! User code (async callbacks, request processors) never runs here: it goes to the callback pool.
//!
//! [`RemotingClient`]: super::RemotingClient

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::RwLock;
use threadpool::ThreadPool;

use super::config::RemotingClientConfig;
use super::processor::{RequestContext, RequestProcessor};
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::remoting::protocol::{FrameDecoder, RemotingCommand, ResponseCode};

/// The waker's token. Connection tokens start at 1 and are never reused.
pub(crate) const WAKER_TOKEN: Token = Token(0);

/// How many commands one turn takes off the channel before serving sockets again.
const MAX_COMMANDS_PER_TURN: usize = 4096;
/// How many decoded frames are dispatched at once while a socket is being drained.
const MAX_FRAMES_PER_BATCH: usize = 256;
/// `writev` slices per call.
const MAX_IOV: usize = 64;
/// Scratch read buffer size.
const READ_CHUNK: usize = 64 * 1024;
/// Idle connections are checked this often; it is also the longest poll timeout.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Two expiry scans of the response table are at least this far apart, so a table full of
/// staggered deadlines cannot make the loop scan continuously.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(50);

/// How many closed connections' reasons are remembered for requests that arrive after.
const RECENT_CLOSES: usize = 64;

/// The reason given to calls that are failed because the client shut down.
pub(crate) const SHUTDOWN_REASON: &str = "remoting client shut down";

/// A user callback for an asynchronous call.
pub(crate) type Callback = Box<dyn FnOnce(Result<RemotingCommand>) + Send + 'static>;

/// A counting semaphore without blocking: Java's `semaphoreAsync` / `semaphoreOneway` used with
/// `tryAcquire`.
#[derive(Debug)]
pub(crate) struct Semaphore {
    used: AtomicUsize,
    limit: usize,
}

impl Semaphore {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Semaphore {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a permit if one is free. The permit is released when dropped.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.limit).then_some(u + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(self)))
    }
}

/// One in-flight slot; released on drop, so no path can leak it.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Semaphore>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An async callback plus its permit. [`Completion::run`] calls it once; the permit is released
/// after the callback returns (as Java releases the semaphore after `executeInvokeCallback`).
///
/// If a completion is dropped without running (only possible in a shutdown race, when a command
/// is discarded with the channel), `Drop` runs the callback with a `ConnectionClosed` error, so
/// the "exactly once" promise holds on every path.
pub(crate) struct Completion {
    callback: Option<Callback>,
    _permit: Permit,
}

impl Completion {
    pub(crate) fn new(callback: Callback, permit: Permit) -> Self {
        Completion {
            callback: Some(callback),
            _permit: permit,
        }
    }

    /// Runs the callback, catching and logging a panic.
    pub(crate) fn run(mut self, result: Result<RemotingCommand>) {
        if let Some(cb) = self.callback.take() {
            if catch_unwind(AssertUnwindSafe(move || cb(result))).is_err() {
                log::error!("an async invoke callback panicked");
            }
        }
    }

    /// Drops the callback without calling it: the caller is told through a returned `Err`.
    pub(crate) fn disarm(mut self) {
        self.callback = None;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(cb) = self.callback.take() {
            let err = Error::ConnectionClosed {
                addr: String::new(),
                reason: SHUTDOWN_REASON.to_string(),
            };
            let _ = catch_unwind(AssertUnwindSafe(move || cb(Err(err))));
        }
    }
}

/// How a pending call is completed.
pub(crate) enum PendingKind {
    /// `invoke_sync`: the caller blocks on the receiving end of this `bounded(1)` channel.
    Sync(Sender<Result<RemotingCommand>>),
    /// `invoke_async`: the callback runs on the callback pool.
    Async(Completion),
}

/// An entry of the response table (Java `ResponseFuture`).
pub(crate) struct Pending {
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    pub(crate) token: Token,
    pub(crate) addr: Arc<str>,
    pub(crate) kind: PendingKind,
}

/// A connection as the handles see it. The loop owns the socket; this is the shared part.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) token: Token,
    pub(crate) addr: Arc<str>,
    alive: AtomicBool,
}

impl ConnHandle {
    pub(crate) fn new(token: Token, addr: &str) -> Self {
        ConnHandle {
            token,
            addr: Arc::from(addr),
            alive: AtomicBool::new(true),
        }
    }

    /// `false` once the loop closed the connection (or refused to register it).
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn mark_dead(&self) {
        self.alive.store(false, Ordering::Release);
    }
}

/// What handles ask of the loop.
pub(crate) enum Command {
    /// Take over a freshly connected stream.
    Register {
        handle: Arc<ConnHandle>,
        stream: Transport,
    },
    /// Queue an encoded frame. `pending` (request/response calls) enters the response table
    /// under `opaque`; `permit` (one-way calls) is released once the frame is written.
    Send {
        token: Token,
        frame: Bytes,
        opaque: i32,
        pending: Option<Pending>,
        permit: Option<Permit>,
    },
    /// A sync caller gave up: drop its entry now rather than at the sweep.
    Cancel { opaque: i32 },
    /// Close one connection.
    Close { token: Token, reason: String },
    /// Close everything, fail every pending call and exit.
    Shutdown,
}

/// State shared by the handles, the loop and callback-pool jobs.
pub(crate) struct Shared {
    pub(crate) config: RemotingClientConfig,
    cmd_tx: Sender<Command>,
    waker: Waker,
    /// `true` while a wake-up is already pending, so a burst of commands costs one syscall.
    notified: AtomicBool,
    /// addr → live connection. Written by callers on connect and by the loop on close.
    pub(crate) conns: RwLock<HashMap<String, Arc<ConnHandle>>>,
    pub(crate) processors: RwLock<HashMap<i32, Arc<dyn RequestProcessor>>>,
    pub(crate) pool: ThreadPool,
    pub(crate) closed: AtomicBool,
    next_token: AtomicUsize,
    pending_count: AtomicUsize,
    connection_count: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(
        config: RemotingClientConfig,
        cmd_tx: Sender<Command>,
        waker: Waker,
        pool: ThreadPool,
    ) -> Self {
        Shared {
            config,
            cmd_tx,
            waker,
            notified: AtomicBool::new(false),
            conns: RwLock::new(HashMap::new()),
            processors: RwLock::new(HashMap::new()),
            pool,
            closed: AtomicBool::new(false),
            next_token: AtomicUsize::new(1),
            pending_count: AtomicUsize::new(0),
            connection_count: AtomicUsize::new(0),
        }
    }

    /// A fresh connection token; never reused.
    pub(crate) fn next_token(&self) -> Token {
        Token(self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.pending_count.load(Ordering::Acquire)
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Acquire)
    }

    /// Queues a command and wakes the loop. On failure (the loop is gone) the command comes back.
    #[allow(clippy::result_large_err)]
    pub(crate) fn submit(&self, cmd: Command) -> std::result::Result<(), Command> {
        self.cmd_tx.send(cmd).map_err(|e| e.into_inner())?;
        self.notify();
        Ok(())
    }

    fn notify(&self) {
        // Pairs with the loop's `swap(false)` before it drains the channel: whoever sees `false`
        // here must wake the loop; a `true` means a wake-up is already on its way.
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("rmq-io: wake failed: {e}");
            }
        }
    }

    /// Hands a pending call its result: sync callers through their channel, async callbacks on
    /// the callback pool.
    fn complete(&self, pending: Pending, result: Result<RemotingCommand>) {
        match pending.kind {
            PendingKind::Sync(tx) => {
                let _ = tx.try_send(result);
            }
            PendingKind::Async(completion) => self.pool.execute(move || completion.run(result)),
        }
    }

    /// Fails a command that the loop will never execute (after shutdown).
    pub(crate) fn fail_command(&self, cmd: Command, reason: &str) {
        match cmd {
            Command::Register { handle, stream } => {
                handle.mark_dead();
                drop(stream);
            }
            Command::Send {
                pending: Some(p), ..
            } => {
                let err = Error::ConnectionClosed {
                    addr: p.addr.to_string(),
                    reason: reason.to_string(),
                };
                self.complete(p, Err(err));
            }
            _ => {}
        }
    }

    /// Runs on the callback pool: dispatches a broker-initiated request to its processor and
    /// queues the response, if any.
    fn process_request(&self, token: Token, peer: Arc<str>, request: RemotingCommand) {
        let code = request.code();
        let opaque = request.opaque();
        let serialize_type = request.serialize_type();
        let oneway = request.is_oneway();
        let processor = self.processors.read().get(&code).cloned();
        let response = match processor {
            None => {
                log::warn!("request type {code} from {peer} not supported");
                // Java answers this even for one-way requests.
                Some(RemotingCommand::response(
                    ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    Some(format!(" request type {code} not supported")),
                ))
            }
            Some(p) => {
                let ctx = RequestContext::new(peer.to_string());
                match catch_unwind(AssertUnwindSafe(|| p.process_request(&ctx, request))) {
                    Ok(None) => None,
                    Ok(Some(r)) if oneway => {
                        drop(r);
                        None
                    }
                    Ok(Some(r)) => Some(r),
                    Err(panic) => {
                        let what = panic_message(&panic);
                        log::error!(
                            "processor for request code {code} from {peer} panicked: {what}"
                        );
                        (!oneway).then(|| {
                            RemotingCommand::response(
                                ResponseCode::SYSTEM_ERROR,
                                Some(format!("processor panicked: {what}")),
                            )
                        })
                    }
                }
            }
        };
        let Some(mut response) = response else {
            return;
        };
        response.set_opaque(opaque);
        response.set_serialize_type(serialize_type);
        response.mark_response();
        let frame = match response.encode_to_bytes() {
            Ok(f) => f,
            Err(e) => {
                log::error!("cannot encode the response to request code {code}: {e}");
                return;
            }
        };
        let cmd = Command::Send {
            token,
            frame,
            opaque,
            pending: None,
            permit: None,
        };
        if self.submit(cmd).is_err() {
            log::debug!("dropping the response to request code {code}: client shut down");
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// A frame waiting to be written, with the one-way permit it releases once written.
struct OutFrame {
    bytes: Bytes,
    _permit: Option<Permit>,
}

/// A connection as the loop sees it.
struct Connection {
    stream: Transport,
    handle: Arc<ConnHandle>,
    in_buf: BytesMut,
    out: VecDeque<OutFrame>,
    /// `WRITABLE` is part of the registered interest (only while `out` is non-empty).
    writable_interest: bool,
    /// Already listed in `EventLoop::dirty` for this turn.
    dirty: bool,
    last_active: Instant,
}

/// What draining a readable socket ended with.
enum ReadOutcome {
    /// The frame batch is full; the socket may have more.
    More,
    /// `WouldBlock`: everything available was read.
    Drained,
    /// EOF, an I/O error or a codec error: close with this reason.
    Closed(String),
}

/// The loop's state. Owned by `rmq-io`; see the module docs.
pub(crate) struct EventLoop {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    registry: Registry,
    conns: HashMap<Token, Connection>,
    response_table: HashMap<i32, Pending>,
    decoder: FrameDecoder,
    scratch: Vec<u8>,
    frames: Vec<RemotingCommand>,
    dirty: Vec<Token>,
    expired: Vec<i32>,
    /// Never later than the earliest deadline in `response_table` (may be earlier: stale).
    next_expiry: Option<Instant>,
    last_scan: Instant,
    last_housekeeping: Instant,
    /// Commands were left in the channel last turn: poll without blocking.
    backlog: bool,
    /// Why the last `RECENT_CLOSES` connections closed: a request queued for one of them just
    /// before it closed is failed with that reason (a TLS alert, say), not a bare "closed".
    recent_closes: VecDeque<(Token, String)>,
}

impl EventLoop {
    pub(crate) fn new(shared: Arc<Shared>, rx: Receiver<Command>, poll: &Poll) -> io::Result<Self> {
        let now = Instant::now();
        Ok(EventLoop {
            decoder: FrameDecoder::new(shared.config.max_frame_len),
            shared,
            rx,
            registry: poll.registry().try_clone()?,
            conns: HashMap::new(),
            response_table: HashMap::new(),
            scratch: vec![0; READ_CHUNK],
            frames: Vec::with_capacity(MAX_FRAMES_PER_BATCH),
            dirty: Vec::new(),
            expired: Vec::new(),
            next_expiry: None,
            last_scan: now,
            last_housekeeping: now,
            backlog: false,
            recent_closes: VecDeque::with_capacity(RECENT_CLOSES),
        })
    }

    /// Runs until [`Command::Shutdown`] (or a fatal poll error). Returns the command receiver so
    /// the shutting-down caller can fail whatever was queued after the loop's last look.
    pub(crate) fn run(mut self, mut poll: Poll) -> Receiver<Command> {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<(Token, bool, bool)> = Vec::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("rmq-io: poll failed, shutting the client down: {e}");
                self.shared.closed.store(true, Ordering::Release);
                self.shutdown(&format!("event loop failed: {e}"));
                break;
            }
            ready.clear();
            for ev in events.iter() {
                if ev.token() == WAKER_TOKEN {
                    continue;
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                ready.push((ev.token(), readable, ev.is_writable()));
            }
            let now = Instant::now();
            for &(token, readable, writable) in &ready {
                if readable {
                    self.on_readable(token, now);
                }
                if writable {
                    self.mark_dirty(token);
                }
            }
            if !self.drain_commands(now) {
                self.flush_dirty(now);
                self.shutdown(SHUTDOWN_REASON);
                break;
            }
            self.flush_dirty(now);
            self.housekeeping(Instant::now());
        }
        self.rx
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if self.backlog {
            return Duration::ZERO;
        }
        let mut at = self.last_housekeeping + HOUSEKEEPING_INTERVAL;
        if let Some(e) = self.next_expiry {
            at = at.min(e.max(self.last_scan + MIN_SCAN_INTERVAL));
        }
        at.saturating_duration_since(now)
    }

    /// Takes commands off the channel. Returns `false` on [`Command::Shutdown`].
    fn drain_commands(&mut self, now: Instant) -> bool {
        // Clear the flag before looking, so a command sent after our last look always wakes us.
        self.shared.notified.swap(false, Ordering::AcqRel);
        self.backlog = false;
        for _ in 0..MAX_COMMANDS_PER_TURN {
            match self.rx.try_recv() {
                Ok(Command::Shutdown) => return false,
                Ok(cmd) => self.on_command(cmd, now),
                Err(_) => return true,
            }
        }
        self.backlog = true;
        true
    }

    fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Register { handle, mut stream } => {
                let token = handle.token;
                if let Err(e) = self
                    .registry
                    .register(&mut stream, token, Interest::READABLE)
                {
                    log::error!("rmq-io: cannot register connection to {}: {e}", handle.addr);
                    handle.mark_dead();
                    self.forget_handle(&handle);
                    return;
                }
                log::debug!(
                    "rmq-io: connection {} to {} registered",
                    token.0,
                    handle.addr
                );
                self.conns.insert(
                    token,
                    Connection {
                        stream,
                        handle,
                        in_buf: BytesMut::new(),
                        out: VecDeque::new(),
                        writable_interest: false,
                        dirty: false,
                        last_active: now,
                    },
                );
                self.shared
                    .connection_count
                    .store(self.conns.len(), Ordering::Release);
            }
            Command::Send {
                token,
                frame,
                opaque,
                pending,
                permit,
            } => {
                let Some(conn) = self.conns.get_mut(&token) else {
                    // Closed between the caller's lookup and now: fail at once.
                    if let Some(p) = pending {
                        let mut reason =
                            "connection closed before the request was sent".to_string();
                        if let Some((_, why)) = self.recent_closes.iter().find(|(t, _)| *t == token)
                        {
                            reason.push_str(": ");
                            reason.push_str(why);
                        }
                        let err = Error::ConnectionClosed {
                            addr: p.addr.to_string(),
                            reason,
                        };
                        self.shared.complete(p, Err(err));
                    }
                    return;
                };
                conn.out.push_back(OutFrame {
                    bytes: frame,
                    _permit: permit,
                });
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(token);
                }
                if let Some(p) = pending {
                    let deadline = p.deadline;
                    if let Some(old) = self.response_table.insert(opaque, p) {
                        // Same opaque twice in flight: keep the newer, fail the older.
                        let err = Error::SendRequest {
                            addr: old.addr.to_string(),
                            reason: format!("opaque {opaque} reused by another request"),
                        };
                        self.shared.complete(old, Err(err));
                    } else {
                        self.shared.pending_count.fetch_add(1, Ordering::AcqRel);
                    }
                    if self.next_expiry.is_none_or(|e| deadline < e) {
                        self.next_expiry = Some(deadline);
                    }
                }
            }
            Command::Cancel { opaque } => {
                if self.response_table.remove(&opaque).is_some() {
                    self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Command::Close { token, reason } => self.close(token, &reason),
            Command::Shutdown => unreachable!("handled by drain_commands"),
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    fn on_readable(&mut self, token: Token, now: Instant) {
        loop {
            let outcome = {
                let Some(conn) = self.conns.get_mut(&token) else {
                    return; // unknown or already closed: ignore
                };
                conn.last_active = now;
                read_some(conn, &mut self.scratch, &mut self.decoder, &mut self.frames)
            };
            let mut frames = std::mem::take(&mut self.frames);
            for frame in frames.drain(..) {
                self.on_frame(token, frame);
            }
            self.frames = frames;
            match outcome {
                ReadOutcome::More => continue,
                ReadOutcome::Drained => {
                    // Reading TLS records can queue records to send (a key update answer).
                    if self
                        .conns
                        .get(&token)
                        .is_some_and(|c| c.stream.wants_write())
                    {
                        self.mark_dirty(token);
                    }
                    return;
                }
                ReadOutcome::Closed(reason) => {
                    self.close(token, &reason);
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, token: Token, cmd: RemotingCommand) {
        if cmd.is_response() {
            match self.response_table.remove(&cmd.opaque()) {
                Some(p) => {
                    self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
                    self.shared.complete(p, Ok(cmd));
                }
                None => {
                    let addr = self.conns.get(&token).map(|c| c.handle.addr.clone());
                    log::warn!(
                        "rmq-io: response with unknown opaque {} from {} (code {}), the caller may have timed out",
                        cmd.opaque(),
                        addr.as_deref().unwrap_or("?"),
                        cmd.code()
                    );
                }
            }
        } else {
            let Some(peer) = self.conns.get(&token).map(|c| c.handle.addr.clone()) else {
                return;
            };
            let shared = Arc::clone(&self.shared);
            self.shared
                .pool
                .execute(move || shared.process_request(token, peer, cmd));
        }
    }

    fn flush_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            let result = match self.conns.get_mut(&token) {
                Some(conn) => {
                    conn.dirty = false;
                    flush(conn, &self.registry, now)
                }
                None => Ok(()),
            };
            if let Err(reason) = result {
                self.close(token, &reason);
            }
        }
        self.dirty = dirty;
    }

    /// Closes one connection and fails every call pending on it at once.
    fn close(&mut self, token: Token, reason: &str) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        if self.recent_closes.len() == RECENT_CLOSES {
            self.recent_closes.pop_front();
        }
        self.recent_closes.push_back((token, reason.to_string()));
        if let Err(e) = self.registry.deregister(&mut conn.stream) {
            log::debug!("rmq-io: deregister failed: {e}");
        }
        conn.handle.mark_dead();
        self.forget_handle(&conn.handle);
        self.shared
            .connection_count
            .store(self.conns.len(), Ordering::Release);
        let addr = conn.handle.addr.clone();
        if reason == SHUTDOWN_REASON {
            log::debug!("rmq-io: closing connection to {addr}: {reason}");
        } else {
            log::warn!("rmq-io: closing connection to {addr}: {reason}");
        }
        drop(conn);

        self.expired.clear();
        self.expired.extend(
            self.response_table
                .iter()
                .filter(|(_, p)| p.token == token)
                .map(|(op, _)| *op),
        );
        let mut failed = std::mem::take(&mut self.expired);
        for op in failed.drain(..) {
            if let Some(p) = self.response_table.remove(&op) {
                self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
                let err = Error::ConnectionClosed {
                    addr: addr.to_string(),
                    reason: reason.to_string(),
                };
                self.shared.complete(p, Err(err));
            }
        }
        self.expired = failed;
    }

    /// Removes `handle` from the shared address map unless a newer connection replaced it.
    fn forget_handle(&self, handle: &Arc<ConnHandle>) {
        let mut map = self.shared.conns.write();
        if map
            .get(&*handle.addr)
            .is_some_and(|h| Arc::ptr_eq(h, handle))
        {
            map.remove(&*handle.addr);
        }
    }

    /// Expires due entries of the response table and closes idle connections.
    fn housekeeping(&mut self, now: Instant) {
        if self
            .next_expiry
            .is_some_and(|e| now >= e && now >= self.last_scan + MIN_SCAN_INTERVAL)
        {
            self.scan_response_table(now);
        }
        if now >= self.last_housekeeping + HOUSEKEEPING_INTERVAL {
            self.last_housekeeping = now;
            let max_idle = self.shared.config.channel_max_idle;
            let idle: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| now.saturating_duration_since(c.last_active) >= max_idle)
                .map(|(t, _)| *t)
                .collect();
            for token in idle {
                self.close(token, &format!("idle for {max_idle:?}"));
            }
        }
    }

    /// Java's `scanResponseTable`, but at the deadline instead of deadline + 1 s.
    fn scan_response_table(&mut self, now: Instant) {
        self.last_scan = now;
        self.expired.clear();
        let mut next: Option<Instant> = None;
        for (op, p) in &self.response_table {
            if p.deadline <= now {
                self.expired.push(*op);
            } else if next.is_none_or(|n| p.deadline < n) {
                next = Some(p.deadline);
            }
        }
        self.next_expiry = next;
        let mut expired = std::mem::take(&mut self.expired);
        for op in expired.drain(..) {
            if let Some(p) = self.response_table.remove(&op) {
                self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
                log::debug!("rmq-io: request {op} to {} timed out", p.addr);
                let err = Error::Timeout {
                    addr: p.addr.to_string(),
                    timeout: p.timeout,
                };
                self.shared.complete(p, Err(err));
            }
        }
        self.expired = expired;
    }

    /// Closes every connection, fails every pending call and everything still queued.
    fn shutdown(&mut self, reason: &str) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.close(token, reason);
        }
        for (_, p) in self.response_table.drain() {
            self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
            let err = Error::ConnectionClosed {
                addr: p.addr.to_string(),
                reason: reason.to_string(),
            };
            self.shared.complete(p, Err(err));
        }
        while let Ok(cmd) = self.rx.try_recv() {
            self.shared.fail_command(cmd, reason);
        }
    }
}

/// Reads until `WouldBlock` (or a full frame batch), decoding as it goes.
fn read_some(
    conn: &mut Connection,
    scratch: &mut [u8],
    decoder: &mut FrameDecoder,
    frames: &mut Vec<RemotingCommand>,
) -> ReadOutcome {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return ReadOutcome::Closed("connection closed by peer".to_string()),
            Ok(n) => {
                conn.in_buf.extend_from_slice(&scratch[..n]);
                loop {
                    match decoder.decode(&mut conn.in_buf) {
                        Ok(Some(cmd)) => frames.push(cmd),
                        Ok(None) => break,
                        Err(e) => return ReadOutcome::Closed(format!("codec error: {e}")),
                    }
                }
                if frames.len() >= MAX_FRAMES_PER_BATCH {
                    return ReadOutcome::More;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return ReadOutcome::Closed(format!("read failed: {e}")),
        }
    }
}

/// Writes queued frames until `WouldBlock`, then sets `WRITABLE` interest only if bytes remain.
fn flush(
    conn: &mut Connection,
    registry: &Registry,
    now: Instant,
) -> std::result::Result<(), String> {
    while !conn.out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = conn.out.len().min(MAX_IOV);
        for (slot, frame) in slices.iter_mut().zip(conn.out.iter()) {
            *slot = IoSlice::new(&frame.bytes);
        }
        match conn.stream.write_vectored(&slices[..n]) {
            Ok(0) => return Err("write returned 0 bytes".to_string()),
            Ok(mut written) => {
                conn.last_active = now;
                while written > 0 {
                    let front = conn
                        .out
                        .front_mut()
                        .expect("written bytes belong to queued frames");
                    let len = front.bytes.len();
                    if written >= len {
                        written -= len;
                        conn.out.pop_front(); // releases a one-way permit
                    } else {
                        front.bytes.advance(written);
                        written = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("write failed: {e}")),
        }
    }
    // TLS records still buffered after the frames were taken (or from a read).
    match conn.stream.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(format!("write failed: {e}")),
    }
    let want_writable = !conn.out.is_empty() || conn.stream.wants_write();
    if want_writable != conn.writable_interest {
        let interest = if want_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry
            .reregister(&mut conn.stream, conn.handle.token, interest)
            .map_err(|e| format!("reregister failed: {e}"))?;
        conn.writable_interest = want_writable;
    }
    Ok(())
}
