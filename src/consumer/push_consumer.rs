//! `DefaultMQPushConsumer`: long-polling pull, rebalance, concurrent consumption, retry and
//! offsets (Java `DefaultMQPushConsumer`, `DefaultMQPushConsumerImpl`, `RebalancePushImpl`).
//!
//! Which thread touches what:
//! - `rmq-rebal` (shared by the client instance) runs [`PushConsumerInner::do_rebalance`]: it
//!   alone adds and removes entries of `process_queue_table`.
//! - `rmq-pull` runs [`PushConsumerInner::pull_message`]: flow control, then an async
//!   `PULL_MESSAGE`; it also times delayed pulls, so they never wait behind `rmq-sched`.
//! - `rmq-cb-N` runs the pull callback: decode, filter, put into the `ProcessQueue`, hand to the
//!   consume pool, re-enqueue the pull.
//! - `rmq-cons-N` run the listener and commit offsets into the offset store.
//! - `rmq-sched` persists offsets and runs the pull watchdog.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::client::api::expect_success;
use crate::client::config::ClientConfig;
use crate::client::heartbeat::{ConsumerData, SubscriptionData};
use crate::client::instance::{MQClientInstance, MQClientManager, MQConsumerInner};
use crate::common::util::now_millis;
use crate::common::{MessageConst, MessageDecoder, MessageExt, MessageQueue, ServiceState};
use crate::consumer::allocate::{AllocateMessageQueueAveragely, AllocateMessageQueueStrategy};
use crate::consumer::consume_concurrently::ConsumeMessageConcurrentlyService;
use crate::consumer::listener::{ConsumeMessageHook, MessageListenerConcurrently};
use crate::consumer::offset_store::{
    LocalFileOffsetStore, OffsetBrokerApi, OffsetStore, ReadOffsetType, RemoteBrokerOffsetStore,
};
use crate::consumer::process_queue::ProcessQueue;
use crate::consumer::stats::ConsumerStats;
use crate::consumer::subscription::{
    build_subscription_data, tag_matches, ConsumeFromWhere, ExpressionType, MessageModel,
};
use crate::error::{Error, Result};
use crate::executor::ThreadPoolExecutor;
use crate::remoting::protocol::header::{
    ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Java `BROKER_SUSPEND_MAX_TIME_MILLIS`.
const BROKER_SUSPEND_MAX_TIME: Duration = Duration::from_secs(15);
/// Java `CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND`.
const CONSUMER_TIMEOUT_WHEN_SUSPEND: Duration = Duration::from_secs(30);
const PULL_DELAY_WHEN_FLOW_CONTROL: Duration = Duration::from_millis(50);
const PULL_DELAY_WHEN_BROKER_FLOW_CONTROL: Duration = Duration::from_millis(20);
const PULL_DELAY_WHEN_SUSPEND: Duration = Duration::from_secs(1);
const OFFSET_ILLEGAL_FIX_DELAY: Duration = Duration::from_secs(10);
/// Java `PULL_MAX_IDLE_TIME`: a queue not pulled for this long is rebuilt by the rebalance.
const PULL_MAX_IDLE: Duration = Duration::from_secs(120);
/// How long a removed queue may wait for its consume requests in flight.
const REMOVE_QUEUE_WAIT: Duration = Duration::from_secs(3);
const SEND_BACK_TIMEOUT: Duration = Duration::from_secs(5);
const OFFSET_RPC_TIMEOUT: Duration = Duration::from_secs(5);
const PULL_SYS_FLAG_COMMIT_OFFSET: i32 = 0x1;
const PULL_SYS_FLAG_SUSPEND: i32 = 0x2;
const PULL_SYS_FLAG_SUBSCRIPTION: i32 = 0x4;

// ---------------------------------------------------------------------------------------------
// Configuration and builder

#[derive(Debug, Clone)]
pub(crate) struct ConsumerConfig {
    pub(crate) group: String,
    pub(crate) message_model: MessageModel,
    pub(crate) consume_from_where: ConsumeFromWhere,
    pub(crate) consume_timestamp: i64,
    pub(crate) consume_thread_min: usize,
    pub(crate) consume_thread_max: usize,
    pub(crate) consume_concurrently_max_span: i64,
    pub(crate) pull_threshold_for_queue: usize,
    pub(crate) pull_threshold_size_for_queue: u64,
    pub(crate) pull_threshold_for_topic: i64,
    pub(crate) pull_threshold_size_for_topic: i64,
    pub(crate) pull_interval: Duration,
    pub(crate) consume_message_batch_max_size: usize,
    pub(crate) pull_batch_size: i32,
    pub(crate) post_subscription_when_pull: bool,
    pub(crate) max_reconsume_times: i32,
    pub(crate) consume_timeout: Duration,
    pub(crate) suspend_current_queue_time: Duration,
    pub(crate) await_termination_when_shutdown: Duration,
    pub(crate) broker_suspend_max_time: Duration,
    pub(crate) consumer_timeout_when_suspend: Duration,
    pub(crate) offset_store_dir: Option<std::path::PathBuf>,
}

/// Builds a [`DefaultMQPushConsumer`]. Every setter documents Java's default.
pub struct DefaultMQPushConsumerBuilder {
    cfg: ConsumerConfig,
    client: ClientConfig,
    subscriptions: Vec<(String, String, ExpressionType)>,
    listener: Option<Arc<dyn MessageListenerConcurrently>>,
    allocate: Arc<dyn AllocateMessageQueueStrategy>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    consume_timestamp_text: Option<String>,
}

impl std::fmt::Debug for DefaultMQPushConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultMQPushConsumerBuilder")
            .field("cfg", &self.cfg)
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $name:ident: $t:ty => $field:ident) => {
        $(#[$m])*
        pub fn $name(mut self, v: $t) -> Self {
            self.cfg.$field = v;
            self
        }
    };
}

impl DefaultMQPushConsumerBuilder {
    crate::client::config::client_config_setters!();

