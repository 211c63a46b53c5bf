//! `MessageQueue`: one queue of a topic on one broker.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One queue of a topic on one broker, as Java's `MessageQueue`.
///
/// Ordering is by topic, then broker name, then queue id (Java's `compareTo`), which is the order
/// rebalancing sorts queues in. `Display` gives Java's `toString`, which consistent hashing uses.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageQueue {
    /// The topic.
    pub topic: String,
    /// The broker name (not address).
    #[serde(rename = "brokerName")]
    pub broker_name: String,
    /// The queue id within the broker.
    #[serde(rename = "queueId")]
    pub queue_id: i32,
}

impl MessageQueue {
    /// A queue.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

impl fmt::Debug for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_to_string_and_order() {
        let a = MessageQueue::new("T", "broker-a", 0);
        assert_eq!(
            a.to_string(),
            "MessageQueue [topic=T, brokerName=broker-a, queueId=0]"
        );
        let mut v = [
            MessageQueue::new("T", "broker-b", 0),
            MessageQueue::new("T", "broker-a", 1),
            MessageQueue::new("T", "broker-a", 0),
        ];
        v.sort();
        assert_eq!(v[0], a);
        assert_eq!(v[2].broker_name, "broker-b");
    }
}
