//! Request and response codes as open newtypes.
//!
//! A code this crate has no name for still decodes: it is just a number. `Display` prints the
//! name when there is one, and the number otherwise.

use std::fmt;

macro_rules! open_code {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$cmeta:meta])* $const:ident = $value:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i32);

        impl $name {
            $( $(#[$cmeta])* pub const $const: $name = $name($value); )*

            /// The Java constant name for this code, if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($const)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({})", n, self.0),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl From<i32> for $name {
            fn from(v: i32) -> Self {
                $name(v)
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 {
                v.0
            }
        }
    };
}

open_code! {
    /// A request code (Java `RequestCode`).
    RequestCode {
        /// Send a message with the V1 header.
        SEND_MESSAGE = 10,
        /// Pull messages.
        PULL_MESSAGE = 11,
        /// Query messages by key.
        QUERY_MESSAGE = 12,
        /// Query a broker offset.
        QUERY_BROKER_OFFSET = 13,
        /// Query a consumer group's offset for a queue.
        QUERY_CONSUMER_OFFSET = 14,
        /// Commit a consumer group's offset for a queue.
        UPDATE_CONSUMER_OFFSET = 15,
        /// Create or update a topic on a broker.
        UPDATE_AND_CREATE_TOPIC = 17,
        /// Get every topic config of a broker.
        GET_ALL_TOPIC_CONFIG = 21,
        /// Search an offset by timestamp.
        SEARCH_OFFSET_BY_TIMESTAMP = 29,
        /// Get a queue's maximum offset.
        GET_MAX_OFFSET = 30,
        /// Get a queue's minimum offset.
        GET_MIN_OFFSET = 31,
        /// Get a queue's earliest store time.
        GET_EARLIEST_MSG_STORETIME = 32,
        /// View one message by commit-log offset.
        VIEW_MESSAGE_BY_ID = 33,
        /// Client heartbeat.
        HEART_BEAT = 34,
        /// Unregister a client.
        UNREGISTER_CLIENT = 35,
        /// A consumer sends a failed message back for retry.
        CONSUMER_SEND_MSG_BACK = 36,
        /// End a transaction.
        END_TRANSACTION = 37,
        /// List the consumer ids of a group.
        GET_CONSUMER_LIST_BY_GROUP = 38,
        /// Broker asks a producer for a transaction's state.
        CHECK_TRANSACTION_STATE = 39,
        /// Broker tells a consumer that its group changed.
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        /// Lock queues for orderly consumption.
        LOCK_BATCH_MQ = 41,
        /// Unlock queues.
        UNLOCK_BATCH_MQ = 42,
        /// Get every consumer offset of a broker.
        GET_ALL_CONSUMER_OFFSET = 43,
        /// Get every delay offset of a broker.
        GET_ALL_DELAY_OFFSET = 45,
        /// Check a consumer's subscription config (non-TAG expressions).
        CHECK_CLIENT_CONFIG = 46,
        /// Put a KV config on the name server.
        PUT_KV_CONFIG = 100,
        /// Get a KV config from the name server.
        GET_KV_CONFIG = 101,
        /// Delete a KV config on the name server.
        DELETE_KV_CONFIG = 102,
        /// Broker registration.
        REGISTER_BROKER = 103,
        /// Broker unregistration.
        UNREGISTER_BROKER = 104,
        /// Get a topic's route from the name server.
        GET_ROUTEINFO_BY_TOPIC = 105,
        /// Get the cluster info from the name server.
        GET_BROKER_CLUSTER_INFO = 106,
        /// Create or update a subscription group.
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        /// Get a topic's per-queue offsets and last update times at a broker.
        GET_TOPIC_STATS_INFO = 202,
        /// Get the connections and subscriptions of a consumer group at a broker.
        GET_CONSUMER_CONNECTION_LIST = 203,
        /// Get a consumer group's per-queue progress at a broker.
        GET_CONSUME_STATS = 208,
        /// Get every topic from the name server.
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206,
        /// Broker resets a consumer's offsets.
        RESET_CONSUMER_CLIENT_OFFSET = 220,
        /// Broker asks a consumer for its offsets.
        GET_CONSUMER_STATUS_FROM_CLIENT = 221,
        /// Broker asks a consumer for its running info.
        GET_CONSUMER_RUNNING_INFO = 307,
        /// Broker asks a consumer to consume one message now.
        CONSUME_MESSAGE_DIRECTLY = 309,
        /// Send a message with the V2 (one-letter) header.
        SEND_MESSAGE_V2 = 310,
        /// Send a batch of messages.
        SEND_BATCH_MESSAGE = 320,
        /// Send a reply message.
        SEND_REPLY_MESSAGE = 324,
        /// Send a reply message with the V2 header.
        SEND_REPLY_MESSAGE_V2 = 325,
        /// Broker pushes a reply message to the requesting client.
        PUSH_REPLY_MESSAGE_TO_CLIENT = 326,
    }
}

open_code! {
    /// A response code (Java `ResponseCode` and `RemotingSysResponseCode`).
    ResponseCode {
        /// Success.
        SUCCESS = 0,
        /// A generic server-side error.
        SYSTEM_ERROR = 1,
        /// The server is overloaded.
        SYSTEM_BUSY = 2,
        /// The server does not know the request code.
        REQUEST_CODE_NOT_SUPPORTED = 3,
        /// A transaction failed.
        TRANSACTION_FAILED = 4,
        /// Flushing to disk timed out.
        FLUSH_DISK_TIMEOUT = 10,
        /// No slave is available.
        SLAVE_NOT_AVAILABLE = 11,
        /// Flushing to the slave timed out.
        FLUSH_SLAVE_TIMEOUT = 12,
        /// The message is invalid.
        MESSAGE_ILLEGAL = 13,
        /// The service is not available.
        SERVICE_NOT_AVAILABLE = 14,
        /// The version is not supported.
        VERSION_NOT_SUPPORTED = 15,
        /// Permission denied.
        NO_PERMISSION = 16,
        /// The topic does not exist.
        TOPIC_NOT_EXIST = 17,
        /// The topic already exists.
        TOPIC_EXIST_ALREADY = 18,
        /// No message was found at the pull offset.
        PULL_NOT_FOUND = 19,
        /// Pull again at once (no message matched the filter).
        PULL_RETRY_IMMEDIATELY = 20,
        /// The pull offset is illegal and moved.
        PULL_OFFSET_MOVED = 21,
        /// The query found nothing.
        QUERY_NOT_FOUND = 22,
        /// The subscription could not be parsed.
        SUBSCRIPTION_PARSE_FAILED = 23,
        /// The subscription does not exist.
        SUBSCRIPTION_NOT_EXIST = 24,
        /// The subscription is not the latest.
        SUBSCRIPTION_NOT_LATEST = 25,
        /// The subscription group does not exist.
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        /// Filter data does not exist.
        FILTER_DATA_NOT_EXIST = 27,
        /// Filter data is not the latest.
        FILTER_DATA_NOT_LATEST = 28,
        /// Commit the transaction.
        TRANSACTION_SHOULD_COMMIT = 200,
        /// Roll the transaction back.
        TRANSACTION_SHOULD_ROLLBACK = 201,
        /// The transaction state is unknown.
        TRANSACTION_STATE_UNKNOW = 202,
        /// The transaction's group is wrong.
        TRANSACTION_STATE_GROUP_WRONG = 203,
        /// No buyer id.
        NO_BUYER_ID = 204,
        /// Not in the current unit.
        NOT_IN_CURRENT_UNIT = 205,
        /// The consumer is not online.
        CONSUMER_NOT_ONLINE = 206,
        /// Consuming the message timed out.
        CONSUME_MSG_TIMEOUT = 207,
        /// No message.
        NO_MESSAGE = 208,
        /// Updating the ACL config failed.
        UPDATE_AND_CREATE_ACL_CONFIG_FAILED = 209,
        /// Deleting the ACL config failed.
        DELETE_ACL_CONFIG_FAILED = 210,
        /// Updating the global white list failed.
        UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED = 211,
        /// The broker applies flow control.
        FLOW_CONTROL = 215,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_numbers() {
        assert_eq!(RequestCode(9999).to_string(), "9999");
        assert_eq!(RequestCode::PULL_MESSAGE.to_string(), "PULL_MESSAGE(11)");
        assert_eq!(ResponseCode(17), ResponseCode::TOPIC_NOT_EXIST);
        assert_eq!(ResponseCode(-5).name(), None);
    }
}
