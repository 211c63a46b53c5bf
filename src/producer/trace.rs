//! Message trace (Java `org.apache.rocketmq.client.trace`): what a traced client did with each
//! message, in Java's trace format, sent in the background to the trace topic.
//!
//! - [`TraceContext`] and [`TraceBean`] are Java's records; [`TraceContext::encode`] and
//!   [`TraceContext::decode_all`] are `TraceDataEncoder`'s two directions: fields split by
//!   `\u{1}`, records ended by `\u{2}`.
//! - [`AsyncTraceDispatcher`] is Java's `AsyncTraceDispatcher`: a bounded queue (2048 records)
//!   that a send or a consume only ever offers to, never waits on. When it is full the record
//!   is dropped and counted: trace data is lost, never a user's message or time. One thread,
//!   `rmq-trace`, takes up to 100 records or what arrived within 100 ms, and sends them as few
//!   messages of at most 128 000 bytes to the trace topic (synchronously, on that thread, so
//!   that shutdown's flush is stored before the instance stops), keyed by message id and
//!   keys, with an internal producer (`_INNER_TRACE_PRODUCER-<group>`) on the traced client's own client
//!   instance, so tracing adds one thread and no connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use parking_lot::Mutex;

use crate::client::ClientConfig;
use crate::common::{Message, MessageConst};
use crate::error::{Error, Result};
use crate::producer::{DefaultMQProducer, SendMessageContext, SendMessageHook};

/// Java `TopicValidator.RMQ_SYS_TRACE_TOPIC`: the default trace topic.
pub const RMQ_SYS_TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Java `TraceConstants.CONTENT_SPLITOR`: between the fields of a record.
pub(crate) const CONTENT_SPLITOR: char = '\u{1}';
/// Java `TraceConstants.FIELD_SPLITOR`: after each record.
pub(crate) const FIELD_SPLITOR: char = '\u{2}';
/// Java `TraceConstants.GROUP_NAME_PREFIX`.
const TRACE_PRODUCER_GROUP_PREFIX: &str = "_INNER_TRACE_PRODUCER-";
/// Java `AsyncTraceDispatcher`'s queue size.
pub(crate) const QUEUE_SIZE: usize = 2048;
/// Java `AsyncTraceDispatcher.batchSize`.
const BATCH_SIZE: usize = 100;
/// Java `AsyncTraceDispatcher.pollingTimeMil`.
const POLLING_TIME: Duration = Duration::from_millis(100);
/// Java `AsyncTraceDispatcher.maxMsgSize`.
const MAX_MSG_SIZE: usize = 128_000;
/// Java's default region (`MixAll.DEFAULT_TRACE_REGION_ID` is `DefaultRegion`).
pub(crate) const DEFAULT_REGION: &str = "DefaultRegion";

/// What a trace record is of (Java `TraceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceType {
    /// A send.
    Pub,
    /// Before a listener call.
    SubBefore,
    /// After a listener call.
    SubAfter,
    /// A transaction's end.
    EndTransaction,
}

impl TraceType {
    fn name(self) -> &'static str {
        match self {
            TraceType::Pub => "Pub",
            TraceType::SubBefore => "SubBefore",
            TraceType::SubAfter => "SubAfter",
            TraceType::EndTransaction => "EndTransaction",
        }
    }
}

/// One message in a trace record (Java `TraceBean`); fields a record type does not carry are
/// left empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceBean {
    /// The topic.
    pub topic: String,
    /// The message id (the producer's unique id).
    pub msg_id: String,
    /// The broker-side id.
    pub offset_msg_id: String,
    /// The tag.
    pub tags: String,
    /// The keys, space-separated.
    pub keys: String,
    /// The broker's address.
    pub store_host: String,
    /// The body's length in bytes.
    pub body_length: i32,
    /// Java `MessageType` ordinal: 0 normal, 1 transaction half, 2 transaction commit, 3 delay.
    pub msg_type: i32,
    /// Deliveries before this one.
    pub retry_times: i32,
    /// The transaction id (`EndTransaction`).
    pub transaction_id: String,
    /// The transaction state's Java name (`EndTransaction`).
    pub transaction_state: String,
    /// Whether the end came from the broker's check (`EndTransaction`).
    pub from_transaction_check: bool,
}

