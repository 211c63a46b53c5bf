//! Request-reply on the producer (Java 4.6+ `DefaultMQProducer.request`): send a message and
//! wait for the reply a consumer of the request topic sends back with
//! [`create_reply_message`](crate::common::create_reply_message).
//!
//! The request carries three properties: `CORRELATION_ID` (unique per request),
//! `REPLY_TO_CLIENT` (this client's id) and `TTL` (the timeout in ms). The replier's reply goes
//! to the broker as `SEND_REPLY_MESSAGE_V2`, and the broker pushes it to this client
//! (`PUSH_REPLY_MESSAGE_TO_CLIENT`), where the correlation id finds the waiting request.

use std::sync::Arc;
use std::time::Duration;

use crate::client::instance::MQClientInstance;
use crate::client::reply::RequestResponseFuture;
use crate::common::{Message, MessageClientIDSetter, MessageConst, MessageExt, MessageQueue};
use crate::error::{ClientErrorCode, Error, Result};
use crate::producer::{DefaultMQProducer, MessageQueueSelector, SendResult};

/// What an asynchronous request calls when it completes (Java `RequestCallback`): exactly one
/// of the two methods runs, once.
///
/// Any `FnOnce(Result<MessageExt>) + Send + 'static` closure is a `RequestCallback`: it gets
/// `Ok(reply)` or the error.
///
/// The callback runs on a callback thread of the client (`rmq-cb-N`); keep it short, as with
/// a [`SendCallback`](crate::SendCallback). A panic in it is caught and logged.
///
/// ```
/// use rocketmq_sync::{Error, MessageExt, RequestCallback};
///
/// struct PrintReply;
///
/// impl RequestCallback for PrintReply {
///     fn on_success(self: Box<Self>, reply: MessageExt) {
///         println!("reply: {:?}", reply.body());
///     }
///     fn on_exception(self: Box<Self>, error: Error) {
///         println!("no reply: {error}");
///     }
/// }
///
/// fn takes(cb: impl RequestCallback) {}
/// takes(PrintReply);
/// takes(|r: rocketmq_sync::Result<MessageExt>| println!("{:?}", r.map(|m| m.body().clone())));
/// ```
pub trait RequestCallback: Send + 'static {
    /// The reply arrived.
    fn on_success(self: Box<Self>, reply: MessageExt);
    /// The request failed: it could not be sent, or no reply came within the timeout
    /// ([`ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION`]).
    fn on_exception(self: Box<Self>, error: Error);
}

impl<F> RequestCallback for F
where
    F: FnOnce(Result<MessageExt>) + Send + 'static,
{
    fn on_success(self: Box<Self>, reply: MessageExt) {
        (*self)(Ok(reply))
    }

    fn on_exception(self: Box<Self>, error: Error) {
        (*self)(Err(error))
    }
}

/// The request message: `msg` with the request-reply properties.
fn request_message(
    instance: &MQClientInstance,
    msg: &Message,
    correlation_id: &str,
    timeout: Duration,
) -> Message {
    let mut m = msg.clone();
    m.put_property(MessageConst::PROPERTY_CORRELATION_ID, correlation_id);
    m.put_property(
        MessageConst::PROPERTY_MESSAGE_REPLY_TO_CLIENT,
        instance.client_id(),
    );
    m.put_property(
        MessageConst::PROPERTY_MESSAGE_TTL,
        timeout.as_millis().to_string(),
    );
    m
}

/// The error of a request whose message could not be sent.
fn send_failed(topic: &str, cause: Error) -> Error {
    Error::client_caused_by(
        ClientErrorCode::NO_CODE,
        format!("send request message to <{topic}> fail: {cause}"),
        cause,
    )
}

impl DefaultMQProducer {
    /// Sends `msg` as a request and waits up to `timeout` for its reply (Java
    /// `request(Message, long)`). The message goes to its topic as by [`send`](Self::send),
    /// retries included; a consumer of that topic answers it with
    /// [`create_reply_message`](crate::common::create_reply_message) and a producer's send.
    ///
    /// Errors: the producer is not running or the message is invalid (as for `send`); the
    /// send failed (the send's error is the [`source`](std::error::Error::source)); or no reply
    /// came within `timeout`: an [`Error::Client`] with
    /// [`ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION`]. A reply that arrives after the timeout
    /// is dropped. A request still waiting when the client instance shuts down fails at once.
    ///
    /// The send itself is bounded by the producer's
    /// [`send_msg_timeout`](crate::DefaultMQProducerBuilder::send_msg_timeout); the reply is
    /// waited for only until `timeout` after the call.
    pub fn request(&self, msg: &Message, timeout: Duration) -> Result<MessageExt> {
        self.request_with(msg, timeout, |p, m| p.send(m))
    }

