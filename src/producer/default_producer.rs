//! `DefaultMQProducer`: sync, async, one-way, selector and batch sends with retries on another
//! broker and latency fault tolerance.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::client::config::{default_instance_name, join_instance};
use crate::client::config::{ClientConfig, ClientOverrides};
use crate::client::instance::{
    InnerProducer, MQClientInstance, MQClientManager, MQProducerInner, CLIENT_INNER_PRODUCER_GROUP,
};
use crate::client::publish_info::TopicPublishInfo;
use crate::common::{
    Message, MessageClientIDSetter, MessageConst, MessageDecoder, MessageExt, MessageQueue,
};
use crate::error::{ClientErrorCode, Error, Result};
use crate::producer::fault::MQFaultStrategy;
use crate::producer::hook::{CommunicationMode, SendHooks, SendMessageContext};
use crate::producer::process_send_response;
use crate::producer::transaction::TransactionCheckHandler;
use crate::producer::validators;
use crate::producer::{CompressionType, SendMessageHook};
use crate::producer::{MessageQueueSelector, SendResult, SendStatus};
use crate::remoting::protocol::header::{
    CheckTransactionStateRequestHeader, SendMessageRequestHeader,
};
use crate::remoting::protocol::ResponseCode;
use crate::service_state::ServiceState;

/// Message sys-flag bit: the body is compressed (the type's bits say how).
const COMPRESSED_FLAG: i32 = 0x1;

/// Broker codes after which a send is retried on another broker (Java 4.9.8
/// `retryResponseCodes`). A sync send also retries [`ResponseCode::SYSTEM_BUSY`], after a pause
/// (see [`busy_backoff`]).
const RETRY_RESPONSE_CODES: [ResponseCode; 6] = [
    ResponseCode::TOPIC_NOT_EXIST,
    ResponseCode::SERVICE_NOT_AVAILABLE,
    ResponseCode::SYSTEM_ERROR,
    ResponseCode::NO_PERMISSION,
    ResponseCode::NO_BUYER_ID,
    ResponseCode::NOT_IN_CURRENT_UNIT,
];

/// The first pause before a sync send goes again to a broker that answered `SYSTEM_BUSY`; it
/// doubles with every further busy answer to the same send, up to [`MAX_BUSY_BACKOFF`].
const BUSY_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause before one retry of a busy broker.
const MAX_BUSY_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before the next attempt of a sync send whose last `busy_answers` attempts in a row
/// were answered `SYSTEM_BUSY` by the broker the next attempt goes to.
fn busy_backoff(busy_answers: u32) -> Duration {
    match busy_answers {
        0 => Duration::ZERO,
        n => BUSY_BACKOFF
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_BUSY_BACKOFF),
    }
}

/// Producer settings. Built by [`DefaultMQProducerBuilder`].
#[derive(Debug, Clone)]
struct ProducerConfig {
    group: String,
    create_topic_key: String,
    default_topic_queue_nums: i32,
    send_msg_timeout: Duration,
    compress_msg_body_over_howmuch: usize,
    compress_level: u32,
    compress_type: CompressionType,
    retry_times_when_send_failed: u32,
    retry_times_when_send_async_failed: u32,
    retry_another_broker_when_not_store_ok: bool,
    max_message_size: usize,
}

/// Builds a [`DefaultMQProducer`]. Every setter documents Java's default.
#[derive(Debug, Clone)]
pub struct DefaultMQProducerBuilder {
    config: ProducerConfig,
    client: ClientConfig,
    client_overrides: ClientOverrides,
    send_latency_fault_enable: bool,
    hooks: SendHooks,
    /// Message trace: the topic trace records go to, and how many may wait; `None` is off.
    trace: Option<(String, usize)>,
}

impl DefaultMQProducerBuilder {
    crate::client::config::client_config_setters!();

