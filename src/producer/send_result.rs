//! The outcome of a send: [`SendStatus`], [`SendResult`] and the [`SendCallback`] of async sends.

use std::fmt;
use std::sync::Arc;

use crate::common::MessageQueue;
use crate::error::{Error, Result};
use crate::remoting::protocol::header::SendMessageResponseHeader;
use crate::remoting::protocol::{RemotingCommand, ResponseCode};

/// The region id a [`SendResult`] carries when the message has no `MSG_REGION` property (Java
/// `MixAll.DEFAULT_TRACE_REGION_ID`).
pub(crate) const DEFAULT_REGION_ID: &str = "DefaultRegion";

/// How far the broker got in storing a message (Java `SendStatus`).
///
/// Only [`SendStatus::SendOk`] means the message is stored as the broker was configured to store
/// it. The other three mean the broker accepted the message into its commit log but could not
/// confirm the flush or the replication in time; the message is usually, but not certainly,
/// durable. A synchronous send returns these statuses rather than failing, unless the producer
/// is configured to retry on another broker (Java `retryAnotherBrokerWhenNotStoreOK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Stored (Java `SEND_OK`).
    SendOk,
    /// Stored, but flushing to disk timed out on a `SYNC_FLUSH` broker (Java `FLUSH_DISK_TIMEOUT`,
    /// response code 10).
    FlushDiskTimeout,
    /// Stored, but replicating to the slave timed out on a `SYNC_MASTER` broker (Java
    /// `FLUSH_SLAVE_TIMEOUT`, response code 12).
    FlushSlaveTimeout,
    /// Stored, but a `SYNC_MASTER` broker has no slave to replicate to (Java
    /// `SLAVE_NOT_AVAILABLE`, response code 11).
    SlaveNotAvailable,
}

impl SendStatus {
    /// The Java enum constant name, e.g. `"SEND_OK"`.
    pub fn as_java_str(self) -> &'static str {
        match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }

    /// `true` for [`SendStatus::SendOk`].
    pub fn is_ok(self) -> bool {
        self == SendStatus::SendOk
    }
}

impl fmt::Display for SendStatus {
    /// Prints the Java constant name, as Java's `toString` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_java_str())
    }
}

/// Maps the response code of a `SEND_MESSAGE` response to a [`SendStatus`] (Java
/// `MQClientAPIImpl.processSendResponse`).
///
/// `None` means the code is not a store status: the send failed and the caller turns the response
/// into an [`Error::Broker`](crate::Error::Broker).
pub(crate) fn send_status_from_response(code: ResponseCode) -> Option<SendStatus> {
    match code {
        ResponseCode::SUCCESS => Some(SendStatus::SendOk),
        ResponseCode::FLUSH_DISK_TIMEOUT => Some(SendStatus::FlushDiskTimeout),
        ResponseCode::FLUSH_SLAVE_TIMEOUT => Some(SendStatus::FlushSlaveTimeout),
        ResponseCode::SLAVE_NOT_AVAILABLE => Some(SendStatus::SlaveNotAvailable),
        _ => None,
    }
}

/// Turns a send response into a [`SendResult`] (Java `processSendResponse`).
///
/// `uniq_id` is the `UNIQ_KEY` (comma-joined for batches) that becomes `msg_id`; `batch_ids`
/// are a batch's ids one by one (`None` for a single message).
pub(crate) fn process_send_response(
    broker_name: &str,
    topic: &str,
    addr: &str,
    response: RemotingCommand,
    uniq_id: String,
    batch_ids: Option<Arc<[String]>>,
) -> Result<SendResult> {
    let status = match send_status_from_response(response.response_code()) {
        Some(s) => s,
        None => return Err(crate::client::api::broker_error(&response, addr)),
    };
    let header: SendMessageResponseHeader = response.decode_header()?;
    let fields = response.ext_fields();
    Ok(SendResult::new(
        status,
        uniq_id,
        header.msg_id,
        MessageQueue::new(topic, broker_name, header.queue_id),
        header.queue_offset,
    )
    .with_batch_ids(batch_ids)
    .with_transaction_id(header.transaction_id)
    .with_region_id(fields.get("MSG_REGION").unwrap_or("DefaultRegion"))
    .with_trace_on(fields.get("TRACE_ON") != Some("false")))
}

/// The result of a successful send (Java `SendResult`).
///
/// "Successful" means the broker answered with a store status; check
/// [`send_status`](SendResult::send_status) for anything but [`SendStatus::SendOk`].
///
/// Two ids identify the message (FACTS §6.2):
/// * [`msg_id`](SendResult::msg_id) is the client-generated unique id (the `UNIQ_KEY` property),
///   which consumers see as `MessageExt::msg_id`. For a batch it is the ids of all messages of
///   the batch joined with commas, as in Java; [`msg_ids`](SendResult::msg_ids) lists them.
/// * [`offset_msg_id`](SendResult::offset_msg_id) is the broker's id, which encodes the store
///   host and the commit-log offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    send_status: SendStatus,
    msg_id: String,
    /// A batch's ids in order; `None` for one message (its id is `msg_id`).
    batch_ids: Option<Arc<[String]>>,
    offset_msg_id: String,
    message_queue: MessageQueue,
    queue_offset: i64,
    transaction_id: Option<String>,
    region_id: String,
    trace_on: bool,
}

