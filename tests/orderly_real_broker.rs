//! Orderly consumption against a real name server and broker (rocketmq-rust 1.0.0, started by
//! the harness in `tests/support/broker.rs`): broker queue locks, per-key order, suspension and
//! the hand-over of queues between consumers. Every test waits on conditions with deadlines.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_sync::{
    ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer, DefaultMQPushConsumer, Message,
    MessageExt, MessageListenerOrderly, MessageQueue, SelectMessageQueueByHash,
};
use support::broker::{wait_until, Cluster};
use support::client::*;
use support::consume::*;

/// One listener call on one message, as recorded by [`Recorder`].
#[derive(Debug, Clone)]
struct Call {
    client: usize,
    key: i32,
    seq: i32,
    queue: MessageQueue,
    reconsume_times: i32,
    start: Instant,
    end: Instant,
    status: ConsumeOrderlyStatus,
}

/// Every listener call of every consumer of a test, in the order the calls ended.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    ok: AtomicUsize,
}

impl Recorder {
    fn successes(&self) -> usize {
        self.ok.load(Ordering::Acquire)
    }
}

/// `"k{key}:{seq}"`.
fn parse(m: &MessageExt) -> (i32, i32) {
    let body = String::from_utf8_lossy(m.body()).into_owned();
    let (k, s) = body
        .strip_prefix('k')
        .and_then(|b| b.split_once(':'))
        .unwrap_or_else(|| panic!("unexpected body {body}"));
    (k.parse().unwrap(), s.parse().unwrap())
}

/// Sends `seqs` messages for each of `keys` keys, key by key in turn (so the keys of a queue
/// interleave), each through the hash selector on its key: one key, one queue.
fn send_keyed(p: &DefaultMQProducer, topic: &str, keys: i32, seqs: i32) {
    for seq in 0..seqs {
        for key in 0..keys {
            let m = Message::new(topic, format!("k{key}:{seq}")).with_keys(format!("k{key}"));
            p.send_with_selector(&m, &SelectMessageQueueByHash, &key)
                .unwrap_or_else(|e| panic!("send k{key}:{seq}: {e}"));
        }
    }
}

/// The shared cluster, a fresh topic of `queues` queues holding `keys` × `seqs` keyed messages
/// (see [`send_keyed`]), and a fresh group named from `prefix`.
fn keyed_backlog(
    queues: i32,
    prefix: &str,
    keys: i32,
    seqs: i32,
) -> (&'static Cluster, String, String) {
    support::broker::init_logger();
    let cluster = Cluster::shared();
    let topic = topic_with_queues(cluster, queues);
    let group = unique(prefix);
    let p = producer(&cluster.namesrv_addr, &unique("pg"));
    send_keyed(&p, &topic, keys, seqs);
    (cluster, topic, group)
}

/// A clustering orderly consumer of `group` on `topic` (built, not started).
fn orderly_consumer(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    listener: impl MessageListenerOrderly,
) -> DefaultMQPushConsumer {
    consumer_builder(cluster, group, topic)
        .register_message_listener_orderly(listener)
        .build()
        .unwrap()
}

/// A listener for consumer number `client` that records each call; `decide` picks the status
/// of each message (batch size 1).
fn recording(
    client: usize,
    rec: Arc<Recorder>,
    pause: Duration,
    decide: impl Fn(i32, i32, i32) -> ConsumeOrderlyStatus + Send + Sync + 'static,
) -> impl Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus + Send + Sync + 'static
{
    move |msgs: &[MessageExt], ctx: &mut ConsumeOrderlyContext| {
        let start = Instant::now();
        assert_eq!(msgs.len(), 1, "batch size is 1");
        let m = &msgs[0];
        let (key, seq) = parse(m);
        let status = decide(key, seq, m.reconsume_times());
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let end = Instant::now();
        rec.calls.lock().push(Call {
            client,
            key,
            seq,
            queue: ctx.message_queue().clone(),
            reconsume_times: m.reconsume_times(),
            start,
            end,
            status,
        });
        if status == ConsumeOrderlyStatus::Success {
            rec.ok.fetch_add(1, Ordering::AcqRel);
        }
        status
    }
}

/// Per key, the sequence numbers of the successful calls, in call order.
fn successes_by_key(calls: &[Call]) -> BTreeMap<i32, Vec<i32>> {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start);
    let mut by_key: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for c in sorted {
        if c.status == ConsumeOrderlyStatus::Success {
            by_key.entry(c.key).or_default().push(c.seq);
        }
    }
    by_key
}