    /// [`request`](Self::request) sent to the queue `mq` (Java
    /// `request(Message, MessageQueue, long)`). No retries, as with
    /// [`send_to_queue`](Self::send_to_queue).
    pub fn request_to_queue(
        &self,
        msg: &Message,
        mq: &MessageQueue,
        timeout: Duration,
    ) -> Result<MessageExt> {
        self.request_with(msg, timeout, |p, m| p.send_to_queue(m, mq))
    }

    /// [`request`](Self::request) sent to the queue `selector` picks for `arg` (Java
    /// `request(Message, MessageQueueSelector, Object, long)`).
    pub fn request_with_selector<A: ?Sized, S: MessageQueueSelector<A> + ?Sized>(
        &self,
        msg: &Message,
        selector: &S,
        arg: &A,
        timeout: Duration,
    ) -> Result<MessageExt> {
        self.request_with(msg, timeout, |p, m| p.send_with_selector(m, selector, arg))
    }

    fn request_with(
        &self,
        msg: &Message,
        timeout: Duration,
        send: impl FnOnce(&Self, &Message) -> Result<SendResult>,
    ) -> Result<MessageExt> {
        let instance = self.running_instance()?;
        let id = MessageClientIDSetter::create_uniq_id();
        let request = request_message(&instance, msg, &id, timeout);
        let table = instance.request_futures();
        // Registered before the send: the reply may come before the send's answer.
        let future = RequestResponseFuture::new_sync(id, msg.topic(), timeout);
        table.put(&instance, Arc::clone(&future));
        match send(self, &request) {
            Ok(_) => future.set_send_ok(),
            Err(e) => {
                table.remove(future.correlation_id());
                return Err(send_failed(msg.topic(), e));
            }
        }
        table.wait(&future)
    }

    /// Sends `msg` as a request; `callback` gets the reply, or the error, once (Java
    /// `request(Message, RequestCallback, long)`). The message is sent as by
    /// [`send_async`](Self::send_async); a request without a reply within `timeout` fails with
    /// [`ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION`] (found by a sweep that runs every second,
    /// so the callback may come up to a second late). A request still waiting when the client
    /// instance shuts down fails then.
    ///
    /// An `Err` return means the request was not sent and the callback will **not** run (the
    /// same cases as for `send_async`); `Ok` means it runs exactly once.
    pub fn request_async(
        &self,
        msg: &Message,
        timeout: Duration,
        callback: impl RequestCallback,
    ) -> Result<()> {
        self.request_async_with(msg, timeout, callback, |p, m, cb| p.send_async(m, cb))
    }

    /// [`request_async`](Self::request_async) sent to the queue `mq` (Java
    /// `request(Message, MessageQueue, RequestCallback, long)`), with the retries of
    /// [`send_async_to_queue`](Self::send_async_to_queue).
    pub fn request_async_to_queue(
        &self,
        msg: &Message,
        mq: &MessageQueue,
        timeout: Duration,
        callback: impl RequestCallback,
    ) -> Result<()> {
        self.request_async_with(msg, timeout, callback, |p, m, cb| {
            p.send_async_to_queue(m, mq, cb)
        })
    }

    /// [`request_async`](Self::request_async) sent to the queue `selector` picks for `arg`
    /// (Java `request(Message, MessageQueueSelector, Object, RequestCallback, long)`).
    pub fn request_async_with_selector<A: ?Sized, S: MessageQueueSelector<A> + ?Sized>(
        &self,
        msg: &Message,
        selector: &S,
        arg: &A,
        timeout: Duration,
        callback: impl RequestCallback,
    ) -> Result<()> {
        self.request_async_with(msg, timeout, callback, |p, m, cb| {
            p.send_async_with_selector(m, selector, arg, cb)
        })
    }