/// One trace record (Java `TraceContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// What the record is of.
    pub trace_type: TraceType,
    /// When it began, ms since the epoch.
    pub time_stamp: i64,
    /// The region (`MSG_REGION`, else `DefaultRegion`).
    pub region_id: String,
    /// The producer or consumer group.
    pub group_name: String,
    /// How long it took, ms (per message for `SubAfter`).
    pub cost_time: i64,
    /// Whether it succeeded.
    pub success: bool,
    /// Ties a `SubBefore` to its `SubAfter`.
    pub request_id: String,
    /// Java `ConsumeReturnType` ordinal (`SubAfter`): 0 success, 1 time-out, 2 exception,
    /// 3 null returned, 4 failed.
    pub context_code: i32,
    /// The messages.
    pub trace_beans: Vec<TraceBean>,
}

impl TraceContext {
    /// A record of `trace_type` with nothing filled in.
    pub fn new(trace_type: TraceType) -> Self {
        TraceContext {
            trace_type,
            time_stamp: 0,
            region_id: String::new(),
            group_name: String::new(),
            cost_time: 0,
            success: true,
            request_id: String::new(),
            context_code: 0,
            trace_beans: Vec::new(),
        }
    }

    /// Java `TraceDataEncoder.encoderFromContextBean`: appends the record's text to `out` and
    /// returns the keys its trace message is indexed by (each message id, and its keys).
    pub fn encode(&self, out: &mut String) -> Vec<String> {
        let ty = self.trace_type.name();
        match self.trace_type {
            TraceType::Pub => {
                if let Some(b) = self.trace_beans.first() {
                    write_record(
                        out,
                        ty,
                        &[
                            &self.time_stamp,
                            &self.region_id,
                            &self.group_name,
                            &b.topic,
                            &b.msg_id,
                            &b.tags,
                            &b.keys,
                            &b.store_host,
                            &b.body_length,
                            &self.cost_time,
                            &b.msg_type,
                            &b.offset_msg_id,
                            &self.success,
                        ],
                    );
                }
            }
            TraceType::SubBefore => {
                for b in &self.trace_beans {
                    write_record(
                        out,
                        ty,
                        &[
                            &self.time_stamp,
                            &self.region_id,
                            &self.group_name,
                            &self.request_id,
                            &b.msg_id,
                            &b.retry_times,
                            &b.keys,
                        ],
                    );
                }
            }
            TraceType::SubAfter => {
                for b in &self.trace_beans {
                    write_record(
                        out,
                        ty,
                        &[
                            &self.request_id,
                            &b.msg_id,
                            &self.cost_time,
                            &self.success,
                            &b.keys,
                            &self.context_code,
                            &self.time_stamp,
                        ],
                    );
                }
            }
            TraceType::EndTransaction => {
                if let Some(b) = self.trace_beans.first() {
                    write_record(
                        out,
                        ty,
                        &[
                            &self.time_stamp,
                            &self.region_id,
                            &self.group_name,
                            &b.topic,
                            &b.msg_id,
                            &b.tags,
                            &b.keys,
                            &b.store_host,
                            &b.msg_type,
                            &b.transaction_id,
                            &b.transaction_state,
                            &b.from_transaction_check,
                        ],
                    );
                }
            }
        }
        let mut keys = Vec::with_capacity(self.trace_beans.len() * 2);
        for b in &self.trace_beans {
            keys.push(b.msg_id.clone());
            if !b.keys.is_empty() {
                keys.push(b.keys.clone());
            }
        }
        keys
    }