    setter!(
        /// Clustering (default) or broadcasting.
        #[doc(alias = "setMessageModel")]
        message_model: MessageModel => message_model
    );
    setter!(
        /// Where a group without an offset starts. Default: last offset.
        #[doc(alias = "setConsumeFromWhere")]
        consume_from_where: ConsumeFromWhere => consume_from_where
    );
    /// The start time for [`ConsumeFromWhere::Timestamp`], in ms since the epoch. Default:
    /// 30 minutes before the consumer was built.
    pub fn consume_timestamp_millis(mut self, ms: i64) -> Self {
        self.cfg.consume_timestamp = ms;
        self.consume_timestamp_text = None;
        self
    }
    /// The start time for [`ConsumeFromWhere::Timestamp`] in Java's `yyyyMMddHHmmss` form, read
    /// as UTC (Java reads it in the JVM's time zone). `build()` rejects text that does not parse.
    #[doc(alias = "setConsumeTimestamp")]
    pub fn consume_timestamp(mut self, yyyymmddhhmmss: impl Into<String>) -> Self {
        self.consume_timestamp_text = Some(yyyymmddhhmmss.into());
        self
    }
    /// The consume pool's core and maximum size. Default: 20 and 20; the pool really grows to
    /// `max` under a backlog and shrinks back after a minute idle.
    #[doc(alias("setConsumeThreadMin", "setConsumeThreadMax"))]
    pub fn consume_threads(mut self, min: usize, max: usize) -> Self {
        self.cfg.consume_thread_min = min;
        self.cfg.consume_thread_max = max;
        self
    }
    setter!(
        /// Largest offset span cached per queue before pulling pauses. Default: 2000.
        #[doc(alias = "setConsumeConcurrentlyMaxSpan")]
        consume_concurrently_max_span: i64 => consume_concurrently_max_span
    );
    setter!(
        /// Messages cached per queue before pulling pauses. Default: 1000.
        #[doc(alias = "setPullThresholdForQueue")]
        pull_threshold_for_queue: usize => pull_threshold_for_queue
    );
    setter!(
        /// MiB cached per queue before pulling pauses. Default: 100.
        #[doc(alias = "setPullThresholdSizeForQueue")]
        pull_threshold_size_for_queue: u64 => pull_threshold_size_for_queue
    );
    setter!(
        /// Messages cached per topic, split over its queues; -1 (default) is off.
        #[doc(alias = "setPullThresholdForTopic")]
        pull_threshold_for_topic: i64 => pull_threshold_for_topic
    );
    setter!(
        /// MiB cached per topic, split over its queues; -1 (default) is off.
        #[doc(alias = "setPullThresholdSizeForTopic")]
        pull_threshold_size_for_topic: i64 => pull_threshold_size_for_topic
    );
    setter!(
        /// Pause between pulls of one queue. Default: 0.
        #[doc(alias = "setPullInterval")]
        pull_interval: Duration => pull_interval
    );
    setter!(
        /// Messages per listener call. Default: 1.
        #[doc(alias = "setConsumeMessageBatchMaxSize")]
        consume_message_batch_max_size: usize => consume_message_batch_max_size
    );
    setter!(
        /// Messages per pull. Default: 32.
        #[doc(alias = "setPullBatchSize")]
        pull_batch_size: i32 => pull_batch_size
    );
    setter!(
        /// Send the subscription with every pull. Default: false.
        #[doc(alias = "setPostSubscriptionWhenPull")]
        post_subscription_when_pull: bool => post_subscription_when_pull
    );
    setter!(
        /// Deliveries before a message goes to the dead-letter queue; -1 (default) means 16.
        #[doc(alias = "setMaxReconsumeTimes")]
        max_reconsume_times: i32 => max_reconsume_times
    );
    setter!(
        /// A message consumed for longer than this is sent back. Default: 15 minutes.
        #[doc(alias = "setConsumeTimeout")]
        consume_timeout: Duration => consume_timeout
    );
    setter!(
        /// How long an orderly listener's `SUSPEND_CURRENT_QUEUE_A_MOMENT` pauses its queue.
        /// Default: 1 s, clamped to 10 ms..30 s. Orderly consumption reads it; concurrent
        /// consumption does not use it.
        #[doc(alias = "setSuspendCurrentQueueTimeMillis")]
        suspend_current_queue_time: Duration => suspend_current_queue_time
    );
    setter!(
        /// How long `shutdown` waits for running listeners. Default: 0 in Java; here the
        /// `shutdown(timeout)` argument bounds the wait.
        #[doc(alias = "setAwaitTerminationMillisWhenShutdown")]
        await_termination_when_shutdown: Duration => await_termination_when_shutdown
    );
    setter!(
        /// How long the broker holds a long poll. Default: 15 s. Must be shorter than the
        /// pull timeout.
        broker_suspend_max_time: Duration => broker_suspend_max_time
    );
    setter!(
        /// Timeout of a long-polling pull. Default: 30 s.
        consumer_timeout_when_suspend: Duration => consumer_timeout_when_suspend
    );
    /// Directory of the broadcasting offset file. Default: `$HOME/.rocketmq_offsets` (Java
    /// `rocketmq.client.localOffsetStoreDir`).
    pub fn offset_store_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cfg.offset_store_dir = Some(dir.into());
        self
    }
    /// The queue allocation strategy. Default: averagely.
    #[doc(alias = "setAllocateMessageQueueStrategy")]
    pub fn allocate_strategy(mut self, s: impl AllocateMessageQueueStrategy + 'static) -> Self {
        self.allocate = Arc::new(s);
        self
    }
    /// Subscribes to `topic` with a tag expression: `"*"` or `"TagA || TagB"`.
    pub fn subscribe(mut self, topic: impl Into<String>, expr: impl Into<String>) -> Self {
        self.subscriptions
            .push((topic.into(), expr.into(), ExpressionType::Tag));
        self
    }
    /// Subscribes to `topic` with an SQL92 expression evaluated by the broker.
    pub fn subscribe_sql92(mut self, topic: impl Into<String>, sql: impl Into<String>) -> Self {
        self.subscriptions
            .push((topic.into(), sql.into(), ExpressionType::Sql92));
        self
    }
    /// The listener: a [`MessageListenerConcurrently`] or a closure
    /// `Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus`.
    #[doc(alias = "registerMessageListener")]
    pub fn register_message_listener_concurrently(
        mut self,
        listener: impl MessageListenerConcurrently,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }
    /// Adds a hook run before and after every listener call.
    #[doc(alias = "registerConsumeMessageHook")]
    pub fn consume_message_hook(mut self, hook: impl ConsumeMessageHook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Checks every setting (Java `checkConfig`) and builds the consumer (not started).
    pub fn build(mut self) -> Result<DefaultMQPushConsumer> {
        if let Some(text) = &self.consume_timestamp_text {
            self.cfg.consume_timestamp = parse_consume_timestamp(text)?;
        }
        check_config(&self.cfg)?;
        let listener = self.listener.ok_or_else(|| {
            Error::config("messageListener is null: call register_message_listener_concurrently")
        })?;
        let mut subs = HashMap::new();
        for (topic, expr, kind) in &self.subscriptions {
            crate::producer::validators::check_topic(topic)?;
            subs.insert(
                topic.clone(),
                Arc::new(build_subscription_data(topic, expr, *kind)?),
            );
        }
        let cfg = self.cfg;
        let client = self.client;
        let allocate = self.allocate;
        let hooks = self.hooks;
        let inner = Arc::new_cyclic(|me| PushConsumerInner {
            me: me.clone(),
            cfg,
            client,
            state: Mutex::new(ServiceState::CreateJust),
            paused: AtomicBool::new(false),
            instance: RwLock::new(None),
            subscription_inner: RwLock::new(subs),
            topic_subscribe_info: RwLock::new(HashMap::new()),
            process_queue_table: RwLock::new(HashMap::new()),
            offset_store: RwLock::new(None),
            consume_service: RwLock::new(None),
            listener,
            hooks,
            allocate,
            pull_from_which_node: Mutex::new(HashMap::new()),
            stats: ConsumerStats::default(),
            start_time: now_millis(),
            tasks: Mutex::new(Vec::new()),
        });
        Ok(DefaultMQPushConsumer { inner })
    }
}

/// Parses Java's `yyyyMMddHHmmss` consume timestamp as UTC milliseconds since the epoch.
fn parse_consume_timestamp(text: &str) -> Result<i64> {
    let bad = || {
        Error::config(format!(
            "consumeTimestamp {text:?} is not a yyyyMMddHHmmss time (e.g. 20261124170000)"
        ))
    };
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(8..10)?, num(10..12)?, num(12..14)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 59
    {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), counted from 1970-01-01.
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000)
}

