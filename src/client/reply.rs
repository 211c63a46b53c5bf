//! The requesting side of request-reply (Java `RequestFutureHolder`, `RequestResponseFuture` and
//! `ClientRemotingProcessor.receiveReplyMessage`): the instance's table of requests waiting for
//! a reply, the processor of the broker's `PUSH_REPLY_MESSAGE_TO_CLIENT`, and the sweep that
//! fails requests nobody answered in time.
//!
//! A request is registered under its correlation id before it is sent. The reply, pushed by the
//! broker on any connection of this client, completes it once: the first of reply, send failure
//! and timeout wins, and whoever wins removes the entry, so a late reply finds nothing and is
//! dropped with a log line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::client::instance::MQClientInstance;
use crate::common::decoder::{decompress, MessageSysFlag};
use crate::common::message::{string_to_properties, PropertyIter};
use crate::common::reply::REPLY_MESSAGE_FLAG;
use crate::common::{Message, MessageConst, MessageExt, DEFAULT_MAX_BODY_SIZE};
use crate::error::{ClientErrorCode, CodecError, Error, Result};
use crate::executor::ScheduledHandle;
use crate::remoting::protocol::{
    CommandCustomHeader, ExtFields, RemotingCommand, RequestCode, ResponseCode,
};
use crate::remoting::RequestContext;

/// How often expired requests are looked for (Java's scan runs every second).
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// `PUSH_REPLY_MESSAGE_TO_CLIENT` (326) request from the broker (Java
/// `ReplyMessageRequestHeader`): the reply's message fields; the body is the reply's body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReplyMessageRequestHeader {
    pub(crate) producer_group: String,
    pub(crate) topic: String,
    pub(crate) default_topic: String,
    pub(crate) default_topic_queue_nums: i32,
    pub(crate) queue_id: i32,
    pub(crate) sys_flag: i32,
    pub(crate) born_timestamp: i64,
    pub(crate) flag: i32,
    pub(crate) properties: Option<String>,
    pub(crate) reconsume_times: Option<i32>,
    pub(crate) unit_mode: Option<bool>,
    pub(crate) born_host: String,
    pub(crate) store_host: String,
    pub(crate) store_timestamp: i64,
}

impl CommandCustomHeader for ReplyMessageRequestHeader {
    fn write_to(&self, f: &mut ExtFields) {
        f.put("producerGroup", &self.producer_group);
        f.put("topic", &self.topic);
        f.put("defaultTopic", &self.default_topic);
        f.put("defaultTopicQueueNums", self.default_topic_queue_nums);
        f.put("queueId", self.queue_id);
        f.put("sysFlag", self.sys_flag);
        f.put("bornTimestamp", self.born_timestamp);
        f.put("flag", self.flag);
        f.put_opt("properties", self.properties.as_ref());
        f.put_opt("reconsumeTimes", self.reconsume_times);
        f.put_opt("unitMode", self.unit_mode);
        f.put("bornHost", &self.born_host);
        f.put("storeHost", &self.store_host);
        f.put("storeTimestamp", self.store_timestamp);
    }

    fn read_from(f: &ExtFields) -> std::result::Result<Self, CodecError> {
        Ok(ReplyMessageRequestHeader {
            producer_group: f.required("producerGroup")?.to_owned(),
            topic: f.required("topic")?.to_owned(),
            default_topic: f.required("defaultTopic")?.to_owned(),
            default_topic_queue_nums: f.required_parse("defaultTopicQueueNums")?,
            queue_id: f.required_parse("queueId")?,
            sys_flag: f.required_parse("sysFlag")?,
            born_timestamp: f.required_parse("bornTimestamp")?,
            flag: f.required_parse("flag")?,
            properties: f.get("properties").map(str::to_owned),
            reconsume_times: f.optional_parse("reconsumeTimes")?,
            unit_mode: f.get("unitMode").map(|v| v.eq_ignore_ascii_case("true")),
            born_host: f.required("bornHost")?.to_owned(),
            store_host: f.required("storeHost")?.to_owned(),
            store_timestamp: f.required_parse("storeTimestamp")?,
        })
    }
}

/// Whether an encoded properties string marks a reply (`MSG_TYPE=reply`). Scans the string
/// without allocating: it runs for every send.
pub(crate) fn is_reply(properties: &Option<String>) -> bool {
    properties.as_deref().is_some_and(|p| {
        p.contains(REPLY_MESSAGE_FLAG)
            && PropertyIter::new(p)
                .any(|(k, v)| k == MessageConst::PROPERTY_MESSAGE_TYPE && v == REPLY_MESSAGE_FLAG)
    })
}

