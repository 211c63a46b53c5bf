//! The push consumer's builder and `check_config` (Java `DefaultMQPushConsumer`'s setters and
//! `DefaultMQPushConsumerImpl.checkConfig`).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::client::config::{ClientConfig, ClientOverrides};
use crate::common::util::now_millis;
use crate::common::DEFAULT_MAX_BODY_SIZE;
use crate::consumer::allocate::{AllocateMessageQueueAveragely, AllocateMessageQueueStrategy};
use crate::consumer::listener::{
    ConsumeMessageHook, MessageListener, MessageListenerConcurrently, MessageListenerOrderly,
    SUSPEND_TIME_MAX, SUSPEND_TIME_MIN,
};
use crate::consumer::push_consumer::{DefaultMQPushConsumer, PushConsumerInner};
use crate::consumer::stats::ConsumerStats;
use crate::consumer::subscription::{
    build_subscription_data, ConsumeFromWhere, ExpressionType, MessageModel,
};
use crate::error::{Error, Result};
use crate::service_state::ServiceState;

/// Java `BROKER_SUSPEND_MAX_TIME_MILLIS`.
const BROKER_SUSPEND_MAX_TIME: Duration = Duration::from_secs(15);
/// Java `CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND`.
const CONSUMER_TIMEOUT_WHEN_SUSPEND: Duration = Duration::from_secs(30);

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
    /// Messages per topic; `None` is off (Java's -1).
    pub(crate) pull_threshold_for_topic: Option<usize>,
    /// MiB per topic; `None` is off (Java's -1).
    pub(crate) pull_threshold_size_for_topic: Option<u64>,
    pub(crate) pull_interval: Duration,
    pub(crate) consume_message_batch_max_size: usize,
    pub(crate) pull_batch_size: i32,
    pub(crate) post_subscription_when_pull: bool,
    /// `None` is Java's -1: 16 deliveries for concurrent consumption.
    pub(crate) max_reconsume_times: Option<u32>,
    pub(crate) consume_timeout: Duration,
    pub(crate) broker_suspend_max_time: Duration,
    pub(crate) consumer_timeout_when_suspend: Duration,
    pub(crate) offset_store_dir: Option<std::path::PathBuf>,
    /// How long after `PULL_OFFSET_MOVED` the offset is fixed (Java: 10 s; tests shorten it).
    pub(crate) offset_moved_fix_delay: Duration,
    /// Orderly: the wait before a suspended batch is consumed again (Java
    /// `suspendCurrentQueueTimeMillis`).
    pub(crate) suspend_current_queue_time: Duration,
    /// The largest body a compressed message may inflate to; a larger one is undecodable.
    pub(crate) max_decompressed_body_size: usize,
    /// Message trace: the topic trace records go to; `None` is off.
    pub(crate) trace_topic: Option<String>,
    /// Trace records that may wait to be sent (Java: 2048).
    pub(crate) trace_queue_size: usize,
    /// The client's namespace (set from the client configuration at build).
    pub(crate) namespace: Option<String>,
}