fn check_config(c: &ConsumerConfig) -> Result<()> {
    crate::producer::validators::check_group(&c.group)?;
    let range = |name: &str, v: i64, lo: i64, hi: i64| -> Result<()> {
        if v < lo || v > hi {
            Err(Error::config(format!(
                "{name} out of range [{lo}, {hi}]: {v}"
            )))
        } else {
            Ok(())
        }
    };
    range("consumeThreadMin", c.consume_thread_min as i64, 1, 1000)?;
    range("consumeThreadMax", c.consume_thread_max as i64, 1, 1000)?;
    if c.consume_thread_min > c.consume_thread_max {
        return Err(Error::config(format!(
            "consumeThreadMin ({}) is larger than consumeThreadMax ({})",
            c.consume_thread_min, c.consume_thread_max
        )));
    }
    range(
        "consumeConcurrentlyMaxSpan",
        c.consume_concurrently_max_span,
        1,
        65535,
    )?;
    range(
        "pullThresholdForQueue",
        c.pull_threshold_for_queue as i64,
        1,
        65535,
    )?;
    range(
        "pullThresholdSizeForQueue",
        c.pull_threshold_size_for_queue as i64,
        1,
        1024,
    )?;
    if c.pull_threshold_for_topic != -1 {
        range(
            "pullThresholdForTopic",
            c.pull_threshold_for_topic,
            1,
            6_553_500,
        )?;
    }
    if c.pull_threshold_size_for_topic != -1 {
        range(
            "pullThresholdSizeForTopic",
            c.pull_threshold_size_for_topic,
            1,
            102_400,
        )?;
    }
    range("pullInterval", c.pull_interval.as_millis() as i64, 0, 65535)?;
    range(
        "consumeMessageBatchMaxSize",
        c.consume_message_batch_max_size as i64,
        1,
        1024,
    )?;
    range("pullBatchSize", c.pull_batch_size as i64, 1, 1024)?;
    if c.suspend_current_queue_time < Duration::from_millis(10)
        || c.suspend_current_queue_time > Duration::from_secs(30)
    {
        return Err(Error::config(format!(
            "suspendCurrentQueueTimeMillis out of range [10 ms, 30 s]: {:?}",
            c.suspend_current_queue_time
        )));
    }
    if c.consume_timeout.is_zero() {
        return Err(Error::config("consumeTimeout must be positive"));
    }
    if c.broker_suspend_max_time >= c.consumer_timeout_when_suspend {
        return Err(Error::config(format!(
            "the long-polling suspend time ({:?}) must be shorter than the pull timeout ({:?}), or every idle pull times out",
            c.broker_suspend_max_time, c.consumer_timeout_when_suspend
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The public handle

/// A push consumer (Java `DefaultMQPushConsumer` and `DefaultMQPushConsumerImpl`).
///
/// ```no_run
/// use rocketmq_sync::consumer::{ConsumeConcurrentlyStatus, DefaultMQPushConsumer};
///
/// let consumer = DefaultMQPushConsumer::builder("my_group")
///     .namesrv_addr("127.0.0.1:9876")
///     .subscribe("TopicTest", "*")
///     .register_message_listener_concurrently(|msgs: &[rocketmq_sync::common::MessageExt], _ctx: &mut _| {
///         for m in msgs {
///             println!("{} {:?}", m.msg_id(), m.body());
///         }
///         ConsumeConcurrentlyStatus::ConsumeSuccess
///     })
///     .build()?;
/// consumer.start()?;
/// // ...
/// consumer.shutdown(std::time::Duration::from_secs(10))?;
/// # Ok::<(), rocketmq_sync::Error>(())
/// ```
#[doc(alias = "DefaultMQPushConsumerImpl")]
#[derive(Debug, Clone)]
pub struct DefaultMQPushConsumer {
    inner: Arc<PushConsumerInner>,
}

impl DefaultMQPushConsumer {
    /// A builder for a consumer of `group`, with Java's defaults.
    pub fn builder(group: impl Into<String>) -> DefaultMQPushConsumerBuilder {
        DefaultMQPushConsumerBuilder {
            cfg: ConsumerConfig {
                group: group.into(),
                message_model: MessageModel::Clustering,
                consume_from_where: ConsumeFromWhere::LastOffset,
                consume_timestamp: now_millis() - 30 * 60 * 1000,
                consume_thread_min: 20,
                consume_thread_max: 20,
                consume_concurrently_max_span: 2000,
                pull_threshold_for_queue: 1000,
                pull_threshold_size_for_queue: 100,
                pull_threshold_for_topic: -1,
                pull_threshold_size_for_topic: -1,
                pull_interval: Duration::ZERO,
                consume_message_batch_max_size: 1,
                pull_batch_size: 32,
                post_subscription_when_pull: false,
                max_reconsume_times: -1,
                consume_timeout: Duration::from_secs(15 * 60),
                suspend_current_queue_time: Duration::from_secs(1),
                await_termination_when_shutdown: Duration::ZERO,
                broker_suspend_max_time: BROKER_SUSPEND_MAX_TIME,
                consumer_timeout_when_suspend: CONSUMER_TIMEOUT_WHEN_SUSPEND,
                offset_store_dir: None,
            },
            client: ClientConfig::default(),
            subscriptions: Vec::new(),
            listener: None,
            allocate: Arc::new(AllocateMessageQueueAveragely),
            hooks: Vec::new(),
            consume_timestamp_text: None,
        }
    }

    /// The consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.inner.cfg.group
    }

    /// The lifecycle state.
    pub fn service_state(&self) -> ServiceState {
        *self.inner.state.lock()
    }

    /// The client id, once started.
    pub fn client_id(&self) -> Option<String> {
        self.inner
            .instance
            .read()
            .as_ref()
            .map(|i| i.client_id().to_owned())
    }

    /// Starts consuming. Starting twice is an error.
    pub fn start(&self) -> Result<()> {
        self.inner.start()
    }

    /// Stops consuming: no new pulls, running listeners finish (bounded by `timeout`), offsets
    /// are persisted, the group is unregistered from the brokers. Idempotent.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.inner.shutdown(timeout)
    }

    /// Subscribes to another topic (takes effect at the next rebalance; a heartbeat is sent
    /// at once).
    pub fn subscribe(&self, topic: &str, expr: &str) -> Result<()> {
        crate::producer::validators::check_topic(topic)?;
        let sd = build_subscription_data(topic, expr, ExpressionType::Tag)?;
        self.inner
            .subscription_inner
            .write()
            .insert(topic.to_owned(), Arc::new(sd));
        if let Some(i) = self.inner.instance.read().clone() {
            i.update_topic_route_info_from_name_server(topic);
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
        Ok(())
    }

    /// Stops consuming `topic` at the next rebalance.
    pub fn unsubscribe(&self, topic: &str) {
        self.inner.subscription_inner.write().remove(topic);
        if let Some(i) = self.inner.instance.read().clone() {
            i.send_heartbeat_to_all_broker_now();
            i.rebalance_immediately();
        }
    }

    /// Pauses pulling (Java `suspend`); cached messages are still consumed.
    pub fn suspend(&self) {
        self.inner.paused.store(true, Ordering::Release);
        log::info!("suspend this consumer, {}", self.inner.cfg.group);
    }

    /// Resumes pulling and rebalances at once.
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::Release);
        if let Some(i) = self.inner.instance.read().clone() {
            i.rebalance_immediately();
        }
        log::info!("resume this consumer, {}", self.inner.cfg.group);
    }

    /// The queues this consumer holds now, with their state.
    pub fn queue_stats(&self) -> Vec<QueueStat> {
        self.inner.queue_stats()
    }

    /// Consume statistics per topic (Java `ConsumeStatus`).
    pub fn consume_stats(&self) -> HashMap<String, crate::consumer::stats::ConsumeStatus> {
        self.inner.stats.snapshot()
    }

    /// Threads of the consume pool right now.
    pub fn consume_pool_size(&self) -> usize {
        self.inner
            .consume_service
            .read()
            .as_ref()
            .map_or(0, |c| c.pool().pool_size())
    }
}

/// One held queue as seen by [`DefaultMQPushConsumer::queue_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStat {
    /// The queue.
    pub message_queue: MessageQueue,
    /// Messages cached (pulled, not yet consumed).
    pub cached_msg_count: usize,
    /// Bytes cached.
    pub cached_msg_size: u64,
    /// Offset span of the cache.
    pub span: i64,
    /// The offset committed locally (next to consume), -1 if none.
    pub commit_offset: i64,
    /// The broker's max offset at the last pull minus the next pull offset.
    pub lag: i64,
}

// ---------------------------------------------------------------------------------------------
// Per-queue state and pull requests

/// A held queue: its `ProcessQueue` plus what the pull and consume paths track.
pub(crate) struct QueueState {
    pub(crate) mq: MessageQueue,
    pub(crate) pq: ProcessQueue<MessageExt>,
    /// Live `PullRequest`s for this queue: exactly one while it is held (the watchdog checks).
    pub(crate) live_pulls: AtomicUsize,
    /// Next offset to pull, mirrored from the pull request for the watchdog and lag.
    pub(crate) next_offset: AtomicI64,
    /// The broker's max offset seen at the last pull.
    pub(crate) broker_max_offset: AtomicI64,
    /// Consume requests submitted and not yet finished; `idle` is notified when it drops to 0.
    inflight_tasks: Mutex<usize>,
    idle: parking_lot::Condvar,
    /// Start time of each running consume task, by its first offset: (last offset, start ms).
    running: Mutex<BTreeMap<i64, (i64, i64)>>,
    /// Pulling stopped (the queue is being removed); consume results still count.
    pub(crate) pull_stopped: AtomicBool,
}

impl QueueState {
    fn new(mq: MessageQueue, next_offset: i64) -> Self {
        QueueState {
            mq,
            pq: ProcessQueue::new(),
            live_pulls: AtomicUsize::new(0),
            next_offset: AtomicI64::new(next_offset),
            broker_max_offset: AtomicI64::new(-1),
            inflight_tasks: Mutex::new(0),
            idle: parking_lot::Condvar::new(),
            running: Mutex::new(BTreeMap::new()),
            pull_stopped: AtomicBool::new(false),
        }
    }

    /// A consume request of this queue was handed to the pool (once per request, not per
    /// message).
    pub(crate) fn task_submitted(&self) {
        *self.inflight_tasks.lock() += 1;
    }

    /// A consume request of this queue ended, however it ended.
    pub(crate) fn task_done(&self) {
        let mut n = self.inflight_tasks.lock();
        *n -= 1;
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// Consume requests in flight.
    pub(crate) fn inflight(&self) -> usize {
        *self.inflight_tasks.lock()
    }

    /// Waits until no consume request of this queue is in flight, or `deadline`.
    fn wait_idle(&self, deadline: Instant) {
        let mut n = self.inflight_tasks.lock();
        while *n > 0 {
            if self.idle.wait_until(&mut n, deadline).timed_out() {
                break;
            }
        }
    }

    pub(crate) fn task_started(&self, first: i64, last: i64) {
        self.running.lock().insert(first, (last, now_millis()));
    }

    pub(crate) fn task_finished(&self, first: i64) {
        self.running.lock().remove(&first);
    }

    /// When the task covering `offset` started, if one is running.
    fn consume_started(&self, offset: i64) -> Option<i64> {
        let running = self.running.lock();
        running
            .range(..=offset)
            .next_back()
            .filter(|(_, (last, _))| *last >= offset)
            .map(|(_, (_, start))| *start)
    }
}

/// A pull of one queue (Java `PullRequest`). Exactly one lives per held queue: it moves from
/// the pull thread to the callback and back, and dropping it anywhere is counted.
pub(crate) struct PullRequest {
    consumer: Weak<PushConsumerInner>,
    state: Arc<QueueState>,
    next_offset: i64,
}

impl PullRequest {
    fn new(consumer: Weak<PushConsumerInner>, state: Arc<QueueState>, next_offset: i64) -> Self {
        state.live_pulls.fetch_add(1, Ordering::AcqRel);
        PullRequest {
            consumer,
            state,
            next_offset,
        }
    }
}

impl crate::client::pull_service::PullTask for PullRequest {
    /// Runs the pull (on `rmq-pull`). If it panics, the request was lost in the unwinding (or
    /// already handed to a callback): the queue gets a new pull later unless it still has one.
    fn run(self: Box<Self>) {
        let Some(c) = self.consumer.upgrade() else {
            return;
        };
        let state = self.state.clone();
        let pull = std::panic::AssertUnwindSafe(|| c.pull_message(*self));
        if let Err(payload) = std::panic::catch_unwind(pull) {
            log::error!(
                "the pull of {} panicked: {}",
                state.mq,
                crate::executor::panic_message(&*payload)
            );
            c.revive_pull(&state, c.client.pull_time_delay_when_exception);
        }
    }
}

impl Drop for PullRequest {
    fn drop(&mut self) {
        self.state.live_pulls.fetch_sub(1, Ordering::AcqRel);
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer's machinery

pub(crate) struct PushConsumerInner {
    me: Weak<PushConsumerInner>,
    pub(crate) cfg: ConsumerConfig,
    client: ClientConfig,
    state: Mutex<ServiceState>,
    paused: AtomicBool,
    instance: RwLock<Option<Arc<MQClientInstance>>>,
    subscription_inner: RwLock<HashMap<String, Arc<SubscriptionData>>>,
    topic_subscribe_info: RwLock<HashMap<String, Vec<MessageQueue>>>,
    process_queue_table: RwLock<HashMap<MessageQueue, Arc<QueueState>>>,
    offset_store: RwLock<Option<Arc<dyn OffsetStore>>>,
    consume_service: RwLock<Option<Arc<ConsumeMessageConcurrentlyService>>>,
    listener: Arc<dyn MessageListenerConcurrently>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    allocate: Arc<dyn AllocateMessageQueueStrategy>,
    pull_from_which_node: Mutex<HashMap<MessageQueue, i64>>,
    stats: ConsumerStats,
    start_time: i64,
    /// This consumer's periodic tasks on the shared scheduler, cancelled at shutdown.
    tasks: Mutex<Vec<crate::executor::ScheduledHandle>>,
}

impl std::fmt::Debug for PushConsumerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultMQPushConsumer")
            .field("group", &self.cfg.group)
            .field("state", &*self.state.lock())
            .finish()
    }
}

impl crate::consumer::process_queue::QueuedMessage for MessageExt {
    fn queue_offset(&self) -> i64 {
        MessageExt::queue_offset(self)
    }
    fn body_len(&self) -> usize {
        self.body().len()
    }
    fn max_offset_property(&self) -> Option<i64> {
        self.property(MessageConst::PROPERTY_MAX_OFFSET)
            .and_then(|v| v.parse().ok())
    }
    fn consume_start_time(&self) -> Option<i64> {
        self.property(MessageConst::PROPERTY_CONSUME_START_TIMESTAMP)
            .and_then(|v| v.parse().ok())
    }
}

/// Offsets to and from the broker for the remote offset store.
struct BrokerOffsetApi {
    instance: Weak<MQClientInstance>,
    group: String,
}

impl OffsetBrokerApi for BrokerOffsetApi {
    fn query_consumer_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let instance = self.instance.upgrade().ok_or_else(shut_down)?;
        let addr = instance.master_addr_refreshing(mq)?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: self.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            bname: Some(mq.broker_name.clone()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &header,
        ));
        let resp = expect_success(
            instance
                .remoting()
                .invoke_sync(&addr, req, OFFSET_RPC_TIMEOUT)?,
            &addr,
        )?;
        let h: QueryConsumerOffsetResponseHeader = resp.decode_header()?;
        Ok(h.offset)
    }

    fn update_consumer_offset(&self, mq: &MessageQueue, offset: i64, oneway: bool) -> Result<()> {
        let instance = self.instance.upgrade().ok_or_else(shut_down)?;
        let addr = instance.master_addr_refreshing(mq)?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: self.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
            bname: Some(mq.broker_name.clone()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &header,
        ));
        if oneway {
            instance
                .remoting()
                .invoke_oneway(&addr, req, OFFSET_RPC_TIMEOUT)
        } else {
            let resp = instance
                .remoting()
                .invoke_sync(&addr, req, OFFSET_RPC_TIMEOUT)?;
            expect_success(resp, &addr).map(|_| ())
        }
    }
}