    /// Time budget of one send attempt. Java default: 3 s. Each retry gets a budget of its
    /// own, so a slow broker never starves the attempt on the next one.
    #[doc(alias = "setSendMsgTimeout")]
    pub fn send_msg_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_msg_timeout = timeout;
        self
    }

    /// Bodies of at least this many bytes are compressed (with
    /// [`compress_type`](Self::compress_type)). Batches are never compressed. Java default: 4096.
    #[doc(alias = "setCompressMsgBodyOverHowmuch")]
    pub fn compress_msg_body_over_howmuch(mut self, bytes: usize) -> Self {
        self.config.compress_msg_body_over_howmuch = bytes;
        self
    }

    /// zlib level, 0..=9. Java default: 5. LZ4 and ZSTD do not use it (see
    /// [`CompressionType`]).
    #[doc(alias = "setCompressLevel")]
    pub fn compress_level(mut self, level: u32) -> Self {
        self.config.compress_level = level;
        self
    }

    /// How bodies over [`compress_msg_body_over_howmuch`](Self::compress_msg_body_over_howmuch)
    /// are compressed (Java 5 `compressType`). Default: [`CompressionType::Zlib`], as Java's.
    /// Consumers of this crate and Java 5.x consumers read all three; Java 4.x consumers only
    /// zlib.
    #[doc(alias = "setCompressType")]
    pub fn compress_type(mut self, compress_type: CompressionType) -> Self {
        self.config.compress_type = compress_type;
        self
    }

    /// Adds a hook run before and after every send attempt, of every kind (Java
    /// `registerSendMessageHook`). Hooks run in the order added; see [`SendMessageHook`].
    #[doc(alias = "registerSendMessageHook")]
    pub fn send_message_hook(mut self, hook: impl SendMessageHook) -> Self {
        self.hooks.0.push(Arc::new(hook));
        self
    }

    /// Message trace (Java's `enableMsgTrace` constructor argument): a `Pub` record of every
    /// send the broker answered goes, in Java's trace format, to
    /// [`RMQ_SYS_TRACE_TOPIC`](crate::RMQ_SYS_TRACE_TOPIC), on a bounded background queue that
    /// drops trace data rather than make a send wait. Default: off.
    pub fn enable_msg_trace(mut self, on: bool) -> Self {
        self.trace = on.then(|| {
            (
                crate::producer::trace::RMQ_SYS_TRACE_TOPIC.to_owned(),
                crate::producer::trace::QUEUE_SIZE,
            )
        });
        self
    }

    /// Message trace into `topic` instead of `RMQ_SYS_TRACE_TOPIC` (Java's
    /// `customizedTraceTopic`); turns tracing on.
    pub fn customized_trace_topic(mut self, topic: impl Into<String>) -> Self {
        self.trace = Some((topic.into(), crate::producer::trace::QUEUE_SIZE));
        self
    }

    /// Test hook: how many trace records may wait (Java: 2048, not settable).
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn trace_queue_size_for_tests(mut self, records: usize) -> Self {
        if let Some((_, size)) = &mut self.trace {
            *size = records.max(1);
        }
        self
    }

    /// Retries of a failed sync send, each on another broker when there is one. Java
    /// default: 2 (so up to 3 attempts).
    ///
    /// A send the broker refused with `SYSTEM_BUSY` (its flow control: the message was not
    /// stored) is retried too, as Java 5 does and 4.9.8 does not. When the retry can only go to
    /// the broker that refused, it waits first: 100 ms, then twice as long after every further
    /// refusal (at most 1 s a pause), so a busy broker gets time to drain instead of more load.
    #[doc(alias = "setRetryTimesWhenSendFailed")]
    pub fn retry_times_when_send_failed(mut self, times: u32) -> Self {
        self.config.retry_times_when_send_failed = times;
        self
    }

    /// Retries of a failed async send. Java default: 2.
    #[doc(alias = "setRetryTimesWhenSendAsyncFailed")]
    pub fn retry_times_when_send_async_failed(mut self, times: u32) -> Self {
        self.config.retry_times_when_send_async_failed = times;
        self
    }

    /// Retry on another broker when the broker stored the message but reported a flush or
    /// slave problem. Java default: false.
    #[doc(alias = "setRetryAnotherBrokerWhenNotStoreOK")]
    pub fn retry_another_broker_when_not_store_ok(mut self, enable: bool) -> Self {
        self.config.retry_another_broker_when_not_store_ok = enable;
        self
    }

    /// Largest body accepted, in bytes. Java default: 4 MiB.
    #[doc(alias = "setMaxMessageSize")]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Queues per broker used for a topic that is auto-created by its first send. Java
    /// default: 4.
    #[doc(alias = "setDefaultTopicQueueNums")]
    pub fn default_topic_queue_nums(mut self, n: i32) -> Self {
        self.config.default_topic_queue_nums = n;
        self
    }

    /// Avoid brokers that recently failed or answered slowly. **Default: true** (Java's is
    /// false): with it, a dead broker costs each send at most one failed attempt and is then
    /// left alone for a while.
    #[doc(alias = "setSendLatencyFaultEnable")]
    pub fn send_latency_fault_enable(mut self, enable: bool) -> Self {
        self.send_latency_fault_enable = enable;
        self
    }

    /// Validates the settings and builds the producer (not yet started).
    pub fn build(self) -> Result<DefaultMQProducer> {
        validators::check_group(&self.config.group)?;
        if self.config.group == "DEFAULT_PRODUCER" {
            return Err(Error::config(
                "producerGroup can not equal DEFAULT_PRODUCER, please specify another one",
            ));
        }
        self.build_inner()
    }

    /// Builds without the group-name check: the client's own `CLIENT_INNER_PRODUCER` uses a
    /// reserved name.
    fn build_inner(self) -> Result<DefaultMQProducer> {
        if self.config.send_msg_timeout.is_zero() {
            return Err(Error::config("send_msg_timeout must be positive"));
        }
        if self.config.compress_level > 9 {
            return Err(Error::config(format!(
                "compress_level must be 0..=9, got {}",
                self.config.compress_level
            )));
        }
        if self.config.max_message_size == 0 {
            return Err(Error::config("max_message_size must be positive"));
        }
        if !(1..=1024).contains(&self.config.default_topic_queue_nums) {
            return Err(Error::config(format!(
                "default_topic_queue_nums must be 1..=1024, got {}",
                self.config.default_topic_queue_nums
            )));
        }
        let client = self.client_overrides.apply(self.client);
        let mut config = self.config;
        // Trace records name the group as its user does.
        let bare_group = config.group.clone();
        if let Some(ns) = client.namespace() {
            crate::common::namespace::check(ns)?;
            // Java `setProducerGroup(withNamespace(producerGroup))` at start.
            config.group = client.with_namespace(&config.group).into_owned();
        }
        let mut hooks = self.hooks;
        let trace = match self.trace {
            Some((topic, size)) => {
                validators::check_topic(&topic)?;
                let d = Arc::new(crate::producer::trace::AsyncTraceDispatcher::with_capacity(
                    &bare_group,
                    &topic,
                    size,
                ));
                hooks
                    .0
                    .push(Arc::new(crate::producer::trace::SendMessageTraceHook {
                        dispatcher: d.clone(),
                    }));
                Some(d)
            }
            None => None,
        };
        let inner = Arc::new(ProducerInner {
            fault: MQFaultStrategy::new(self.send_latency_fault_enable),
            config,
            client,
            state: Mutex::new(ServiceState::CreateJust),
            instance: RwLock::new(None),
            publish_info: RwLock::new(HashMap::new()),
            hooks,
            trace,
            transaction_check: OnceLock::new(),
        });
        Ok(DefaultMQProducer { inner })
    }
}

/// Sends messages to RocketMQ (Java `DefaultMQProducer` and `DefaultMQProducerImpl`).
///
/// ```no_run
/// use rocketmq_sync::{DefaultMQProducer, Message};
///
/// let producer = DefaultMQProducer::builder("my_group")
///     .namesrv_addr("127.0.0.1:9876")
///     .build()?;
/// producer.start()?;
/// let result = producer.send(&Message::new("TopicTest", "hello").with_tags("TagA"))?;
/// println!("{} -> {:?}", result.msg_id(), result.send_status());
/// producer.shutdown(std::time::Duration::from_secs(5))?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
///
/// The handle is cheap to clone and `Send + Sync`; every clone is the same producer.
#[doc(alias = "DefaultMQProducerImpl")]
#[derive(Debug, Clone)]
pub struct DefaultMQProducer {
    inner: Arc<ProducerInner>,
}

struct ProducerInner {
    config: ProducerConfig,
    client: ClientConfig,
    state: Mutex<ServiceState>,
    instance: RwLock<Option<Arc<MQClientInstance>>>,
    publish_info: RwLock<HashMap<String, Arc<TopicPublishInfo>>>,
    fault: MQFaultStrategy,
    hooks: SendHooks,
    /// Message trace, when on: its trace hook is among `hooks`.
    trace: Option<Arc<crate::producer::trace::AsyncTraceDispatcher>>,
    /// Set once by a `TransactionMQProducer`: where the broker's transaction checks go.
    transaction_check: OnceLock<Arc<dyn TransactionCheckHandler>>,
}

impl std::fmt::Debug for ProducerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultMQProducer")
            .field("group", &self.config.group)
            .field("state", &*self.state.lock())
            .finish()
    }
}

/// A message made ready for the wire once, then sent by one or more attempts.
#[derive(Debug, Clone)]
struct PreparedSend {
    topic: String,
    body: Bytes,
    sys_flag: i32,
    flag: i32,
    properties: String,
    uniq_id: String,
    /// A batch's ids one by one (`uniq_id` joins them).
    batch_ids: Option<Arc<[String]>>,
    batch: bool,
    reconsume_times: Option<i32>,
    max_reconsume_times: Option<i32>,
    /// The messages as the send hooks see them; `None` when the producer has no hooks.
    hook_msgs: Option<Vec<Message>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sync,
    Oneway,
}

impl Mode {
    fn communication_mode(self) -> CommunicationMode {
        match self {
            Mode::Sync => CommunicationMode::Sync,
            Mode::Oneway => CommunicationMode::Oneway,
        }
    }
}

impl DefaultMQProducer {
    /// A builder for a producer of `group`.
    pub fn builder(group: impl Into<String>) -> DefaultMQProducerBuilder {
        DefaultMQProducerBuilder {
            config: ProducerConfig {
                group: group.into(),
                create_topic_key: crate::client::instance::AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned(),
                default_topic_queue_nums: 4,
                send_msg_timeout: Duration::from_secs(3),
                compress_msg_body_over_howmuch: 4096,
                compress_level: 5,
                compress_type: CompressionType::Zlib,
                retry_times_when_send_failed: 2,
                retry_times_when_send_async_failed: 2,
                retry_another_broker_when_not_store_ok: false,
                max_message_size: 4 * 1024 * 1024,
            },
            client: ClientConfig::default(),
            client_overrides: ClientOverrides::default(),
            send_latency_fault_enable: true,
            hooks: SendHooks::default(),
            trace: None,
        }
    }

    /// Trace records dropped, since start, because the trace queue was full (0 without
    /// message trace). Trace data is dropped rather than a send made to wait.
    pub fn trace_dropped(&self) -> u64 {
        self.inner.trace.as_ref().map_or(0, |t| t.dropped())
    }

