//! [`RemotingClient`]: the cloneable handle to the `rmq-io` loop (Java `NettyRemotingClient`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{TcpStream as StdTcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use mio::{Poll, Waker};
use parking_lot::{Mutex, RwLock};

use super::config::RemotingClientConfig;
use super::event_loop::{
    Callback, Command, Completion, ConnHandle, EventLoop, Pending, PendingKind, Semaphore, Shared,
    DIRECT_ASYNC_MIN_TIMEOUT, SHUTDOWN_REASON, WAKER_TOKEN,
};
use super::handoff::{sync_slot, CallbackPool, WaitError};
use super::processor::RequestProcessor;
use super::rpc_hook::RPCHook;
use super::tls::TlsConnector;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::remoting::protocol::{RemotingCommand, RequestCode};

/// A RocketMQ remoting client: one `rmq-io` thread for every connection, and an `rmq-cb` pool for
/// callbacks and broker-initiated requests.
///
/// The handle is cheap to clone and `Send + Sync`; all clones share the same loop and
/// connections. Dropping the last clone shuts the client down (see [`RemotingClient::shutdown`]).
///
/// # Calls
///
/// * [`invoke_sync`](Self::invoke_sync) blocks the calling thread until the response, a
///   timeout, or the connection's failure.
/// * [`invoke_async`](Self::invoke_async) runs a callback on the callback pool (or, with
///   [`disable_callback_executor`](RemotingClientConfig::disable_callback_executor), a
///   successful call's callback on the io thread). **Either it
///   returns `Err` and the callback never runs, or it returns `Ok` and the callback runs exactly
///   once** (with the response, `Error::Timeout`, or `Error::ConnectionClosed`).
/// * [`invoke_oneway`](Self::invoke_oneway) only queues the frame.
///
/// A response is returned as `Ok` whatever its code: interpreting codes is the caller's job.
/// The time budget of every call includes the time to connect. One connection is kept per
/// address and re-established on demand after it closes.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    io: Mutex<Option<IoThread>>,
    /// Serialises connects to one address, so a burst of calls opens one connection.
    connect_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    namesrv: Mutex<NamesrvState>,
    namesrv_index: AtomicUsize,
    async_permits: Arc<Semaphore>,
    oneway_permits: Arc<Semaphore>,
    shutdown_started: AtomicBool,
    /// Told the address of every connection this client opens (see `set_connect_listener`).
    connect_listener: RwLock<Option<ConnectListener>>,
    /// Runs on the connecting thread once a new connection is visible to other callers.
    #[cfg(test)]
    published_hook: Mutex<Option<ConnectListener>>,
    /// Run around every call (see `register_rpc_hook`). `has_rpc_hooks` lets a call skip the
    /// lock when there are none, the usual case.
    rpc_hooks: RwLock<RpcHooks>,
    has_rpc_hooks: AtomicBool,
    /// Built from `config.tls` at start: every connection is TLS when set.
    tls: Option<TlsConnector>,
}

type ConnectListener = Arc<dyn Fn(&str) + Send + Sync>;
type RpcHooks = Arc<[Arc<dyn RPCHook>]>;

struct IoThread {
    handle: JoinHandle<Receiver<Command>>,
    /// Disconnects when the io thread ends; lets `shutdown` wait with a bound.
    done: Receiver<()>,
}

#[derive(Default)]
struct NamesrvState {
    addrs: Vec<String>,
    chosen: Option<String>,
    /// The last name server a call timed out on: tried after every other one.
    timed_out: Option<String>,
}

impl fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotingClient")
            .field("connections", &self.connection_count())
            .field("pending", &self.pending_count())
            .field("closed", &self.is_shut_down())
            .finish()
    }
}