/// Builds a [`DefaultMQPushConsumer`]. Every setter documents Java's default.
pub struct DefaultMQPushConsumerBuilder {
    pub(crate) cfg: ConsumerConfig,
    pub(crate) client: ClientConfig,
    pub(crate) client_overrides: ClientOverrides,
    pub(crate) subscriptions: Vec<(String, String, ExpressionType)>,
    listener: Option<MessageListener>,
    pub(crate) allocate: Arc<dyn AllocateMessageQueueStrategy>,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
    pub(crate) consume_timestamp_text: Option<String>,
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
pub(crate) use setter;

/// The settings both consumer builders offer, with the same meaning and default. Expands to
/// builder methods over `cfg: ConsumerConfig`, `consume_timestamp_text`, `allocate` and
/// `subscriptions` fields.
macro_rules! consumer_common_setters {
    () => {
    $crate::consumer::builder::setter!(
        /// Clustering (default) or broadcasting.
        #[doc(alias = "setMessageModel")]
        message_model: MessageModel => message_model
    );
    $crate::consumer::builder::setter!(
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
    /// in this process's local time zone as Java reads it in the JVM's zone: the `TZ`
    /// environment variable, else the system's zone. `build()` rejects text that does not parse
    /// or a wall time that the zone skips (a daylight-saving gap); a repeated wall time is read
    /// as its first occurrence. Use [`consume_timestamp_millis`](Self::consume_timestamp_millis)
    /// for an instant that does not depend on the zone.
    #[doc(alias = "setConsumeTimestamp")]
    pub fn consume_timestamp(mut self, yyyymmddhhmmss: impl Into<String>) -> Self {
        self.consume_timestamp_text = Some(yyyymmddhhmmss.into());
        self
    }
    $crate::consumer::builder::setter!(
        /// Messages cached per queue before pulling pauses. Default: 1000.
        #[doc(alias = "setPullThresholdForQueue")]
        pull_threshold_for_queue: usize => pull_threshold_for_queue
    );
    $crate::consumer::builder::setter!(
        /// MiB cached per queue before pulling pauses. Default: 100.
        #[doc(alias = "setPullThresholdSizeForQueue")]
        pull_threshold_size_for_queue: u64 => pull_threshold_size_for_queue
    );
    $crate::consumer::builder::setter!(
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
    /// Test hook: the delay before a `PULL_OFFSET_MOVED` is fixed (Java: 10 s, not settable).
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn offset_moved_fix_delay_for_tests(mut self, delay: Duration) -> Self {
        self.cfg.offset_moved_fix_delay = delay;
        self
    }
    };
}
pub(crate) use consumer_common_setters;

impl DefaultMQPushConsumerBuilder {
    pub(crate) fn new(group: String) -> Self {
        DefaultMQPushConsumerBuilder {
            cfg: ConsumerConfig {
                group,
                message_model: MessageModel::Clustering,
                consume_from_where: ConsumeFromWhere::LastOffset,
                consume_timestamp: now_millis() - 30 * 60 * 1000,
                consume_thread_min: 20,
                consume_thread_max: 20,
                consume_concurrently_max_span: 2000,
                pull_threshold_for_queue: 1000,
                pull_threshold_size_for_queue: 100,
                pull_threshold_for_topic: None,
                pull_threshold_size_for_topic: None,
                pull_interval: Duration::ZERO,
                consume_message_batch_max_size: 1,
                pull_batch_size: 32,
                post_subscription_when_pull: false,
                max_reconsume_times: None,
                consume_timeout: Duration::from_secs(15 * 60),
                broker_suspend_max_time: BROKER_SUSPEND_MAX_TIME,
                consumer_timeout_when_suspend: CONSUMER_TIMEOUT_WHEN_SUSPEND,
                offset_store_dir: None,
                offset_moved_fix_delay: crate::consumer::pull::OFFSET_ILLEGAL_FIX_DELAY,
                suspend_current_queue_time: Duration::from_secs(1),
                max_decompressed_body_size: DEFAULT_MAX_BODY_SIZE,
                trace_topic: None,
                trace_queue_size: crate::producer::trace::QUEUE_SIZE,
                namespace: None,
            },
            client: ClientConfig::default(),
            client_overrides: ClientOverrides::default(),
            subscriptions: Vec::new(),
            listener: None,
            allocate: Arc::new(AllocateMessageQueueAveragely),
            hooks: Vec::new(),
            consume_timestamp_text: None,
        }
    }

    crate::client::config::client_config_setters!();
    consumer_common_setters!();

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
    /// Messages cached per topic, split evenly over the queues held, overriding
    /// `pull_threshold_for_queue`. Default: off (Java's -1). `build()` accepts 1..=6 553 500.
    #[doc(alias = "setPullThresholdForTopic")]
    pub fn pull_threshold_for_topic(mut self, messages: usize) -> Self {
        self.cfg.pull_threshold_for_topic = Some(messages);
        self
    }
    /// MiB cached per topic, split evenly over the queues held, overriding
    /// `pull_threshold_size_for_queue`. Default: off (Java's -1). `build()` accepts 1..=102 400.
    #[doc(alias = "setPullThresholdSizeForTopic")]
    pub fn pull_threshold_size_for_topic(mut self, mib: u64) -> Self {
        self.cfg.pull_threshold_size_for_topic = Some(mib);
        self
    }
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
    /// Redeliveries before a message goes to the dead-letter queue. Default (Java's -1): 16
    /// for concurrent consumption, unlimited (`i32::MAX`) for orderly consumption, whose
    /// suspended messages are retried in place. Values above `i32::MAX` are sent as `i32::MAX`.
    #[doc(alias = "setMaxReconsumeTimes")]
    pub fn max_reconsume_times(mut self, times: u32) -> Self {
        self.cfg.max_reconsume_times = Some(times);
        self
    }
    setter!(
        /// A message consumed for longer than this is sent back. Default: 15 minutes.
        #[doc(alias = "setConsumeTimeout")]
        consume_timeout: Duration => consume_timeout
    );
    setter!(
        /// How long the broker holds a long poll. Default: 15 s. Must be shorter than the
        /// pull timeout.
        broker_suspend_max_time: Duration => broker_suspend_max_time
    );
    /// The listener: a [`MessageListenerConcurrently`] or a closure
    /// `Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus`.
    #[doc(alias = "registerMessageListener")]
    pub fn register_message_listener_concurrently(
        mut self,
        listener: impl MessageListenerConcurrently,
    ) -> Self {
        self.listener = Some(MessageListener::Concurrently(Arc::new(listener)));
        self
    }
    /// The listener for orderly consumption: a [`MessageListenerOrderly`] or a closure
    /// `Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus`. Each queue's
    /// messages are consumed one batch at a time, in offset order; in clustering mode the
    /// consumer holds a broker lock on every queue it consumes. Replaces a concurrent listener.
    ///
    /// ```no_run
    /// use rocketmq_sync::{ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQPushConsumer, MessageExt};
    ///
    /// let consumer = DefaultMQPushConsumer::builder("cg")
    ///     .namesrv_addr("127.0.0.1:9876")
    ///     .subscribe("T", "*")
    ///     .register_message_listener_orderly(|msgs: &[MessageExt], ctx: &mut ConsumeOrderlyContext| {
    ///         for m in msgs {
    ///             if m.body().is_empty() {
    ///                 // Try this message again in 1 s; nothing after it in its queue runs first.
    ///                 return ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
    ///             }
    ///         }
    ///         let _ = ctx.message_queue();
    ///         ConsumeOrderlyStatus::Success
    ///     })
    ///     .build()?;
    /// consumer.start()?;
    /// # Ok::<(), rocketmq_sync::Error>(())
    /// ```
    #[doc(alias = "registerMessageListener")]
    pub fn register_message_listener_orderly(
        mut self,
        listener: impl MessageListenerOrderly,
    ) -> Self {
        self.listener = Some(MessageListener::Orderly(Arc::new(listener)));
        self
    }
    /// Orderly: how long a queue waits before a batch its listener suspended
    /// (`SuspendCurrentQueueAMoment`) is consumed again. Default: 1 s; clamped to 10 ms..30 s.
    #[doc(alias = "setSuspendCurrentQueueTimeMillis")]
    pub fn suspend_current_queue_time(mut self, time: Duration) -> Self {
        self.cfg.suspend_current_queue_time = time.clamp(SUSPEND_TIME_MIN, SUSPEND_TIME_MAX);
        self
    }
    setter!(
        /// The largest size, in bytes, a compressed message body (zlib, LZ4 or ZSTD) may
        /// inflate to. Default: 4 MiB, Java's default maximum message size; raise it to consume
        /// producers configured with a larger `maxMessageSize`. `build()` accepts
        /// 1..=`i32::MAX`.
        ///
        /// A body that would inflate past it is not decompressed beyond the bound: its record is
        /// undecodable. Like any undecodable record it is logged with its queue and offset,
        /// counted in [`ConsumeStatus::undecodable_msgs`](crate::ConsumeStatus), and skipped:
        /// the other records of its pull are delivered, and the committed offset moves past it
        /// once they are consumed. Uncompressed bodies are bounded by the frame size instead.
        max_decompressed_body_size: usize => max_decompressed_body_size
    );
    /// Message trace (Java's `enableMsgTrace` constructor argument): a `SubBefore` and a
    /// `SubAfter` record of every listener call go, in Java's trace format, to
    /// [`RMQ_SYS_TRACE_TOPIC`](crate::RMQ_SYS_TRACE_TOPIC), on a bounded background queue that
    /// drops trace data rather than wait. Default: off.
    pub fn enable_msg_trace(mut self, on: bool) -> Self {
        self.cfg.trace_topic = on.then(|| crate::producer::RMQ_SYS_TRACE_TOPIC.to_owned());
        self
    }
    /// Message trace into `topic` instead of `RMQ_SYS_TRACE_TOPIC` (Java's
    /// `customizedTraceTopic`); turns tracing on.
    pub fn customized_trace_topic(mut self, topic: impl Into<String>) -> Self {
        self.cfg.trace_topic = Some(topic.into());
        self
    }
    /// Test hook: how many trace records may wait (Java: 2048, not settable).
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn trace_queue_size_for_tests(mut self, records: usize) -> Self {
        self.cfg.trace_queue_size = records.max(1);
        self
    }
    /// Adds a hook run before and after every listener call.
    #[doc(alias = "registerConsumeMessageHook")]
    pub fn consume_message_hook(mut self, hook: impl ConsumeMessageHook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    #[cfg(test)]
    fn client_config_for_test(self) -> ClientConfig {
        self.client_overrides.apply(self.client)
    }

    /// Checks every setting (Java `checkConfig`) and builds the consumer (not started).
    pub fn build(self) -> Result<DefaultMQPushConsumer> {
        let listener = self.listener.ok_or_else(|| {
            Error::config(
                "messageListener is null: call register_message_listener_concurrently or register_message_listener_orderly",
            )
        })?;
        let inner = build_inner(
            ConsumerParts {
                cfg: self.cfg,
                client: self.client_overrides.apply(self.client),
                subscriptions: self.subscriptions,
                consume_timestamp_text: self.consume_timestamp_text,
                allocate: self.allocate,
            },
            listener,
            self.hooks,
        )?;
        Ok(DefaultMQPushConsumer { inner })
    }
}

/// What both consumer builders collect (the lite pull consumer is the same machinery with a
/// poll buffer where the push consumer has its listener).
pub(crate) struct ConsumerParts {
    pub(crate) cfg: ConsumerConfig,
    pub(crate) client: ClientConfig,
    pub(crate) subscriptions: Vec<(String, String, ExpressionType)>,
    pub(crate) consume_timestamp_text: Option<String>,
    pub(crate) allocate: Arc<dyn AllocateMessageQueueStrategy>,
}

/// Checks the settings and builds the consumer's machinery (not started).
pub(crate) fn build_inner(
    parts: ConsumerParts,
    listener: MessageListener,
    hooks: Vec<Arc<dyn ConsumeMessageHook>>,
) -> Result<Arc<PushConsumerInner>> {
    let ConsumerParts {
        mut cfg,
        client,
        subscriptions,
        consume_timestamp_text,
        allocate,
    } = parts;
    if let Some(text) = &consume_timestamp_text {
        cfg.consume_timestamp = parse_consume_timestamp(text)?;
    }
    check_config(&cfg)?;
    // Trace records name the group as its user does.
    let bare_group = cfg.group.clone();
    if let Some(ns) = client.namespace() {
        crate::common::namespace::check(ns)?;
        // Java `setConsumerGroup(withNamespace(consumerGroup))` at start.
        cfg.group = client.with_namespace(&cfg.group).into_owned();
        cfg.namespace = Some(ns.to_owned());
    }
    let mut hooks = hooks;
    let trace = match &cfg.trace_topic {
        Some(topic) => {
            crate::producer::validators::check_topic(topic)?;
            let d = Arc::new(crate::producer::trace::AsyncTraceDispatcher::with_capacity(
                &bare_group,
                topic,
                cfg.trace_queue_size,
            ));
            hooks.push(Arc::new(
                crate::consumer::trace_hook::ConsumeMessageTraceHook {
                    dispatcher: d.clone(),
                },
            ));
            Some(d)
        }
        None => None,
    };
    let mut subs = HashMap::new();
    for (topic, expr, kind) in &subscriptions {
        crate::producer::validators::check_topic(topic)?;
        let topic = client.with_namespace(topic);
        subs.insert(
            topic.to_string(),
            Arc::new(build_subscription_data(&topic, expr, *kind)?),
        );
    }
    Ok(Arc::new_cyclic(|me| PushConsumerInner {
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
        trace,
    }))
}

/// Parses Java's `yyyyMMddHHmmss` consume timestamp in this process's local time zone (the
/// `TZ` environment variable, else the system's zone), as Java reads it in the JVM's default
/// zone, into milliseconds since the epoch.
fn parse_consume_timestamp(text: &str) -> Result<i64> {
    parse_consume_timestamp_in(text, &chrono::Local)
}

/// [`parse_consume_timestamp`] in the zone `tz`. A wall time that occurs twice (the hour a
/// daylight-saving change repeats) is read as its first occurrence; one that does not occur
/// (the hour skipped) is refused.
fn parse_consume_timestamp_in<Tz: chrono::TimeZone>(text: &str, tz: &Tz) -> Result<i64> {
    let bad = |why: &str| {
        Error::config(format!(
            "consumeTimestamp {text:?} is not a yyyyMMddHHmmss time (e.g. 20261124170000){why}"
        ))
    };
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(""));
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<u32>().map_err(|_| bad(""));
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(8..10)?, num(10..12)?, num(12..14)?);
    let local = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .ok_or_else(|| bad(""))?;
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            Ok(t.timestamp_millis())
        }
        chrono::LocalResult::None => Err(bad(
            ": that wall time does not exist in the local time zone (a daylight-saving gap)",
        )),
    }
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
    if let Some(n) = c.pull_threshold_for_topic {
        range("pullThresholdForTopic", n as i64, 1, 6_553_500)?;
    }
    if let Some(n) = c.pull_threshold_size_for_topic {
        range("pullThresholdSizeForTopic", n as i64, 1, 102_400)?;
    }
    range("pullInterval", c.pull_interval.as_millis() as i64, 0, 65535)?;
    range(
        "consumeMessageBatchMaxSize",
        c.consume_message_batch_max_size as i64,
        1,
        1024,
    )?;
    range("pullBatchSize", c.pull_batch_size as i64, 1, 1024)?;
    range(
        "maxDecompressedBodySize",
        i64::try_from(c.max_decompressed_body_size).unwrap_or(i64::MAX),
        1,
        i64::from(i32::MAX),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_keeps_the_dedicated_client_setters_whatever_the_order() {
        let wholesale = || {
            ClientConfig::builder()
                .mq_client_api_timeout(Duration::from_secs(7))
                .build()
        };
        let before = DefaultMQPushConsumerBuilder::new("g".into())
            .namesrv_addr("10.0.0.1:9876")
            .instance_name("mine")
            .client_config(wholesale());
        let after = DefaultMQPushConsumerBuilder::new("g".into())
            .client_config(wholesale())
            .namesrv_addr("10.0.0.1:9876")
            .instance_name("mine");
        for b in [before, after] {
            let c = b.client_config_for_test();
            assert_eq!(c.namesrv_addr.as_deref(), Some("10.0.0.1:9876"));
            assert_eq!(c.client_id(), format!("{}@mine", c.client_ip));
            assert_eq!(c.mq_client_api_timeout, Duration::from_secs(7));
        }
    }

    #[test]
    fn unset_options_are_none_and_set_ones_are_checked() {
        let b = DefaultMQPushConsumerBuilder::new("g".into());
        assert_eq!(b.cfg.pull_threshold_for_topic, None);
        assert_eq!(b.cfg.pull_threshold_size_for_topic, None);
        assert_eq!(b.cfg.max_reconsume_times, None);
        check_config(&b.cfg).unwrap();
        let b = b.pull_threshold_for_topic(0);
        let e = check_config(&b.cfg).unwrap_err().to_string();
        assert!(e.contains("pullThresholdForTopic"), "{e}");
        let b =
            DefaultMQPushConsumerBuilder::new("g".into()).pull_threshold_size_for_topic(200_000);
        let e = check_config(&b.cfg).unwrap_err().to_string();
        assert!(e.contains("pullThresholdSizeForTopic"), "{e}");
        let b = DefaultMQPushConsumerBuilder::new("g".into())
            .pull_threshold_for_topic(100)
            .max_reconsume_times(3);
        check_config(&b.cfg).unwrap();
        assert_eq!(b.cfg.max_reconsume_times, Some(3));
    }

    #[test]
    fn java_consume_timestamp_is_read_in_the_given_zone() {
        let utc = chrono::Utc;
        assert_eq!(
            parse_consume_timestamp_in("19700101000000", &utc).unwrap(),
            0
        );
        assert_eq!(
            parse_consume_timestamp_in("20231114221320", &utc).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_consume_timestamp_in("20240229235959", &utc).unwrap(),
            1_709_251_199_000
        );
        // Shanghai wall time is 8 hours ahead of UTC: the same text is 8 hours earlier.
        let shanghai = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        assert_eq!(
            parse_consume_timestamp_in("20231115061320", &shanghai).unwrap(),
            1_700_000_000_000
        );
        for bad in [
            "",
            "2023111422132",
            "20231314221320",
            "20230229000000",
            "2023-11-14 22:1",
            "20231114246000",
        ] {
            assert!(parse_consume_timestamp_in(bad, &utc).is_err(), "{bad}");
        }
    }

    /// The builder reads the text in the process's zone: run in a child process with `TZ`
    /// set, since the zone is read from the environment.
    #[test]
    fn consume_timestamp_uses_the_tz_of_the_process() {
        const CHILD: &str = "RMQ_TEST_TZ_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let ms = parse_consume_timestamp("20231115061320").unwrap();
            println!("TZ CHILD MS {ms}");
            return;
        }
        for (tz, want) in [
            ("Asia/Shanghai", 1_700_000_000_000_i64),
            ("UTC", 1_700_000_000_000 + 8 * 3_600_000),
        ] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "consumer::builder::tests::consume_timestamp_uses_the_tz_of_the_process",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .env("TZ", tz)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("TZ CHILD MS {want}")),
                "TZ={tz}: {stdout}"
            );
        }
    }
}