    /// The producer group.
    pub fn producer_group(&self) -> &str {
        &self.inner.config.group
    }

    /// Makes this the producer of a `TransactionMQProducer`: the broker's transaction checks
    /// for its group go to `handler`.
    pub(crate) fn set_transaction_check_handler(&self, handler: Arc<dyn TransactionCheckHandler>) {
        if self.inner.transaction_check.set(handler).is_err() {
            log::warn!(
                "{}: transaction check handler set twice",
                self.inner.config.group
            );
        }
    }

    /// The time budget of one send attempt.
    pub(crate) fn send_msg_timeout(&self) -> Duration {
        self.inner.config.send_msg_timeout
    }

    /// The lifecycle state.
    pub fn service_state(&self) -> ServiceState {
        *self.inner.state.lock()
    }

    /// The client id this producer registered with brokers, once started.
    pub fn client_id(&self) -> Option<String> {
        self.inner
            .instance
            .read()
            .as_ref()
            .map(|i| i.client_id().to_owned())
    }

    /// The client instance of the running producer (request-reply registers its requests
    /// there, see `producer::request`; a transaction producer heartbeats through it).
    pub(crate) fn running_instance(&self) -> Result<Arc<MQClientInstance>> {
        self.inner.running()
    }

    /// Starts the producer: joins (or creates) the client instance, registers the group and
    /// sends a first heartbeat. Starting twice is an error.
    pub fn start(&self) -> Result<()> {
        self.start_with(|inner, weak| {
            let group = &inner.config.group;
            join_instance(
                &inner.client,
                &default_instance_name(),
                false,
                true,
                group,
                |client| MQClientManager::register_producer(client, group, weak.clone()),
            )
        })?;
        if let Some(trace) = &self.inner.trace {
            // As Java: tracing that cannot start does not stop the producer. Its internal
            // producer joins the instance this one uses.
            let instance = self.inner.instance.read().clone();
            let mut client = self.inner.client.clone();
            if let Some(i) = instance {
                client.instance_name = i.config().instance_name.clone();
            }
            if let Err(e) = trace.start(&client) {
                log::warn!(
                    "message trace of {} did not start: {e}",
                    self.inner.config.group
                );
            }
        }
        Ok(())
    }

    /// Builds the inner producer of `instance` (group `CLIENT_INNER_PRODUCER`, the instance's
    /// client settings) and starts it on that instance. For
    /// [`MQClientInstance::inner_producer_or_init`], which keeps it and shuts it down.
    pub(crate) fn start_inner_producer(
        instance: &Arc<MQClientInstance>,
    ) -> Result<Arc<dyn InnerProducer>> {
        // The instance's own producer is in no namespace: what it sends (messages back to a
        // retry topic) is named already.
        let mut client = instance.config().clone();
        client.namespace = None;
        let p = DefaultMQProducer::builder(CLIENT_INNER_PRODUCER_GROUP)
            .client_config(client)
            .build_inner()?;
        p.start_on(instance)?;
        Ok(Arc::new(p))
    }

    /// Starts the client's own inner producer on `instance`, never on another one.
    fn start_on(&self, instance: &Arc<MQClientInstance>) -> Result<()> {
        self.start_with(|inner, weak| {
            instance.register_inner_producer(&inner.config.group, weak)?;
            Ok(instance.clone())
        })
    }