fn shut_down() -> Error {
    Error::ServiceState {
        state: ServiceState::ShutdownAlready,
        action: "reach the broker: the client instance is shut down",
    }
}

impl PushConsumerInner {
    pub(crate) fn stats(&self) -> &ConsumerStats {
        &self.stats
    }

    pub(crate) fn offset_store(&self) -> Arc<dyn OffsetStore> {
        self.offset_store
            .read()
            .clone()
            .expect("the offset store exists once started")
    }

    fn instance(&self) -> Option<Arc<MQClientInstance>> {
        self.instance.read().clone()
    }

    pub(crate) fn retry_topic(&self) -> String {
        format!("%RETRY%{}", self.cfg.group)
    }

    /// Runs `task` after `delay` on the client's scheduler.
    pub(crate) fn schedule(&self, delay: Duration, task: impl FnOnce() + Send + 'static) {
        if let Some(i) = self.instance() {
            i.schedule(delay, task);
        }
    }

    fn start(&self) -> Result<()> {
        let mut state = self.state.lock();
        if *state != ServiceState::CreateJust {
            return Err(Error::ServiceState {
                state: *state,
                action: "start the consumer",
            });
        }
        let result = self.start_inner();
        *state = if result.is_ok() {
            ServiceState::Running
        } else {
            ServiceState::StartFailed
        };
        drop(state);
        match result {
            Ok(()) => {
                let instance = self.instance().expect("started");
                for topic in self.subscription_inner.read().keys() {
                    instance.update_topic_route_info_from_name_server(topic);
                }
                instance.send_heartbeat_to_all_broker_now();
                instance.rebalance_immediately();
                log::info!(
                    "the consumer [{}] started ({:?}), client id {}",
                    self.cfg.group,
                    self.cfg.message_model,
                    instance.client_id()
                );
                Ok(())
            }
            Err(e) => {
                if let Some(i) = self.instance.write().take() {
                    i.unregister_consumer(
                        &self.cfg.group,
                        false,
                        crate::client::instance::DROP_SHUTDOWN_TIMEOUT,
                    );
                }
                Err(e)
            }
        }
    }

