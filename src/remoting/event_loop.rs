//! The `rmq-io` thread: one mio loop for every connection of a [`RemotingClient`].
//!
//! # Ownership
//!
//! [`EventLoop`] is moved into the `rmq-io` thread and only that thread touches its fields: the
//! `Poll` registry, the connections keyed by [`Token`], and `response_table` (opaque → pending
//! call). Handles talk to it through [`Shared`]: a command channel plus a mio [`Waker`]
//! (`Token(0)`), woken only while the loop polls.
//!
//! Callers connect on their own thread (`std::net::TcpStream::connect_timeout`), then hand the
//! stream over with [`Command::Register`]. Frames are encoded on the caller's thread and queued as
//! [`Bytes`]; the loop coalesces everything queued for a connection into `writev` calls. A sync
//! call on a plain connection with nothing queued writes its frame itself instead, through a
//! second descriptor of the socket and under the connection's write lock, which the loop also
//! takes while it writes; its pending entry reaches the loop through a second channel that the
//! loop drains before it could miss the answer ([`Shared::send_sync`]). The bytes
//! waiting on a connection are bounded (`max_queued_bytes`, counted in [`ConnHandle`] from the
//! caller's reservation until the kernel takes them), and a connection whose queue does not move
//! for `write_stall_timeout` is closed.
//!
//! User code (async callbacks, request processors) goes to the callback pool, except the
//! callbacks of successful calls when `disable_callback_executor` is set.
//!
//! [`RemotingClient`]: super::RemotingClient

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::RwLock;

use super::config::RemotingClientConfig;
use super::handoff::{CallbackPool, SyncReply};
use super::processor::{RequestContext, RequestProcessor};
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::remoting::protocol::{FrameDecoder, RemotingCommand, ResponseCode, SerializeType};

/// The waker's token. Connection tokens start at 1 and are never reused.
pub(crate) const WAKER_TOKEN: Token = Token(0);

/// How many commands one turn takes off the channel before serving sockets again.
const MAX_COMMANDS_PER_TURN: usize = 4096;
/// How many decoded frames one connection may yield per loop turn.
const MAX_FRAMES_PER_BATCH: usize = 256;
/// How many bytes one connection may yield per loop turn. With the frame budget, this keeps a
/// peer that sends faster than the loop decodes from keeping `rmq-io` to itself: a connection
/// that used its budget is read again next turn, after the others.
const MAX_READ_PER_TURN: usize = 4 * READ_CHUNK;
/// `writev` slices per call.
const MAX_IOV: usize = 64;
/// Scratch read buffer size.
const READ_CHUNK: usize = 64 * 1024;
/// Idle connections are checked this often; it is also the longest poll timeout.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// An async call whose caller writes it itself reaches the response table within this long
/// (the housekeeping turn): shorter timeouts are queued so that they expire on time.
pub(crate) const DIRECT_ASYNC_MIN_TIMEOUT: Duration = HOUSEKEEPING_INTERVAL;
/// Repeated warnings about a misbehaving peer are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(1);
/// Two expiry scans of the response table are at least this far apart, so a table full of
/// staggered deadlines cannot make the loop scan continuously.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(50);

/// The remark of a `SYSTEM_BUSY` answer to a request refused for overload (Java's wording).
const OVERLOAD_REMARK: &str = "[OVERLOAD]system busy, start flow control for a while";
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
    /// `invoke_sync`: the caller waits on the other half of this one-shot slot.
    Sync(SyncReply),
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
    /// Bytes of frames queued for this connection and not yet written: reserved by the thread
    /// that queues a frame, given back by the loop as it writes.
    queued: AtomicUsize,
    /// Plain TCP only: a second descriptor of the socket, for a sync caller to write its
    /// request itself (see [`Shared::send_sync`]).
    direct: Option<DirectWrite>,
    /// Set by the loop once it owns the connection. Until then a request goes through the
    /// command channel, behind the connection's registration.
    registered: AtomicBool,
}

/// The caller's way into a plain connection's socket. Whoever writes to the socket, the loop
/// or a caller, holds `lock`, so frames never interleave.
#[derive(Debug)]
pub(crate) struct DirectWrite {
    sock: std::net::TcpStream,
    lock: parking_lot::Mutex<()>,
}