    fn start_with(
        &self,
        register: impl FnOnce(
            &ProducerInner,
            Weak<dyn MQProducerInner>,
        ) -> Result<Arc<MQClientInstance>>,
    ) -> Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock();
        if *state != ServiceState::CreateJust {
            return Err(Error::ServiceState {
                state: *state,
                action: "start the producer",
            });
        }
        let result = (|| {
            let weak: Weak<dyn MQProducerInner> = Arc::downgrade(&self.inner) as Weak<_>;
            let instance = register(inner, weak)?;
            *inner.instance.write() = Some(instance.clone());
            instance.send_heartbeat_to_all_broker_with_lock();
            Ok(())
        })();
        *state = if result.is_ok() {
            ServiceState::Running
        } else {
            ServiceState::StartFailed
        };
        result
    }

    /// Shuts the producer down: unregisters the group from every broker and stops the client
    /// instance when nothing else uses it, waiting up to `timeout` for its threads.
    /// Idempotent.
    ///
    /// [`Error::ShutdownTimeout`] names the threads still running at the deadline; everything
    /// else is shut down, and they are left to finish on their own.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        let mut state = self.inner.state.lock();
        if *state != ServiceState::Running {
            *state = match *state {
                ServiceState::CreateJust => ServiceState::ShutdownAlready,
                s => s,
            };
            return Ok(());
        }
        *state = ServiceState::ShutdownAlready;
        drop(state);
        // The sends are over: send their trace records, then leave the instance.
        if let Some(trace) = &self.inner.trace {
            trace.shutdown(timeout);
        }
        let instance = self.inner.instance.write().take();
        let threads = match instance {
            Some(i) => i.unregister_producer(&self.inner.config.group, true, timeout),
            None => Vec::new(),
        };
        if threads.is_empty() {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout { timeout, threads })
        }
    }

    /// Sends `msg` and waits for the broker's answer (Java `send(Message)`), retrying on
    /// another broker up to `retry_times_when_send_failed` times.
    ///
    /// A broker answering `SYSTEM_BUSY` is retried after a pause (see
    /// [`retry_times_when_send_failed`](DefaultMQProducerBuilder::retry_times_when_send_failed)).
    /// If every attempt is refused, the error answers [`Error::is_system_busy`]: the message
    /// was not stored.
    pub fn send(&self, msg: &Message) -> Result<SendResult> {
        let instance = self.inner.running()?;
        self.inner
            .send_default_impl(&instance, msg, Mode::Sync)
            .map(|r| r.expect("sync send returns a result"))
    }

    /// Sends `msg` without waiting for an answer (Java `sendOneway`). One attempt; an error is
    /// returned only when the request could not be handed to the connection.
    ///
    /// Nothing reports a message the broker drops: a broker under load sheds requests that
    /// waited too long in its send queue (200 ms by default) and does not answer one-way ones.
    /// Use [`send`](Self::send) or [`send_async`](Self::send_async) when every message
    /// matters, or pace one-way bursts.
    pub fn send_oneway(&self, msg: &Message) -> Result<()> {
        let instance = self.inner.running()?;
        self.inner
            .send_default_impl(&instance, msg, Mode::Oneway)
            .map(|_| ())
    }

    /// Sends `msg` to `mq` and waits (Java `send(Message, MessageQueue)`). One attempt: a
    /// chosen queue is never swapped for another.
    pub fn send_to_queue(&self, msg: &Message, mq: &MessageQueue) -> Result<SendResult> {
        let instance = self.inner.running()?;
        check_queue_topic(msg.topic(), mq)?;
        let mq = &*self.inner.client.queue_with_namespace(mq);
        self.inner.validate(msg)?;
        let prepared = self.inner.prepare(msg)?;
        self.inner
            .send_kernel(&instance, &prepared, mq, Mode::Sync)
            .map(|r| r.expect("sync send returns a result"))
    }

    /// Sends `msg` to `mq` without waiting for an answer (Java `sendOneway(Message,
    /// MessageQueue)`). One attempt; see [`send_oneway`](Self::send_oneway) for what is not
    /// reported.
    pub fn send_oneway_to_queue(&self, msg: &Message, mq: &MessageQueue) -> Result<()> {
        let instance = self.inner.running()?;
        check_queue_topic(msg.topic(), mq)?;
        let mq = &*self.inner.client.queue_with_namespace(mq);
        self.inner.validate(msg)?;
        let prepared = self.inner.prepare(msg)?;
        self.inner
            .send_kernel(&instance, &prepared, mq, Mode::Oneway)
            .map(|_| ())
    }

    /// Sends `msg` to `mq` asynchronously (Java `send(Message, MessageQueue, SendCallback)`).
    ///
    /// As in Java, an attempt whose request failed or timed out is retried up to
    /// `retry_times_when_send_async_failed` times, always to `mq` (never to another broker);
    /// an error the broker answered is not retried, as that broker would answer the same. The
    /// return value and the callback follow [`send_async`](Self::send_async).
    pub fn send_async_to_queue<F>(
        &self,
        msg: &Message,
        mq: &MessageQueue,
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let instance = self.inner.running()?;
        check_queue_topic(msg.topic(), mq)?;
        self.inner.validate(msg)?;
        let prepared = Arc::new(self.inner.prepare(msg)?);
        let mq = self.inner.client.queue_with_namespace(mq).into_owned();
        self.launch_async(instance, AsyncTarget::Queue(mq), prepared, callback)
    }

    /// Sends `msg` to the queue `selector` picks for `arg`, and waits (Java
    /// `send(Message, MessageQueueSelector, Object)`). The choice is not retried elsewhere, so
    /// messages with one key stay on one queue.
    pub fn send_with_selector<A: ?Sized, S: MessageQueueSelector<A> + ?Sized>(
        &self,
        msg: &Message,
        selector: &S,
        arg: &A,
    ) -> Result<SendResult> {
        let instance = self.inner.running()?;
        self.inner.validate(msg)?;
        let mq = self.inner.select_queue(&instance, msg, selector, arg)?;
        let prepared = self.inner.prepare(msg)?;
        self.inner
            .send_kernel(&instance, &prepared, &mq, Mode::Sync)
            .map(|r| r.expect("sync send returns a result"))
    }

    /// Sends `msg` to the queue `selector` picks for `arg`, without waiting for an answer
    /// (Java `sendOneway(Message, MessageQueueSelector, Object)`). One attempt.
    pub fn send_oneway_with_selector<A: ?Sized, S: MessageQueueSelector<A> + ?Sized>(
        &self,
        msg: &Message,
        selector: &S,
        arg: &A,
    ) -> Result<()> {
        let instance = self.inner.running()?;
        self.inner.validate(msg)?;
        let mq = self.inner.select_queue(&instance, msg, selector, arg)?;
        let prepared = self.inner.prepare(msg)?;
        self.inner
            .send_kernel(&instance, &prepared, &mq, Mode::Oneway)
            .map(|_| ())
    }

    /// Sends `msg` asynchronously to the queue `selector` picks for `arg` (Java
    /// `send(Message, MessageQueueSelector, Object, SendCallback)`). The selector runs once, on
    /// the calling thread; retries go to the queue it picked, as with
    /// [`send_async_to_queue`](Self::send_async_to_queue).
    pub fn send_async_with_selector<A, S, F>(
        &self,
        msg: &Message,
        selector: &S,
        arg: &A,
        callback: F,
    ) -> Result<()>
    where
        A: ?Sized,
        S: MessageQueueSelector<A> + ?Sized,
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let instance = self.inner.running()?;
        self.inner.validate(msg)?;
        let mq = self.inner.select_queue(&instance, msg, selector, arg)?;
        let prepared = Arc::new(self.inner.prepare(msg)?);
        self.launch_async(instance, AsyncTarget::Queue(mq), prepared, callback)
    }

    /// Sends several messages of one topic as one batch (Java `send(Collection<Message>)`).
    /// They must share topic and `WAIT` flag and carry no delay level.
    /// [`SendResult::msg_ids`] lists the messages' ids in order.
    pub fn send_batch(&self, msgs: &[Message]) -> Result<SendResult> {
        let instance = self.inner.running()?;
        let prepared = self.inner.prepare_batch(msgs)?;
        self.inner
            .send_prepared_with_retries(&instance, &prepared, Mode::Sync)
            .map(|r| r.expect("sync send returns a result"))
    }

    /// Sends a batch to `mq` and waits (Java `send(Collection<Message>, MessageQueue)`). One
    /// attempt. The rules of [`send_batch`](Self::send_batch) apply, and the topic must be
    /// `mq`'s.
    pub fn send_batch_to_queue(&self, msgs: &[Message], mq: &MessageQueue) -> Result<SendResult> {
        let instance = self.inner.running()?;
        let prepared = self.inner.prepare_batch(msgs)?;
        let mq = &*self.inner.client.queue_with_namespace(mq);
        check_queue_topic(&prepared.topic, mq)?;
        self.inner
            .send_kernel(&instance, &prepared, mq, Mode::Sync)
            .map(|r| r.expect("sync send returns a result"))
    }

    /// Sends a batch asynchronously (Java `send(Collection<Message>, SendCallback)`), with the
    /// retries of [`send_async`](Self::send_async). The rules of
    /// [`send_batch`](Self::send_batch) apply.
    pub fn send_batch_async<F>(&self, msgs: &[Message], callback: F) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let instance = self.inner.running()?;
        let prepared = Arc::new(self.inner.prepare_batch(msgs)?);
        let info = self.inner.find_publish_info(&instance, &prepared.topic)?;
        self.launch_async(instance, AsyncTarget::Route(info), prepared, callback)
    }

    /// Sends a batch asynchronously to `mq` (Java `send(Collection<Message>, MessageQueue,
    /// SendCallback)`), with the retries of [`send_async_to_queue`](Self::send_async_to_queue).
    pub fn send_batch_async_to_queue<F>(
        &self,
        msgs: &[Message],
        mq: &MessageQueue,
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let instance = self.inner.running()?;
        let prepared = Arc::new(self.inner.prepare_batch(msgs)?);
        let mq = self.inner.client.queue_with_namespace(mq).into_owned();
        check_queue_topic(&prepared.topic, &mq)?;
        self.launch_async(instance, AsyncTarget::Queue(mq), prepared, callback)
    }

    /// Sends `msg` asynchronously; `callback` runs once on a callback thread with the result
    /// (Java `send(Message, SendCallback)`). Failed attempts are retried on another broker up
    /// to `retry_times_when_send_async_failed` times. A broker's `SYSTEM_BUSY` answer is not
    /// retried (as in Java): an immediate re-send would add load to a broker that is shedding it,
    /// so the callback gets the error ([`Error::is_system_busy`]) and the application chooses
    /// when to send again.
    ///
    /// An `Err` return means the message was not sent and the callback will **not** run: the
    /// producer is not running, the message is invalid, no route is known, or too many
    /// requests are in flight (back off and retry). `Ok` means the callback runs exactly once.
    #[doc(alias = "SendCallback")]
    pub fn send_async<F>(&self, msg: &Message, callback: F) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let instance = self.inner.running()?;
        self.inner.validate(msg)?;
        let info = self.inner.find_publish_info(&instance, msg.topic())?;
        let prepared = Arc::new(self.inner.prepare(msg)?);
        self.launch_async(instance, AsyncTarget::Route(info), prepared, callback)
    }

    /// The queues a message of `topic` can be sent to, asked of the name server now (Java
    /// `fetchPublishMessageQueues`): every writable queue of every broker with a master, as
    /// the producer would choose among them. The producer's cached route is not changed.
    #[doc(alias = "fetchPublishMessageQueues")]
    pub fn fetch_publish_message_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let instance = self.inner.running()?;
        let timeout = self.inner.client.mq_client_api_timeout();
        let wrapped = self.inner.client.with_namespace(topic);
        let found = instance
            .api()
            .get_topic_route_info_from_name_server(&wrapped, timeout)
            .and_then(|route| {
                Ok(crate::common::route::topic_publish_queues(
                    &wrapped, &route,
                )?)
            });
        match found {
            Ok(queues) if !queues.is_empty() => Ok(queues
                .iter()
                .map(|q| self.inner.client.queue_without_namespace(q))
                .collect()),
            Ok(_) => Err(Error::client(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("Can not find Message Queue for this topic, {topic}: its route has no writable queue with a master"),
            )),
            Err(e) => Err(Error::client_caused_by(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("Can not find Message Queue for this topic, {topic}: {e}"),
                e,
            )),
        }
    }

    fn launch_async<F>(
        &self,
        instance: Arc<MQClientInstance>,
        target: AsyncTarget,
        prepared: Arc<PreparedSend>,
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let attempt = AsyncAttempt {
            inner: self.inner.clone(),
            instance,
            target,
            prepared,
            retries_left: self.inner.config.retry_times_when_send_async_failed,
            last_broker: None,
            started: Instant::now(),
        };
        attempt.run_first(Box::new(callback))
    }
}