/// What a request does when it completes: hands the reply or the error to whoever waits.
pub(crate) type RequestCompletion = Box<dyn FnOnce(Result<MessageExt>) + Send + 'static>;

/// How a request's waiter learns the outcome.
enum Waiter {
    /// A thread blocked in [`RequestResponseFuture::wait`].
    Sync(Option<Box<Result<MessageExt>>>),
    /// An asynchronous request's callback, run once.
    Callback(Option<RequestCompletion>),
}

/// One request waiting for its reply (Java `RequestResponseFuture`).
pub(crate) struct RequestResponseFuture {
    correlation_id: String,
    topic: String,
    timeout: Duration,
    begin: Instant,
    /// Set once the request reached the broker: decides the timeout's message.
    send_ok: std::sync::atomic::AtomicBool,
    waiter: Mutex<Waiter>,
    done: Condvar,
}

impl std::fmt::Debug for RequestResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestResponseFuture")
            .field("correlation_id", &self.correlation_id)
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RequestResponseFuture {
    /// A request of `topic` that a thread will wait for.
    pub(crate) fn new_sync(correlation_id: String, topic: &str, timeout: Duration) -> Arc<Self> {
        Self::new(correlation_id, topic, timeout, Waiter::Sync(None))
    }

    /// A request of `topic` whose outcome goes to `completion`.
    pub(crate) fn new_async(
        correlation_id: String,
        topic: &str,
        timeout: Duration,
        completion: RequestCompletion,
    ) -> Arc<Self> {
        Self::new(
            correlation_id,
            topic,
            timeout,
            Waiter::Callback(Some(completion)),
        )
    }

    fn new(correlation_id: String, topic: &str, timeout: Duration, waiter: Waiter) -> Arc<Self> {
        Arc::new(RequestResponseFuture {
            correlation_id,
            topic: topic.to_owned(),
            timeout,
            begin: Instant::now(),
            send_ok: std::sync::atomic::AtomicBool::new(false),
            waiter: Mutex::new(waiter),
            done: Condvar::new(),
        })
    }

    /// The correlation id the reply must carry.
    pub(crate) fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Records that the request reached the broker.
    pub(crate) fn set_send_ok(&self) {
        self.send_ok
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn deadline(&self) -> Instant {
        self.begin + self.timeout
    }

    /// The error of a request that got no reply in time.
    fn timeout_error(&self) -> Error {
        let ms = self.timeout.as_millis();
        let message = if self.send_ok.load(std::sync::atomic::Ordering::Acquire) {
            format!(
                "send request message to <{}> OK, but wait reply message timeout, {ms} ms.",
                self.topic
            )
        } else {
            format!(
                "request to <{}> timed out after {ms} ms before the request message was sent.",
                self.topic
            )
        };
        Error::client(ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION, message)
    }

    /// Completes the request with `outcome`: wakes the waiting thread, or runs the callback on
    /// this thread (panics caught: the callback is the user's code). A second completion is
    /// ignored; the table entry decides who completes, so none is expected.
    fn complete(&self, outcome: Result<MessageExt>) {
        let callback = {
            let mut w = self.waiter.lock();
            match &mut *w {
                Waiter::Sync(slot) => {
                    if slot.is_none() {
                        *slot = Some(Box::new(outcome));
                        self.done.notify_all();
                    }
                    return;
                }
                Waiter::Callback(cb) => cb.take(),
            }
        };
        if let Some(cb) = callback {
            if catch_unwind(AssertUnwindSafe(|| cb(outcome))).is_err() {
                log::error!(
                    "the request callback of correlation id {} panicked",
                    self.correlation_id
                );
            }
        }
    }

    fn is_sync(&self) -> bool {
        matches!(&*self.waiter.lock(), Waiter::Sync(_))
    }

    /// Waits for the outcome without a deadline: for a request whose table entry someone
    /// else removed, and who therefore completes it at once.
    fn wait_taken(&self) -> Option<Result<MessageExt>> {
        let mut w = self.waiter.lock();
        loop {
            match &mut *w {
                Waiter::Sync(slot) if slot.is_some() => return slot.take().map(|b| *b),
                Waiter::Sync(_) => self.done.wait(&mut w),
                Waiter::Callback(_) => return None,
            }
        }
    }

    /// Waits until the request completes or its timeout passes. `None` on timeout; the caller
    /// then removes the entry (whoever removes it owns the outcome).
    fn wait(&self) -> Option<Result<MessageExt>> {
        let deadline = self.deadline();
        let mut w = self.waiter.lock();
        loop {
            match &mut *w {
                Waiter::Sync(slot) if slot.is_some() => return slot.take().map(|b| *b),
                Waiter::Sync(_) => {}
                Waiter::Callback(_) => return None,
            }
            if self.done.wait_until(&mut w, deadline).timed_out() {
                return match &mut *w {
                    Waiter::Sync(slot) => slot.take().map(|b| *b),
                    Waiter::Callback(_) => None,
                };
            }
        }
    }
}

/// The requests of one client instance that wait for a reply (Java `RequestFutureHolder`,
/// which is per process; here per instance, since the broker pushes a reply to the client id
/// that sent the request).
#[derive(Debug, Default)]
pub(crate) struct RequestFutureTable {
    table: Mutex<HashMap<String, Arc<RequestResponseFuture>>>,
    sweep: OnceLock<ScheduledHandle>,
}

impl RequestFutureTable {
    /// Registers `future` under its correlation id; starts the instance's sweep of expired
    /// requests on first use.
    pub(crate) fn put(&self, instance: &Arc<MQClientInstance>, future: Arc<RequestResponseFuture>) {
        self.ensure_sweep(instance);
        self.table
            .lock()
            .insert(future.correlation_id.clone(), future);
    }

    /// Takes the request of `correlation_id` out of the table; `None` when it already
    /// completed (or never existed).
    pub(crate) fn remove(&self, correlation_id: &str) -> Option<Arc<RequestResponseFuture>> {
        self.table.lock().remove(correlation_id)
    }

    /// The number of requests waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Fails the request of `correlation_id` with `error`, if it still waits (a send that
    /// failed).
    pub(crate) fn fail(&self, correlation_id: &str, error: Error) {
        if let Some(f) = self.remove(correlation_id) {
            f.complete(Err(error));
        }
    }

    /// Fails every waiting request: the instance shut down, so no reply can arrive and no
    /// sweep will run. Callbacks run on this thread (the callback pool is stopped).
    pub(crate) fn fail_all(&self, client_id: &str) {
        let all: Vec<_> = self.table.lock().drain().map(|(_, f)| f).collect();
        for f in all {
            f.complete(Err(Error::client(
                ClientErrorCode::NO_CODE,
                format!(
                    "request to <{}> abandoned: the client instance {client_id} shut down",
                    f.topic
                ),
            )));
        }
    }

    /// Waits for `future`'s reply until its timeout, then takes it out of the table.
    pub(crate) fn wait(&self, future: &Arc<RequestResponseFuture>) -> Result<MessageExt> {
        if let Some(outcome) = future.wait() {
            return outcome;
        }
        match self.remove(&future.correlation_id) {
            Some(f) => Err(f.timeout_error()),
            // The reply (or a send failure) took the entry just as the wait timed out.
            None => future
                .wait_taken()
                .unwrap_or_else(|| Err(future.timeout_error())),
        }
    }

    fn ensure_sweep(&self, instance: &Arc<MQClientInstance>) {
        if self.sweep.get().is_some() {
            return;
        }
        let weak = Arc::downgrade(instance);
        match instance.schedule_periodic(SWEEP_PERIOD, SWEEP_PERIOD, move || sweep(&weak)) {
            Ok(handle) => {
                if let Err(handle) = self.sweep.set(handle) {
                    // Another request started it first.
                    handle.cancel();
                }
            }
            Err(e) => log::warn!("request timeouts will not be swept: {e}"),
        }
    }

    /// Takes every request whose timeout has passed out of the table.
    fn take_expired(&self, now: Instant) -> Vec<Arc<RequestResponseFuture>> {
        let mut table = self.table.lock();
        let expired: Vec<String> = table
            .iter()
            .filter(|(_, f)| f.deadline() <= now)
            .map(|(k, _)| k.clone())
            .collect();
        expired.iter().filter_map(|k| table.remove(k)).collect()
    }
}

impl Drop for RequestFutureTable {
    fn drop(&mut self) {
        if let Some(h) = self.sweep.get() {
            h.cancel();
        }
    }
}

/// Fails the expired requests of the instance. Their callbacks run on the callback pool, so a
/// slow callback never holds the scheduler. A waiting thread times out by itself; the sweep
/// only frees its entry if the thread is gone.
fn sweep(weak: &Weak<MQClientInstance>) {
    let Some(instance) = weak.upgrade() else {
        return;
    };
    for f in instance.request_futures().take_expired(Instant::now()) {
        log::warn!(
            "request of correlation id {} timed out after {:?}",
            f.correlation_id,
            f.timeout
        );
        let error = f.timeout_error();
        if f.is_sync() {
            f.complete(Err(error));
        } else {
            instance
                .remoting()
                .execute_callback(move || f.complete(Err(error)));
        }
    }
}

/// Registers the `PUSH_REPLY_MESSAGE_TO_CLIENT` processor on `instance`'s remoting client.
pub(crate) fn register(instance: &Arc<MQClientInstance>) {
    let w = Arc::downgrade(instance);
    instance.remoting().register_processor(
        RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT,
        Arc::new(move |ctx: &RequestContext, req: RemotingCommand| {
            let instance = w.upgrade()?;
            Some(receive_reply_message(&instance, ctx.peer_addr(), &req))
        }),
    );
}

/// Java `receiveReplyMessage`: rebuilds the reply from the header and body and completes the
/// request it answers. A malformed push is answered `SYSTEM_ERROR` with the reason; a reply
/// that matches no waiting request (it came too late) is logged and answered `SUCCESS`, as in
/// Java, since the broker cannot do anything better with it.
pub(crate) fn receive_reply_message(
    instance: &MQClientInstance,
    peer: &str,
    req: &RemotingCommand,
) -> RemotingCommand {
    let reply = match decode_reply(req) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("bad PUSH_REPLY_MESSAGE_TO_CLIENT from {peer}: {e}");
            return RemotingCommand::response_to(
                req,
                ResponseCode::SYSTEM_ERROR,
                Some(format!("bad reply message: {e}")),
            );
        }
    };
    let Some(correlation_id) = reply.property(MessageConst::PROPERTY_CORRELATION_ID) else {
        log::warn!(
            "reply message from {peer} without {} dropped",
            MessageConst::PROPERTY_CORRELATION_ID
        );
        return RemotingCommand::response_to(
            req,
            ResponseCode::SYSTEM_ERROR,
            Some(format!(
                "bad reply message: property {} is missing",
                MessageConst::PROPERTY_CORRELATION_ID
            )),
        );
    };
    match instance.request_futures().remove(correlation_id) {
        Some(f) => {
            let correlation_id = correlation_id.to_owned();
            log::debug!("reply of correlation id {correlation_id} received from {peer}");
            f.complete(Ok(reply));
        }
        None => log::warn!(
            "receive reply message, but not matched any request, CorrelationId: {correlation_id}, reply from host: {}",
            reply.born_host()
        ),
    }
    RemotingCommand::response_to(req, ResponseCode::SUCCESS, None)
}