impl RemotingClient {
    /// Starts the `rmq-io` thread and the `rmq-cb` callback pool.
    pub fn start(config: RemotingClientConfig) -> Result<RemotingClient> {
        if config.callback_threads == 0 {
            return Err(Error::config("callback_threads must be at least 1"));
        }
        if config.max_frame_len < 8 {
            return Err(Error::config("max_frame_len must be at least 8"));
        }
        if config.max_queued_bytes == 0 {
            return Err(Error::config("max_queued_bytes must be at least 1"));
        }
        if config.write_stall_timeout.is_zero() {
            return Err(Error::config("write_stall_timeout must not be zero"));
        }
        if config.max_pending_broker_requests == 0 {
            return Err(Error::config(
                "max_pending_broker_requests must be at least 1",
            ));
        }
        let tls = config.tls.as_ref().map(|t| t.connector()).transpose()?;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let pool = CallbackPool::new(config.callback_threads, "rmq-cb")?;
        let async_permits = Semaphore::new(config.async_permits);
        let oneway_permits = Semaphore::new(config.oneway_permits);
        let shared = Arc::new(Shared::new(config, cmd_tx, waker, pool));
        let event_loop = EventLoop::new(Arc::clone(&shared), cmd_rx, &poll)?;
        let (done_tx, done) = bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name("rmq-io".to_string())
            .spawn(move || {
                let _done = done_tx;
                event_loop.run(poll)
            })?;
        let mut seed = random_u64();
        Ok(RemotingClient {
            inner: Arc::new(Inner {
                shared,
                io: Mutex::new(Some(IoThread { handle, done })),
                connect_locks: Mutex::new(HashMap::new()),
                namesrv: Mutex::new(NamesrvState::default()),
                namesrv_index: AtomicUsize::new((next_random(&mut seed) % 999) as usize),
                async_permits,
                oneway_permits,
                shutdown_started: AtomicBool::new(false),
                connect_listener: RwLock::new(None),
                #[cfg(test)]
                published_hook: Mutex::new(None),
                rpc_hooks: RwLock::new(Arc::new([])),
                has_rpc_hooks: AtomicBool::new(false),
                tls,
            }),
        })
    }

    /// Sets what to do when a connection is opened: `listener` gets the address after every
    /// new connection (the first one to an address and every reconnect after it closed), on the
    /// thread that connected, just before that thread's call goes out on it. A peer that was
    /// restarted has forgotten what it knew of this client; this is where to tell it again.
    /// The listener must not block (hand work to another thread) and must not call this client
    /// for the same address on the connecting thread. Replaces any earlier listener.
    pub fn set_connect_listener(&self, listener: impl Fn(&str) + Send + Sync + 'static) {
        *self.inner.connect_listener.write() = Some(Arc::new(listener));
    }

    /// Adds `hook` to the hooks run around every call of this client (Java
    /// `registerRPCHook`); see [`RPCHook`] for when they run. Hooks run in the order they were
    /// registered; registering the same `Arc` twice has no effect. Calls already under way are
    /// not affected.
    #[doc(alias = "registerRPCHook")]
    pub fn register_rpc_hook(&self, hook: Arc<dyn RPCHook>) {
        let mut hooks = self.inner.rpc_hooks.write();
        if hooks.iter().any(|h| Arc::ptr_eq(h, &hook)) {
            return;
        }
        let mut list = hooks.to_vec();
        list.push(hook);
        *hooks = list.into();
        self.inner.has_rpc_hooks.store(true, Ordering::Release);
    }

    /// Runs the registered hooks' `do_before_request`; returns them for `after_response`, so
    /// that one call sees one set of hooks.
    fn before_request(&self, addr: &str, request: &mut RemotingCommand) -> Option<RpcHooks> {
        if !self.inner.has_rpc_hooks.load(Ordering::Acquire) {
            return None;
        }
        let hooks = self.inner.rpc_hooks.read().clone();
        for hook in hooks.iter() {
            hook.do_before_request(addr, request);
        }
        Some(hooks)
    }

    /// The configuration the client was started with.
    pub fn config(&self) -> &RemotingClientConfig {
        &self.inner.shared.config
    }

    /// Sends `request` to `addr` and blocks until its response, for at most `timeout` (connect
    /// time included).
    ///
    /// Errors: [`Error::Connect`] if the connection cannot be made, [`Error::Timeout`] when the
    /// budget runs out, [`Error::ConnectionClosed`] when the connection dies while waiting (at
    /// once, not at the timeout), [`Error::Codec`] if the request cannot be encoded,
    /// [`Error::WriteQueueFull`] if the connection already has `max_queued_bytes` waiting.
    ///
    /// A timeout waiting for the response also closes the connection, as Java does by default
    /// (`closeSocketIfTimeout`): a peer that stopped answering, or a connection a firewall
    /// silently dropped, is given up rather than kept for every later call. Other calls pending
    /// on it fail at once with [`Error::ConnectionClosed`], and the next call reconnects.
    pub fn invoke_sync(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let deadline = Instant::now() + timeout;
        self.invoke_sync_until(addr, request, timeout, deadline)
    }