    fn start_inner(&self) -> Result<()> {
        if self.subscription_inner.read().is_empty() {
            return Err(Error::config(
                "the consumer subscribes to no topic: call subscribe() before start()",
            ));
        }
        if self.cfg.message_model == MessageModel::Clustering {
            let retry = self.retry_topic();
            let sd = build_subscription_data(&retry, "*", ExpressionType::Tag)?;
            self.subscription_inner.write().insert(retry, Arc::new(sd));
        }
        let weak: Weak<dyn MQConsumerInner> = self.me.clone() as Weak<dyn MQConsumerInner>;
        let instance = MQClientManager::register_consumer(&self.client, &self.cfg.group, weak)?;
        *self.instance.write() = Some(instance.clone());

        let store: Arc<dyn OffsetStore> = match self.cfg.message_model {
            MessageModel::Clustering => Arc::new(RemoteBrokerOffsetStore::new(
                self.cfg.group.clone(),
                BrokerOffsetApi {
                    instance: Arc::downgrade(&instance),
                    group: self.cfg.group.clone(),
                },
            )),
            MessageModel::Broadcasting => Arc::new(LocalFileOffsetStore::new(
                instance.client_id(),
                &self.cfg.group,
                self.cfg.offset_store_dir.clone(),
            )),
        };
        store.load()?;
        *self.offset_store.write() = Some(store);

        let pool = ThreadPoolExecutor::builder()
            .name(format!("ConsumeMessageThread_{}", self.cfg.group))
            .core_threads(self.cfg.consume_thread_min)
            .max_threads(self.cfg.consume_thread_max)
            .keep_alive(Duration::from_secs(60))
            .thread_name(|n| format!("rmq-cons-{n}"))
            .build()
            .map_err(|e| Error::config(e.to_string()))?;
        let service = Arc::new(ConsumeMessageConcurrentlyService::new(
            self.me.clone(),
            self.cfg.group.clone(),
            self.listener.clone(),
            self.hooks.clone(),
            pool,
            self.cfg.consume_message_batch_max_size,
            self.cfg.message_model,
        ));
        *self.consume_service.write() = Some(service);

        // Consume-timeout sweep (Java cleanExpireMsg), and the persist of offsets.
        let me = self.me.clone();
        let period = self.cfg.consume_timeout;
        let mut tasks = Vec::new();
        tasks.push(instance.schedule_periodic(period, period, move || {
            if let Some(me) = me.upgrade() {
                me.clean_expired_messages();
            }
        })?);
        let me = self.me.clone();
        let period = self.client.persist_consumer_offset_interval;
        tasks.push(instance.schedule_periodic(
            Duration::from_secs(10).min(period * 2),
            period,
            move || {
                if let Some(me) = me.upgrade() {
                    me.persist_consumer_offset();
                }
            },
        )?);
        // The pull watchdog: every held queue has exactly one live pull request.
        let me = self.me.clone();
        tasks.push(instance.schedule_periodic(
            Duration::from_secs(10),
            Duration::from_secs(10),
            move || {
                if let Some(me) = me.upgrade() {
                    me.check_pulls();
                }
            },
        )?);
        *self.tasks.lock() = tasks;
        Ok(())
    }