    /// Java `TraceDataEncoder.decoderFromTraceDataString`: the records of a trace message's
    /// body. A record of an unknown type is skipped; a record with a missing or malformed
    /// field is an error that names it.
    pub fn decode_all(data: &str) -> Result<Vec<TraceContext>> {
        let mut out = Vec::new();
        for record in data.split(FIELD_SPLITOR).filter(|r| !r.is_empty()) {
            let line: Vec<&str> = record.split(CONTENT_SPLITOR).collect();
            let field = |i: usize| {
                line.get(i).copied().ok_or_else(|| {
                    Error::config(format!(
                        "trace record {record:?} has no field {i} ({} fields)",
                        line.len()
                    ))
                })
            };
            let num = |i: usize| -> Result<i64> {
                let v = field(i)?;
                v.parse().map_err(|_| {
                    Error::config(format!("trace record field {i} is not a number: {v:?}"))
                })
            };
            let flag = |i: usize| -> Result<bool> { Ok(field(i)? == "true") };
            let ctx = match line[0] {
                "Pub" => {
                    let mut ctx = TraceContext::new(TraceType::Pub);
                    ctx.time_stamp = num(1)?;
                    ctx.region_id = field(2)?.to_owned();
                    ctx.group_name = field(3)?.to_owned();
                    ctx.cost_time = num(10)?;
                    let mut b = TraceBean {
                        topic: field(4)?.to_owned(),
                        msg_id: field(5)?.to_owned(),
                        tags: field(6)?.to_owned(),
                        keys: field(7)?.to_owned(),
                        store_host: field(8)?.to_owned(),
                        body_length: num(9)? as i32,
                        msg_type: num(11)? as i32,
                        ..TraceBean::default()
                    };
                    if line.len() == 13 {
                        ctx.success = flag(12)?;
                    } else {
                        b.offset_msg_id = field(12)?.to_owned();
                        ctx.success = flag(13)?;
                    }
                    ctx.trace_beans.push(b);
                    ctx
                }
                "SubBefore" => {
                    let mut ctx = TraceContext::new(TraceType::SubBefore);
                    ctx.time_stamp = num(1)?;
                    ctx.region_id = field(2)?.to_owned();
                    ctx.group_name = field(3)?.to_owned();
                    ctx.request_id = field(4)?.to_owned();
                    ctx.trace_beans.push(TraceBean {
                        msg_id: field(5)?.to_owned(),
                        retry_times: num(6)? as i32,
                        keys: field(7)?.to_owned(),
                        ..TraceBean::default()
                    });
                    ctx
                }
                "SubAfter" => {
                    let mut ctx = TraceContext::new(TraceType::SubAfter);
                    ctx.request_id = field(1)?.to_owned();
                    ctx.cost_time = num(3)?;
                    ctx.success = flag(4)?;
                    if line.len() >= 7 {
                        ctx.context_code = num(6)? as i32;
                    }
                    if line.len() >= 8 {
                        ctx.time_stamp = num(7)?;
                    }
                    ctx.trace_beans.push(TraceBean {
                        msg_id: field(2)?.to_owned(),
                        keys: field(5)?.to_owned(),
                        ..TraceBean::default()
                    });
                    ctx
                }
                "EndTransaction" => {
                    let mut ctx = TraceContext::new(TraceType::EndTransaction);
                    ctx.time_stamp = num(1)?;
                    ctx.region_id = field(2)?.to_owned();
                    ctx.group_name = field(3)?.to_owned();
                    ctx.trace_beans.push(TraceBean {
                        topic: field(4)?.to_owned(),
                        msg_id: field(5)?.to_owned(),
                        tags: field(6)?.to_owned(),
                        keys: field(7)?.to_owned(),
                        store_host: field(8)?.to_owned(),
                        msg_type: num(9)? as i32,
                        transaction_id: field(10)?.to_owned(),
                        transaction_state: field(11)?.to_owned(),
                        from_transaction_check: flag(12)?,
                        ..TraceBean::default()
                    });
                    ctx
                }
                other => {
                    log::debug!("skipping a trace record of unknown type {other:?}");
                    continue;
                }
            };
            out.push(ctx);
        }
        Ok(out)
    }
}