    fn invoke_sync_until(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<RemotingCommand> {
        self.check_open(addr)?;
        let conn = self.get_or_connect(addr, timeout, deadline)?;
        let hooks = self.before_request(addr, &mut request);
        let frame = self.encode(&mut request)?;
        self.inner.shared.reserve_write(&conn, &frame)?;
        let opaque = request.opaque();
        let (reply, wait) = sync_slot();
        let pending = Pending {
            deadline,
            timeout,
            token: conn.token,
            addr: Arc::clone(&conn.addr),
            kind: PendingKind::Sync(reply),
        };
        if self
            .inner
            .shared
            .send_request(&conn, frame, opaque, pending, true)
            .is_err()
        {
            return Err(closed_error(addr));
        }
        let result = match wait.wait_until(deadline) {
            // Either the sweep's timeout or ours, whichever came first.
            Ok(Ok(mut response)) => {
                for hook in hooks.iter().flat_map(|h| h.iter()) {
                    hook.do_after_response(addr, &request, &mut response);
                }
                Ok(response)
            }
            Ok(Err(e)) => Err(e),
            Err(WaitError::Timeout) => Err(Error::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
            Err(WaitError::Disconnected) => Err(closed_error(addr)),
        };
        if let Err(Error::Timeout { .. }) = result {
            // Closing also frees the table entry now rather than at the next sweep.
            self.close_after_timeout(&conn, timeout);
        }
        result
    }

    /// Sends `request` to `addr`; `callback` later runs on the `rmq-cb` pool with the response
    /// or an error.
    ///
    /// **Contract:** if this returns `Err`, the callback is dropped without running. If it
    /// returns `Ok`, the callback runs exactly once: with the response, with [`Error::Timeout`]
    /// after `timeout` (the response table is swept at the deadline), or with
    /// [`Error::ConnectionClosed`] as soon as the connection closes or the client shuts down.
    ///
    /// Returned errors: [`Error::TooManyRequests`] when `async_permits` calls are already in
    /// flight (the caller should back off), [`Error::Connect`], [`Error::Timeout`] if connecting
    /// used the whole budget, [`Error::Codec`], [`Error::WriteQueueFull`], and
    /// [`Error::ConnectionClosed`] after shutdown. A permit is held until the callback has
    /// returned; the frame's bytes count against `max_queued_bytes` until they are written,
    /// even if the call has timed out by then.
    pub fn invoke_async<F>(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<RemotingCommand>) + Send + 'static,
    {
        self.invoke_async_with(addr, request, timeout, callback, false)
    }

    /// [`invoke_async`](Self::invoke_async), but on a plain connection with nothing queued the
    /// calling thread writes the request itself, so the io thread is not woken for it: for
    /// calls made one at a time off the io thread (the consumer's pulls). A burst of calls is
    /// better queued, where the loop writes it in few `writev`s. Timeouts under the loop's
    /// housekeeping interval are always queued (see `Shared::send_request`).
    pub(crate) fn invoke_async_direct<F>(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<RemotingCommand>) + Send + 'static,
    {
        let direct = timeout >= DIRECT_ASYNC_MIN_TIMEOUT;
        self.invoke_async_with(addr, request, timeout, callback, direct)
    }

    fn invoke_async_with<F>(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
        callback: F,
        direct: bool,
    ) -> Result<()>
    where
        F: FnOnce(Result<RemotingCommand>) + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        self.check_open(addr)?;
        let permit = self
            .inner
            .async_permits
            .try_acquire()
            .ok_or(Error::TooManyRequests {
                limit: self.inner.async_permits.limit(),
            })?;
        let conn = self.get_or_connect(addr, timeout, deadline)?;
        let hooks = self.before_request(addr, &mut request);
        let frame = self.encode(&mut request)?;
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                addr: addr.to_string(),
                timeout,
            });
        }
        // The frame may outlive the call (a timeout gives the permit back while the frame is
        // still queued): the byte bound covers it until it is written.
        self.inner.shared.reserve_write(&conn, &frame)?;
        let opaque = request.opaque();
        let callback: Callback = match hooks {
            None => Box::new(callback),
            Some(hooks) => {
                let addr = addr.to_owned();
                Box::new(move |result: Result<RemotingCommand>| {
                    callback(result.map(|mut response| {
                        for hook in hooks.iter() {
                            // The callback must still run once: a panicking hook is skipped.
                            let run = AssertUnwindSafe(|| {
                                hook.do_after_response(&addr, &request, &mut response)
                            });
                            if catch_unwind(run).is_err() {
                                log::error!("an RPC hook panicked after a response from {addr}");
                            }
                        }
                        response
                    }))
                })
            }
        };
        let pending = Pending {
            deadline,
            timeout,
            token: conn.token,
            addr: Arc::clone(&conn.addr),
            kind: PendingKind::Async(Completion::new(callback, permit)),
        };
        match self
            .inner
            .shared
            .send_request(&conn, frame, opaque, pending, direct)
        {
            Ok(()) => Ok(()),
            Err(p) => {
                if let PendingKind::Async(c) = p.kind {
                    c.disarm();
                }
                Err(closed_error(addr))
            }
        }
    }

    /// Sends `request` to `addr` with the one-way flag set; no response is expected.
    ///
    /// `timeout` bounds the connect. At most `oneway_permits` one-way frames may be waiting to
    /// be written ([`Error::TooManyRequests`] beyond); a permit is released once its frame is
    /// written or its connection fails. [`Error::WriteQueueFull`] if the connection already has
    /// `max_queued_bytes` waiting.
    pub fn invoke_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.check_open(addr)?;
        request.mark_oneway();
        let permit = self
            .inner
            .oneway_permits
            .try_acquire()
            .ok_or(Error::TooManyRequests {
                limit: self.inner.oneway_permits.limit(),
            })?;
        let conn = self.get_or_connect(addr, timeout, deadline)?;
        self.before_request(addr, &mut request);
        let frame = self.encode(&mut request)?;
        self.inner.shared.reserve_write(&conn, &frame)?;
        let cmd = Command::Send {
            token: conn.token,
            frame,
            opaque: request.opaque(),
            pending: None,
            permit: Some(permit),
        };
        self.inner
            .shared
            .submit(cmd)
            .map_err(|_| closed_error(addr))
    }

    /// Replaces the name server list (Java `updateNameServerAddressList`). When the set changes
    /// it is shuffled, and the chosen name server is forgotten if it is no longer listed.
    pub fn update_namesrv_addr_list(&self, addrs: Vec<String>) {
        let mut state = self.inner.namesrv.lock();
        let changed =
            addrs.len() != state.addrs.len() || addrs.iter().any(|a| !state.addrs.contains(a));
        if !changed {
            return;
        }
        let mut addrs = addrs;
        shuffle(&mut addrs);
        log::info!("name server address list updated: {addrs:?}");
        if let Some(chosen) = &state.chosen {
            if !addrs.contains(chosen) {
                state.chosen = None;
            }
        }
        state.addrs = addrs;
    }

    /// The current name server list (in its shuffled order).
    pub fn namesrv_addr_list(&self) -> Vec<String> {
        self.inner.namesrv.lock().addrs.clone()
    }

    /// The name server in use, if one has been chosen.
    pub fn chosen_namesrv_addr(&self) -> Option<String> {
        self.inner.namesrv.lock().chosen.clone()
    }

    /// [`invoke_sync`](Self::invoke_sync) to a name server.
    ///
    /// The chosen name server is reused while its connection is alive. Otherwise every listed
    /// address is tried in turn, starting at a rotating index; the first that connects becomes
    /// the chosen one. If none connects: [`Error::Connect`] naming all of them (`;`-joined).
    ///
    /// A name server that a call timed out on is dropped as the chosen one (its connection is
    /// closed, see `invoke_sync`) and tried after every other listed address, so the next call
    /// goes elsewhere rather than back to a name server that accepts connections but does not
    /// answer.
    pub fn invoke_namesrv_sync(
        &self,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let deadline = Instant::now() + timeout;
        let addr = self.choose_namesrv(timeout, deadline)?;
        let result = self.invoke_sync_until(&addr, request, timeout, deadline);
        if let Err(Error::Timeout { .. }) = &result {
            let mut state = self.inner.namesrv.lock();
            if state.chosen.as_deref() == Some(&*addr) {
                state.chosen = None;
            }
            log::warn!("name server {addr} did not answer within {timeout:?}; trying others first");
            state.timed_out = Some(addr);
        }
        result
    }

    fn choose_namesrv(&self, timeout: Duration, deadline: Instant) -> Result<String> {
        let (addrs, timed_out) = {
            let state = self.inner.namesrv.lock();
            if let Some(chosen) = &state.chosen {
                if self.is_connected(chosen) {
                    return Ok(chosen.clone());
                }
            }
            (state.addrs.clone(), state.timed_out.clone())
        };
        if addrs.is_empty() {
            return Err(Error::Connect {
                addr: String::new(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "no name server address configured",
                ),
            });
        }
        let start = self.inner.namesrv_index.fetch_add(1, Ordering::Relaxed);
        let n = addrs.len();
        let in_turn = (0..n).map(|i| &addrs[(start + i) % n]);
        let order = in_turn
            .clone()
            .filter(|a| timed_out.as_ref() != Some(*a))
            .chain(in_turn.filter(|a| timed_out.as_ref() == Some(*a)));
        let mut last_err = None;
        for addr in order {
            match self.get_or_connect(addr, timeout, deadline) {
                Ok(_) => {
                    let mut state = self.inner.namesrv.lock();
                    if state.addrs.contains(addr) {
                        state.chosen = Some(addr.clone());
                    }
                    log::debug!("name server {addr} chosen");
                    return Ok(addr.clone());
                }
                Err(e @ Error::Timeout { .. }) => return Err(e),
                Err(e) => {
                    log::warn!("name server {addr} unreachable: {e}");
                    last_err = Some(e);
                }
            }
        }
        let source = match last_err {
            Some(Error::Connect { source, .. }) => source,
            Some(other) => io::Error::other(other.to_string()),
            None => io::Error::other("no name server reachable"),
        };
        Err(Error::Connect {
            addr: addrs.join(";"),
            source,
        })
    }

    /// Registers the processor for broker-initiated requests with `code`, replacing any earlier
    /// one. Requests with no processor are answered with `REQUEST_CODE_NOT_SUPPORTED`.
    pub fn register_processor(&self, code: RequestCode, processor: Arc<dyn RequestProcessor>) {
        self.inner
            .shared
            .processors
            .write()
            .insert(code.0, processor);
    }

    /// Runs `job` on the `rmq-cb` callback pool.
    pub(crate) fn execute_callback(&self, job: impl FnOnce() + Send + 'static) {
        self.inner.shared.execute(job);
    }

    /// Closes the connection to `addr`, if any. Calls pending on it fail with
    /// [`Error::ConnectionClosed`]; the next call reconnects.
    pub fn close_connection(&self, addr: &str) {
        let handle = self.inner.shared.conns.write().remove(addr);
        if let Some(h) = handle {
            let _ = self.inner.shared.submit(Command::Close {
                token: h.token,
                reason: "closed by the client".to_string(),
            });
        }
    }

    /// `true` if a live connection to `addr` exists.
    pub fn is_connected(&self, addr: &str) -> bool {
        self.inner
            .shared
            .conns
            .read()
            .get(addr)
            .is_some_and(|h| h.is_alive())
    }

    /// Entries in the response table (calls waiting for a response).
    pub fn pending_count(&self) -> usize {
        self.inner.shared.pending_count()
    }

    /// Requests from peers refused because `max_pending_broker_requests` were already waiting
    /// for the callback pool: answered `SYSTEM_BUSY`, or dropped if one-way.
    pub fn rejected_broker_requests(&self) -> u64 {
        self.inner.shared.rejected_broker_requests()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.inner.shared.connection_count()
    }

    /// Responses dropped because they completed no call: late answers to calls that had timed
    /// out, and answers from a peer to a call that was not sent to it (a response completes a
    /// call only when it arrives on the connection the request left by). Each is logged at
    /// `warn` (at most one line a second).
    pub fn unmatched_responses(&self) -> u64 {
        self.inner.shared.unmatched_responses()
    }

    /// `true` once [`shutdown`](Self::shutdown) has started.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shared.closed.load(Ordering::Acquire)
    }

    /// Stops the client: closes every connection, fails every pending call with
    /// [`Error::ConnectionClosed`], joins the io thread (waiting at most `shutdown_timeout`), then
    /// waits (bounded by the same timeout) for queued callbacks to finish. Idempotent; later calls
    /// on any clone fail with `ConnectionClosed`. Called from a callback it does not wait for the
    /// callback pool.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Gives up the connection a sync call timed out on (Java `closeSocketIfTimeout`). The
    /// handle is dead and unlisted before this returns, so the caller's next call reconnects
    /// instead of racing the loop's close.
    fn close_after_timeout(&self, conn: &Arc<ConnHandle>, timeout: Duration) {
        let shared = &self.inner.shared;
        {
            let mut map = shared.conns.write();
            if map.get(&*conn.addr).is_some_and(|h| Arc::ptr_eq(h, conn)) {
                map.remove(&*conn.addr);
            }
        }
        conn.mark_dead();
        let _ = shared.submit(Command::Close {
            token: conn.token,
            reason: format!("a call timed out after {timeout:?}; the peer is presumed gone"),
        });
    }

    fn check_open(&self, addr: &str) -> Result<()> {
        if self.is_shut_down() {
            Err(closed_error(addr))
        } else {
            Ok(())
        }
    }

    fn encode(&self, request: &mut RemotingCommand) -> Result<bytes::Bytes> {
        request.set_serialize_type(self.inner.shared.config.serialize_type);
        Ok(request.encode_to_bytes()?)
    }

    /// The live connection to `addr`, connecting on this thread if there is none.
    fn get_or_connect(
        &self,
        addr: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Arc<ConnHandle>> {
        let shared = &self.inner.shared;
        if let Some(h) = shared.conns.read().get(addr) {
            if h.is_alive() {
                return Ok(Arc::clone(h));
            }
        }
        let lock = Arc::clone(
            self.inner
                .connect_locks
                .lock()
                .entry(addr.to_string())
                .or_default(),
        );
        let timeout_err = || Error::Timeout {
            addr: addr.to_string(),
            timeout,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _guard = lock.try_lock_for(remaining).ok_or_else(timeout_err)?;
        // Someone else may have connected while we waited.
        if let Some(h) = shared.conns.read().get(addr) {
            if h.is_alive() {
                return Ok(Arc::clone(h));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timeout_err());
        }
        let stream = connect(
            addr,
            shared.config.connect_timeout.min(remaining),
            self.inner.tls.as_ref(),
        )?;
        let handle = Arc::new(ConnHandle::new(shared.next_token(), addr, &stream));
        let cmd = Command::Register {
            handle: Arc::clone(&handle),
            stream,
        };
        if let Err(cmd) = shared.submit(cmd) {
            shared.fail_command(cmd, SHUTDOWN_REASON);
            return Err(closed_error(addr));
        }
        // Publish only once the register command is queued: a caller that finds the handle
        // queues its request behind it, so the loop always knows the connection first. (If the
        // loop has already closed it, the handle is dead and the next caller reconnects.)
        shared
            .conns
            .write()
            .insert(addr.to_string(), Arc::clone(&handle));
        #[cfg(test)]
        if let Some(hook) = self.inner.published_hook.lock().clone() {
            hook(addr);
        }
        log::debug!("connected to {addr}");
        let listener = self.inner.connect_listener.read().clone();
        if let Some(listener) = listener {
            listener(addr);
        }
        Ok(handle)
    }
}

impl Inner {
    fn shutdown(&self) {
        if self.shutdown_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let _ = shared.submit(Command::Shutdown);
        let timeout = shared.config.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        if let Some(io) = self.io.lock().take() {
            match io.done.recv_deadline(deadline) {
                Err(RecvTimeoutError::Disconnected) | Ok(()) => match io.handle.join() {
                    Ok(rx) => {
                        // Commands sent after the loop's last look: fail them here.
                        while let Ok(cmd) = rx.try_recv() {
                            shared.fail_command(cmd, SHUTDOWN_REASON);
                        }
                    }
                    Err(_) => log::error!("rmq-io panicked"),
                },
                Err(RecvTimeoutError::Timeout) => {
                    log::error!("rmq-io did not stop within {timeout:?}; detaching it");
                }
            }
        }
        // Wait for queued callbacks (they include the failures just sent), unless we are one.
        if std::thread::current().name() != Some("rmq-cb") {
            while shared.pool.active_count() + shared.pool.queued_count() > 0 {
                if Instant::now() >= deadline {
                    log::warn!("callbacks still running after {timeout:?}; not waiting longer");
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        log::info!("remoting client shut down");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn closed_error(addr: &str) -> Error {
    Error::ConnectionClosed {
        addr: addr.to_string(),
        reason: SHUTDOWN_REASON.to_string(),
    }
}

/// Connects on the caller's thread, then prepares the stream for the loop (with `tls`: the
/// TLS handshake, within the same `timeout`).
fn connect(addr: &str, timeout: Duration, tls: Option<&TlsConnector>) -> Result<Transport> {
    let deadline = Instant::now() + timeout;
    let connect_err = |source: io::Error| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for sa in addr.to_socket_addrs().map_err(connect_err)? {
        match StdTcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Transport::establish(s, addr, deadline, tls),
            Err(e) => last = Some(e),
        }
    }
    Err(connect_err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing")
    })))
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// xorshift64*: enough randomness to shuffle a name server list.
fn next_random(state: &mut u64) -> u64 {
    if *state == 0 {
        *state = 0x9E37_79B9_7F4A_7C15;
    }
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn shuffle<T>(v: &mut [T]) {
    let mut seed = random_u64();
    for i in (1..v.len()).rev() {
        let j = (next_random(&mut seed) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeBroker;

    #[test]
    fn client_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<RemotingClient>();
    }

    #[test]
    fn semaphore_bounds_and_releases() {
        let s = Semaphore::new(2);
        let a = s.try_acquire().unwrap();
        let _b = s.try_acquire().unwrap();
        assert!(s.try_acquire().is_none());
        drop(a);
        assert!(s.try_acquire().is_some());
    }

    #[test]
    fn shuffle_keeps_elements() {
        let mut v: Vec<u32> = (0..20).collect();
        shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn start_and_shutdown_are_clean() {
        let client = RemotingClient::start(RemotingClientConfig::default()).unwrap();
        let clone = client.clone();
        client.shutdown();
        client.shutdown();
        assert!(clone.is_shut_down());
        let err = clone
            .invoke_sync(
                "127.0.0.1:1",
                RemotingCommand::request(RequestCode(1)),
                Duration::from_secs(1),
            )
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed { .. }), "{err}");
    }

    #[test]
    fn namesrv_update_forgets_removed_chosen() {
        let client = RemotingClient::start(RemotingClientConfig::default()).unwrap();
        client.update_namesrv_addr_list(vec!["a:1".into(), "b:2".into()]);
        client.inner.namesrv.lock().chosen = Some("a:1".into());
        client.update_namesrv_addr_list(vec!["b:2".into(), "a:1".into()]);
        assert_eq!(client.chosen_namesrv_addr().as_deref(), Some("a:1"));
        client.update_namesrv_addr_list(vec!["b:2".into(), "c:3".into()]);
        assert_eq!(client.chosen_namesrv_addr(), None);
        let mut l = client.namesrv_addr_list();
        l.sort();
        assert_eq!(l, vec!["b:2".to_string(), "c:3".to_string()]);
    }

    /// A caller that finds a connection the moment it is published (while the connecting thread
    /// is still between publishing and its own request) must get its response, not a spurious
    /// "connection closed".
    /// Pulls are written by the thread that makes them: each completes once with its answer,
    /// and one whose connection the peer closes fails at once, not at its timeout.
    #[test]
    fn async_calls_written_by_their_caller_complete_once_answered_or_closed() {
        use crate::testing::{FakeAction, FakeBroker};
        const CLOSE: i32 = 9002;
        let broker = FakeBroker::start(|req| {
            if req.code() == CLOSE {
                FakeAction::CloseConnection
            } else {
                FakeAction::Respond(RemotingCommand::response(
                    crate::remoting::protocol::ResponseCode::SUCCESS,
                    None,
                ))
            }
        })
        .unwrap();
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        let addr = broker.addr();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..50 {
            let tx = tx.clone();
            client
                .invoke_async_direct(
                    &addr,
                    RemotingCommand::request(RequestCode(1)),
                    Duration::from_secs(10),
                    move |r| tx.send((i, r.is_ok())).unwrap(),
                )
                .unwrap();
            // One at a time, as pulls go: nothing is queued ahead of the next.
            let (j, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((j, ok), (i, true));
        }
        let direct = client.inner.shared.direct_writes.load(Ordering::Relaxed);
        assert!(
            direct >= 45,
            "only {direct} of 50 calls were written by their caller"
        );

        let started = Instant::now();
        let tx2 = tx.clone();
        client
            .invoke_async_direct(
                &addr,
                RemotingCommand::request(RequestCode(CLOSE)),
                Duration::from_secs(30),
                move |r| tx2.send((99, r.is_ok())).unwrap(),
            )
            .unwrap();
        let (j, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((j, ok), (99, false), "the closed connection fails the call");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "called back twice"
        );
        assert_eq!(client.pending_count(), 0);
    }

    #[test]
    fn a_call_that_finds_a_new_connection_succeeds() {
        let broker = FakeBroker::echo().unwrap();
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        let (tx, rx) = bounded(1);
        let other = client.clone();
        *client.inner.published_hook.lock() = Some(Arc::new(move |addr: &str| {
            let (other, addr) = (other.clone(), addr.to_string());
            let result = std::thread::Builder::new()
                .name("second-caller".into())
                .spawn(move || {
                    other.invoke_sync(
                        &addr,
                        RemotingCommand::request(RequestCode(1)),
                        Duration::from_secs(3),
                    )
                })
                .unwrap()
                .join()
                .unwrap();
            let _ = tx.try_send(result);
        }));
        let first = client.invoke_sync(
            &broker.addr(),
            RemotingCommand::request(RequestCode(1)),
            Duration::from_secs(3),
        );
        // The hook holds a clone of the client: drop it so the client can shut down.
        client.inner.published_hook.lock().take();
        first.unwrap();
        let other = rx.recv_timeout(Duration::from_secs(3)).unwrap();
        assert!(
            other.is_ok(),
            "the concurrent first call failed: {:?}",
            other.unwrap_err()
        );
    }

    /// Whatever the rotating start index says, the name server a call timed out on is tried
    /// after the others.
    #[test]
    fn a_namesrv_that_timed_out_is_tried_last() {
        use crate::testing::FakeAction;
        use std::sync::atomic::AtomicBool;
        let stall = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stall);
        let bad = FakeBroker::start(move |_| {
            if flag.load(Ordering::SeqCst) {
                FakeAction::NoResponse
            } else {
                FakeAction::Respond(RemotingCommand::response(
                    crate::remoting::protocol::ResponseCode::SUCCESS,
                    None,
                ))
            }
        })
        .unwrap();
        let good = FakeBroker::echo().unwrap();
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        client.update_namesrv_addr_list(vec![bad.addr(), good.addr()]);
        let bad_index = client
            .namesrv_addr_list()
            .iter()
            .position(|a| *a == bad.addr())
            .unwrap();
        let call =
            |timeout| client.invoke_namesrv_sync(RemotingCommand::request(RequestCode(1)), timeout);
        client
            .inner
            .namesrv_index
            .store(bad_index, Ordering::SeqCst);
        call(Duration::from_secs(3)).unwrap();
        assert_eq!(client.chosen_namesrv_addr(), Some(bad.addr()));
        stall.store(true, Ordering::SeqCst);
        assert!(call(Duration::from_millis(200)).unwrap_err().is_timeout());
        // The rotation would start at the stalled one again.
        client
            .inner
            .namesrv_index
            .store(bad_index, Ordering::SeqCst);
        call(Duration::from_secs(3)).unwrap();
        assert_eq!(client.chosen_namesrv_addr(), Some(good.addr()));
    }

    /// While a connection's write queue is full, every kind of write is refused rather than
    /// queued: sync, async and one-way calls with `WriteQueueFull`, and the response to a
    /// request from the peer is dropped.
    #[test]
    fn every_write_is_refused_while_the_write_queue_is_full() {
        let broker = FakeBroker::echo().unwrap();
        let addr = broker.addr();
        let limit = 64 * 1024;
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            max_queued_bytes: limit,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        let req = || RemotingCommand::request(RequestCode(1));
        let secs = Duration::from_secs(3);
        client.invoke_sync(&addr, req(), secs).unwrap();
        let conn = Arc::clone(client.inner.shared.conns.read().get(&addr).unwrap());
        // As if the peer had stopped reading with the queue full.
        assert!(conn.reserve(limit, limit));
        let full = |e: Error| matches!(e, Error::WriteQueueFull { limit: l, .. } if l == limit);
        assert!(full(client.invoke_sync(&addr, req(), secs).unwrap_err()));
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&called);
        let err = client
            .invoke_async(&addr, req(), secs, move |_| {
                flag.store(true, Ordering::SeqCst)
            })
            .unwrap_err();
        assert!(full(err));
        assert!(full(client.invoke_oneway(&addr, req(), secs).unwrap_err()));
        assert_eq!(client.pending_count(), 0);

        // A request from the peer is processed, but its response is not queued.
        let (ran_tx, ran_rx) = bounded(4);
        client.register_processor(
            RequestCode(7),
            Arc::new(
                move |_: &crate::remoting::RequestContext, r: RemotingCommand| {
                    let _ = ran_tx.try_send(());
                    Some(RemotingCommand::response_to(
                        &r,
                        crate::remoting::protocol::ResponseCode::SUCCESS,
                        None,
                    ))
                },
            ),
        );
        assert_eq!(
            broker.push_request(&RemotingCommand::request(RequestCode(7))),
            1
        );
        ran_rx.recv_timeout(secs).expect("the processor ran");
        let pool = &client.inner.shared.pool;
        let deadline = Instant::now() + secs;
        while pool.active_count() + pool.queued_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "the processor job never finished"
            );
            std::thread::yield_now();
        }
        // Room again: a call goes through, and nothing was queued ahead of it.
        conn.written(limit);
        client.invoke_sync(&addr, req(), secs).unwrap();
        assert!(broker.received_responses().is_empty());
        assert!(!called.load(Ordering::SeqCst));
    }
}