    fn shutdown(&self, timeout: Duration) -> Result<()> {
        {
            let mut state = self.state.lock();
            match *state {
                ServiceState::Running => *state = ServiceState::ShutdownAlready,
                ServiceState::CreateJust => {
                    *state = ServiceState::ShutdownAlready;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
        let deadline = Instant::now() + timeout;
        for t in self.tasks.lock().drain(..) {
            t.cancel();
        }
        // 1. Stop pulling (the rebalance skips a consumer that is not running).
        let states: Vec<Arc<QueueState>> =
            self.process_queue_table.read().values().cloned().collect();
        for s in &states {
            s.pull_stopped.store(true, Ordering::Release);
        }
        // 2. Let running listeners finish and commit, bounded.
        let mut unfinished = Vec::new();
        if let Some(cs) = self.consume_service.read().clone() {
            unfinished.extend(cs.shutdown(deadline.saturating_duration_since(Instant::now())));
        }
        for s in &states {
            s.pq.set_dropped(true);
        }
        // 3. Persist offsets, 4. unregister.
        self.persist_consumer_offset();
        let instance = self.instance.write().take();
        if let Some(i) = instance {
            let left = deadline.saturating_duration_since(Instant::now());
            unfinished.extend(i.unregister_consumer(&self.cfg.group, true, left));
        }
        self.process_queue_table.write().clear();
        log::info!("the consumer [{}] shut down", self.cfg.group);
        if unfinished.is_empty() {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout {
                timeout,
                threads: unfinished,
            })
        }
    }

    fn is_running(&self) -> bool {
        *self.state.lock() == ServiceState::Running
    }

    // -----------------------------------------------------------------------------------------
    // Pulling

    fn pull_later(&self, req: PullRequest, delay: Duration) {
        match self.instance() {
            Some(i) => i.execute_pull_request_later(req, delay),
            None => drop(req),
        }
    }

    fn pull_now(&self, req: PullRequest) {
        match self.instance() {
            Some(i) => i.execute_pull_request_immediately(req),
            None => drop(req),
        }
    }

    /// Java `DefaultMQPushConsumerImpl.pullMessage`: flow control, then an async pull.
    pub(crate) fn pull_message(&self, req: PullRequest) {
        let st = req.state.clone();
        if st.pq.is_dropped() || st.pull_stopped.load(Ordering::Acquire) {
            log::debug!("the pull request of {} is dropped", st.mq);
            return;
        }
        let now = now_millis();
        st.pq.set_last_pull_timestamp(now);
        if !self.is_running() {
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        }
        if self.paused.load(Ordering::Acquire) {
            self.pull_later(req, PULL_DELAY_WHEN_SUSPEND);
            return;
        }
        let flow = st.pq.flow_stats();
        let count = flow.count.max(0) as usize;
        let size_mib = flow.size.max(0) as u64 / (1024 * 1024);
        let (count_limit, size_limit) = self.queue_thresholds();
        if count > count_limit {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        if size_mib > size_limit {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        if flow.span > self.cfg.consume_concurrently_max_span {
            self.stats.flow_controlled();
            self.pull_later(req, PULL_DELAY_WHEN_FLOW_CONTROL);
            return;
        }
        let Some(sd) = self.subscription_inner.read().get(&st.mq.topic).cloned() else {
            log::warn!("find the consumer's subscription failed, {}", st.mq);
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        };
        let Some(instance) = self.instance() else {
            return;
        };
        let mut commit_offset = 0;
        let mut sys_flag = PULL_SYS_FLAG_SUSPEND;
        if self.cfg.message_model == MessageModel::Clustering {
            let o = self
                .offset_store()
                .read_offset(&st.mq, ReadOffsetType::ReadFromMemory);
            if o > 0 {
                commit_offset = o;
                sys_flag |= PULL_SYS_FLAG_COMMIT_OFFSET;
            }
        }
        if self.cfg.post_subscription_when_pull {
            sys_flag |= PULL_SYS_FLAG_SUBSCRIPTION;
        }
        let node = self
            .pull_from_which_node
            .lock()
            .get(&st.mq)
            .copied()
            .unwrap_or(0);
        let Some((addr, is_slave)) = instance.find_broker_address_in_subscribe(&st.mq, node) else {
            log::warn!(
                "the broker[{}] not exist; refreshing the route",
                st.mq.broker_name
            );
            instance.update_topic_route_info_from_name_server(&st.mq.topic);
            self.pull_later(req, self.client.pull_time_delay_when_exception);
            return;
        };
        if is_slave {
            sys_flag &= !PULL_SYS_FLAG_COMMIT_OFFSET;
        }
        let header = PullMessageRequestHeader {
            consumer_group: self.cfg.group.clone(),
            topic: st.mq.topic.clone(),
            queue_id: st.mq.queue_id,
            queue_offset: req.next_offset,
            max_msg_nums: self.cfg.pull_batch_size,
            sys_flag,
            commit_offset,
            suspend_timeout_millis: self.cfg.broker_suspend_max_time.as_millis() as i64,
            subscription: (sys_flag & PULL_SYS_FLAG_SUBSCRIPTION != 0)
                .then(|| sd.sub_string.clone()),
            sub_version: sd.sub_version,
            expression_type: Some(sd.expression_type.clone()),
            bname: Some(st.mq.broker_name.clone()),
        };
        let request = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::PULL_MESSAGE,
            &header,
        ));
        // The callback holds the consumer weakly: a long poll in flight must not keep a
        // consumer alive that its user dropped.
        let me = self.me.clone();
        let begin = Instant::now();
        // The request travels into the callback; if the call is refused, it comes back.
        let slot = Arc::new(Mutex::new(Some(req)));
        let cb_slot = slot.clone();
        let sent = instance.remoting().invoke_async(
            &addr,
            request,
            self.cfg.consumer_timeout_when_suspend,
            move |resp| {
                let req = cb_slot.lock().take();
                if let (Some(req), Some(me)) = (req, me.upgrade()) {
                    me.process_pull_result(req, resp, &sd, begin.elapsed());
                }
            },
        );
        if let Err(e) = sent {
            if let Some(req) = slot.lock().take() {
                log::warn!("pull of {} failed to start: {e}", req.state.mq);
                self.pull_later(req, self.client.pull_time_delay_when_exception);
            }
        }
    }

    fn queue_thresholds(&self) -> (usize, u64) {
        let mut count = self.cfg.pull_threshold_for_queue;
        let mut size = self.cfg.pull_threshold_size_for_queue;
        let n = self.process_queue_table.read().len().max(1);
        if self.cfg.pull_threshold_for_topic != -1 {
            count = ((self.cfg.pull_threshold_for_topic as usize) / n).max(1);
        }
        if self.cfg.pull_threshold_size_for_topic != -1 {
            size = ((self.cfg.pull_threshold_size_for_topic as u64) / n as u64).max(1);
        }
        (count, size)
    }

    /// The pull callback (on `rmq-cb`): every branch re-enqueues the request unless the queue
    /// was dropped.
    fn process_pull_result(
        &self,
        mut req: PullRequest,
        resp: Result<RemotingCommand>,
        sd: &SubscriptionData,
        rt: Duration,
    ) {
        let st = req.state.clone();
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if self.is_running() {
                    log::warn!("pull of {} failed: {e}", st.mq);
                }
                self.pull_later(req, self.client.pull_time_delay_when_exception);
                return;
            }
        };
        let code = resp.response_code();
        let header = match code {
            ResponseCode::SUCCESS
            | ResponseCode::PULL_NOT_FOUND
            | ResponseCode::PULL_RETRY_IMMEDIATELY
            | ResponseCode::PULL_OFFSET_MOVED => {
                match resp.decode_header::<PullMessageResponseHeader>() {
                    Ok(h) => h,
                    Err(e) => {
                        log::warn!("bad pull response for {}: {e}", st.mq);
                        self.pull_later(req, self.client.pull_time_delay_when_exception);
                        return;
                    }
                }
            }
            ResponseCode::FLOW_CONTROL => {
                self.pull_later(req, PULL_DELAY_WHEN_BROKER_FLOW_CONTROL);
                return;
            }
            other => {
                if self.is_running() {
                    log::warn!(
                        "pull of {} answered {other}: {}",
                        st.mq,
                        resp.remark().unwrap_or("")
                    );
                }
                self.pull_later(req, self.client.pull_time_delay_when_exception);
                return;
            }
        };
        self.pull_from_which_node
            .lock()
            .insert(st.mq.clone(), header.suggest_which_broker_id);
        st.broker_max_offset
            .store(header.max_offset, Ordering::Relaxed);
        match code {
            ResponseCode::SUCCESS => {
                let requested = req.next_offset;
                req.next_offset = header.next_begin_offset;
                st.next_offset.store(req.next_offset, Ordering::Relaxed);
                let body = resp.take_body().unwrap_or_default();
                let mut msgs = MessageDecoder::decodes(body);
                let pulled = msgs.len();
                if !sd.tags_set.is_empty() {
                    msgs.retain(|m| tag_matches(sd, m.tags()));
                }
                self.stats.pulled(&st.mq.topic, pulled, rt);
                if header.next_begin_offset < requested
                    || msgs.first().is_some_and(|m| m.queue_offset() < requested)
                {
                    log::warn!(
                        "[BUG] pull of {} from {requested} returned offsets below it (next {})",
                        st.mq,
                        header.next_begin_offset
                    );
                }
                if msgs.is_empty() {
                    self.pull_now(req);
                    return;
                }
                let broker: Arc<str> = Arc::from(st.mq.broker_name.as_str());
                for m in msgs.iter_mut() {
                    m.set_broker_name(broker.clone());
                }
                st.pq.put_messages(msgs.iter().cloned());
                if let Some(cs) = self.consume_service.read().clone() {
                    cs.submit_consume_request(msgs, &st);
                }
                if self.cfg.pull_interval.is_zero() {
                    self.pull_now(req);
                } else {
                    self.pull_later(req, self.cfg.pull_interval);
                }
            }
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                req.next_offset = header.next_begin_offset;
                st.next_offset.store(req.next_offset, Ordering::Relaxed);
                if st.pq.msg_count() == 0 {
                    self.offset_store()
                        .update_offset(&st.mq, req.next_offset, true);
                }
                self.pull_now(req);
            }
            _ => {
                // PULL_OFFSET_MOVED: restart from the broker's offset via a fresh rebalance.
                log::warn!(
                    "the pull offset of {} is illegal ({} -> {}), fixing it in {OFFSET_ILLEGAL_FIX_DELAY:?}",
                    st.mq,
                    req.next_offset,
                    header.next_begin_offset
                );
                let next = header.next_begin_offset;
                st.pq.set_dropped(true);
                drop(req);
                let me = self.me.clone();
                let mq = st.mq.clone();
                self.schedule(OFFSET_ILLEGAL_FIX_DELAY, move || {
                    if let Some(me) = me.upgrade() {
                        let store = me.offset_store();
                        store.update_offset(&mq, next, false);
                        store.persist(&mq);
                        me.process_queue_table.write().remove(&mq);
                        if let Some(i) = me.instance() {
                            i.rebalance_immediately();
                        }
                    }
                });
            }
        }
    }

    /// Every held queue must have exactly one live pull request; re-dispatch a lost one.
    fn check_pulls(&self) {
        if !self.is_running() {
            return;
        }
        for st in self.process_queue_table.read().values() {
            if st.pq.is_dropped() || st.pull_stopped.load(Ordering::Acquire) {
                continue;
            }
            let live = st.live_pulls.load(Ordering::Acquire);
            if live == 0 {
                if self.revive_pull(st, Duration::ZERO) {
                    log::error!(
                        "the queue {} had no pull in flight or scheduled; re-dispatched it from offset {}",
                        st.mq,
                        st.next_offset.load(Ordering::Relaxed)
                    );
                }
            } else if live > 1 {
                log::error!("the queue {} has {live} pull requests; expected one", st.mq);
            }
        }
    }

    /// Gives a held queue that lost its pull request (to a panic) a new one after `delay`. The
    /// compare-and-set of its live count from 0 makes sure a queue never gets two: `false` when
    /// it still has one, or is no longer pulled.
    fn revive_pull(&self, st: &Arc<QueueState>, delay: Duration) -> bool {
        if !self.is_running() || st.pq.is_dropped() || st.pull_stopped.load(Ordering::Acquire) {
            return false;
        }
        if st
            .live_pulls
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // The count is already taken for this request.
        let req = PullRequest {
            consumer: self.me.clone(),
            state: st.clone(),
            next_offset: st.next_offset.load(Ordering::Relaxed),
        };
        self.pull_later(req, delay);
        true
    }

    // -----------------------------------------------------------------------------------------
    // Consuming helpers

    /// Java `cleanExpireMsg`: send back messages consumed for longer than the consume timeout.
    fn clean_expired_messages(&self) {
        let timeout = self.cfg.consume_timeout.as_millis() as i64;
        let states: Vec<Arc<QueueState>> =
            self.process_queue_table.read().values().cloned().collect();
        for st in states {
            for _ in 0..16 {
                let Some(first) = st.pq.first_offset() else {
                    break;
                };
                let Some(started) = st.consume_started(first) else {
                    break;
                };
                if now_millis() - started <= timeout {
                    break;
                }
                let Some(msg) = st.pq.first_message() else {
                    break;
                };
                log::warn!(
                    "send expired msg back. topic={}, msgId={}, storeHost={}, queueId={}, queueOffset={}",
                    msg.topic(),
                    msg.msg_id(),
                    msg.store_host(),
                    msg.queue_id(),
                    msg.queue_offset()
                );
                if let Err(e) = self.send_message_back(&msg, 3, &st.mq.broker_name) {
                    log::error!("send expired msg back failed: {e}");
                    break;
                }
                if st.pq.first_offset() == Some(first) {
                    st.pq.remove_messages([first]);
                }
            }
        }
    }

    fn max_reconsume_times(&self) -> i32 {
        if self.cfg.max_reconsume_times == -1 {
            16
        } else {
            self.cfg.max_reconsume_times
        }
    }

    /// Java `sendMessageBack`: CONSUMER_SEND_MSG_BACK to the broker, falling back to a plain
    /// send to the retry topic.
    pub(crate) fn send_message_back(
        &self,
        msg: &MessageExt,
        delay_level: i32,
        broker_name: &str,
    ) -> Result<()> {
        let instance = self.instance().ok_or_else(shut_down)?;
        let addr = instance
            .find_broker_address_in_publish(broker_name)
            .unwrap_or_else(|| msg.store_host().to_string());
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset(),
            group: self.cfg.group.clone(),
            delay_level,
            origin_msg_id: Some(msg.msg_id().into_owned()),
            origin_topic: Some(msg.topic().to_owned()),
            unit_mode: false,
            max_reconsume_times: Some(self.max_reconsume_times()),
            bname: Some(broker_name.to_owned()),
        };
        let req = instance.api().request(RemotingCommand::request_with_header(
            RequestCode::CONSUMER_SEND_MSG_BACK,
            &header,
        ));
        let direct = instance
            .remoting()
            .invoke_sync(&addr, req, SEND_BACK_TIMEOUT)
            .and_then(|r| expect_success(r, &addr));
        match direct {
            Ok(_) => Ok(()),
            Err(e) => {
                log::warn!(
                    "sendMessageBack of {} to {addr} failed ({e}); sending it to the retry topic instead",
                    msg.msg_id()
                );
                self.send_back_via_retry_topic(&instance, msg)
            }
        }
    }

    fn send_back_via_retry_topic(
        &self,
        instance: &MQClientInstance,
        msg: &MessageExt,
    ) -> Result<()> {
        let mut m = crate::common::Message::new(self.retry_topic(), msg.body().clone());
        for (k, v) in msg.properties().iter() {
            m.put_property(k, v);
        }
        let origin = msg
            .property(MessageConst::PROPERTY_ORIGIN_MESSAGE_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| msg.msg_id().into_owned());
        m.put_property(MessageConst::PROPERTY_ORIGIN_MESSAGE_ID, origin);
        m.set_flag(msg.flag());
        m.put_property(MessageConst::PROPERTY_RETRY_TOPIC, msg.topic());
        m.clear_property(MessageConst::PROPERTY_TRANSACTION_PREPARED);
        m.put_property(
            MessageConst::PROPERTY_RECONSUME_TIME,
            (msg.reconsume_times() + 1).to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_MAX_RECONSUME_TIMES,
            self.max_reconsume_times().to_string(),
        );
        m.put_property(
            MessageConst::PROPERTY_DELAY_TIME_LEVEL,
            (3 + msg.reconsume_times()).to_string(),
        );
        instance.inner_producer()?.send(&m).map(|_| ())
    }

    // -----------------------------------------------------------------------------------------
    // Rebalance

    fn do_rebalance_inner(&self) {
        if !self.is_running() || self.paused.load(Ordering::Acquire) {
            return;
        }
        let Some(instance) = self.instance() else {
            return;
        };
        let subs: Vec<String> = self.subscription_inner.read().keys().cloned().collect();
        let mut changed_topics = Vec::new();
        let mut new_pulls = Vec::new();
        for topic in &subs {
            match self.rebalance_by_topic(&instance, topic, &mut new_pulls) {
                Ok(true) => changed_topics.push(topic.clone()),
                Ok(false) => {}
                Err(e) => {
                    if !topic.starts_with("%RETRY%") {
                        log::warn!("rebalance of {topic} for {} failed: {e}", self.cfg.group);
                    }
                }
            }
        }
        // Queues of topics no longer subscribed.
        let stale: Vec<Arc<QueueState>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| !subs.contains(&s.mq.topic))
            .cloned()
            .collect();
        if !stale.is_empty() {
            self.remove_queues(&stale);
        }
        if !changed_topics.is_empty() {
            for t in &changed_topics {
                if let Some(sd) = self.subscription_inner.write().get_mut(t) {
                    let mut fresh = (**sd).clone();
                    fresh.sub_version = now_millis();
                    *sd = Arc::new(fresh);
                }
            }
            instance.send_heartbeat_to_all_broker_now();
        }
        // Pull only once the brokers know the new subscription version: a pull that carries a
        // version newer than the broker's is refused and retried a second later.
        for r in new_pulls {
            self.pull_now(r);
        }
    }

    fn rebalance_by_topic(
        &self,
        instance: &Arc<MQClientInstance>,
        topic: &str,
        new_pulls: &mut Vec<PullRequest>,
    ) -> Result<bool> {
        let mq_all = self
            .topic_subscribe_info
            .read()
            .get(topic)
            .cloned()
            .unwrap_or_default();
        if mq_all.is_empty() {
            return Err(Error::client(
                crate::error::ClientErrorCode::NOT_FOUND_TOPIC_EXCEPTION,
                format!("no subscribe info for topic {topic} yet"),
            ));
        }
        let target: HashSet<MessageQueue> = match self.cfg.message_model {
            MessageModel::Broadcasting => mq_all.into_iter().collect(),
            MessageModel::Clustering => {
                let mut cids = instance.find_consumer_id_list(topic, &self.cfg.group)?;
                cids.sort();
                let mut mqs = mq_all;
                mqs.sort();
                // A panicking strategy is the user's code: this topic keeps its assignment.
                let allocate = std::panic::AssertUnwindSafe(|| {
                    self.allocate
                        .allocate(&self.cfg.group, instance.client_id(), &mqs, &cids)
                });
                std::panic::catch_unwind(allocate)
                    .map_err(|payload| {
                        Error::client(
                            -1,
                            format!(
                                "the allocation strategy {} panicked: {}",
                                self.allocate.name(),
                                crate::executor::panic_message(&*payload)
                            ),
                        )
                    })??
                    .into_iter()
                    .collect()
            }
        };
        Ok(self.update_process_queue_table(instance, topic, &target, new_pulls))
    }

    /// Java `updateProcessQueueTableInRebalance`. The pull requests of new queues are pushed
    /// to `new_pulls` for the caller to dispatch.
    fn update_process_queue_table(
        &self,
        instance: &Arc<MQClientInstance>,
        topic: &str,
        target: &HashSet<MessageQueue>,
        new_pulls: &mut Vec<PullRequest>,
    ) -> bool {
        let mut changed = false;
        let now = now_millis();
        let removed: Vec<Arc<QueueState>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| s.mq.topic == topic)
            .filter(|s| {
                !target.contains(&s.mq)
                    || s.pq.is_pull_expired(now, PULL_MAX_IDLE.as_millis() as i64)
            })
            .cloned()
            .collect();
        if !removed.is_empty() {
            for s in &removed {
                if target.contains(&s.mq) {
                    log::warn!("the pull of {} expired; rebuilding it", s.mq);
                }
            }
            self.remove_queues(&removed);
            changed = true;
        }
        for mq in target {
            if self.process_queue_table.read().contains_key(mq) {
                continue;
            }
            let store = self.offset_store();
            store.remove_offset(mq);
            let next = match self.compute_pull_from_where(instance, mq) {
                Ok(o) if o >= 0 => o,
                Ok(o) => {
                    log::warn!(
                        "doRebalance, {}, add new mq failed, {mq}: offset {o}",
                        self.cfg.group
                    );
                    continue;
                }
                Err(e) => {
                    log::warn!(
                        "doRebalance, {}, compute offset of {mq} failed: {e}",
                        self.cfg.group
                    );
                    continue;
                }
            };
            let st = Arc::new(QueueState::new(mq.clone(), next));
            self.process_queue_table
                .write()
                .insert(mq.clone(), st.clone());
            log::info!(
                "doRebalance, {}, add a new mq, {mq}, next offset {next}",
                self.cfg.group
            );
            new_pulls.push(PullRequest::new(self.me.clone(), st, next));
            changed = true;
        }
        changed
    }

    /// Removes queues: stop pulling, wait (bounded) for their consume requests in flight,
    /// persist their offsets, then drop them.
    fn remove_queues(&self, states: &[Arc<QueueState>]) {
        for s in states {
            s.pull_stopped.store(true, Ordering::Release);
        }
        let deadline = Instant::now() + REMOVE_QUEUE_WAIT;
        for s in states {
            s.wait_idle(deadline);
        }
        let store = self.offset_store();
        for s in states {
            s.pq.set_dropped(true);
            if self.cfg.message_model == MessageModel::Clustering {
                store.persist(&s.mq);
            }
            store.remove_offset(&s.mq);
            self.process_queue_table.write().remove(&s.mq);
            log::info!(
                "doRebalance, {}, remove unnecessary mq, {}, {} consume request(s) still in flight",
                self.cfg.group,
                s.mq,
                s.inflight()
            );
        }
    }

    /// Java `computePullFromWhereWithException`.
    fn compute_pull_from_where(
        &self,
        instance: &Arc<MQClientInstance>,
        mq: &MessageQueue,
    ) -> Result<i64> {
        let last = self
            .offset_store()
            .read_offset(mq, ReadOffsetType::ReadFromStore);
        if last >= 0 {
            return Ok(last);
        }
        if last != -1 {
            return Ok(-1);
        }
        let retry = mq.topic.starts_with("%RETRY%");
        match self.cfg.consume_from_where {
            ConsumeFromWhere::LastOffset if retry => Ok(0),
            ConsumeFromWhere::LastOffset => instance.max_offset(mq),
            ConsumeFromWhere::FirstOffset => Ok(0),
            ConsumeFromWhere::Timestamp if retry => instance.max_offset(mq),
            ConsumeFromWhere::Timestamp => instance.search_offset(mq, self.cfg.consume_timestamp),
        }
    }

    fn persist_consumer_offset(&self) {
        let Some(store) = self.offset_store.read().clone() else {
            return;
        };
        let mqs: HashSet<MessageQueue> = self.process_queue_table.read().keys().cloned().collect();
        store.persist_all(&mqs);
    }

    fn queue_stats(&self) -> Vec<QueueStat> {
        let store = self.offset_store.read().clone();
        let mut v: Vec<QueueStat> = self
            .process_queue_table
            .read()
            .values()
            .map(|s| {
                let commit = store.as_ref().map_or(-1, |st| {
                    st.read_offset(&s.mq, ReadOffsetType::ReadFromMemory)
                });
                let max = s.broker_max_offset.load(Ordering::Relaxed);
                let next = s.next_offset.load(Ordering::Relaxed);
                QueueStat {
                    message_queue: s.mq.clone(),
                    cached_msg_count: s.pq.msg_count().max(0) as usize,
                    cached_msg_size: s.pq.msg_size().max(0) as u64,
                    span: s.pq.max_span(),
                    commit_offset: commit,
                    lag: if max >= 0 { (max - next).max(0) } else { 0 },
                }
            })
            .collect();
        v.sort_by(|a, b| a.message_queue.cmp(&b.message_queue));
        v
    }
}