/// Appends one record: its type, then `fields`, each after [`CONTENT_SPLITOR`], ended by
/// [`FIELD_SPLITOR`].
fn write_record(out: &mut String, ty: &str, fields: &[&dyn std::fmt::Display]) {
    use std::fmt::Write;
    out.push_str(ty);
    for field in fields {
        let _ = write!(out, "{CONTENT_SPLITOR}{field}");
    }
    out.push(FIELD_SPLITOR);
}

/// The producer's side of message trace (Java `SendMessageTraceHookImpl`): a `Pub` record for
/// every message of a send the broker answered, with its ids, the broker, the region and how
/// long the attempt took. One-way sends and failed attempts have no answer, and are not
/// traced, as in Java; nor are messages the broker says not to trace (`TRACE_ON=false`).
#[derive(Debug)]
pub(crate) struct SendMessageTraceHook {
    pub(crate) dispatcher: Arc<AsyncTraceDispatcher>,
}

impl SendMessageHook for SendMessageTraceHook {
    fn hook_name(&self) -> &str {
        "SendMessageTraceHook"
    }

    fn send_message_before(&self, _ctx: &SendMessageContext<'_>) {}

    fn send_message_after(&self, ctx: &SendMessageContext<'_>) {
        let Some(result) = ctx.send_result else {
            return;
        };
        if !result.trace_on() {
            return;
        }
        let now = crate::common::util::now_millis();
        let cost = (now - ctx.begin_timestamp).max(0);
        let ids = result.msg_ids();
        for (i, m) in ctx.messages.iter().enumerate() {
            let msg_type =
                if m.property(MessageConst::PROPERTY_TRANSACTION_PREPARED) == Some("true") {
                    MSG_TYPE_TRANS_HALF
                } else if m.delay_level() > 0 {
                    MSG_TYPE_DELAY
                } else {
                    MSG_TYPE_NORMAL
                };
            let mut record = TraceContext::new(TraceType::Pub);
            record.time_stamp = ctx.begin_timestamp;
            record.region_id = result.region_id().to_owned();
            record.group_name = self.dispatcher.group.clone();
            record.cost_time = cost;
            record.success = result.send_status().is_ok();
            record.trace_beans.push(TraceBean {
                topic: m.topic().to_owned(),
                msg_id: ids
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| result.msg_id().to_owned()),
                offset_msg_id: result.offset_msg_id().to_owned(),
                tags: m.tags().unwrap_or_default().to_owned(),
                keys: m.keys().unwrap_or_default().to_owned(),
                store_host: ctx.broker_addr.to_owned(),
                body_length: m.body().len() as i32,
                msg_type,
                ..TraceBean::default()
            });
            self.dispatcher.append(record);
        }
    }
}

/// Java `MessageType` ordinals.
const MSG_TYPE_NORMAL: i32 = 0;
const MSG_TYPE_TRANS_HALF: i32 = 1;
const MSG_TYPE_DELAY: i32 = 3;

/// Java `AsyncTraceDispatcher`: see the module docs.
pub(crate) struct AsyncTraceDispatcher {
    /// The traced client's group, as its user names it.
    pub(crate) group: String,
    trace_topic: String,
    tx: Sender<TraceContext>,
    rx: Receiver<TraceContext>,
    dropped: Arc<AtomicU64>,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: Sender<()>,
    worker: JoinHandle<()>,
    producer: DefaultMQProducer,
}

