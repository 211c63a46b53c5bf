//! [`FakeBroker`]: a scripted in-process broker for tests and fault injection.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::remoting::protocol::{FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN};

/// What the fake does with one request.
#[derive(Debug)]
pub enum FakeAction {
    /// Send this response at once. The fake sets the request's opaque and the response flag.
    /// Nothing is sent for a one-way request.
    Respond(RemotingCommand),
    /// Send this response after a delay, without blocking other requests on the connection.
    RespondAfter(Duration, RemotingCommand),
    /// Send this response once `release` receives a message or all its senders are dropped,
    /// without blocking other requests on the connection.
    RespondWhen(Receiver<()>, RemotingCommand),
    /// Send nothing.
    NoResponse,
    /// Close the connection (the client sees EOF).
    CloseConnection,
    /// Write these bytes as they are: garbage, a truncated frame, an oversized length prefix...
    SendRaw(Vec<u8>),
    /// Stop reading this connection (without answering) until the fake shuts down, keeping it
    /// open: what the client writes fills the socket buffers, as with a wedged broker.
    StopReading,
}

type Handler = dyn Fn(&RemotingCommand) -> FakeAction + Send + Sync;

/// An in-process broker on `127.0.0.1:<random port>`.
///
/// An accept thread plus one thread per connection, with blocking I/O. Every request goes to the
/// handler given to [`FakeBroker::start`]; its [`FakeAction`] decides the answer. Requests the
/// fake sends with [`push_request`](Self::push_request) get their responses collected.
///
/// [`shutdown`](Self::shutdown) (also on drop) closes the listener and every connection, so
/// clients see EOF.
///
/// ```
/// use rocketmq_sync::testing::{FakeAction, FakeBroker};
/// use rocketmq_sync::remoting::protocol::{RemotingCommand, ResponseCode};
///
/// let broker = FakeBroker::start(|_req| {
///     FakeAction::Respond(RemotingCommand::response(ResponseCode::SUCCESS, None))
/// })
/// .unwrap();
/// assert!(broker.addr().starts_with("127.0.0.1:"));
/// ```
pub struct FakeBroker {
    inner: Arc<FakeInner>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

struct FakeInner {
    addr: SocketAddr,
    handler: Box<Handler>,
    stopped: AtomicBool,
    next_id: AtomicU64,
    request_count: AtomicUsize,
    conns: Mutex<HashMap<u64, FakeConn>>,
    requests_tx: Sender<RemotingCommand>,
    requests_rx: Receiver<RemotingCommand>,
    responses: Mutex<Vec<RemotingCommand>>,
    responses_tx: Sender<RemotingCommand>,
    responses_rx: Receiver<RemotingCommand>,
    /// Dropped at shutdown: wakes connections that stopped reading.
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
}

struct FakeConn {
    writer: Arc<Mutex<TcpStream>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeBroker")
            .field("addr", &self.inner.addr)
            .field("requests", &self.request_count())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl FakeBroker {
    /// Binds `127.0.0.1:0` and starts serving with `handler`.
    pub fn start<H>(handler: H) -> io::Result<FakeBroker>
    where
        H: Fn(&RemotingCommand) -> FakeAction + Send + Sync + 'static,
    {
        FakeBroker::start_at("127.0.0.1:0", handler)
    }

    /// Binds `addr` (e.g. the address of a fake that was shut down, to play a broker that comes
    /// back) and starts serving with `handler`.
    pub fn start_at<H>(addr: &str, handler: H) -> io::Result<FakeBroker>
    where
        H: Fn(&RemotingCommand) -> FakeAction + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let (requests_tx, requests_rx) = crossbeam_channel::unbounded();
        let (responses_tx, responses_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let inner = Arc::new(FakeInner {
            addr,
            handler: Box::new(handler),
            stopped: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            request_count: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            requests_tx,
            requests_rx,
            responses: Mutex::new(Vec::new()),
            responses_tx,
            responses_rx,
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
        });
        let acceptor = Arc::clone(&inner);
        let accept = std::thread::Builder::new()
            .name("fake-accept".to_string())
            .spawn(move || accept_loop(acceptor, listener))?;
        Ok(FakeBroker {
            inner,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// A fake that answers every request with `SUCCESS` and the request's body.
    pub fn echo() -> io::Result<FakeBroker> {
        FakeBroker::start(|req| {
            let mut resp =
                RemotingCommand::response(crate::remoting::protocol::ResponseCode::SUCCESS, None);
            if let Some(body) = req.body() {
                resp.set_body(body.clone());
            }
            FakeAction::Respond(resp)
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.inner.addr.to_string()
    }

    /// Requests received so far (one-way ones included).
    pub fn request_count(&self) -> usize {
        self.inner.request_count.load(Ordering::Acquire)
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.lock().len()
    }

    /// Connections accepted since the start, closed ones included: a client that reconnects
    /// raises it.
    pub fn accepted_count(&self) -> usize {
        self.inner.next_id.load(Ordering::Acquire) as usize
    }

    /// The next request received (in arrival order), waiting at most `timeout`.
    pub fn recv_request(&self, timeout: Duration) -> Option<RemotingCommand> {
        self.inner.requests_rx.recv_timeout(timeout).ok()
    }

    /// Sends `request` (as a server-initiated request) to every connected client. Returns how
    /// many connections it was written to. Responses are collected: see
    /// [`recv_response`](Self::recv_response) and [`received_responses`](Self::received_responses).
    pub fn push_request(&self, request: &RemotingCommand) -> usize {
        let frame = match request.encode_to_bytes() {
            Ok(f) => f,
            Err(e) => panic!("FakeBroker::push_request: cannot encode: {e}"),
        };
        let writers: Vec<_> = self
            .inner
            .conns
            .lock()
            .values()
            .map(|c| Arc::clone(&c.writer))
            .collect();
        writers
            .iter()
            .filter(|w| w.lock().write_all(&frame).is_ok())
            .count()
    }

    /// The next response from a client to a pushed request, waiting at most `timeout`.
    pub fn recv_response(&self, timeout: Duration) -> Option<RemotingCommand> {
        self.inner.responses_rx.recv_timeout(timeout).ok()
    }

    /// Every response received so far from clients.
    pub fn received_responses(&self) -> Vec<RemotingCommand> {
        self.inner.responses.lock().clone()
    }

    /// Closes the listener and every connection, and joins the fake's threads. Idempotent.
    pub fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        // Unblock `accept`.
        let _ = TcpStream::connect_timeout(&self.inner.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.lock().take() {
            let _ = t.join();
        }
        let conns: Vec<FakeConn> = self.inner.conns.lock().drain().map(|(_, c)| c).collect();
        for c in &conns {
            let _ = c.writer.lock().shutdown(Shutdown::Both);
        }
        self.inner.stop_tx.lock().take();
        for mut c in conns {
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(inner: Arc<FakeInner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stopped.load(Ordering::Acquire) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let writer = Arc::new(Mutex::new(writer));
        // Hold the map lock across spawn so the connection thread cannot remove itself first.
        let mut conns = inner.conns.lock();
        let conn_inner = Arc::clone(&inner);
        let conn_writer = Arc::clone(&writer);
        let thread = std::thread::Builder::new()
            .name(format!("fake-conn-{id}"))
            .spawn(move || {
                serve(&conn_inner, stream, &conn_writer);
                let _ = conn_writer.lock().shutdown(Shutdown::Both);
                conn_inner.conns.lock().remove(&id);
            });
        match thread {
            Ok(t) => {
                conns.insert(
                    id,
                    FakeConn {
                        writer,
                        thread: Some(t),
                    },
                );
            }
            Err(e) => log::error!("fake broker: cannot spawn a connection thread: {e}"),
        }
    }
}

fn serve(inner: &FakeInner, mut stream: TcpStream, writer: &Arc<Mutex<TcpStream>>) {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let cmd = match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("fake broker: bad frame from client, closing: {e}");
                    return;
                }
            };
            if cmd.is_response() {
                inner.responses.lock().push(cmd.clone());
                let _ = inner.responses_tx.send(cmd);
                continue;
            }
            inner.request_count.fetch_add(1, Ordering::AcqRel);
            let action = (inner.handler)(&cmd);
            let _ = inner.requests_tx.send(cmd.clone());
            match action {
                FakeAction::Respond(resp) => {
                    if !cmd.is_oneway() && write_response(writer, &cmd, resp).is_err() {
                        return;
                    }
                }
                FakeAction::RespondAfter(delay, resp) => {
                    if cmd.is_oneway() {
                        continue;
                    }
                    let writer = Arc::clone(writer);
                    let spawned = std::thread::Builder::new()
                        .name("fake-delay".to_string())
                        .spawn(move || {
                            std::thread::sleep(delay);
                            let _ = write_response(&writer, &cmd, resp);
                        });
                    if spawned.is_err() {
                        return;
                    }
                }
                FakeAction::RespondWhen(release, resp) => {
                    if cmd.is_oneway() {
                        continue;
                    }
                    let writer = Arc::clone(writer);
                    let spawned = std::thread::Builder::new()
                        .name("fake-held".to_string())
                        .spawn(move || {
                            let _ = release.recv();
                            let _ = write_response(&writer, &cmd, resp);
                        });
                    if spawned.is_err() {
                        return;
                    }
                }
                FakeAction::NoResponse => {}
                FakeAction::CloseConnection => return,
                FakeAction::StopReading => {
                    let _ = inner.stop_rx.recv();
                    return;
                }
                FakeAction::SendRaw(bytes) => {
                    if writer.lock().write_all(&bytes).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn write_response(
    writer: &Mutex<TcpStream>,
    request: &RemotingCommand,
    mut response: RemotingCommand,
) -> io::Result<()> {
    response.set_opaque(request.opaque());
    response.mark_response();
    let frame = response
        .encode_to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    writer.lock().write_all(&frame)
}