impl Drop for PushConsumerInner {
    /// The local half of `shutdown` only: pulls stop (their requests hold this consumer weakly),
    /// the group leaves its client instance, which stops when nothing else uses it. Nothing is
    /// sent over the network, so offsets consumed since the last persist (at most 5 s) are not
    /// committed: call `shutdown()` for that.
    fn drop(&mut self) {
        if *self.state.get_mut() != ServiceState::Running {
            return;
        }
        log::warn!(
            "consumer {} dropped without shutdown(); offsets since the last persist are not committed",
            self.cfg.group
        );
        for t in self.tasks.get_mut().drain(..) {
            t.cancel();
        }
        if let Some(cs) = self.consume_service.get_mut().take() {
            // Signals the pool; workers finish their current task and exit.
            drop(cs);
        }
        if let Some(instance) = self.instance.get_mut().take() {
            let group = self.cfg.group.clone();
            crate::client::instance::release_from_drop(move || {
                instance.unregister_consumer(
                    &group,
                    false,
                    crate::client::instance::DROP_SHUTDOWN_TIMEOUT,
                );
            });
        }
    }
}

impl MQConsumerInner for PushConsumerInner {
    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: self.cfg.consume_from_where.as_java_str().to_owned(),
            consume_type: "CONSUME_PASSIVELY".to_owned(),
            group_name: self.cfg.group.clone(),
            message_model: self.cfg.message_model.as_java_str().to_owned(),
            subscription_data_set: self
                .subscription_inner
                .read()
                .values()
                .map(|s| (**s).clone())
                .collect(),
            unit_mode: false,
        }
    }

    fn subscribed_topics(&self) -> Vec<String> {
        self.subscription_inner.read().keys().cloned().collect()
    }

    fn update_topic_subscribe_info(&self, topic: &str, mqs: Vec<MessageQueue>) {
        if self.subscription_inner.read().contains_key(topic) {
            self.topic_subscribe_info
                .write()
                .insert(topic.to_owned(), mqs);
        }
    }

    fn is_subscribe_topic_need_update(&self, topic: &str) -> bool {
        self.subscription_inner.read().contains_key(topic)
            && !self.topic_subscribe_info.read().contains_key(topic)
    }

    fn do_rebalance(&self) {
        self.do_rebalance_inner();
    }

    fn consume_message_directly(
        &self,
        msg: MessageExt,
        broker_name: &str,
    ) -> (&'static str, Option<String>, u64) {
        let mq = MessageQueue::new(msg.topic(), broker_name, msg.queue_id());
        match self.consume_service.read().clone() {
            Some(cs) => cs.consume_directly(msg, mq),
            None => (
                "CR_THROW_EXCEPTION",
                Some("the consumer is not started".to_owned()),
                0,
            ),
        }
    }

    fn running_info(&self) -> crate::consumer::stats::RunningInfo {
        let store = self.offset_store.read().clone();
        let queues = self
            .process_queue_table
            .read()
            .values()
            .map(|s| {
                let commit = store.as_ref().map_or(-1, |st| {
                    st.read_offset(&s.mq, ReadOffsetType::ReadFromMemory)
                });
                let mut info = s.pq.info();
                info.commit_offset = commit;
                (s.mq.clone(), info)
            })
            .collect();
        crate::consumer::stats::RunningInfo {
            queues,
            status: self.stats.snapshot(),
            subscriptions: self
                .subscription_inner
                .read()
                .values()
                .map(|s| (**s).clone())
                .collect(),
            thread_core: self.cfg.consume_thread_min,
            start_time: self.start_time,
        }
    }

    fn reset_offset(&self, topic: &str, offsets: &HashMap<MessageQueue, i64>) {
        self.paused.store(true, Ordering::Release);
        let states: Vec<Arc<QueueState>> = self
            .process_queue_table
            .read()
            .values()
            .filter(|s| s.mq.topic == topic)
            .cloned()
            .collect();
        for s in &states {
            s.pull_stopped.store(true, Ordering::Release);
            s.pq.set_dropped(true);
            s.pq.clear();
        }
        let store = self.offset_store();
        for (mq, offset) in offsets {
            store.update_offset(mq, *offset, false);
            store.persist(mq);
        }
        {
            let mut table = self.process_queue_table.write();
            for s in &states {
                table.remove(&s.mq);
            }
        }
        self.paused.store(false, Ordering::Release);
        if let Some(i) = self.instance() {
            i.rebalance_immediately();
        }
    }

    fn offsets_of_topic(&self, topic: &str) -> HashMap<MessageQueue, i64> {
        self.offset_store
            .read()
            .as_ref()
            .map(|s| s.clone_offset_table(topic))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_consume_timestamp_parses_as_utc() {
        assert_eq!(parse_consume_timestamp("19700101000000").unwrap(), 0);
        assert_eq!(
            parse_consume_timestamp("20231114221320").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_consume_timestamp("20240229235959").unwrap(),
            1_709_251_199_000
        );
        for bad in [
            "",
            "2023111422132",
            "20231314221320",
            "20230229000000",
            "2023-11-14 22:1",
            "20231114246000",
        ] {
            assert!(parse_consume_timestamp(bad).is_err(), "{bad}");
        }
    }
}