/// Java's check that a message sent to a chosen queue belongs to the queue's topic.
fn check_queue_topic(topic: &str, mq: &MessageQueue) -> Result<()> {
    if topic != mq.topic {
        return Err(Error::client(
            ClientErrorCode::MESSAGE_ILLEGAL,
            format!(
                "message's topic {topic} is not the same as the queue's topic {}",
                mq.topic
            ),
        ));
    }
    Ok(())
}

type SendCallbackBox = Box<dyn FnOnce(Result<SendResult>) + Send + 'static>;

/// Where the attempts of an async send go.
enum AsyncTarget {
    /// A queue of the route, chosen per attempt (another broker on a retry).
    Route(Arc<TopicPublishInfo>),
    /// The queue the caller chose or its selector picked, for every attempt.
    Queue(MessageQueue),
}

/// One asynchronous send and its remaining retries.
struct AsyncAttempt {
    inner: Arc<ProducerInner>,
    instance: Arc<MQClientInstance>,
    target: AsyncTarget,
    prepared: Arc<PreparedSend>,
    retries_left: u32,
    last_broker: Option<String>,
    started: Instant,
}

impl AsyncAttempt {
    /// The first attempt: errors that happen before anything is in flight are returned.
    fn run_first(self, callback: SendCallbackBox) -> Result<()> {
        match self.launch(callback) {
            Ok(()) => Ok(()),
            Err((e, callback, me)) => {
                if e.is_too_many_requests() || me.retries_left == 0 {
                    // Nothing in flight: the caller gets the error, the callback never runs.
                    drop(callback);
                    Err(e)
                } else {
                    me.retry_or_fail(e, callback);
                    Ok(())
                }
            }
        }
    }

    /// Sends one attempt. On an immediate failure the callback comes back with the error.
    #[allow(clippy::result_large_err)]
    fn launch(
        mut self,
        callback: SendCallbackBox,
    ) -> std::result::Result<(), (Error, SendCallbackBox, AsyncAttempt)> {
        let mq = match &self.target {
            AsyncTarget::Queue(mq) => mq.clone(),
            AsyncTarget::Route(info) => {
                match self
                    .inner
                    .fault
                    .select_one_message_queue(info, self.last_broker.as_deref())
                {
                    Some(mq) => mq,
                    None => {
                        let e = Error::client(
                            ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                            format!("No route info of this topic: {}", self.prepared.topic),
                        );
                        return Err((e, callback, self));
                    }
                }
            }
        };
        self.last_broker = Some(mq.broker_name.clone());
        let addr = match self.inner.broker_addr(&self.instance, &mq) {
            Ok(a) => a,
            Err(e) => return Err((e, callback, self)),
        };
        let request = self.instance.api().send_request(
            &self.inner.header(&self.prepared, &mq),
            self.prepared.body.clone(),
        );
        let begin_ms = self.inner.hook_clock();
        self.inner.run_hooks(
            &self.prepared,
            &mq,
            &addr,
            CommunicationMode::Async,
            begin_ms,
            None,
        );
        let begin = Instant::now();
        let slot = Arc::new(Mutex::new(Some((callback, self))));
        let slot2 = slot.clone();
        let sent = {
            let guard = slot.lock();
            let me = &guard.as_ref().expect("slot is full until the response").1;
            let timeout = me.inner.config.send_msg_timeout;
            let mq = mq.clone();
            let addr2 = addr.clone();
            me.instance
                .remoting()
                .invoke_async(&addr, request, timeout, move |resp| {
                    let Some((callback, me)) = slot2.lock().take() else {
                        return;
                    };
                    let elapsed = begin.elapsed().as_millis() as i64;
                    let result = resp.and_then(|r| {
                        process_send_response(
                            &mq.broker_name,
                            &me.inner.client.without_namespace(&mq.topic),
                            &addr2,
                            r,
                            me.prepared.uniq_id.clone(),
                            me.prepared.batch_ids.clone(),
                        )
                    });
                    me.inner.run_hooks(
                        &me.prepared,
                        &mq,
                        &addr2,
                        CommunicationMode::Async,
                        begin_ms,
                        Some(result.as_ref().map(Some)),
                    );
                    match result {
                        Ok(r) => {
                            me.inner
                                .fault
                                .update_fault_item(&mq.broker_name, elapsed, false);
                            callback(Ok(r));
                        }
                        Err(e) => {
                            me.inner
                                .fault
                                .update_fault_item(&mq.broker_name, elapsed, true);
                            // This may run on the io thread (`disable_callback_executor`),
                            // where a retry's connect or route lookup must not block: the
                            // callback pool retries.
                            let remoting = me.instance.remoting().clone();
                            remoting.execute_callback(move || me.retry_or_fail(e, callback));
                        }
                    }
                })
        };
        match sent {
            Ok(()) => Ok(()),
            Err(e) => {
                let (callback, me) = slot
                    .lock()
                    .take()
                    .expect("a refused async call never runs its callback");
                me.inner.run_hooks(
                    &me.prepared,
                    &mq,
                    &addr,
                    CommunicationMode::Async,
                    begin_ms,
                    Some(Err(&e)),
                );
                me.inner
                    .fault
                    .update_fault_item(&mq.broker_name, 0, !e.is_too_many_requests());
                Err((e, callback, me))
            }
        }
    }

    /// After a failed attempt: retry (on another broker, unless the queue was chosen) if
    /// allowed, else report.
    fn retry_or_fail(mut self, error: Error, callback: SendCallbackBox) {
        let retryable = match &error {
            // The chosen queue's broker would answer the same again; Java retries an async
            // send only when the request failed or timed out, never after a broker's answer.
            Error::Broker { .. } if matches!(self.target, AsyncTarget::Queue(_)) => false,
            Error::Broker { code, .. } => RETRY_RESPONSE_CODES.contains(code),
            _ => !error.is_too_many_requests(),
        };
        if !retryable || self.retries_left == 0 {
            let tried = self.last_broker.clone().unwrap_or_default();
            log::warn!(
                "async send of {} failed after {:?} (last broker {tried}): {error}",
                self.prepared.topic,
                self.started.elapsed()
            );
            callback(Err(error));
            return;
        }
        self.retries_left -= 1;
        log::info!(
            "async send of {} failed on {:?}, retrying: {error}",
            self.prepared.topic,
            self.last_broker
        );
        if let Err((e, callback, me)) = self.launch(callback) {
            me.retry_or_fail(e, callback);
        }
    }
}