impl ConnHandle {
    /// `stream`: the connection's transport, from which a plain socket's descriptor is
    /// duplicated for direct writes.
    pub(crate) fn new(token: Token, addr: &str, stream: &Transport) -> Self {
        ConnHandle {
            token,
            addr: Arc::from(addr),
            alive: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
            registered: AtomicBool::new(false),
            direct: stream.try_clone_plain().map(|sock| DirectWrite {
                sock,
                lock: parking_lot::Mutex::new(()),
            }),
        }
    }

    /// Reserves room for a frame of `len` bytes in the write queue (at most `limit` bytes).
    pub(crate) fn reserve(&self, len: usize, limit: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(len).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives back the room of `len` written bytes.
    pub(crate) fn written(&self, len: usize) {
        let before = self.queued.fetch_sub(len, Ordering::AcqRel);
        debug_assert!(
            before >= len,
            "wrote {len} bytes but only {before} were reserved"
        );
    }

    /// `false` once the loop closed the connection (or refused to register it).
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub(crate) fn mark_dead(&self) {
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
    /// Queue an encoded frame, whose bytes the sender reserved with [`Shared::reserve_write`].
    /// `pending` (request/response calls) enters the response table under `opaque`; `permit`
    /// (one-way calls) is released once the frame is written.
    Send {
        token: Token,
        frame: Bytes,
        opaque: i32,
        pending: Option<Pending>,
        permit: Option<Permit>,
    },
    /// Close one connection.
    Close { token: Token, reason: String },
    /// Close everything, fail every pending call and exit.
    Shutdown,
}

/// State shared by the handles, the loop and callback-pool jobs.
pub(crate) struct Shared {
    pub(crate) config: RemotingClientConfig,
    cmd_tx: Sender<Command>,
    /// Calls whose request a caller wrote itself: the loop moves them into its response table
    /// at the start of each turn, and before it gives up on a response, a close or a sweep.
    expect_tx: Sender<(i32, Pending)>,
    expect_rx: Receiver<(i32, Pending)>,
    waker: Waker,
    /// `true` while a wake-up is already pending, so a burst of commands costs one syscall.
    notified: AtomicBool,
    /// `true` while the loop is in, or about to enter, `poll`: only then does a command need a
    /// wake-up. A loop that is awake takes the command at its next turn.
    polling: AtomicBool,
    /// addr → live connection. Written by callers on connect and by the loop on close.
    pub(crate) conns: RwLock<HashMap<String, Arc<ConnHandle>>>,
    pub(crate) processors: RwLock<HashMap<i32, Arc<dyn RequestProcessor>>>,
    pub(crate) pool: CallbackPool,
    pub(crate) closed: AtomicBool,
    next_token: AtomicUsize,
    pending_count: AtomicUsize,
    connection_count: AtomicUsize,
    unmatched_responses: AtomicU64,
    /// Requests from peers queued on or running in the callback pool.
    broker_requests: AtomicUsize,
    rejected_broker_requests: AtomicU64,
    /// Requests their callers wrote into the socket themselves.
    #[cfg(test)]
    pub(crate) direct_writes: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        config: RemotingClientConfig,
        cmd_tx: Sender<Command>,
        waker: Waker,
        pool: CallbackPool,
    ) -> Self {
        let (expect_tx, expect_rx) = crossbeam_channel::unbounded();
        Shared {
            config,
            cmd_tx,
            expect_tx,
            expect_rx,
            waker,
            notified: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            conns: RwLock::new(HashMap::new()),
            processors: RwLock::new(HashMap::new()),
            pool,
            closed: AtomicBool::new(false),
            next_token: AtomicUsize::new(1),
            pending_count: AtomicUsize::new(0),
            connection_count: AtomicUsize::new(0),
            unmatched_responses: AtomicU64::new(0),
            broker_requests: AtomicUsize::new(0),
            rejected_broker_requests: AtomicU64::new(0),
            #[cfg(test)]
            direct_writes: AtomicU64::new(0),
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

    pub(crate) fn unmatched_responses(&self) -> u64 {
        self.unmatched_responses.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected_broker_requests(&self) -> u64 {
        self.rejected_broker_requests.load(Ordering::Relaxed)
    }

    /// Queues a command and wakes the loop. On failure (the loop is gone) the command comes back.
    #[allow(clippy::result_large_err)]
    pub(crate) fn submit(&self, cmd: Command) -> std::result::Result<(), Command> {
        self.cmd_tx.send(cmd).map_err(|e| e.into_inner())?;
        self.notify();
        Ok(())
    }

    fn notify(&self) {
        // Dekker with the loop's `polling` store and channel check before it polls: either the
        // loop sees this command in the channel and does not block, or this sees `polling`.
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            return;
        }
        // Pairs with the loop's `swap(false)` before it drains the channel: whoever sees `false`
        // here must wake the loop; a `true` means a wake-up is already on its way.
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!("rmq-io: wake failed: {e}");
            }
        }
    }

    /// Sends a call's request, whose bytes the caller reserved. With `direct`, on a plain
    /// connection with nothing else waiting to be written, the caller writes it into the socket
    /// itself: the io thread is not woken for it and only reads the answer. Otherwise (TLS,
    /// frames queued before it, a socket buffer that takes only part of it) the loop writes
    /// it, or its rest. `Err` gives the call back when the loop is gone and never saw it.
    ///
    /// A call written directly reaches the response table at the loop's next turn, at the
    /// latest at its next housekeeping, a second away: callers use `direct` only for calls whose
    /// timeout is at least that long, or that wait for their own deadline (sync calls).
    pub(crate) fn send_request(
        &self,
        conn: &ConnHandle,
        frame: Bytes,
        opaque: i32,
        pending: Pending,
        direct: bool,
    ) -> std::result::Result<(), Pending> {
        let Some(direct) = conn.direct.as_ref().filter(|_| direct) else {
            return self.queue_send(conn, frame, opaque, pending);
        };
        let guard = direct.lock.lock();
        // Only this frame reserved: nothing is queued ahead of it, and the lock keeps the loop
        // from starting on a frame queued after it.
        if conn.queued.load(Ordering::Acquire) != frame.len()
            || !conn.registered.load(Ordering::Acquire)
            || !conn.is_alive()
        {
            drop(guard);
            return self.queue_send(conn, frame, opaque, pending);
        }
        // Known to the loop before the answer can arrive.
        self.pending_count.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.expect_tx.send((opaque, pending)) {
            self.pending_count.fetch_sub(1, Ordering::AcqRel);
            return Err(e.into_inner().1);
        }
        let written = loop {
            match (&direct.sock).write(&frame) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    conn.written(frame.len());
                    drop(guard);
                    // The close fails the call with the reason.
                    let close = Command::Close {
                        token: conn.token,
                        reason: format!("write failed: {e}"),
                    };
                    // If the loop is gone, shutting down fails the call.
                    let _ = self.submit(close);
                    return Ok(());
                }
            }
        };
        conn.written(written);
        #[cfg(test)]
        self.direct_writes.fetch_add(1, Ordering::Relaxed);
        if written < frame.len() {
            // Queued while the lock is held: it goes before anything queued after it.
            let rest = Command::Send {
                token: conn.token,
                frame: frame.slice(written..),
                opaque,
                pending: None,
                permit: None,
            };
            let _ = self.submit(rest);
        }
        Ok(())
    }

    fn queue_send(
        &self,
        conn: &ConnHandle,
        frame: Bytes,
        opaque: i32,
        pending: Pending,
    ) -> std::result::Result<(), Pending> {
        let cmd = Command::Send {
            token: conn.token,
            frame,
            opaque,
            pending: Some(pending),
            permit: None,
        };
        match self.submit(cmd) {
            Ok(()) => Ok(()),
            Err(Command::Send {
                pending: Some(p), ..
            }) => Err(p),
            Err(_) => unreachable!("submit gives back the command it was given"),
        }
    }

    /// Reserves room for `frame` in `conn`'s write queue, or fails with
    /// [`Error::WriteQueueFull`]. Every frame queued for a connection goes through this, so the
    /// bytes waiting on a connection (in the command channel or in the loop) stay within
    /// `max_queued_bytes` whatever happens to the calls that sent them.
    pub(crate) fn reserve_write(&self, conn: &ConnHandle, frame: &Bytes) -> Result<()> {
        let limit = self.config.max_queued_bytes;
        if conn.reserve(frame.len(), limit) {
            Ok(())
        } else {
            Err(Error::WriteQueueFull {
                addr: conn.addr.to_string(),
                limit,
            })
        }
    }

    /// Hands a pending call its result: sync callers through their slot, async callbacks on
    /// the callback pool, or here with `disable_callback_executor` when the call succeeded.
    fn complete(&self, pending: Pending, result: Result<RemotingCommand>) {
        match pending.kind {
            PendingKind::Sync(reply) => reply.send(result),
            PendingKind::Async(completion) => {
                if self.config.disable_callback_executor && result.is_ok() {
                    completion.run(result);
                } else {
                    self.pool.execute(move || completion.run(result));
                }
            }
        }
    }

    /// Runs `job` on the callback pool.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.pool.execute(job);
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
    fn process_request(self: &Arc<Self>, conn: Arc<ConnHandle>, request: RemotingCommand) {
        /// Leaves the bounded count of broker requests on every path out.
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _done = Done(&self.broker_requests);
        let peer = &conn.addr;
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
                let ctx = RequestContext::new(self, &conn, &request);
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
        let Some(response) = response else {
            return;
        };
        self.send_reply(&conn, code, opaque, serialize_type, response);
    }

    /// Queues `response` as the answer to the request `code`/`opaque` that arrived on `conn`,
    /// within the connection's write-queue bound; dropped (and logged) past it, or after
    /// shutdown.
    pub(crate) fn send_reply(
        &self,
        conn: &ConnHandle,
        code: i32,
        opaque: i32,
        serialize_type: SerializeType,
        mut response: RemotingCommand,
    ) {
        let peer = &conn.addr;
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
        if let Err(e) = self.reserve_write(conn, &frame) {
            log::warn!("dropping the response to request code {code} from {peer}: {e}");
            return;
        }
        let cmd = Command::Send {
            token: conn.token,
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
    /// When bytes last arrived. Writes do not count: a peer that stopped answering (a
    /// half-open connection) must not look alive because heartbeats are written into it.
    last_read: Instant,
    /// When `out` last shrank, or became non-empty: a connection whose queue has not moved for
    /// `write_stall_timeout` is closed.
    write_progress: Instant,
    /// The loop turn that last read this connection: one read budget per turn.
    read_turn: u64,
}

/// What draining a readable socket ended with.
enum ReadOutcome {
    /// The turn's read budget is used up; the socket may have more.
    More,
    /// `WouldBlock`: everything available was read.
    Drained,
    /// EOF, an I/O error or a codec error: close with this reason.
    Closed(String),
}

/// Lets a warning through at most once per [`WARN_INTERVAL`] and counts the ones it holds back,
/// so a peer that floods bad frames cannot flood the log as well.
#[derive(Default)]
struct WarnLimiter {
    next: Option<Instant>,
    held_back: u64,
}

impl WarnLimiter {
    /// `Some(n)` if a warning may be logged now, `n` being how many were held back since the
    /// last one.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|n| now < n) {
            self.held_back += 1;
            return None;
        }
        self.next = Some(now + WARN_INTERVAL);
        Some(std::mem::take(&mut self.held_back))
    }
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
    unmatched_warn: WarnLimiter,
    overload_warn: WarnLimiter,
    /// Counts loop turns (from 1), for `Connection::read_turn`.
    turn: u64,
    /// Connections that used their read budget this turn, to read again next turn: mio is
    /// edge-triggered and will not report data that is already waiting.
    unread: Vec<Token>,
    /// Last turn's `unread`, being served.
    revisit: Vec<Token>,
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
            unmatched_warn: WarnLimiter::default(),
            overload_warn: WarnLimiter::default(),
            turn: 0,
            unread: Vec::new(),
            revisit: Vec::new(),
            recent_closes: VecDeque::with_capacity(RECENT_CLOSES),
        })
    }

    /// Runs until [`Command::Shutdown`] (or a fatal poll error). Returns the command receiver so
    /// the shutting-down caller can fail whatever was queued after the loop's last look.
    pub(crate) fn run(mut self, mut poll: Poll) -> Receiver<Command> {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<(Token, bool, bool, bool)> = Vec::with_capacity(1024);
        loop {
            let mut timeout = self.poll_timeout(Instant::now());
            self.shared.polling.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                timeout = Duration::ZERO;
            }
            let polled = poll.poll(&mut events, Some(timeout));
            self.shared.polling.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("rmq-io: poll failed, shutting the client down: {e}");
                self.shared.closed.store(true, Ordering::Release);
                self.shutdown(&format!("event loop failed: {e}"));
                break;
            }
            self.turn += 1;
            self.take_expectations();
            std::mem::swap(&mut self.unread, &mut self.revisit);
            ready.clear();
            for ev in events.iter() {
                if ev.token() == WAKER_TOKEN {
                    continue;
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                // A hang-up reported with the data must be read to its end (EOF), not cut short.
                let hung_up = ev.is_read_closed() || ev.is_error();
                ready.push((ev.token(), readable, ev.is_writable(), hung_up));
            }
            let now = Instant::now();
            for &(token, readable, writable, hung_up) in &ready {
                if readable {
                    self.on_readable(token, now, hung_up);
                }
                if writable {
                    self.mark_dirty(token);
                }
            }
            let mut revisit = std::mem::take(&mut self.revisit);
            for token in revisit.drain(..) {
                self.on_readable(token, now, false);
            }
            self.revisit = revisit;
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
        if self.backlog || !self.unread.is_empty() {
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
                handle.registered.store(true, Ordering::Release);
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
                        last_read: now,
                        write_progress: now,
                        read_turn: 0,
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
                        self.fail_closed(p, "connection closed before the request was sent");
                    }
                    return;
                };
                if conn.out.is_empty() {
                    conn.write_progress = now;
                }
                conn.out.push_back(OutFrame {
                    bytes: frame,
                    _permit: permit,
                });
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(token);
                }
                if let Some(p) = pending {
                    self.insert_pending(opaque, p);
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

    /// Reads one budget's worth from a connection, once per turn.
    fn on_readable(&mut self, token: Token, now: Instant, hung_up: bool) {
        let outcome = {
            let Some(conn) = self.conns.get_mut(&token) else {
                return; // unknown or already closed: ignore
            };
            if conn.read_turn == self.turn {
                return; // both reported and left over from last turn: read once
            }
            conn.read_turn = self.turn;
            conn.last_read = now;
            read_some(
                conn,
                &mut self.scratch,
                &mut self.decoder,
                &mut self.frames,
                hung_up,
            )
        };
        let mut frames = std::mem::take(&mut self.frames);
        for frame in frames.drain(..) {
            self.on_frame(token, frame);
        }
        self.frames = frames;
        match outcome {
            ReadOutcome::More => self.unread.push(token),
            ReadOutcome::Drained => {
                // Reading TLS records can queue records to send (a key update answer).
                if self
                    .conns
                    .get(&token)
                    .is_some_and(|c| c.stream.wants_write())
                {
                    self.mark_dirty(token);
                }
            }
            ReadOutcome::Closed(reason) => self.close(token, &reason),
        }
    }

    fn on_frame(&mut self, token: Token, cmd: RemotingCommand) {
        if cmd.is_response() {
            if !self.response_table.contains_key(&cmd.opaque()) {
                // A sync caller may have written the request itself after the turn began.
                self.take_expectations();
            }
            // Opaques are sequential and so guessable: only the connection the request left by
            // may answer it.
            match self.response_table.entry(cmd.opaque()) {
                Entry::Occupied(e) if e.get().token == token => {
                    let p = e.remove();
                    self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
                    self.shared.complete(p, Ok(cmd));
                }
                Entry::Occupied(e) => {
                    let owner = Arc::clone(&e.get().addr);
                    self.unmatched_response(token, &cmd, Some(&owner));
                }
                Entry::Vacant(_) => self.unmatched_response(token, &cmd, None),
            }
        } else {
            let Some(conn) = self.conns.get(&token).map(|c| Arc::clone(&c.handle)) else {
                return;
            };
            // Only this thread adds to the count, so checking first cannot overshoot.
            if self.shared.broker_requests.load(Ordering::Acquire)
                >= self.shared.config.max_pending_broker_requests
            {
                self.reject_overload(&conn, cmd);
                return;
            }
            self.shared.broker_requests.fetch_add(1, Ordering::AcqRel);
            let shared = Arc::clone(&self.shared);
            self.shared
                .pool
                .execute(move || shared.process_request(conn, cmd));
        }
    }

    /// Refuses a request from a peer when the callback pool already has
    /// `max_pending_broker_requests`: answers `SYSTEM_BUSY` at once (Java's executor-rejected
    /// answer), or drops a one-way request.
    fn reject_overload(&mut self, conn: &Arc<ConnHandle>, request: RemotingCommand) {
        self.shared
            .rejected_broker_requests
            .fetch_add(1, Ordering::Relaxed);
        let code = request.code();
        if let Some(held_back) = self.overload_warn.allow(Instant::now()) {
            log::warn!(
                "rmq-io: {} requests from peers are waiting already; refusing request code \
                 {code} from {} (and {held_back} more since the last warning)",
                self.shared.config.max_pending_broker_requests,
                conn.addr
            );
        }
        if request.is_oneway() {
            return;
        }
        let mut response =
            RemotingCommand::response(ResponseCode::SYSTEM_BUSY, Some(OVERLOAD_REMARK.to_string()));
        response.set_opaque(request.opaque());
        response.set_serialize_type(request.serialize_type());
        response.mark_response();
        let frame = match response.encode_to_bytes() {
            Ok(f) => f,
            Err(e) => {
                log::error!("cannot encode a SYSTEM_BUSY response: {e}");
                return;
            }
        };
        if self.shared.reserve_write(conn, &frame).is_err() {
            return; // the peer reads nothing either: it will time out
        }
        let token = conn.token;
        if let Some(c) = self.conns.get_mut(&token) {
            if c.out.is_empty() {
                c.write_progress = Instant::now();
            }
            c.out.push_back(OutFrame {
                bytes: frame,
                _permit: None,
            });
            self.mark_dirty(token);
        }
    }

    /// Counts and (rate-limited) logs a response that completes nothing: a late answer to a
    /// call that timed out, or a peer answering a call that was not sent to it.
    fn unmatched_response(&mut self, token: Token, cmd: &RemotingCommand, owner: Option<&str>) {
        self.shared
            .unmatched_responses
            .fetch_add(1, Ordering::Relaxed);
        let Some(held_back) = self.unmatched_warn.allow(Instant::now()) else {
            return;
        };
        let from = self.conns.get(&token).map(|c| Arc::clone(&c.handle.addr));
        let from = from.as_deref().unwrap_or("?");
        let (opaque, code) = (cmd.opaque(), cmd.code());
        let also = if held_back > 0 {
            format!(" ({held_back} more since the last warning)")
        } else {
            String::new()
        };
        match owner {
            Some(owner) => log::warn!(
                "rmq-io: dropped a response from {from} (opaque {opaque}, code {code}) to a call \
                 that was sent to {owner}{also}"
            ),
            None => log::warn!(
                "rmq-io: dropped a response from {from} (opaque {opaque}, code {code}) that \
                 matches no pending call, the caller may have timed out{also}"
            ),
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
        // Calls written on this connection by their callers fail with the others.
        self.take_expectations();
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
        // A caller's descriptor of the socket must not keep the connection open.
        conn.stream.shutdown_plain();
        drop(conn);

        self.expired.clear();
        self.expired.extend(
            self.response_table
                .iter()
                .filter(|(_, p)| p.token == token)
                .map(|(op, _)| *op),
        );
        for (_, p) in self.take_expired() {
            let err = Error::ConnectionClosed {
                addr: addr.to_string(),
                reason: reason.to_string(),
            };
            self.shared.complete(p, Err(err));
        }
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
            let mut idle: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| now.saturating_duration_since(c.last_read) >= max_idle)
                .map(|(t, _)| *t)
                .collect();
            // A call waiting on a quiet connection ends by its answer or its timeout (a sync
            // timeout closes the connection); closing under it would fail it for nothing.
            if !idle.is_empty() {
                idle.retain(|t| !self.response_table.values().any(|p| p.token == *t));
            }
            for token in idle {
                self.close(token, &format!("nothing received for {max_idle:?}"));
            }
            let stall = self.shared.config.write_stall_timeout;
            let stalled: Vec<Token> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    !c.out.is_empty() && now.saturating_duration_since(c.write_progress) >= stall
                })
                .map(|(t, _)| *t)
                .collect();
            for token in stalled {
                self.close(
                    token,
                    &format!("the peer is not reading: nothing could be written for {stall:?}"),
                );
            }
        }
    }

    /// Moves the calls that callers wrote themselves into the response table. A call whose
    /// connection is already gone fails at once, as a queued one would (a caller writes only
    /// on a registered connection, so a missing one was closed).
    fn take_expectations(&mut self) {
        while let Ok((opaque, p)) = self.shared.expect_rx.try_recv() {
            // Counted by the caller.
            self.shared.pending_count.fetch_sub(1, Ordering::AcqRel);
            if self.conns.contains_key(&p.token) {
                self.insert_pending(opaque, p);
            } else {
                self.fail_closed(p, "connection closed before the answer came");
            }
        }
    }

    /// Enters a call into the response table and the pending count.
    fn insert_pending(&mut self, opaque: i32, p: Pending) {
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

    /// Fails a call whose connection the loop no longer has, with why it closed if known.
    fn fail_closed(&self, p: Pending, what: &str) {
        let mut reason = what.to_string();
        if let Some((_, why)) = self.recent_closes.iter().find(|(t, _)| *t == p.token) {
            reason.push_str(": ");
            reason.push_str(why);
        }
        let err = Error::ConnectionClosed {
            addr: p.addr.to_string(),
            reason,
        };
        self.shared.complete(p, Err(err));
    }

    /// Java's `scanResponseTable`, but at the deadline instead of deadline + 1 s.
    fn scan_response_table(&mut self, now: Instant) {
        self.take_expectations();
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
        for (op, p) in self.take_expired() {
            log::debug!("rmq-io: request {op} to {} timed out", p.addr);
            let err = Error::Timeout {
                addr: p.addr.to_string(),
                timeout: p.timeout,
            };
            self.shared.complete(p, Err(err));
        }
    }

    /// Takes the calls whose opaques are in `self.expired` out of the response table and the
    /// pending count, all of them before any caller hears of its own: a caller woken by the
    /// first failure must not still see the others pending.
    fn take_expired(&mut self) -> Vec<(i32, Pending)> {
        let mut ops = std::mem::take(&mut self.expired);
        let taken: Vec<(i32, Pending)> = ops
            .drain(..)
            .filter_map(|op| self.response_table.remove(&op).map(|p| (op, p)))
            .collect();
        self.expired = ops;
        self.shared
            .pending_count
            .fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }

    /// Closes every connection, fails every pending call and everything still queued.
    fn shutdown(&mut self, reason: &str) {
        self.take_expectations();
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

/// Reads until `WouldBlock` (or, on plain TCP, a short read; not when the peer's hang-up was
/// reported with the data) or the turn's budget (frames or bytes), decoding as it goes.
fn read_some(
    conn: &mut Connection,
    scratch: &mut [u8],
    decoder: &mut FrameDecoder,
    frames: &mut Vec<RemotingCommand>,
    hung_up: bool,
) -> ReadOutcome {
    let mut read = 0;
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return ReadOutcome::Closed("connection closed by peer".to_string()),
            Ok(n) => {
                read += n;
                conn.in_buf.extend_from_slice(&scratch[..n]);
                loop {
                    match decoder.decode(&mut conn.in_buf) {
                        Ok(Some(cmd)) => frames.push(cmd),
                        Ok(None) => break,
                        Err(e) => return ReadOutcome::Closed(format!("codec error: {e}")),
                    }
                }
                if frames.len() >= MAX_FRAMES_PER_BATCH || read >= MAX_READ_PER_TURN {
                    return ReadOutcome::More;
                }
                // Saves the read that would only say `WouldBlock`: one syscall per wake-up.
                if n < scratch.len() && !hung_up && conn.stream.short_read_drains() {
                    return ReadOutcome::Drained;
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
    // A caller writing into the socket itself finishes its frame first.
    let handle = Arc::clone(&conn.handle);
    let _writing = match (&handle.direct, conn.out.is_empty()) {
        (Some(direct), false) => Some(direct.lock.lock()),
        _ => None,
    };
    while !conn.out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = conn.out.len().min(MAX_IOV);
        for (slot, frame) in slices.iter_mut().zip(conn.out.iter()) {
            *slot = IoSlice::new(&frame.bytes);
        }
        match conn.stream.write_vectored(&slices[..n]) {
            Ok(0) => return Err("write returned 0 bytes".to_string()),
            Ok(mut written) => {
                conn.handle.written(written);
                conn.write_progress = now;
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
