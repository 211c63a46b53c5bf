//! The push consumer's builder and `check_config` (Java `DefaultMQPushConsumer`'s setters and
//! `DefaultMQPushConsumerImpl.checkConfig`).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::client::config::ClientConfig;
use crate::common::util::now_millis;
use crate::common::ServiceState;
use crate::consumer::allocate::{AllocateMessageQueueAveragely, AllocateMessageQueueStrategy};
use crate::consumer::listener::{ConsumeMessageHook, MessageListener, MessageListenerConcurrently};
use crate::consumer::push_consumer::{DefaultMQPushConsumer, PushConsumerInner};
use crate::consumer::stats::ConsumerStats;
use crate::consumer::subscription::{
    build_subscription_data, ConsumeFromWhere, ExpressionType, MessageModel,
};
use crate::error::{Error, Result};

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
    /// How long after `PULL_OFFSET_MOVED` the offset is fixed (Java: 10 s; tests shorten it).
    pub(crate) offset_moved_fix_delay: Duration,
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
                offset_moved_fix_delay: crate::consumer::pull::OFFSET_ILLEGAL_FIX_DELAY,
            },
            client: ClientConfig::default(),
            subscriptions: Vec::new(),
            listener: None,
            allocate: Arc::new(AllocateMessageQueueAveragely),
            hooks: Vec::new(),
            consume_timestamp_text: None,
        }
    }

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
    /// Test hook: the delay before a `PULL_OFFSET_MOVED` is fixed (Java: 10 s, not settable).
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn offset_moved_fix_delay_for_tests(mut self, delay: Duration) -> Self {
        self.cfg.offset_moved_fix_delay = delay;
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
            listener: MessageListener::Concurrently(listener),
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