impl ProducerInner {
    fn running(&self) -> Result<Arc<MQClientInstance>> {
        let state = *self.state.lock();
        if state != ServiceState::Running {
            return Err(Error::ServiceState {
                state,
                action: "send: the producer is not running",
            });
        }
        self.instance.read().clone().ok_or(Error::ServiceState {
            state,
            action: "send: the producer has no client instance",
        })
    }

    fn validate(&self, msg: &Message) -> Result<()> {
        validators::check_message(msg.topic(), msg.body().len(), self.config.max_message_size)?;
        msg.check_user_properties()
    }

    /// The queue `selector` picks for `arg` among the topic's publish queues (Java
    /// `sendSelectImpl`).
    fn select_queue<A: ?Sized, S: MessageQueueSelector<A> + ?Sized>(
        &self,
        instance: &MQClientInstance,
        msg: &Message,
        selector: &S,
        arg: &A,
    ) -> Result<MessageQueue> {
        let info = self.find_publish_info(instance, msg.topic())?;
        let none = || {
            Error::client(
                ClientErrorCode::NO_CODE,
                "select message queue return null.",
            )
        };
        if self.client.namespace().is_none() {
            return selector
                .select(&info.message_queue_list, arg)
                .ok_or_else(none);
        }
        // Java `parsePublishMessageQueues`: the selector sees the queues as its user names them.
        let bare: Vec<MessageQueue> = info
            .message_queue_list
            .iter()
            .map(|q| self.client.queue_without_namespace(q))
            .collect();
        let chosen = selector.select(&bare, arg).ok_or_else(none)?;
        Ok(self.client.queue_with_namespace(&chosen).into_owned())
    }

    /// The time an attempt's hooks report as its beginning: read only when there are hooks.
    fn hook_clock(&self) -> i64 {
        if self.hooks.is_empty() {
            0
        } else {
            crate::common::util::now_millis()
        }
    }

    /// Runs the send hooks: `before` when `outcome` is `None`, else `after` with the attempt's
    /// result (`Ok(None)` for one-way) or error. Free when the producer has no hooks.
    fn run_hooks(
        &self,
        prepared: &PreparedSend,
        mq: &MessageQueue,
        addr: &str,
        mode: CommunicationMode,
        begin_ms: i64,
        outcome: Option<std::result::Result<Option<&SendResult>, &Error>>,
    ) {
        if self.hooks.is_empty() {
            return;
        }
        let Some(messages) = prepared.hook_msgs.as_deref() else {
            return;
        };
        let (send_result, exception) = match outcome {
            None | Some(Ok(None)) => (None, None),
            Some(Ok(r)) => (r, None),
            Some(Err(e)) => (None, Some(e)),
        };
        let ctx = SendMessageContext {
            producer_group: &self.config.group,
            messages,
            message_queue: mq,
            broker_addr: addr,
            communication_mode: mode,
            send_result,
            exception,
            begin_timestamp: begin_ms,
        };
        self.hooks.run(&ctx, outcome.is_some());
    }

