//! Proves the consume hot path allocates nothing per message: decoding a 32-message
//! uncompressed pull body, setting each message's pull offsets and broker name as the consumer
//! does, and reading each message's topic, tags, keys, id and `MAX_OFFSET` allocates O(1).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rocketmq_sync::codec::{MessageDecoder, PullOffsets};
use rocketmq_sync::{Message, MessageConst, MessageExt};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards every call unchanged to the system allocator; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (out, ALLOCS.load(Ordering::SeqCst))
}

fn pull_body(n: usize) -> BytesMut {
    let mut body = BytesMut::new();
    for i in 0..n {
        let msg = Message::new("TopicTest", vec![b'x'; 128]).with_tags("TagA");
        let mut m = MessageExt::from_message(&msg);
        m.put_property(
            MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
            format!("7F000001000000000000000000{i:06X}"),
        );
        m.set_queue_offset(i as i64);
        m.set_store_host("127.0.0.1:10911".parse().unwrap());
        body.extend_from_slice(&MessageDecoder::encode(&m, false).unwrap());
    }
    body
}

// One test only: the counter is process-wide, and parallel tests would disturb it.
#[test]
fn decoding_a_pull_body_allocates_once_not_per_message() {
    // As the frame decoder hands it over: a frozen BytesMut (already reference-counted).
    let body = pull_body(32).freeze();
    let (mut msgs, allocs) = counted(|| MessageDecoder::decodes(body.clone()));
    assert_eq!(msgs.len(), 32);
    assert!(
        allocs <= 2,
        "decodes allocated {allocs} times for 32 messages"
    );

    // What the pull callback does once per pull: one shared offsets value and broker name.
    let ((), allocs) = counted(|| {
        let offsets = Arc::new(PullOffsets::new(0, 1000));
        let broker: Arc<str> = Arc::from("broker-a");
        for m in msgs.iter_mut() {
            m.set_pull_offsets(offsets.clone());
            m.set_broker_name(broker.clone());
        }
    });
    assert!(
        allocs <= 3,
        "setting pull offsets allocated {allocs} times for 32 messages"
    );

    let (n, allocs) = counted(|| {
        let mut n = 0;
        for m in &msgs {
            assert_eq!(m.topic(), "TopicTest");
            assert_eq!(m.tags(), Some("TagA"));
            assert!(m.keys().is_none());
            assert_eq!(m.msg_id().len(), 32);
            assert_eq!(m.body().len(), 128);
            assert_eq!(m.property(MessageConst::PROPERTY_MAX_OFFSET), Some("1000"));
            assert_eq!(m.property(MessageConst::PROPERTY_MIN_OFFSET), Some("0"));
            let c = m.clone();
            n += c.queue_offset();
        }
        n
    });
    assert_eq!(n, (0..32).sum::<i64>());
    assert_eq!(
        allocs, 0,
        "reading and cloning messages allocated {allocs} times"
    );

    // The same body as a plain Vec-backed Bytes: at most one extra allocation (bytes promotes
    // the buffer to shared once, on the first slice).
    let vec_body = Bytes::from(pull_body(32).to_vec());
    let (msgs, allocs) = counted(|| MessageDecoder::decodes(vec_body));
    assert_eq!(msgs.len(), 32);
    assert!(
        allocs <= 2,
        "decodes allocated {allocs} times for 32 messages"
    );

    // More messages, still O(1).
    let big = pull_body(256).freeze();
    let (msgs, allocs) = counted(|| MessageDecoder::decodes(big));
    assert_eq!(msgs.len(), 256);
    assert!(
        allocs <= 2,
        "decodes allocated {allocs} times for 256 messages"
    );
}