impl SendResult {
    /// A result with no transaction id, region `"DefaultRegion"` and tracing on, as Java's
    /// five-argument constructor (plus the defaults the producer fills in).
    ///
    /// Producers build these; the constructor is public so code that wraps a producer can fake
    /// results in its own tests.
    pub fn new(
        send_status: SendStatus,
        msg_id: impl Into<String>,
        offset_msg_id: impl Into<String>,
        message_queue: MessageQueue,
        queue_offset: i64,
    ) -> Self {
        SendResult {
            send_status,
            msg_id: msg_id.into(),
            batch_ids: None,
            offset_msg_id: offset_msg_id.into(),
            message_queue,
            queue_offset,
            transaction_id: None,
            region_id: DEFAULT_REGION_ID.to_owned(),
            trace_on: true,
        }
    }

    /// Sets the ids of a batch's messages, in the batch's order, which
    /// [`msg_ids`](SendResult::msg_ids) then returns (`msg_id` is left as it is).
    pub fn with_msg_ids(self, ids: impl Into<Vec<String>>) -> Self {
        let ids: Vec<String> = ids.into();
        self.with_batch_ids(Some(ids.into()))
    }

    pub(crate) fn with_batch_ids(mut self, ids: Option<Arc<[String]>>) -> Self {
        self.batch_ids = ids;
        self
    }

    /// Sets the transaction id (from the broker's response header).
    pub fn with_transaction_id(mut self, transaction_id: Option<String>) -> Self {
        self.transaction_id = transaction_id;
        self
    }

    /// Sets the region id (the message's `MSG_REGION` property).
    pub fn with_region_id(mut self, region_id: impl Into<String>) -> Self {
        self.region_id = region_id.into();
        self
    }

    /// Sets whether tracing is on for the message (its `TRACE_ON` property is not `"false"`).
    pub fn with_trace_on(mut self, trace_on: bool) -> Self {
        self.trace_on = trace_on;
        self
    }

    /// How far the broker got in storing the message.
    #[doc(alias = "getSendStatus")]
    pub fn send_status(&self) -> SendStatus {
        self.send_status
    }

    /// The client-generated unique id (`UNIQ_KEY`); for a batch, all ids joined with commas.
    #[doc(alias = "getMsgId")]
    pub fn msg_id(&self) -> &str {
        &self.msg_id
    }

    /// The client-generated unique ids of the messages sent: one for a single message, each
    /// message's in order for a batch (where [`msg_id`](SendResult::msg_id) joins them with
    /// commas). These are the ids consumers see as `MessageExt::msg_id`.
    pub fn msg_ids(&self) -> &[String] {
        match &self.batch_ids {
            Some(ids) => ids,
            None => std::slice::from_ref(&self.msg_id),
        }
    }

    /// The broker's offset message id (store host + commit-log offset, uppercase hex).
    #[doc(alias = "getOffsetMsgId")]
    pub fn offset_msg_id(&self) -> &str {
        &self.offset_msg_id
    }

    /// The queue the message was stored in.
    #[doc(alias = "getMessageQueue")]
    pub fn message_queue(&self) -> &MessageQueue {
        &self.message_queue
    }

    /// The message's logical offset in its queue (for a batch, the first message's).
    #[doc(alias = "getQueueOffset")]
    pub fn queue_offset(&self) -> i64 {
        self.queue_offset
    }

    /// The transaction id, for transactional (half) messages.
    #[doc(alias = "getTransactionId")]
    pub fn transaction_id(&self) -> Option<&str> {
        self.transaction_id.as_deref()
    }

    /// The region id; `"DefaultRegion"` unless the message said otherwise.
    #[doc(alias = "getRegionId")]
    pub fn region_id(&self) -> &str {
        &self.region_id
    }

    /// Whether message tracing is on for this message.
    #[doc(alias = "isTraceOn")]
    pub fn trace_on(&self) -> bool {
        self.trace_on
    }
}

impl fmt::Display for SendResult {
    /// Java's `toString`: `SendResult [sendStatus=SEND_OK, msgId=.., offsetMsgId=..,
    /// messageQueue=MessageQueue [..], queueOffset=..]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SendResult [sendStatus={}, msgId={}, offsetMsgId={}, messageQueue={}, queueOffset={}]",
            self.send_status,
            self.msg_id,
            self.offset_msg_id,
            self.message_queue,
            self.queue_offset
        )
    }
}