    fn request_async_with(
        &self,
        msg: &Message,
        timeout: Duration,
        callback: impl RequestCallback,
        send: impl FnOnce(&Self, &Message, SendDone) -> Result<()>,
    ) -> Result<()> {
        let instance = self.running_instance()?;
        let id = MessageClientIDSetter::create_uniq_id();
        let request = request_message(&instance, msg, &id, timeout);
        let callback: Box<dyn RequestCallback> = Box::new(callback);
        let future = RequestResponseFuture::new_async(
            id,
            msg.topic(),
            timeout,
            Box::new(move |r| match r {
                Ok(reply) => callback.on_success(reply),
                Err(e) => callback.on_exception(e),
            }),
        );
        let table = instance.request_futures();
        table.put(&instance, Arc::clone(&future));
        let sent = Arc::clone(&future);
        let owner = Arc::clone(&instance);
        let topic = msg.topic().to_owned();
        let done: SendDone = Box::new(move |r: Result<SendResult>| match r {
            Ok(_) => sent.set_send_ok(),
            Err(e) => owner
                .request_futures()
                .fail(sent.correlation_id(), send_failed(&topic, e)),
        });
        let r = send(self, &request, done);
        match r {
            Ok(()) => Ok(()),
            // Whoever holds the entry runs the callback; if it is still here, nobody will.
            Err(e) => match table.remove(future.correlation_id()) {
                Some(_) => Err(e),
                None => Ok(()),
            },
        }
    }
}