    /// The body compressed with the producer's compression type.
    fn compress(&self, body: &[u8]) -> Result<Bytes> {
        let out = match self.config.compress_type {
            CompressionType::Zlib => {
                let mut enc = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(body.len() / 2),
                    flate2::Compression::new(self.config.compress_level),
                );
                enc.write_all(body).map_err(Error::Io)?;
                enc.finish().map_err(Error::Io)?
            }
            CompressionType::Lz4 => {
                let mut enc =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
                enc.write_all(body).map_err(Error::Io)?;
                enc.finish()
                    .map_err(|e| Error::Io(std::io::Error::other(e)))?
            }
            CompressionType::Zstd => {
                ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest)
            }
        };
        Ok(Bytes::from(out))
    }

    /// Sets UNIQ_KEY, compresses, and encodes properties: done once for every attempt.
    fn prepare(&self, msg: &Message) -> Result<PreparedSend> {
        let mut msg = msg.clone();
        let uniq_id = match msg.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
            Some(id) => id.to_owned(),
            None => {
                let id = MessageClientIDSetter::create_uniq_id();
                msg.put_property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &id);
                id
            }
        };
        let mut sys_flag = 0;
        let mut body = msg.body().clone();
        if body.len() >= self.config.compress_msg_body_over_howmuch {
            body = self.compress(&body)?;
            sys_flag |= COMPRESSED_FLAG | self.config.compress_type.compression_flag();
        }
        if msg
            .property(MessageConst::PROPERTY_TRANSACTION_PREPARED)
            .is_some_and(|v| v == "true")
        {
            sys_flag |= 0x4;
        }
        let mut reconsume_times = Some(0);
        let mut max_reconsume_times = None;
        if msg.topic().starts_with("%RETRY%") {
            if let Some(v) = msg.clear_property(MessageConst::PROPERTY_RECONSUME_TIME) {
                reconsume_times = v.parse().ok();
            }
            if let Some(v) = msg.clear_property(MessageConst::PROPERTY_MAX_RECONSUME_TIMES) {
                max_reconsume_times = v.parse().ok();
            }
        }
        Ok(PreparedSend {
            topic: self.client.with_namespace(msg.topic()).into_owned(),
            body,
            sys_flag,
            flag: msg.flag(),
            properties: msg.properties_string(),
            uniq_id,
            batch_ids: None,
            batch: false,
            reconsume_times,
            max_reconsume_times,
            hook_msgs: (!self.hooks.is_empty()).then(|| vec![msg]),
        })
    }

    fn prepare_batch(&self, msgs: &[Message]) -> Result<PreparedSend> {
        let first = msgs
            .first()
            .ok_or_else(|| Error::client(ClientErrorCode::MESSAGE_ILLEGAL, "the batch is empty"))?;
        let topic = first.topic();
        let wait = first.property(MessageConst::PROPERTY_WAIT_STORE_MSG_OK);
        let mut with_ids = Vec::with_capacity(msgs.len());
        let mut ids = Vec::with_capacity(msgs.len());
        for m in msgs {
            if m.topic() != topic {
                return Err(Error::client(
                    ClientErrorCode::MESSAGE_ILLEGAL,
                    "The topic of the messages in one batch should be the same",
                ));
            }
            if m.topic().starts_with("%RETRY%") {
                return Err(Error::client(
                    ClientErrorCode::MESSAGE_ILLEGAL,
                    "Retry Group is not supported for batching",
                ));
            }
            if m.delay_level() > 0 {
                return Err(Error::client(
                    ClientErrorCode::MESSAGE_ILLEGAL,
                    "TimeDelayLevel is not supported for batching",
                ));
            }
            if m.property(MessageConst::PROPERTY_WAIT_STORE_MSG_OK) != wait {
                return Err(Error::client(
                    ClientErrorCode::MESSAGE_ILLEGAL,
                    "The waitStoreMsgOK of the messages in one batch should the same",
                ));
            }
            self.validate(m)?;
            let mut m = m.clone();
            let id = match m.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
                Some(id) => id.to_owned(),
                None => {
                    let id = MessageClientIDSetter::create_uniq_id();
                    m.put_property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &id);
                    id
                }
            };
            ids.push(id);
            with_ids.push(m);
        }
        let body = MessageDecoder::encode_messages(&with_ids)?;
        validators::check_body(body.len(), self.config.max_message_size)?;
        Ok(PreparedSend {
            topic: self.client.with_namespace(topic).into_owned(),
            body,
            sys_flag: 0,
            flag: 0,
            properties: String::new(),
            uniq_id: ids.join(","),
            batch_ids: Some(ids.into()),
            batch: true,
            reconsume_times: Some(0),
            max_reconsume_times: None,
            hook_msgs: (!self.hooks.is_empty()).then_some(with_ids),
        })
    }

    /// The cached publish info for `topic`, refreshed from the name server when missing, and
    /// borrowed from the auto-create topic when the topic has no route yet.
    fn find_publish_info(
        &self,
        instance: &MQClientInstance,
        topic: &str,
    ) -> Result<Arc<TopicPublishInfo>> {
        // The route is the namespaced topic's (wrapping twice is wrapping once).
        let topic = &*self.client.with_namespace(topic);
        let usable = |p: &Option<Arc<TopicPublishInfo>>| p.as_ref().is_some_and(|i| i.ok());
        // Why a route query failed, unless it was the topic's expected absence: the name server
        // may refuse the client (ACL), and the caller must learn that rather than "no route".
        let mut failure: Option<Error> = None;
        let mut note = |result: Result<bool>| {
            if let Err(e) = result {
                if failure.is_none() && e.response_code() != Some(ResponseCode::TOPIC_NOT_EXIST) {
                    failure = Some(e);
                }
            }
        };
        let mut info = self.publish_info.read().get(topic).cloned();
        if !usable(&info) {
            self.publish_info
                .write()
                .entry(topic.to_owned())
                .or_insert_with(|| Arc::new(TopicPublishInfo::default()));
            let refreshed = instance.try_update_topic_route_info_from_name_server(topic);
            // A route the client refused is reported as it is, and not replaced by the
            // auto-create topic's route: the topic exists, its route is what is wrong.
            if let Err(e @ Error::Codec(_)) = refreshed {
                return Err(e);
            }
            note(refreshed);
            info = self.publish_info.read().get(topic).cloned();
        }
        let has_route = info.as_ref().is_some_and(|i| i.have_topic_router_info);
        if !has_route || !usable(&info) {
            note(instance.try_update_topic_route_info_from_default(
                topic,
                self.config.default_topic_queue_nums,
            ));
            info = self.publish_info.read().get(topic).cloned();
        }
        match (info, failure) {
            (Some(i), _) if i.ok() => Ok(i),
            (_, Some(e)) => Err(Error::client_caused_by(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("No route info of this topic: {topic}: the route query failed: {e}"),
                e,
            )),
            _ => Err(Error::client(
                ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!(
                    "No route info of this topic: {topic}. The topic does not exist and could not be auto-created (is autoCreateTopicEnable off on the broker, or are the name servers {:?} unreachable?)",
                    instance.remoting().namesrv_addr_list()
                ),
            )),
        }
    }

    fn broker_addr(&self, instance: &MQClientInstance, mq: &MessageQueue) -> Result<String> {
        if let Some(a) = instance.find_broker_address_in_publish(&mq.broker_name) {
            return Ok(a);
        }
        instance.update_topic_route_info_from_name_server(&mq.topic);
        instance
            .find_broker_address_in_publish(&mq.broker_name)
            .ok_or_else(|| {
                Error::client(
                    ClientErrorCode::BROKER_NOT_EXIST_EXCEPTION,
                    format!("The broker[{}] not exist", mq.broker_name),
                )
            })
    }

    fn header(&self, p: &PreparedSend, mq: &MessageQueue) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: self.config.group.clone(),
            topic: p.topic.clone(),
            default_topic: self.config.create_topic_key.clone(),
            default_topic_queue_nums: self.config.default_topic_queue_nums,
            queue_id: mq.queue_id,
            sys_flag: p.sys_flag,
            born_timestamp: crate::common::util::now_millis(),
            flag: p.flag,
            properties: if p.properties.is_empty() {
                None
            } else {
                Some(p.properties.clone())
            },
            reconsume_times: p.reconsume_times,
            unit_mode: false,
            batch: p.batch,
            max_reconsume_times: p.max_reconsume_times,
            bname: Some(mq.broker_name.clone()),
        }
    }

    fn send_default_impl(
        &self,
        instance: &Arc<MQClientInstance>,
        msg: &Message,
        mode: Mode,
    ) -> Result<Option<SendResult>> {
        self.validate(msg)?;
        let prepared = self.prepare(msg)?;
        self.send_prepared_with_retries(instance, &prepared, mode)
    }

    /// Java `sendDefaultImpl`: pick a queue (avoiding the last broker), send, and on a
    /// retryable failure try again, each attempt with its own time budget.
    fn send_prepared_with_retries(
        &self,
        instance: &Arc<MQClientInstance>,
        prepared: &PreparedSend,
        mode: Mode,
    ) -> Result<Option<SendResult>> {
        let info = self.find_publish_info(instance, &prepared.topic)?;
        let times = match mode {
            Mode::Sync => 1 + self.config.retry_times_when_send_failed,
            Mode::Oneway => 1,
        };
        let started = Instant::now();
        let mut last_broker: Option<String> = None;
        let mut brokers_sent = Vec::new();
        let mut last_error: Option<Error> = None;
        // The broker that refused the last attempts with SYSTEM_BUSY, and how many in a row.
        let mut busy: Option<(String, u32)> = None;
        for _ in 0..times {
            let Some(mq) = self
                .fault
                .select_one_message_queue(&info, last_broker.as_deref())
            else {
                break;
            };
            match &busy {
                // Only on the failure path, and only to the broker that just refused: the caller
                // of a sync send is waiting in any case, and the broker needs time to drain.
                Some((broker, n)) if *broker == mq.broker_name => {
                    std::thread::sleep(busy_backoff(*n));
                }
                _ => busy = None,
            }
            last_broker = Some(mq.broker_name.clone());
            brokers_sent.push(mq.broker_name.clone());
            let begin = Instant::now();
            let outcome = self.send_kernel(instance, prepared, &mq, mode);
            let elapsed = begin.elapsed().as_millis() as i64;
            match outcome {
                Ok(result) => {
                    self.fault
                        .update_fault_item(&mq.broker_name, elapsed, false);
                    match result {
                        Some(r)
                            if r.send_status() != SendStatus::SendOk
                                && self.config.retry_another_broker_when_not_store_ok =>
                        {
                            last_error = Some(Error::client(
                                ClientErrorCode::NO_CODE,
                                format!("broker {} answered {:?}", mq.broker_name, r.send_status()),
                            ));
                            continue;
                        }
                        other => return Ok(other),
                    }
                }
                Err(e) => {
                    self.fault.update_fault_item(&mq.broker_name, elapsed, true);
                    // `busy` names this attempt's broker if it is set (reset above otherwise).
                    busy = e
                        .is_system_busy()
                        .then(|| (mq.broker_name.clone(), busy.map_or(0, |(_, n)| n) + 1));
                    let retry = match &e {
                        Error::Broker { code, .. } => {
                            RETRY_RESPONSE_CODES.contains(code)
                                || (mode == Mode::Sync && *code == ResponseCode::SYSTEM_BUSY)
                        }
                        Error::Codec(_) | Error::Config(_) | Error::ServiceState { .. } => false,
                        _ => true,
                    };
                    log::warn!(
                        "send to {} failed ({}), {}: {e}",
                        mq,
                        if retry { "retrying" } else { "not retryable" },
                        instance.client_id()
                    );
                    if !retry {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        let cost = started.elapsed().as_millis();
        // Java's code for the exhausted send: the broker's code, else one by the kind of
        // the last failure. The last error itself is kept as the source.
        let code = match &last_error {
            Some(e) if e.response_code().is_some() => {
                ClientErrorCode::from(e.response_code().expect("checked"))
            }
            Some(e) if e.is_timeout() => ClientErrorCode::ACCESS_BROKER_TIMEOUT,
            _ => ClientErrorCode::CONNECT_BROKER_EXCEPTION,
        };
        let message = format!(
            "Send [{}] times, still failed, cost [{cost}]ms, Topic: {}, BrokersSent: {brokers_sent:?}: {}",
            brokers_sent.len(),
            prepared.topic,
            last_error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no queue could be selected".to_owned())
        );
        Err(match last_error {
            Some(e) => Error::client_caused_by(code, message, e),
            None => Error::client(code, message),
        })
    }

    /// One attempt to one queue (Java `sendKernelImpl`), with the send hooks around it.
    fn send_kernel(
        &self,
        instance: &Arc<MQClientInstance>,
        prepared: &PreparedSend,
        mq: &MessageQueue,
        mode: Mode,
    ) -> Result<Option<SendResult>> {
        let addr = self.broker_addr(instance, mq)?;
        let request = instance
            .api()
            .send_request(&self.header(prepared, mq), prepared.body.clone());
        let comm = mode.communication_mode();
        let begin_ms = self.hook_clock();
        self.run_hooks(prepared, mq, &addr, comm, begin_ms, None);
        let timeout = self.config.send_msg_timeout;
        let result = match mode {
            Mode::Oneway => instance
                .remoting()
                .invoke_oneway(&addr, request, timeout)
                .map(|()| None),
            Mode::Sync => instance
                .remoting()
                .invoke_sync(&addr, request, timeout)
                .and_then(|response| {
                    process_send_response(
                        &mq.broker_name,
                        &self.client.without_namespace(&mq.topic),
                        &addr,
                        response,
                        prepared.uniq_id.clone(),
                        prepared.batch_ids.clone(),
                    )
                })
                .map(Some),
        };
        self.run_hooks(
            prepared,
            mq,
            &addr,
            comm,
            begin_ms,
            Some(result.as_ref().map(Option::as_ref)),
        );
        result
    }
}

impl InnerProducer for DefaultMQProducer {
    fn send_message(&self, msg: &Message) -> Result<()> {
        self.send(msg).map(|_| ())
    }

    /// Marks the producer shut down and releases its client instance without any network
    /// call (the instance itself is shutting down).
    fn shutdown_local(&self) {
        *self.inner.state.lock() = ServiceState::ShutdownAlready;
        self.inner.instance.write().take();
    }
}

impl MQProducerInner for ProducerInner {
    fn publish_topics(&self) -> Vec<String> {
        self.publish_info.read().keys().cloned().collect()
    }

    fn is_publish_topic_need_update(&self, topic: &str) -> bool {
        self.publish_info.read().get(topic).is_none_or(|i| !i.ok())
    }

    fn update_topic_publish_info(&self, topic: &str, info: TopicPublishInfo) {
        let mut table = self.publish_info.write();
        if let Some(old) = table.get(topic) {
            self.fault.forget_brokers_back_in_route(old, &info);
            table.insert(topic.to_owned(), Arc::new(info));
        }
    }

    fn check_transaction_state(
        &self,
        instance: &Arc<MQClientInstance>,
        broker_addr: &str,
        msg: MessageExt,
        header: CheckTransactionStateRequestHeader,
    ) {
        match self.transaction_check.get() {
            Some(h) => h.check_transaction_state(instance, broker_addr, msg, header),
            None => log::warn!(
                "transaction check from {broker_addr} for {}: producer group {} is not a transaction producer",
                msg.msg_id(),
                self.config.group
            ),
        }
    }
}

impl Drop for ProducerInner {
    fn drop(&mut self) {
        if *self.state.get_mut() == ServiceState::Running {
            // Drop must not block on the network: release local resources only. Brokers drop
            // the registration when heartbeats stop.
            log::warn!(
                "producer {} dropped without shutdown(); releasing it locally",
                self.config.group
            );
            if let Some(instance) = self.instance.get_mut().take() {
                let group = self.config.group.clone();
                crate::client::instance::release_from_drop(move || {
                    instance.unregister_producer(
                        &group,
                        false,
                        crate::client::instance::DROP_SHUTDOWN_TIMEOUT,
                    );
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(builder: DefaultMQProducerBuilder) -> Arc<ProducerInner> {
        builder.build().unwrap().inner
    }

    struct Nop;

    impl SendMessageHook for Nop {
        fn hook_name(&self) -> &str {
            "nop"
        }
        fn send_message_before(&self, _: &SendMessageContext<'_>) {}
        fn send_message_after(&self, _: &SendMessageContext<'_>) {}
    }

    #[test]
    fn messages_are_kept_for_hooks_only_when_there_are_hooks() {
        let msg = Message::new("T", "x");
        let batch = [Message::new("T", "a"), Message::new("T", "b")];
        let plain = inner(DefaultMQProducer::builder("pg"));
        assert!(plain.prepare(&msg).unwrap().hook_msgs.is_none());
        assert!(plain.prepare_batch(&batch).unwrap().hook_msgs.is_none());

        let hooked = inner(DefaultMQProducer::builder("pg").send_message_hook(Nop));
        let p = hooked.prepare(&msg).unwrap();
        let kept = p.hook_msgs.as_deref().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].uniq_key(), Some(p.uniq_id.as_str()));
        let p = hooked.prepare_batch(&batch).unwrap();
        let ids: Vec<&str> = p
            .hook_msgs
            .as_deref()
            .unwrap()
            .iter()
            .map(|m| m.uniq_key().unwrap())
            .collect();
        assert_eq!(p.batch_ids.as_deref().unwrap(), ids.as_slice());
        assert_eq!(p.uniq_id, ids.join(","));
    }

    #[test]
    fn each_compression_type_sets_its_flag_and_decompresses() {
        use std::io::Read;
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for t in [
            CompressionType::Zlib,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let p = inner(
                DefaultMQProducer::builder("pg")
                    .compress_type(t)
                    .compress_msg_body_over_howmuch(4096),
            );
            let prepared = p.prepare(&Message::new("T", body.clone())).unwrap();
            assert_eq!(prepared.sys_flag, 0x1 | t.compression_flag(), "{t:?}");
            assert!(prepared.body.len() < body.len() / 2, "{t:?} compresses");
            let mut out = Vec::new();
            let z = &prepared.body[..];
            match t {
                CompressionType::Zlib => flate2::read::ZlibDecoder::new(z).read_to_end(&mut out),
                CompressionType::Lz4 => lz4_flex::frame::FrameDecoder::new(z).read_to_end(&mut out),
                CompressionType::Zstd => ruzstd::decoding::StreamingDecoder::new(z)
                    .unwrap()
                    .read_to_end(&mut out),
            }
            .unwrap();
            assert_eq!(out, body, "{t:?}");
            // Below the threshold nothing is compressed, whatever the type.
            let small = p.prepare(&Message::new("T", vec![7u8; 100])).unwrap();
            assert_eq!(small.sys_flag, 0);
        }
    }

    #[test]
    fn busy_backoff_doubles_up_to_its_bound() {
        let ms = |n| busy_backoff(n).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5)],
            [0, 100, 200, 400, 800, 1000]
        );
        assert_eq!(busy_backoff(u32::MAX), MAX_BUSY_BACKOFF);
    }
}
