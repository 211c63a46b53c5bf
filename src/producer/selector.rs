//! Choosing the queue of an ordered send: [`MessageQueueSelector`] and the stock selectors.
//!
//! `send` with a selector calls the selector **once** with the topic's writable queues and the
//! caller's argument, then sends to the queue it returns. The choice is not retried on another
//! queue and the latency fault tolerance is not consulted (Java semantics, FACTS §19.7): a
//! selector exists to pin a key to a queue, and moving the message would break the order.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::util::java_string_hash;
use crate::common::MessageQueue;

use crate::client::publish_info::random_seed;

/// Picks the queue an ordered message goes to (Java `MessageQueueSelector`).
///
/// `A` is the type of the argument passed to `send` alongside the message (Java's
/// `Object arg`); typically an order id or a business key.
///
/// Return `None` when no queue fits; the send then fails with a client error (Java: "select
/// message queue return null"). Unlike Java the selector does not see the message itself: select
/// by the argument.
///
/// # Closures
///
/// Any `Fn(&[MessageQueue], &A) -> Q + Send + Sync` is a selector, where `Q` is one of
/// * `usize`: an index into `mqs` (out of range means "no queue");
/// * `MessageQueue`: any queue, for example a clone of one from `mqs`;
/// * `Option<usize>` or `Option<MessageQueue>`.
///
/// Annotate the closure's parameter types, since nothing else tells the compiler what they are:
///
/// ```
/// use rocketmq_sync::MessageQueue;
/// use rocketmq_sync::MessageQueueSelector;
///
/// let by_order_id = |mqs: &[MessageQueue], order_id: &u64| (*order_id as usize) % mqs.len();
///
/// let mqs = vec![MessageQueue::new("T", "broker-a", 0), MessageQueue::new("T", "broker-a", 1)];
/// assert_eq!(by_order_id.select(&mqs, &7), Some(mqs[1].clone()));
/// ```
///
/// A closure cannot return `&MessageQueue` borrowed from `mqs` (its lifetime would have to be
/// spelled out in a way closures cannot express); return the index or a clone instead.
pub trait MessageQueueSelector<A: ?Sized>: Send + Sync {
    /// Chooses one queue of `mqs` (the topic's writable queues, in route order) for `arg`.
    fn select(&self, mqs: &[MessageQueue], arg: &A) -> Option<MessageQueue>;
}

/// What a selector closure may return: an index into the queue list, a queue, or an `Option` of
/// either. See [`MessageQueueSelector`].
pub trait SelectedQueue {
    /// Resolves the selection against the list the selector was given.
    fn into_queue(self, mqs: &[MessageQueue]) -> Option<MessageQueue>;
}

impl SelectedQueue for usize {
    fn into_queue(self, mqs: &[MessageQueue]) -> Option<MessageQueue> {
        mqs.get(self).cloned()
    }
}

impl SelectedQueue for MessageQueue {
    fn into_queue(self, _mqs: &[MessageQueue]) -> Option<MessageQueue> {
        Some(self)
    }
}

impl<T: SelectedQueue> SelectedQueue for Option<T> {
    fn into_queue(self, mqs: &[MessageQueue]) -> Option<MessageQueue> {
        self.and_then(|s| s.into_queue(mqs))
    }
}

impl<A, F, Q> MessageQueueSelector<A> for F
where
    A: ?Sized,
    F: Fn(&[MessageQueue], &A) -> Q + Send + Sync,
    Q: SelectedQueue,
{
    fn select(&self, mqs: &[MessageQueue], arg: &A) -> Option<MessageQueue> {
        self(mqs, arg).into_queue(mqs)
    }
}

/// Java's `hashCode()` for the argument types of [`SelectMessageQueueByHash`].
///
/// The values match Java exactly, so a Rust and a Java producer given the same key and the same
/// queue list pick the same queue:
///
/// | Rust | Java | hash |
/// |---|---|---|
/// | `str`, `String` | `String` | `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 units |
/// | `i32`, `i16`, `i8` | `Integer`, `Short`, `Byte` | the value |
/// | `i64` | `Long` | `(int)(v ^ (v >>> 32))` |
/// | `u32`, `u64` | `Integer`, `Long` with the same bits | as the signed type |
/// | `bool` | `Boolean` | `1231` / `1237` |
/// | `char` | `Character` | the UTF-16 code unit |
///
/// A `char` outside the Basic Multilingual Plane has no Java `Character`; it hashes as the
/// equivalent one-character `String`.
pub trait JavaHash {
    /// The value Java's `hashCode()` returns for the equivalent Java object.
    fn java_hash_code(&self) -> i32;
}