/// What an async request does with its send's outcome.
type SendDone = Box<dyn FnOnce(Result<SendResult>) + Send + 'static>;

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    use crossbeam_channel::{unbounded, Receiver, Sender};

    use super::*;
    use crate::client::reply::ReplyMessageRequestHeader;
    use crate::common::message::string_to_properties;
    use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
    use crate::testing::{FakeAction, FakeBroker};

    const TOPIC: &str = "RequestTopic";
    /// A topic the fake refuses every send to.
    const REFUSED: &str = "RefusedTopic";
    const WAIT: Duration = Duration::from_secs(10);

    fn ok() -> RemotingCommand {
        RemotingCommand::response(ResponseCode::SUCCESS, None)
    }

    /// A name server and broker at one address: every topic has one queue on it; sends are
    /// handed to `sent` and stored (or refused, for [`REFUSED`]).
    fn fake(sent: Sender<RemotingCommand>) -> FakeBroker {
        let addr: Arc<OnceLock<String>> = Arc::default();
        let a = Arc::clone(&addr);
        let fake = FakeBroker::start(move |req| match req.request_code() {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                let addr = a.get().expect("address known");
                let body = format!(
                    r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{addr}"}},"brokerName":"b","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"b","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}}]}}"#
                );
                FakeAction::Respond(ok().with_body(body.into_bytes()))
            }
            RequestCode::SEND_MESSAGE_V2 => {
                let _ = sent.send(req.clone());
                if req.ext_fields().get("b") == Some(REFUSED) {
                    return FakeAction::Respond(RemotingCommand::response(
                        ResponseCode::MESSAGE_ILLEGAL,
                        Some("refused by the test".into()),
                    ));
                }
                let mut r = ok();
                let h = r.ext_fields_mut();
                h.put("msgId", "0A0000010000000000000000");
                h.put("queueId", 0);
                h.put("queueOffset", 0);
                FakeAction::Respond(r)
            }
            _ => FakeAction::Respond(ok()),
        })
        .unwrap();
        addr.set(fake.addr()).unwrap();
        fake
    }

    fn producer(fake: &FakeBroker) -> DefaultMQProducer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = DefaultMQProducer::builder("requester")
            .namesrv_addr(fake.addr())
            .instance_name(format!("request-{}", N.fetch_add(1, Ordering::Relaxed)))
            .build()
            .unwrap();
        p.start().unwrap();
        p
    }

    /// The properties of the next request the fake stored.
    fn next_request(sent: &Receiver<RemotingCommand>) -> crate::Properties {
        let req = sent.recv_timeout(WAIT).expect("the request is sent");
        string_to_properties(req.ext_fields().get("i").unwrap_or(""))
    }

    fn reply_header(properties: &str) -> ReplyMessageRequestHeader {
        ReplyMessageRequestHeader {
            producer_group: "replier".into(),
            topic: "C_REPLY_TOPIC".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            sys_flag: 0,
            born_timestamp: 1,
            flag: 0,
            properties: Some(properties.into()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            born_host: "127.0.0.1:4321".into(),
            store_host: "127.0.0.1:10911".into(),
            store_timestamp: 2,
        }
    }

    /// The properties of the reply to `request`, as `create_reply_message` makes them.
    fn reply_properties(request: &crate::Properties) -> String {
        let mut m = crate::Message::new("C_REPLY_TOPIC", "");
        for (k, v) in request.iter() {
            m.put_property(k, v);
        }
        m.put_property("CLUSTER", "C");
        let ext = MessageExt::from_message(&m);
        crate::common::create_reply_message(&ext, "")
            .unwrap()
            .properties_string()
    }

    /// Pushes `cmd` to the client and returns its answers (one per connection).
    fn push(fake: &FakeBroker, cmd: &RemotingCommand) -> Vec<RemotingCommand> {
        let n = fake.push_request(cmd);
        assert!(n >= 1, "the client is connected");
        (0..n)
            .map(|_| fake.recv_response(WAIT).expect("the client answers"))
            .collect()
    }

    fn push_reply(
        fake: &FakeBroker,
        h: &ReplyMessageRequestHeader,
        body: &[u8],
    ) -> Vec<RemotingCommand> {
        let cmd =
            RemotingCommand::request_with_header(RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT, h)
                .with_body(body.to_vec());
        push(fake, &cmd)
    }

    fn assert_all(answers: &[RemotingCommand], code: ResponseCode, remark: &str) {
        for a in answers {
            assert_eq!(a.response_code(), code, "{:?}", a.remark());
            assert!(
                a.remark().unwrap_or("").contains(remark),
                "remark {:?} should contain {remark:?}",
                a.remark()
            );
        }
    }

    /// Runs a sync request of `body` on a thread of its own.
    fn spawn_request(
        p: &DefaultMQProducer,
        body: &'static str,
        timeout: Duration,
    ) -> std::thread::JoinHandle<Result<MessageExt>> {
        let p = p.clone();
        std::thread::Builder::new()
            .name("requester".to_owned())
            .spawn(move || p.request(&crate::Message::new(TOPIC, body), timeout))
            .unwrap()
    }

    fn waiting(p: &DefaultMQProducer) -> usize {
        p.running_instance().unwrap().request_futures().len()
    }

    #[test]
    fn a_sync_request_gets_the_reply_with_its_correlation_id() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let call = spawn_request(&p, "ping", Duration::from_secs(5));
        let props = next_request(&sent);
        assert_eq!(props.get("REPLY_TO_CLIENT"), p.client_id().as_deref());
        assert_eq!(props.get("TTL"), Some("5000"));
        let id = props
            .get("CORRELATION_ID")
            .expect("a correlation id")
            .to_owned();

        let answers = push_reply(&fake, &reply_header(&reply_properties(&props)), b"pong");
        assert_all(&answers, ResponseCode::SUCCESS, "");
        let reply = call.join().unwrap().expect("the reply");
        assert_eq!(&reply.body()[..], b"pong");
        assert_eq!(reply.property("CORRELATION_ID"), Some(id.as_str()));
        assert_eq!(reply.topic(), "C_REPLY_TOPIC");
        assert_eq!(reply.born_host().to_string(), "127.0.0.1:4321");
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn requests_to_a_chosen_queue_and_through_a_selector_get_their_replies() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let mq = MessageQueue {
            topic: TOPIC.into(),
            broker_name: "b".into(),
            queue_id: 0,
        };
        let selected = Arc::new(AtomicUsize::new(0));
        for chosen in ["queue", "selector"] {
            let requester = p.clone();
            let (mq, selected) = (mq.clone(), Arc::clone(&selected));
            let call = std::thread::Builder::new()
                .name("requester".to_owned())
                .spawn(move || {
                    let msg = crate::Message::new(TOPIC, chosen);
                    let timeout = Duration::from_secs(5);
                    if chosen == "queue" {
                        requester.request_to_queue(&msg, &mq, timeout)
                    } else {
                        let select = |mqs: &[MessageQueue], arg: &u32| {
                            selected.fetch_add(1, Ordering::SeqCst);
                            mqs.get(*arg as usize).cloned()
                        };
                        requester.request_with_selector(&msg, &select, &0u32, timeout)
                    }
                })
                .unwrap();
            let props = next_request(&sent);
            assert!(props.get("CORRELATION_ID").is_some());
            let answers = push_reply(
                &fake,
                &reply_header(&reply_properties(&props)),
                chosen.as_bytes(),
            );
            assert_all(&answers, ResponseCode::SUCCESS, "");
            let reply = call.join().unwrap().expect("the reply");
            assert_eq!(&reply.body()[..], chosen.as_bytes());
        }
        assert_eq!(
            selected.load(Ordering::SeqCst),
            1,
            "the selector chose the queue"
        );
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn async_requests_to_a_chosen_queue_and_through_a_selector_get_their_replies() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let mq = MessageQueue {
            topic: TOPIC.into(),
            broker_name: "b".into(),
            queue_id: 0,
        };
        let selected = Arc::new(AtomicUsize::new(0));
        for chosen in ["queue", "selector"] {
            let (done_tx, done) = unbounded();
            let msg = crate::Message::new(TOPIC, chosen);
            let timeout = Duration::from_secs(5);
            let cb = move |r: Result<MessageExt>| done_tx.send(r).unwrap();
            if chosen == "queue" {
                p.request_async_to_queue(&msg, &mq, timeout, cb).unwrap();
            } else {
                let selected = Arc::clone(&selected);
                let select = move |mqs: &[MessageQueue], arg: &u32| {
                    selected.fetch_add(1, Ordering::SeqCst);
                    mqs.get(*arg as usize).cloned()
                };
                p.request_async_with_selector(&msg, &select, &0u32, timeout, cb)
                    .unwrap();
            }
            let props = next_request(&sent);
            let answers = push_reply(
                &fake,
                &reply_header(&reply_properties(&props)),
                chosen.as_bytes(),
            );
            assert_all(&answers, ResponseCode::SUCCESS, "");
            let reply = done.recv_timeout(WAIT).unwrap().expect("the reply");
            assert_eq!(&reply.body()[..], chosen.as_bytes());
            assert!(done.try_recv().is_err(), "the callback runs once");
        }
        assert_eq!(
            selected.load(Ordering::SeqCst),
            1,
            "the selector chose the queue"
        );
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn an_async_request_calls_back_once_with_a_compressed_reply_decompressed() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let (done_tx, done) = unbounded();
        p.request_async(
            &crate::Message::new(TOPIC, "ping"),
            Duration::from_secs(5),
            move |r: Result<MessageExt>| done_tx.send(r).unwrap(),
        )
        .unwrap();
        let props = next_request(&sent);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"a compressed pong").unwrap();
        let mut h = reply_header(&reply_properties(&props));
        h.sys_flag = 0x1;
        let answers = push_reply(&fake, &h, &z.finish().unwrap());
        assert_all(&answers, ResponseCode::SUCCESS, "");
        let reply = done.recv_timeout(WAIT).unwrap().expect("the reply");
        assert_eq!(&reply.body()[..], b"a compressed pong");
        assert!(done.try_recv().is_err(), "the callback runs once");
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn a_request_without_reply_times_out_frees_its_slot_and_a_late_reply_is_dropped() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let begin = Instant::now();
        let e = p
            .request(
                &crate::Message::new(TOPIC, "ping"),
                Duration::from_millis(300),
            )
            .unwrap_err();
        assert!(begin.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            e.client_error_code(),
            Some(ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION)
        );
        assert!(
            e.to_string().contains(
                "send request message to <RequestTopic> OK, but wait reply message timeout, 300 ms"
            ),
            "{e}"
        );
        assert_eq!(waiting(&p), 0, "the timed-out request left the table");

        // The reply comes too late: answered, matched to nothing, harmless.
        let props = next_request(&sent);
        let answers = push_reply(&fake, &reply_header(&reply_properties(&props)), b"late");
        assert_all(&answers, ResponseCode::SUCCESS, "");
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    /// A callback that reports which method ran.
    struct Report(Sender<std::result::Result<MessageExt, Error>>);

    impl RequestCallback for Report {
        fn on_success(self: Box<Self>, reply: MessageExt) {
            self.0.send(Ok(reply)).unwrap();
        }
        fn on_exception(self: Box<Self>, error: Error) {
            self.0.send(Err(error)).unwrap();
        }
    }

    #[test]
    fn an_async_request_without_reply_fails_once_by_the_sweep_and_ignores_a_late_reply() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let (done_tx, done) = unbounded();
        p.request_async(
            &crate::Message::new(TOPIC, "ping"),
            Duration::from_millis(200),
            Report(done_tx),
        )
        .unwrap();
        let e = done.recv_timeout(WAIT).unwrap().unwrap_err();
        assert_eq!(
            e.client_error_code(),
            Some(ClientErrorCode::REQUEST_TIMEOUT_EXCEPTION),
            "{e}"
        );
        assert_eq!(waiting(&p), 0);

        let props = next_request(&sent);
        let answers = push_reply(&fake, &reply_header(&reply_properties(&props)), b"late");
        assert_all(&answers, ResponseCode::SUCCESS, "");
        // The reply was processed (and answered) before the answer came: no second call.
        assert!(done.try_recv().is_err(), "the callback ran once");
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn a_request_whose_send_fails_reports_the_send_error_and_frees_its_slot() {
        let (tx, _sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let e = p
            .request(
                &crate::Message::new(REFUSED, "ping"),
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert!(e.is_message_illegal(), "{e}");
        assert!(
            e.to_string()
                .contains("send request message to <RefusedTopic> fail"),
            "{e}"
        );
        assert_eq!(waiting(&p), 0);

        let (done_tx, done) = unbounded();
        p.request_async(
            &crate::Message::new(REFUSED, "ping"),
            Duration::from_secs(5),
            Report(done_tx),
        )
        .unwrap();
        let e = done.recv_timeout(WAIT).unwrap().unwrap_err();
        assert!(e.is_message_illegal(), "{e}");
        assert!(done.try_recv().is_err());
        assert_eq!(waiting(&p), 0);
        p.shutdown(WAIT).unwrap();
    }

    #[test]
    fn requests_waiting_when_the_client_shuts_down_fail_at_once() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let (done_tx, done) = unbounded();
        p.request_async(
            &crate::Message::new(TOPIC, "async"),
            Duration::from_secs(600),
            Report(done_tx),
        )
        .unwrap();
        let call = spawn_request(&p, "sync", Duration::from_secs(600));
        next_request(&sent);
        next_request(&sent);
        p.shutdown(WAIT).unwrap();
        let e = done
            .recv_timeout(WAIT)
            .expect("the callback runs at shutdown")
            .unwrap_err();
        assert!(e.to_string().contains("shut down"), "{e}");
        let e = call.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("shut down"), "{e}");
    }

    #[test]
    fn a_request_on_a_producer_not_started_fails_at_once() {
        let p = DefaultMQProducer::builder("requester").build().unwrap();
        let e = p
            .request(&crate::Message::new(TOPIC, "ping"), Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, Error::ServiceState { .. }), "{e}");
        let called = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&called);
        let e = p
            .request_async(
                &crate::Message::new(TOPIC, "ping"),
                Duration::from_secs(1),
                move |_: Result<MessageExt>| {
                    c.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap_err();
        assert!(matches!(e, Error::ServiceState { .. }), "{e}");
        assert_eq!(called.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn malformed_reply_pushes_are_answered_with_the_reason_and_harm_no_waiting_request() {
        let (tx, sent) = unbounded();
        let fake = fake(tx);
        let p = producer(&fake);
        let call = spawn_request(&p, "ping", Duration::from_secs(20));
        let props = next_request(&sent);
        let good = reply_properties(&props);

        // A header without its required fields.
        let bare = RemotingCommand::request(RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT)
            .with_body(b"x".to_vec());
        assert_all(
            &push(&fake, &bare),
            ResponseCode::SYSTEM_ERROR,
            "producerGroup",
        );
        // A number that is not one.
        let mut cmd = RemotingCommand::request_with_header(
            RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT,
            &reply_header(&good),
        );
        cmd.ext_fields_mut().insert("queueId", "zero");
        assert_all(&push(&fake, &cmd), ResponseCode::SYSTEM_ERROR, "queueId");
        // An address that is not one.
        let mut h = reply_header(&good);
        h.born_host = "nowhere".into();
        assert_all(
            &push_reply(&fake, &h, b"x"),
            ResponseCode::SYSTEM_ERROR,
            "bornHost",
        );
        // A body flagged compressed that does not inflate.
        let mut h = reply_header(&good);
        h.sys_flag = 0x1;
        assert_all(
            &push_reply(&fake, &h, b"not zlib"),
            ResponseCode::SYSTEM_ERROR,
            "ZLIB",
        );
        // No correlation id.
        let h = reply_header("MSG_TYPE\u{1}reply\u{2}");
        assert_all(
            &push_reply(&fake, &h, b"x"),
            ResponseCode::SYSTEM_ERROR,
            "CORRELATION_ID",
        );
        // A correlation id nobody waits for.
        let h = reply_header("CORRELATION_ID\u{1}nobody\u{2}");
        assert_all(&push_reply(&fake, &h, b"x"), ResponseCode::SUCCESS, "");

        assert_eq!(waiting(&p), 1, "the request still waits");
        assert_all(
            &push_reply(&fake, &reply_header(&good), b"pong"),
            ResponseCode::SUCCESS,
            "",
        );
        let reply = call.join().unwrap().expect("the reply");
        assert_eq!(&reply.body()[..], b"pong");
        p.shutdown(WAIT).unwrap();
    }
}