/// What an asynchronous send calls when it completes (Java `SendCallback`).
///
/// Java's interface has two methods, `onSuccess(SendResult)` and `onException(Throwable)`. Here
/// it is one closure that receives a [`Result`]: `Ok` is `onSuccess`, `Err` is `onException`.
/// Any `FnOnce(Result<SendResult>) + Send + 'static` closure is a `SendCallback`:
///
/// ```
/// use rocketmq_sync::SendCallback;
///
/// fn takes_callback(cb: impl SendCallback) {
///     # let _ = cb;
/// }
/// takes_callback(|result| match result {
///     Ok(r) => println!("sent {}", r.msg_id()),
///     Err(e) => eprintln!("send failed: {e}"),
/// });
/// ```
///
/// The callback runs exactly once, on a client callback thread, never on the I/O thread, so it
/// may block briefly; long work should be handed to the application's own threads.
pub trait SendCallback: FnOnce(Result<SendResult, Error>) + Send + 'static {}

impl<F> SendCallback for F where F: FnOnce(Result<SendResult, Error>) + Send + 'static {}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq() -> MessageQueue {
        MessageQueue::new("TopicTest", "broker-a", 3)
    }

    #[test]
    fn response_codes_map_to_store_statuses() {
        assert_eq!(
            send_status_from_response(ResponseCode::SUCCESS),
            Some(SendStatus::SendOk)
        );
        assert_eq!(
            send_status_from_response(ResponseCode(10)),
            Some(SendStatus::FlushDiskTimeout)
        );
        assert_eq!(
            send_status_from_response(ResponseCode(11)),
            Some(SendStatus::SlaveNotAvailable)
        );
        assert_eq!(
            send_status_from_response(ResponseCode(12)),
            Some(SendStatus::FlushSlaveTimeout)
        );
    }

    #[test]
    fn other_response_codes_are_broker_errors() {
        for code in [1, 2, 13, 14, 16, 17, 204, 215, 9999] {
            assert_eq!(
                send_status_from_response(ResponseCode(code)),
                None,
                "{code}"
            );
        }
    }

    #[test]
    fn new_fills_java_defaults() {
        let r = SendResult::new(SendStatus::SendOk, "UNIQ", "OFFSET", mq(), 42);
        assert_eq!(r.send_status(), SendStatus::SendOk);
        assert_eq!(r.msg_id(), "UNIQ");
        assert_eq!(r.msg_ids(), ["UNIQ"]);
        assert_eq!(r.offset_msg_id(), "OFFSET");
        assert_eq!(r.message_queue(), &mq());
        assert_eq!(r.queue_offset(), 42);
        assert_eq!(r.transaction_id(), None);
        assert_eq!(r.region_id(), "DefaultRegion");
        assert!(r.trace_on());
    }

    #[test]
    fn with_setters_override_defaults() {
        let r = SendResult::new(SendStatus::FlushDiskTimeout, "A,B", "O", mq(), 7)
            .with_transaction_id(Some("tx-1".into()))
            .with_region_id("eu")
            .with_trace_on(false);
        assert_eq!(r.transaction_id(), Some("tx-1"));
        assert_eq!(r.region_id(), "eu");
        assert_eq!(r.msg_id(), "A,B");
        assert_eq!(
            r.clone()
                .with_msg_ids(["A".to_owned(), "B".to_owned()])
                .msg_ids(),
            ["A", "B"]
        );
        assert!(!r.trace_on());
        assert!(!r.send_status().is_ok());
    }

    #[test]
    fn display_matches_java_to_string() {
        let r = SendResult::new(
            SendStatus::SendOk,
            "7F0000010001",
            "7F00000100002A9F0000000000000400",
            mq(),
            5,
        );
        assert_eq!(
            r.to_string(),
            "SendResult [sendStatus=SEND_OK, msgId=7F0000010001, \
             offsetMsgId=7F00000100002A9F0000000000000400, \
             messageQueue=MessageQueue [topic=TopicTest, brokerName=broker-a, queueId=3], \
             queueOffset=5]"
        );
        assert_eq!(
            SendStatus::SlaveNotAvailable.to_string(),
            "SLAVE_NOT_AVAILABLE"
        );
    }

    #[test]
    fn closures_are_send_callbacks() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        fn run(cb: impl SendCallback, r: Result<SendResult>) {
            cb(r)
        }
        run(
            move |r: Result<SendResult>| tx.send(r.map(|r| r.queue_offset())).unwrap(),
            Ok(SendResult::new(SendStatus::SendOk, "U", "O", mq(), 9)),
        );
        assert_eq!(rx.try_recv().unwrap().unwrap(), 9);

        let boxed: Box<dyn SendCallback> = Box::new(|r: Result<SendResult>| assert!(r.is_err()));
        boxed(Err(Error::client(10001, "connect failed")));
    }
}