/// The reply as a [`MessageExt`]: header fields, properties and the body (decompressed when
/// the sys flag says so).
fn decode_reply(req: &RemotingCommand) -> std::result::Result<MessageExt, CodecError> {
    let h: ReplyMessageRequestHeader = req.decode_header()?;
    let raw = req.body().cloned().unwrap_or_default();
    let body = if h.sys_flag & MessageSysFlag::COMPRESSED_FLAG != 0 {
        decompress(&raw, h.sys_flag, DEFAULT_MAX_BODY_SIZE)?
    } else {
        raw
    };
    let mut msg = Message::new(h.topic, body).with_flag(h.flag);
    if let Some(p) = &h.properties {
        for (k, v) in string_to_properties(p).iter() {
            msg.put_property(k, v);
        }
    }
    let mut ext = MessageExt::from_message(&msg);
    ext.set_queue_id(h.queue_id);
    ext.set_sys_flag(h.sys_flag);
    ext.set_born_timestamp(h.born_timestamp);
    ext.set_born_host(parse_host("bornHost", &h.born_host)?);
    ext.set_store_timestamp(h.store_timestamp);
    ext.set_store_host(parse_host("storeHost", &h.store_host)?);
    ext.set_reconsume_times(h.reconsume_times.unwrap_or(0));
    Ok(ext)
}

/// A `host:port` of the header. Java sends `InetSocketAddress.toString()` forms as well
/// (`/1.2.3.4:5`, `name/1.2.3.4:5`): the part after the last `/` is the address.
fn parse_host(field: &'static str, s: &str) -> std::result::Result<SocketAddr, CodecError> {
    if s.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    }
    let tail = s.rsplit('/').next().unwrap_or(s);
    tail.parse().map_err(|_| CodecError::InvalidField {
        field,
        value: s.to_owned(),
    })
}