fn assert_every_key_in_order_exactly_once(calls: &[Call], keys: i32, seqs: i32) {
    let by_key = successes_by_key(calls);
    let want: Vec<i32> = (0..seqs).collect();
    for key in 0..keys {
        assert_eq!(
            by_key.get(&key).cloned().unwrap_or_default(),
            want,
            "key {key}: successful deliveries out of order, missing or repeated"
        );
    }
}

#[test]
fn one_consumer_sees_every_key_in_order_exactly_once() {
    const KEYS: i32 = 100;
    const SEQS: i32 = 10;
    let (cluster, topic, group) = keyed_backlog(8, "ocg", KEYS, SEQS);

    let rec = Arc::new(Recorder::default());
    let c = orderly_consumer(
        cluster,
        &group,
        &topic,
        recording(0, rec.clone(), Duration::ZERO, |_, _, _| {
            ConsumeOrderlyStatus::Success
        }),
    );
    c.start().unwrap();
    let total = (KEYS * SEQS) as usize;
    assert!(
        wait_until(Duration::from_secs(60), || rec.successes() >= total),
        "consumed {} of {total}",
        rec.successes()
    );
    // Nothing more arrives.
    std::thread::sleep(Duration::from_secs(1));
    let calls = rec.calls.lock().clone();
    assert_eq!(calls.len(), total, "no extra delivery");
    assert_every_key_in_order_exactly_once(&calls, KEYS, SEQS);
    let queues: std::collections::HashSet<_> = calls.iter().map(|c| c.queue.clone()).collect();
    assert_eq!(queues.len(), 8, "all 8 queues were consumed");
    // Each key stayed on one queue.
    let mut key_queue: HashMap<i32, MessageQueue> = HashMap::new();
    for c in &calls {
        let q = key_queue.entry(c.key).or_insert_with(|| c.queue.clone());
        assert_eq!(*q, c.queue, "key {} seen on two queues", c.key);
    }
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_suspended_message_comes_again_before_anything_later_of_its_queue() {
    const KEYS: i32 = 20;
    const SEQS: i32 = 5;
    let (cluster, topic, group) = keyed_backlog(4, "ocg", KEYS, SEQS);
    // k3:2 is suspended twice, then succeeds.
    let (bad_key, bad_seq) = (3, 2);

    let rec = Arc::new(Recorder::default());
    let c = consumer_builder(cluster, &group, &topic)
        .suspend_current_queue_time(Duration::from_millis(200))
        .register_message_listener_orderly(recording(
            0,
            rec.clone(),
            Duration::ZERO,
            move |key, seq, times| {
                if (key, seq) == (bad_key, bad_seq) && times < 2 {
                    ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
                } else {
                    ConsumeOrderlyStatus::Success
                }
            },
        ))
        .build()
        .unwrap();
    c.start().unwrap();
    let total = (KEYS * SEQS) as usize;
    assert!(
        wait_until(Duration::from_secs(60), || rec.successes() >= total),
        "consumed {} of {total}",
        rec.successes()
    );
    std::thread::sleep(Duration::from_millis(500));
    let calls = rec.calls.lock().clone();
    assert_every_key_in_order_exactly_once(&calls, KEYS, SEQS);
    let bad: Vec<&Call> = calls
        .iter()
        .filter(|c| (c.key, c.seq) == (bad_key, bad_seq))
        .collect();
    assert_eq!(
        bad.iter()
            .map(|c| (c.reconsume_times, c.status))
            .collect::<Vec<_>>(),
        vec![
            (0, ConsumeOrderlyStatus::SuspendCurrentQueueAMoment),
            (1, ConsumeOrderlyStatus::SuspendCurrentQueueAMoment),
            (2, ConsumeOrderlyStatus::Success),
        ],
        "the suspended message is delivered again, counted, until it succeeds"
    );
    // On its queue, between its first delivery and its success, nothing else was consumed.
    let queue = bad[0].queue.clone();
    let mut on_queue: Vec<&Call> = calls.iter().filter(|c| c.queue == queue).collect();
    on_queue.sort_by_key(|c| c.start);
    let first = on_queue
        .iter()
        .position(|c| (c.key, c.seq) == (bad_key, bad_seq))
        .unwrap();
    for c in &on_queue[first..first + 3] {
        assert_eq!(
            (c.key, c.seq),
            (bad_key, bad_seq),
            "a later message of the queue ran while k{bad_key}:{bad_seq} was suspended: {on_queue:?}"
        );
    }
    // The suspension waited (200 ms each time) before the message came again.
    assert!(bad[1].start.duration_since(bad[0].end) >= Duration::from_millis(150));
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_second_consumer_takes_queues_over_without_overlap_and_order_holds() {
    const KEYS: i32 = 100;
    const SEQS: i32 = 30;
    let (cluster, topic, group) = keyed_backlog(8, "ocg", KEYS, SEQS);
    let total = (KEYS * SEQS) as usize;

    let rec = Arc::new(Recorder::default());
    // Slow enough that the backlog lasts well past the second consumer's arrival.
    let pause = Duration::from_millis(10);
    let ok = |_: i32, _: i32, _: i32| ConsumeOrderlyStatus::Success;
    let a = orderly_consumer(
        cluster,
        &group,
        &topic,
        recording(0, rec.clone(), pause, ok),
    );
    a.start().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || rec.successes() >= 300),
        "the first consumer started consuming"
    );
    let b = orderly_consumer(
        cluster,
        &group,
        &topic,
        recording(1, rec.clone(), pause, ok),
    );
    let joined = Instant::now();
    b.start().unwrap();
    assert!(
        wait_until(Duration::from_secs(120), || rec.successes() >= total),
        "consumed {} of {total}",
        rec.successes()
    );
    std::thread::sleep(Duration::from_secs(1));
    let calls = rec.calls.lock().clone();
    assert_every_key_in_order_exactly_once(&calls, KEYS, SEQS);

    // The second consumer got queues, within one lock interval (20 s) of joining.
    let first_b = calls
        .iter()
        .filter(|c| c.client == 1)
        .map(|c| c.start)
        .min()
        .expect("the second consumer consumed nothing");
    assert!(
        first_b.duration_since(joined) < Duration::from_secs(20),
        "the second consumer's first message came {:?} after it joined",
        first_b.duration_since(joined)
    );
    // No queue was consumed by two calls at once, by the same client or two.
    let mut by_queue: HashMap<MessageQueue, Vec<&Call>> = HashMap::new();
    for c in &calls {
        by_queue.entry(c.queue.clone()).or_default().push(c);
    }
    let mut handed_over = 0;
    for (q, mut v) in by_queue {
        v.sort_by_key(|c| c.start);
        for w in v.windows(2) {
            assert!(
                w[0].end <= w[1].start,
                "{q} was consumed by clients {} and {} at once",
                w[0].client,
                w[1].client
            );
            if w[0].client != w[1].client {
                handed_over += 1;
            }
        }
    }
    assert!(handed_over > 0, "no queue changed hands");
    b.shutdown(Duration::from_secs(10)).unwrap();
    a.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_poison_message_goes_to_the_dlq_after_max_reconsume_times_and_the_queue_goes_on() {
    const KEYS: i32 = 3;
    const SEQS: i32 = 3;
    let (cluster, topic, group) = keyed_backlog(1, "ocg", KEYS, SEQS);
    let (bad_key, bad_seq) = (1, 1);

    let rec = Arc::new(Recorder::default());
    let poison_attempts: Arc<Mutex<Vec<i32>>> = Arc::default();
    let attempts = poison_attempts.clone();
    let c = consumer_builder(cluster, &group, &topic)
        .max_reconsume_times(2)
        .suspend_current_queue_time(Duration::from_millis(20))
        .register_message_listener_orderly(recording(
            0,
            rec.clone(),
            Duration::ZERO,
            move |key, seq, times| {
                if (key, seq) == (bad_key, bad_seq) {
                    attempts.lock().push(times);
                    // A panic counts as SuspendCurrentQueueAMoment.
                    panic!("poison k{key}:{seq}");
                }
                ConsumeOrderlyStatus::Success
            },
        ))
        .build()
        .unwrap();
    c.start().unwrap();
    let total = (KEYS * SEQS) as usize - 1;
    assert!(
        wait_until(Duration::from_secs(60), || rec.successes() >= total),
        "consumed {} of {total}: the queue did not go on past the poison message",
        rec.successes()
    );
    assert_eq!(
        *poison_attempts.lock(),
        vec![0, 1, 2],
        "consumed once and reconsumed twice, then dead-lettered"
    );
    // Every other message, in order; the poison message never succeeded.
    let calls = rec.calls.lock().clone();
    let by_key = successes_by_key(&calls);
    for key in 0..KEYS {
        let want: Vec<i32> = (0..SEQS)
            .filter(|s| (key, *s) != (bad_key, bad_seq))
            .collect();
        assert_eq!(
            by_key.get(&key).cloned().unwrap_or_default(),
            want,
            "key {key}"
        );
    }
    let dlq = format!("%DLQ%{group}");
    let client = raw_client();
    let found = wait_until(Duration::from_secs(60), || {
        route(&client, &cluster.namesrv_addr, &dlq).is_ok()
            && read_topic(&client, &cluster.namesrv_addr, &dlq)
                .iter()
                .any(|m| &m.body()[..] == format!("k{bad_key}:{bad_seq}").as_bytes())
    });
    assert!(found, "the poison message never reached {dlq}");
    c.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_consumer_that_leaves_hands_its_queues_over_and_order_holds() {
    const KEYS: i32 = 100;
    const SEQS: i32 = 20;
    let (cluster, topic, group) = keyed_backlog(8, "ocg", KEYS, SEQS);
    let total = (KEYS * SEQS) as usize;

    let rec = Arc::new(Recorder::default());
    let pause = Duration::from_millis(10);
    let ok = |_: i32, _: i32, _: i32| ConsumeOrderlyStatus::Success;
    let a = orderly_consumer(
        cluster,
        &group,
        &topic,
        recording(0, rec.clone(), pause, ok),
    );
    let b = orderly_consumer(
        cluster,
        &group,
        &topic,
        recording(1, rec.clone(), pause, ok),
    );
    a.start().unwrap();
    b.start().unwrap();
    // Both consume, then the first leaves.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let calls = rec.calls.lock();
            calls.iter().any(|c| c.client == 0) && calls.iter().any(|c| c.client == 1)
        }),
        "both consumers got queues"
    );
    a.shutdown(Duration::from_secs(10)).unwrap();
    let left = Instant::now();
    // The broker does not announce a leaving consumer (FACTS §22): the survivor takes the
    // queues over at its periodic rebalance, within about 20 s.
    assert!(
        wait_until(Duration::from_secs(90), || rec.successes() >= total),
        "consumed {} of {total} after the first consumer left",
        rec.successes()
    );
    std::thread::sleep(Duration::from_secs(1));
    let calls = rec.calls.lock().clone();
    assert_every_key_in_order_exactly_once(&calls, KEYS, SEQS);
    assert!(
        calls.iter().any(|c| c.client == 1 && c.start > left),
        "the survivor consumed after the first consumer left"
    );
    assert!(
        calls.iter().all(|c| c.client == 1 || c.end <= left),
        "the consumer that left consumed after its shutdown returned"
    );
    b.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn broadcasting_orderly_consumers_each_see_every_key_in_order_without_broker_locks() {
    const KEYS: i32 = 20;
    const SEQS: i32 = 5;
    let (cluster, topic, group) = keyed_backlog(4, "obg", KEYS, SEQS);
    let dir = std::env::temp_dir().join(unique("offsets"));
    let total = (KEYS * SEQS) as usize;

    let recs: Vec<Arc<Recorder>> = (0..2).map(|_| Arc::new(Recorder::default())).collect();
    let consumers: Vec<_> = recs
        .iter()
        .enumerate()
        .map(|(i, rec)| {
            let c = consumer_builder(cluster, &group, &topic)
                .message_model(rocketmq_sync::MessageModel::Broadcasting)
                .offset_store_dir(dir.clone())
                .register_message_listener_orderly(recording(
                    i,
                    rec.clone(),
                    Duration::ZERO,
                    |_, _, _| ConsumeOrderlyStatus::Success,
                ))
                .build()
                .unwrap();
            c.start().unwrap();
            c
        })
        .collect();
    for rec in &recs {
        assert!(
            wait_until(Duration::from_secs(60), || rec.successes() >= total),
            "consumed {} of {total}",
            rec.successes()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for rec in &recs {
        let calls = rec.calls.lock().clone();
        assert_eq!(calls.len(), total, "no extra delivery");
        assert_every_key_in_order_exactly_once(&calls, KEYS, SEQS);
    }
    for c in consumers {
        c.shutdown(Duration::from_secs(10)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