impl std::fmt::Debug for AsyncTraceDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTraceDispatcher")
            .field("group", &self.group)
            .field("trace_topic", &self.trace_topic)
            .field("queued", &self.rx.len())
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl AsyncTraceDispatcher {
    /// A dispatcher for the client of `group` (not started): records go to `trace_topic`, at
    /// most `capacity` wait.
    pub(crate) fn with_capacity(group: &str, trace_topic: &str, capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        AsyncTraceDispatcher {
            group: group.to_owned(),
            trace_topic: trace_topic.to_owned(),
            tx,
            rx,
            dropped: Arc::new(AtomicU64::new(0)),
            running: Mutex::new(None),
        }
    }

    /// Offers a record; never waits. A full queue drops it (counted, logged now and then).
    pub(crate) fn append(&self, ctx: TraceContext) -> bool {
        match self.tx.try_send(ctx) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(1000) {
                    log::warn!(
                        "the trace queue of {} is full: {n} trace record(s) dropped so far",
                        self.group
                    );
                }
                false
            }
        }
    }

    /// Trace records dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts the internal producer on `client`'s instance and the `rmq-trace` thread.
    pub(crate) fn start(&self, client: &ClientConfig) -> Result<()> {
        let mut running = self.running.lock();
        if running.is_some() {
            return Ok(());
        }
        // The trace topic is not in the traced client's namespace (Java's trace producer has
        // none).
        let mut client = client.clone();
        client.namespace = None;
        let producer =
            DefaultMQProducer::builder(format!("{TRACE_PRODUCER_GROUP_PREFIX}{}", self.group))
                .client_config(client)
                .send_msg_timeout(Duration::from_secs(5))
                .max_message_size(MAX_MSG_SIZE + 10_000)
                .build()?;
        producer.start()?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let worker = {
            let rx = self.rx.clone();
            let producer = producer.clone();
            let topic = self.trace_topic.clone();
            std::thread::Builder::new()
                .name("rmq-trace".into())
                .spawn(move || dispatch(&rx, &stop_rx, &producer, &topic))
                .map_err(|e| Error::config(format!("cannot start the trace thread: {e}")))?
        };
        *running = Some(Running {
            stop: stop_tx,
            worker,
            producer,
        });
        Ok(())
    }

    /// Sends what is queued, stops the thread and the internal producer, within `timeout`.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        let Some(r) = self.running.lock().take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        let _ = r.stop.send(());
        let _ = r.worker.join();
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = r.producer.shutdown(left) {
            log::warn!(
                "the trace producer of {} did not stop cleanly: {e}",
                self.group
            );
        }
    }
}

/// The `rmq-trace` loop: batches of up to [`BATCH_SIZE`] records, or what came within
/// [`POLLING_TIME`]; at stop, whatever is still queued.
fn dispatch(
    rx: &Receiver<TraceContext>,
    stop: &Receiver<()>,
    producer: &DefaultMQProducer,
    topic: &str,
) {
    let mut batch = Vec::with_capacity(BATCH_SIZE);
    loop {
        // A stop, or the dispatcher dropped without one.
        let stopping = !matches!(stop.try_recv(), Err(TryRecvError::Empty));
        let deadline = Instant::now() + POLLING_TIME;
        while batch.len() < BATCH_SIZE {
            if stopping {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
                continue;
            }
            match rx.recv_deadline(deadline) {
                Ok(c) => batch.push(c),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    send_batch(producer, topic, &batch);
                    return;
                }
            }
        }
        if !batch.is_empty() {
            send_batch(producer, topic, &batch);
            batch.clear();
        }
        if stopping && rx.is_empty() {
            return;
        }
    }
}

/// Encodes `batch` into messages of at most [`MAX_MSG_SIZE`] bytes and sends them (a failure
/// is logged: trace data is best effort).
fn send_batch(producer: &DefaultMQProducer, topic: &str, batch: &[TraceContext]) {
    if batch.is_empty() {
        return;
    }
    let mut data = String::new();
    let mut keys: Vec<String> = Vec::new();
    for ctx in batch {
        let before = data.len();
        let k = ctx.encode(&mut data);
        if data.len() > MAX_MSG_SIZE && before > 0 {
            // This record goes into the next message.
            let record = data.split_off(before);
            send_one(producer, topic, std::mem::take(&mut data), &mut keys);
            data = record;
        }
        keys.extend(k);
    }
    if !data.is_empty() {
        send_one(producer, topic, data, &mut keys);
    }
}