impl JavaHash for str {
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl JavaHash for String {
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl JavaHash for i32 {
    fn java_hash_code(&self) -> i32 {
        *self
    }
}

impl JavaHash for i16 {
    fn java_hash_code(&self) -> i32 {
        i32::from(*self)
    }
}

impl JavaHash for i8 {
    fn java_hash_code(&self) -> i32 {
        i32::from(*self)
    }
}

impl JavaHash for u32 {
    fn java_hash_code(&self) -> i32 {
        *self as i32
    }
}

impl JavaHash for i64 {
    fn java_hash_code(&self) -> i32 {
        let v = *self as u64;
        (v ^ (v >> 32)) as u32 as i32
    }
}

impl JavaHash for u64 {
    fn java_hash_code(&self) -> i32 {
        (*self as i64).java_hash_code()
    }
}

impl JavaHash for bool {
    fn java_hash_code(&self) -> i32 {
        if *self {
            1231
        } else {
            1237
        }
    }
}

impl JavaHash for char {
    fn java_hash_code(&self) -> i32 {
        let mut buf = [0u16; 2];
        match self.encode_utf16(&mut buf) {
            [unit] => i32::from(*unit),
            _ => java_string_hash(self.encode_utf8(&mut [0u8; 4])),
        }
    }
}

impl<T: JavaHash + ?Sized> JavaHash for &T {
    fn java_hash_code(&self) -> i32 {
        (**self).java_hash_code()
    }
}

/// Picks `mqs[abs(arg.hashCode() % mqs.len())]` (Java `SelectMessageQueueByHash`): the same key
/// always lands on the same queue while the queue list is unchanged.
///
/// The argument's hash is Java's ([`JavaHash`]), so keys are spread exactly as a Java producer
/// spreads them.
///
/// ```
/// use rocketmq_sync::MessageQueue;
/// use rocketmq_sync::{MessageQueueSelector, SelectMessageQueueByHash};
///
/// let mqs: Vec<_> = (0..4).map(|i| MessageQueue::new("T", "broker-a", i)).collect();
/// // Java: "order-1".hashCode() == -1207111310; -1207111310 % 4 == -2; abs -> 2.
/// assert_eq!(SelectMessageQueueByHash.select(&mqs, "order-1"), Some(mqs[2].clone()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectMessageQueueByHash;

impl<A: JavaHash + ?Sized> MessageQueueSelector<A> for SelectMessageQueueByHash {
    fn select(&self, mqs: &[MessageQueue], arg: &A) -> Option<MessageQueue> {
        let n = i32::try_from(mqs.len()).ok().filter(|n| *n > 0)?;
        // Java's `%` keeps the dividend's sign; `abs` of a remainder never overflows.
        let index = (arg.java_hash_code() % n).abs();
        mqs.get(index as usize).cloned()
    }
}

/// Picks a uniformly random queue on every call (Java `SelectMessageQueueByRandom`). The argument
/// is ignored, so it works with any argument type.
///
/// The generator is a small xorshift seeded per selector from the standard library's randomly
/// keyed hasher; it is for spreading load, not for anything security-related.
#[derive(Debug)]
pub struct SelectMessageQueueByRandom {
    state: AtomicU64,
}

impl SelectMessageQueueByRandom {
    /// A selector with a fresh random seed.
    pub fn new() -> Self {
        // Zero is the one state xorshift never leaves.
        SelectMessageQueueByRandom {
            state: AtomicU64::new(random_seed() | 1),
        }
    }

    fn next_u64(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }
}

impl Default for SelectMessageQueueByRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: ?Sized> MessageQueueSelector<A> for SelectMessageQueueByRandom {
    fn select(&self, mqs: &[MessageQueue], _arg: &A) -> Option<MessageQueue> {
        if mqs.is_empty() {
            return None;
        }
        let index = (self.next_u64() % mqs.len() as u64) as usize;
        mqs.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| {
                MessageQueue::new(
                    "TopicTest",
                    if i < 4 { "broker-a" } else { "broker-b" },
                    i % 4,
                )
            })
            .collect()
    }

    fn index_of(mqs: &[MessageQueue], mq: &MessageQueue) -> usize {
        mqs.iter().position(|q| q == mq).unwrap()
    }

    #[test]
    fn java_hash_codes_match_java() {
        // Computed by hand from Java's formulas.
        // "a" = 97; "ab" = 97*31 + 98 = 3105; "abc" = 3105*31 + 99 = 96354.
        assert_eq!("a".java_hash_code(), 97);
        assert_eq!("abc".java_hash_code(), 96354);
        assert_eq!(String::from("ab").java_hash_code(), 3105);
        // "order-1": 31-polynomial over the UTF-16 units, wrapped to i32.
        assert_eq!("order-1".java_hash_code(), -1207111310);
        assert_eq!(42i32.java_hash_code(), 42);
        assert_eq!((-7i32).java_hash_code(), -7);
        // Long.hashCode(v) = (int)(v ^ (v >>> 32)).
        assert_eq!(5i64.java_hash_code(), 5);
        assert_eq!((1i64 << 32).java_hash_code(), 1);
        // -1L = 0xFFFF_FFFF_FFFF_FFFF; v >>> 32 = 0x0000_0000_FFFF_FFFF; xor low word = 0.
        assert_eq!((-1i64).java_hash_code(), 0);
        // 0x1_0000_0005 -> 5 ^ 1 = 4.
        assert_eq!(0x1_0000_0005i64.java_hash_code(), 4);
        assert_eq!(u64::MAX.java_hash_code(), 0);
        assert_eq!(true.java_hash_code(), 1231);
        assert_eq!(false.java_hash_code(), 1237);
        assert_eq!('A'.java_hash_code(), 65);
        assert_eq!((&&"abc").java_hash_code(), 96354);
    }

    #[test]
    fn hash_selector_matches_java_indices() {
        let mqs = queues(8);
        // 96354 % 8 = 2.
        assert_eq!(
            index_of(&mqs, &SelectMessageQueueByHash.select(&mqs, "abc").unwrap()),
            2
        );
        // -1207111310 % 8 = -6 in Java; abs -> 6.
        assert_eq!(
            index_of(
                &mqs,
                &SelectMessageQueueByHash.select(&mqs, "order-1").unwrap()
            ),
            6
        );
        // -13 % 8 = -5 -> 5.
        assert_eq!(
            index_of(
                &mqs,
                &SelectMessageQueueByHash.select(&mqs, &-13i32).unwrap()
            ),
            5
        );
        // i32::MIN % 8 = 0 (no overflow in abs).
        assert_eq!(
            index_of(
                &mqs,
                &SelectMessageQueueByHash.select(&mqs, &i32::MIN).unwrap()
            ),
            0
        );
        // Long 0x1_0000_0005 hashes to 4.
        assert_eq!(
            index_of(
                &mqs,
                &SelectMessageQueueByHash
                    .select(&mqs, &0x1_0000_0005i64)
                    .unwrap()
            ),
            4
        );
        let three = queues(3);
        // 96354 % 3 = 0 (9+6+3+5+4 = 27).
        assert_eq!(
            index_of(
                &three,
                &SelectMessageQueueByHash
                    .select(&three, &String::from("abc"))
                    .unwrap()
            ),
            0
        );
    }

    #[test]
    fn hash_selector_same_key_same_queue() {
        let mqs = queues(8);
        for key in ["user-1", "user-2", "订单-3", ""] {
            let first = SelectMessageQueueByHash.select(&mqs, key).unwrap();
            for _ in 0..10 {
                assert_eq!(SelectMessageQueueByHash.select(&mqs, key).unwrap(), first);
            }
        }
    }

    #[test]
    fn hash_selector_on_empty_list_selects_nothing() {
        assert_eq!(SelectMessageQueueByHash.select(&[], "k"), None);
    }

    #[test]
    fn random_selector_stays_in_range_and_spreads() {
        let mqs = queues(4);
        let sel = SelectMessageQueueByRandom::new();
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            let mq = MessageQueueSelector::<()>::select(&sel, &mqs, &()).unwrap();
            seen[index_of(&mqs, &mq)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
        assert_eq!(MessageQueueSelector::<str>::select(&sel, &[], "x"), None);
    }

    #[test]
    fn closures_are_selectors() {
        let mqs = queues(4);
        let by_index = |mqs: &[MessageQueue], id: &u64| (*id as usize) % mqs.len();
        assert_eq!(by_index.select(&mqs, &6), Some(mqs[2].clone()));

        let by_clone = |mqs: &[MessageQueue], id: &u64| mqs[*id as usize].clone();
        assert_eq!(by_clone.select(&mqs, &1), Some(mqs[1].clone()));

        let by_find =
            |mqs: &[MessageQueue], broker: &str| mqs.iter().position(|q| q.broker_name == broker);
        assert_eq!(by_find.select(&mqs, "broker-a"), Some(mqs[0].clone()));
        assert_eq!(by_find.select(&mqs, "broker-x"), None);

        // An out-of-range index is "no queue", not a panic.
        let bad = |_: &[MessageQueue], _: &()| 99usize;
        assert_eq!(bad.select(&mqs, &()), None);

        // Usable as a trait object.
        let dyn_sel: &dyn MessageQueueSelector<u64> = &by_index;
        assert_eq!(dyn_sel.select(&mqs, &3), Some(mqs[3].clone()));
    }
}