fn send_one(producer: &DefaultMQProducer, topic: &str, data: String, keys: &mut Vec<String>) {
    keys.sort();
    keys.dedup();
    let msg = Message::new(topic, data).with_keys(keys.join(" "));
    keys.clear();
    // Synchronous, on this background thread: one send per batch of records, and a flush at
    // shutdown that has really reached the broker before the instance may stop.
    if let Err(e) = producer.send(&msg) {
        log::debug!("a trace message was not stored: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bean(id: &str) -> TraceBean {
        TraceBean {
            topic: "T".into(),
            msg_id: id.into(),
            offset_msg_id: "0A0000010000000000000000000000FF".into(),
            tags: "TagA".into(),
            keys: "k1 k2".into(),
            store_host: "10.0.0.1:10911".into(),
            body_length: 12,
            ..TraceBean::default()
        }
    }

    #[test]
    fn every_record_type_round_trips_through_javas_text() {
        let mut publish = TraceContext::new(TraceType::Pub);
        publish.time_stamp = 1_700_000_000_000;
        publish.region_id = "DefaultRegion".into();
        publish.group_name = "pg".into();
        publish.cost_time = 3;
        publish.trace_beans.push(bean("ID1"));
        let mut before = TraceContext::new(TraceType::SubBefore);
        before.time_stamp = 1_700_000_000_001;
        before.region_id = "DefaultRegion".into();
        before.group_name = "cg".into();
        before.request_id = "REQ".into();
        let mut b = bean("ID1");
        b.retry_times = 2;
        before.trace_beans.push(b);
        let mut after = TraceContext::new(TraceType::SubAfter);
        after.request_id = "REQ".into();
        after.cost_time = 7;
        after.success = false;
        after.context_code = 4;
        after.time_stamp = 1_700_000_000_009;
        after.trace_beans.push(bean("ID1"));
        let mut data = String::new();
        let keys = publish.encode(&mut data);
        assert_eq!(keys, ["ID1", "k1 k2"]);
        // Java's exact text for the Pub record.
        assert_eq!(
            data,
            "Pub\u{1}1700000000000\u{1}DefaultRegion\u{1}pg\u{1}T\u{1}ID1\u{1}TagA\u{1}k1 k2\u{1}10.0.0.1:10911\u{1}12\u{1}3\u{1}0\u{1}0A0000010000000000000000000000FF\u{1}true\u{2}"
        );
        before.encode(&mut data);
        after.encode(&mut data);
        let back = TraceContext::decode_all(&data).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], publish);
        assert_eq!(back[1].request_id, "REQ");
        assert_eq!(back[1].trace_beans[0].retry_times, 2);
        assert_eq!(back[1].trace_beans[0].keys, "k1 k2");
        assert_eq!(
            (
                back[2].cost_time,
                back[2].success,
                back[2].context_code,
                back[2].time_stamp
            ),
            (7, false, 4, 1_700_000_000_009)
        );
    }

    #[test]
    fn a_malformed_record_is_an_error_and_an_unknown_one_is_skipped() {
        assert!(TraceContext::decode_all("Pub\u{1}x\u{2}").is_err());
        assert!(TraceContext::decode_all("Other\u{1}1\u{2}")
            .unwrap()
            .is_empty());
        assert!(TraceContext::decode_all("").unwrap().is_empty());
    }

    #[test]
    fn a_full_queue_drops_records_without_waiting() {
        let d = AsyncTraceDispatcher::with_capacity("g", RMQ_SYS_TRACE_TOPIC, 2);
        assert!(d.append(TraceContext::new(TraceType::Pub)));
        assert!(d.append(TraceContext::new(TraceType::Pub)));
        assert!(!d.append(TraceContext::new(TraceType::Pub)));
        assert_eq!(d.dropped(), 1);
    }
}
