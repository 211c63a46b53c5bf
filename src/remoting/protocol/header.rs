//! Typed custom headers for every request the client sends or answers.
//!
//! Each header is a plain struct with public snake_case fields. It travels in a command's
//! `extFields` under the Java field names (`consumerGroup`, `clientID`, `isForce`, `a`..`n`), the
//! values stringified as Java's `toString()` would: numbers in decimal, booleans as
//! `"true"`/`"false"`.
//!
//! The field kinds follow Java's `makeCustomHeaderToNet` / `decodeCommandCustomHeader`:
//!
//! * a required field (`@CFNotNull` in Java) is a plain type; when it is missing,
//!   [`CommandCustomHeader::read_from`] fails with [`CodecError::MissingField`] naming the Java
//!   field, and an unparsable number is [`CodecError::InvalidField`];
//! * an optional (nullable) field is an `Option`, written only when `Some`;
//! * a Java primitive `boolean` with default `false` is a `bool` that is always written and reads
//!   as `false` when absent;
//! * booleans parse like Java's `Boolean.parseBoolean`: only `"true"` (any case) is true.
//!
//! Headers that inherit Java's `RpcRequestHeader` carry an optional `bname` (broker name). A 4.9.8
//! broker ignores it, so `None` is always safe.
//!
//! Fields are written in the order the Java class declares them (for `FastCodesHeader` types, the
//! order of their hand-written `encode`), so a header built here and encoded in the ROCKETMQ
//! binary form gives the same bytes as the Java client.

use super::CodecError;
use super::{CommandCustomHeader, ExtFields, MessageQueue};

/// A value type a header field may hold, parsed as Java's `decodeCommandCustomHeader` does.
trait FieldValue: Sized {
    fn parse_field(key: &'static str, value: &str) -> Result<Self, CodecError>;
}

impl FieldValue for String {
    fn parse_field(_key: &'static str, value: &str) -> Result<Self, CodecError> {
        Ok(value.to_owned())
    }
}

impl FieldValue for bool {
    fn parse_field(_key: &'static str, value: &str) -> Result<Self, CodecError> {
        // Java `Boolean.parseBoolean`: anything but "true" (ignoring case) is false.
        Ok(value.eq_ignore_ascii_case("true"))
    }
}

macro_rules! number_field_value {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn parse_field(key: &'static str, value: &str) -> Result<Self, CodecError> {
                // Java `Integer.parseInt` / `Long.parseLong`: no surrounding whitespace allowed.
                value.parse().map_err(|_| CodecError::InvalidField {
                    field: key,
                    value: value.to_owned(),
                })
            }
        }
    )*};
}
number_field_value!(i32, i64);

/// Declares a header struct and its [`CommandCustomHeader`] impl.
///
/// Each field is `kind name: Type = "javaName"`, where kind is `req` (required), `opt` (an
/// `Option`, written only when set) or `flag` (a `bool` defaulting to `false`, always written).
macro_rules! custom_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $kind:ident $field:ident : $ty:ty = $key:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl CommandCustomHeader for $name {
            fn write_to(&self, fields: &mut ExtFields) {
                $( custom_header!(@write $kind, fields, $key, &self.$field); )*
            }

            fn read_from(fields: &ExtFields) -> Result<Self, CodecError> {
                Ok($name {
                    $( $field: custom_header!(@read $kind, fields, $key), )*
                })
            }
        }
    };
    (@write req, $f:ident, $key:literal, $v:expr) => { $f.put($key, $v) };
    (@write opt, $f:ident, $key:literal, $v:expr) => { $f.put_opt($key, ($v).as_ref()) };
    (@write flag, $f:ident, $key:literal, $v:expr) => { $f.put($key, $v) };
    (@read req, $f:ident, $key:literal) => {
        FieldValue::parse_field($key, $f.required($key)?)?
    };
    (@read opt, $f:ident, $key:literal) => {
        match $f.get($key) {
            Some(v) => Some(FieldValue::parse_field($key, v)?),
            None => None,
        }
    };
    (@read flag, $f:ident, $key:literal) => { $f.bool_or_false($key) };
}

// ---------------------------------------------------------------------------------------------
// Pull

custom_header! {
    /// PULL_MESSAGE (11) request (Java `PullMessageRequestHeader`, a `FastCodesHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct PullMessageRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The offset to pull from (`queueOffset`).
        req queue_offset: i64 = "queueOffset",
        /// The most messages to return (`maxMsgNums`).
        req max_msg_nums: i32 = "maxMsgNums",
        /// `PullSysFlag` bits (`sysFlag`).
        req sys_flag: i32 = "sysFlag",
        /// The consumer offset to commit along with the pull (`commitOffset`).
        req commit_offset: i64 = "commitOffset",
        /// How long the broker may hold the request (`suspendTimeoutMillis`).
        req suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// The subscription expression, sent when the subscription flag is set (`subscription`).
        opt subscription: Option<String> = "subscription",
        /// The subscription version (`subVersion`).
        req sub_version: i64 = "subVersion",
        /// `TAG` or `SQL92` (`expressionType`).
        opt expression_type: Option<String> = "expressionType",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// PULL_MESSAGE response (Java `PullMessageResponseHeader`, a `FastCodesHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct PullMessageResponseHeader {
        /// The broker id to pull from next time (`suggestWhichBrokerId`).
        req suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        /// The offset to pull from next (`nextBeginOffset`).
        req next_begin_offset: i64 = "nextBeginOffset",
        /// The queue's smallest offset (`minOffset`).
        req min_offset: i64 = "minOffset",
        /// The queue's largest offset (`maxOffset`).
        req max_offset: i64 = "maxOffset",
    }
}

// ---------------------------------------------------------------------------------------------
// Send

custom_header! {
    /// SEND_MESSAGE (10) and SEND_BATCH_MESSAGE request in the long form (Java
    /// `SendMessageRequestHeader`). The client sends [`SendMessageRequestHeaderV2`] instead; the
    /// two convert into each other with `From`.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SendMessageRequestHeader {
        /// The producer group (`producerGroup`).
        req producer_group: String = "producerGroup",
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The topic to copy settings from when auto-creating (`defaultTopic`, usually `TBW102`).
        req default_topic: String = "defaultTopic",
        /// Queue count for an auto-created topic (`defaultTopicQueueNums`, usually 4).
        req default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// `MessageSysFlag` bits (`sysFlag`).
        req sys_flag: i32 = "sysFlag",
        /// When the message was created, in ms (`bornTimestamp`).
        req born_timestamp: i64 = "bornTimestamp",
        /// The user flag of the message (`flag`).
        req flag: i32 = "flag",
        /// The encoded properties string (`properties`).
        opt properties: Option<String> = "properties",
        /// How often the message was consumed again (`reconsumeTimes`).
        opt reconsume_times: Option<i32> = "reconsumeTimes",
        /// Unit mode (`unitMode`).
        flag unit_mode: bool = "unitMode",
        /// The body is a batch (`batch`).
        flag batch: bool = "batch",
        /// Retry limit, sent for `%RETRY%` topics (`maxReconsumeTimes`).
        opt max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE request with one-letter keys (Java
    /// `SendMessageRequestHeaderV2`, a `FastCodesHeader`). Fields keep the Java names `a`..`n`;
    /// each doc says which [`SendMessageRequestHeader`] field it carries.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SendMessageRequestHeaderV2 {
        /// `producerGroup`.
        req a: String = "a",
        /// `topic`.
        req b: String = "b",
        /// `defaultTopic`.
        req c: String = "c",
        /// `defaultTopicQueueNums`.
        req d: i32 = "d",
        /// `queueId`.
        req e: i32 = "e",
        /// `sysFlag`.
        req f: i32 = "f",
        /// `bornTimestamp`.
        req g: i64 = "g",
        /// `flag`.
        req h: i32 = "h",
        /// `properties`.
        opt i: Option<String> = "i",
        /// `reconsumeTimes`.
        opt j: Option<i32> = "j",
        /// `unitMode`; always written.
        flag k: bool = "k",
        /// `maxReconsumeTimes`.
        opt l: Option<i32> = "l",
        /// `batch`; always written.
        flag m: bool = "m",
        /// The broker name (V1's `bname`).
        opt n: Option<String> = "n",
        /// V2's own `bname` from `RpcRequestHeader`; the Java client leaves it null and uses `n`.
        opt bname: Option<String> = "bname",
    }
}

impl From<&SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    /// Java `SendMessageRequestHeaderV2.createSendMessageRequestHeaderV2`: V1's `bname` goes to `n`.
    fn from(v1: &SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v1.producer_group.clone(),
            b: v1.topic.clone(),
            c: v1.default_topic.clone(),
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties.clone(),
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.bname.clone(),
            bname: None,
        }
    }
}

impl From<&SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    /// Java `SendMessageRequestHeaderV2.createSendMessageRequestHeaderV1`: `n` becomes `bname`.
    fn from(v2: &SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v2.a.clone(),
            topic: v2.b.clone(),
            default_topic: v2.c.clone(),
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i.clone(),
            reconsume_times: v2.j,
            unit_mode: v2.k,
            batch: v2.m,
            max_reconsume_times: v2.l,
            bname: v2.n.clone(),
        }
    }
}

custom_header! {
    /// SEND_MESSAGE response (Java `SendMessageResponseHeader`, a `FastCodesHeader`).
    ///
    /// The response's `extFields` also carry `MSG_REGION` and `TRACE_ON`; they are not header
    /// fields, so callers read them from the command directly.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SendMessageResponseHeader {
        /// The offset message id (`msgId`).
        req msg_id: String = "msgId",
        /// The queue the message went to (`queueId`).
        req queue_id: i32 = "queueId",
        /// The message's offset in the queue (`queueOffset`).
        req queue_offset: i64 = "queueOffset",
        /// The transaction id (`transactionId`).
        opt transaction_id: Option<String> = "transactionId",
    }
}

custom_header! {
    /// CONSUMER_SEND_MSG_BACK (36) request (Java `ConsumerSendMsgBackRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ConsumerSendMsgBackRequestHeader {
        /// The message's commit-log offset (`offset`).
        req offset: i64 = "offset",
        /// The consumer group (`group`).
        req group: String = "group",
        /// The delay level for the retry (`delayLevel`).
        req delay_level: i32 = "delayLevel",
        /// The original message id (`originMsgId`).
        opt origin_msg_id: Option<String> = "originMsgId",
        /// The original topic (`originTopic`).
        opt origin_topic: Option<String> = "originTopic",
        /// Unit mode (`unitMode`).
        flag unit_mode: bool = "unitMode",
        /// Retry limit before the dead-letter queue (`maxReconsumeTimes`).
        opt max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions

custom_header! {
    /// END_TRANSACTION (37) request (Java `EndTransactionRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct EndTransactionRequestHeader {
        /// The producer group (`producerGroup`).
        req producer_group: String = "producerGroup",
        /// The half message's queue offset (`tranStateTableOffset`).
        req tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The half message's commit-log offset (`commitLogOffset`).
        req commit_log_offset: i64 = "commitLogOffset",
        /// 0 unknown, 8 commit, 12 rollback (`commitOrRollback`).
        req commit_or_rollback: i32 = "commitOrRollback",
        /// The request answers a transaction check (`fromTransactionCheck`, default false).
        flag from_transaction_check: bool = "fromTransactionCheck",
        /// The message id (`msgId`).
        req msg_id: String = "msgId",
        /// The transaction id (`transactionId`).
        opt transaction_id: Option<String> = "transactionId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// CHECK_TRANSACTION_STATE (39) request from the broker (Java
    /// `CheckTransactionStateRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CheckTransactionStateRequestHeader {
        /// The half message's queue offset (`tranStateTableOffset`).
        req tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The half message's commit-log offset (`commitLogOffset`).
        req commit_log_offset: i64 = "commitLogOffset",
        /// The message id (`msgId`).
        opt msg_id: Option<String> = "msgId",
        /// The transaction id (`transactionId`).
        opt transaction_id: Option<String> = "transactionId",
        /// The offset message id (`offsetMsgId`).
        opt offset_msg_id: Option<String> = "offsetMsgId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

// ---------------------------------------------------------------------------------------------
// Offsets

custom_header! {
    /// QUERY_CONSUMER_OFFSET (14) request (Java `QueryConsumerOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct QueryConsumerOffsetRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// QUERY_CONSUMER_OFFSET response (Java `QueryConsumerOffsetResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct QueryConsumerOffsetResponseHeader {
        /// The stored consumer offset (`offset`).
        req offset: i64 = "offset",
    }
}

custom_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request (Java `UpdateConsumerOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UpdateConsumerOffsetRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The offset to store (`commitOffset`).
        req commit_offset: i64 = "commitOffset",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// GET_MAX_OFFSET (30) request (Java `GetMaxOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetMaxOffsetRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// GET_MAX_OFFSET response (Java `GetMaxOffsetResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetMaxOffsetResponseHeader {
        /// The queue's largest offset (`offset`).
        req offset: i64 = "offset",
    }
}

custom_header! {
    /// GET_MIN_OFFSET (31) request (Java `GetMinOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetMinOffsetRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// GET_MIN_OFFSET response (Java `GetMinOffsetResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetMinOffsetResponseHeader {
        /// The queue's smallest offset (`offset`).
        req offset: i64 = "offset",
    }
}

custom_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) request (Java `GetEarliestMsgStoretimeRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetEarliestMsgStoretimeRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// GET_EARLIEST_MSG_STORETIME response (Java `GetEarliestMsgStoretimeResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetEarliestMsgStoretimeResponseHeader {
        /// The store time of the queue's first message, in ms (`timestamp`).
        req timestamp: i64 = "timestamp",
    }
}

/// The per-queue requests (`topic`, `queueId`, `bname`) built from their queue.
macro_rules! queue_request_from_mq {
    ($($name:ident),* $(,)?) => {
        $(
            impl From<&MessageQueue> for $name {
                fn from(mq: &MessageQueue) -> Self {
                    $name {
                        topic: mq.topic.clone(),
                        queue_id: mq.queue_id,
                        bname: Some(mq.broker_name.clone()),
                    }
                }
            }
        )*
    };
}

queue_request_from_mq!(
    GetMaxOffsetRequestHeader,
    GetMinOffsetRequestHeader,
    GetEarliestMsgStoretimeRequestHeader,
);

custom_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request (Java `SearchOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SearchOffsetRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The queue id (`queueId`).
        req queue_id: i32 = "queueId",
        /// The store time to search for, in ms (`timestamp`).
        req timestamp: i64 = "timestamp",
        /// The broker name (`bname`, from `RpcRequestHeader`).
        opt bname: Option<String> = "bname",
    }
}

custom_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP response (Java `SearchOffsetResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SearchOffsetResponseHeader {
        /// The offset found (`offset`).
        req offset: i64 = "offset",
    }
}

// ---------------------------------------------------------------------------------------------
// Name server, admin

custom_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request (Java `GetRouteInfoRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetRouteInfoRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// Ask a 4.9.4+ name server for standard JSON (`acceptStandardJsonOnly`).
        opt accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

custom_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request (Java `CreateTopicRequestHeader`).
    ///
    /// `Default` gives Java's field defaults: `topicFilterType` `SINGLE_TAG`, `order` false.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CreateTopicRequestHeader {
        /// The topic to create (`topic`).
        req topic: String = "topic",
        /// The template topic (`defaultTopic`).
        req default_topic: String = "defaultTopic",
        /// Read queue count (`readQueueNums`).
        req read_queue_nums: i32 = "readQueueNums",
        /// Write queue count (`writeQueueNums`).
        req write_queue_nums: i32 = "writeQueueNums",
        /// Permission bits (`perm`).
        req perm: i32 = "perm",
        /// `SINGLE_TAG` or `MULTI_TAG` (`topicFilterType`).
        req topic_filter_type: String = "topicFilterType",
        /// Topic system flags (`topicSysFlag`).
        opt topic_sys_flag: Option<i32> = "topicSysFlag",
        /// An ordered topic (`order`).
        req order: bool = "order",
    }
}

impl Default for CreateTopicRequestHeader {
    fn default() -> Self {
        CreateTopicRequestHeader {
            topic: String::new(),
            default_topic: String::new(),
            read_queue_nums: 0,
            write_queue_nums: 0,
            perm: 0,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_sys_flag: None,
            order: false,
        }
    }
}

custom_header! {
    /// VIEW_MESSAGE_BY_ID (33) request (Java `ViewMessageRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ViewMessageRequestHeader {
        /// The message's commit-log offset (`offset`).
        req offset: i64 = "offset",
    }
}

custom_header! {
    /// QUERY_MESSAGE (12) request (Java `QueryMessageRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct QueryMessageRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The message key (`key`).
        req key: String = "key",
        /// The most messages to return (`maxNum`).
        req max_num: i32 = "maxNum",
        /// Start of the time range, in ms (`beginTimestamp`).
        req begin_timestamp: i64 = "beginTimestamp",
        /// End of the time range, in ms (`endTimestamp`).
        req end_timestamp: i64 = "endTimestamp",
    }
}

custom_header! {
    /// QUERY_MESSAGE response (Java `QueryMessageResponseHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct QueryMessageResponseHeader {
        /// When the broker's index was last updated, in ms (`indexLastUpdateTimestamp`).
        req index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        /// The commit-log offset the index had reached then (`indexLastUpdatePhyoffset`).
        req index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

custom_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203) request (Java `GetConsumerConnectionListRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetConsumerConnectionListRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// GET_CONSUME_STATS (208) request (Java `GetConsumeStatsRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetConsumeStatsRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// Only this topic; every topic of the group when absent (`topic`).
        opt topic: Option<String> = "topic",
    }
}

// ---------------------------------------------------------------------------------------------
// Client management

custom_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) request (Java `GetConsumerListByGroupRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetConsumerListByGroupRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// UNREGISTER_CLIENT (35) request (Java `UnregisterClientRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UnregisterClientRequestHeader {
        /// The client id (`clientID`, capital `ID`).
        req client_id: String = "clientID",
        /// The producer group leaving (`producerGroup`).
        opt producer_group: Option<String> = "producerGroup",
        /// The consumer group leaving (`consumerGroup`).
        opt consumer_group: Option<String> = "consumerGroup",
    }
}

custom_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40) request from the broker (Java
    /// `NotifyConsumerIdsChangedRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct NotifyConsumerIdsChangedRequestHeader {
        /// The consumer group whose members changed (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
    }
}

custom_header! {
    /// RESET_CONSUMER_CLIENT_OFFSET (220) request from the broker (Java
    /// `ResetOffsetRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ResetOffsetRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The consumer group (`group`).
        req group: String = "group",
        /// The time to reset to, in ms (`timestamp`).
        req timestamp: i64 = "timestamp",
        /// Reset even forwards (`isForce`, the key keeps Java's `is` prefix).
        req is_force: bool = "isForce",
    }
}

custom_header! {
    /// GET_CONSUMER_RUNNING_INFO (307) request from the broker (Java
    /// `GetConsumerRunningInfoRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetConsumerRunningInfoRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// The client id asked (`clientId`).
        req client_id: String = "clientId",
        /// Include thread stacks (`jstackEnable`).
        flag jstack_enable: bool = "jstackEnable",
    }
}

custom_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309) request from the broker (Java
    /// `ConsumeMessageDirectlyResultRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        /// The consumer group (`consumerGroup`).
        req consumer_group: String = "consumerGroup",
        /// The client id asked (`clientId`).
        opt client_id: Option<String> = "clientId",
        /// The message to consume (`msgId`).
        opt msg_id: Option<String> = "msgId",
        /// The broker holding it (`brokerName`).
        opt broker_name: Option<String> = "brokerName",
    }
}

custom_header! {
    /// GET_CONSUMER_STATUS_FROM_CLIENT (221) request from the broker (Java
    /// `GetConsumerStatusRequestHeader`).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GetConsumerStatusRequestHeader {
        /// The topic (`topic`).
        req topic: String = "topic",
        /// The consumer group (`group`).
        req group: String = "group",
        /// The client address asked (`clientAddr`).
        opt client_addr: Option<String> = "clientAddr",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> ExtFields {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn round_trip<H: CommandCustomHeader + PartialEq + std::fmt::Debug>(h: &H) -> ExtFields {
        let mut f = ExtFields::new();
        h.write_to(&mut f);
        assert_eq!(&H::read_from(&f).unwrap(), h);
        f
    }

    fn pull() -> PullMessageRequestHeader {
        PullMessageRequestHeader {
            consumer_group: "cg".into(),
            topic: "T".into(),
            queue_id: 1,
            queue_offset: 100,
            max_msg_nums: 32,
            sys_flag: 2,
            commit_offset: 0,
            suspend_timeout_millis: 15000,
            subscription: None,
            sub_version: 1_700_000_000_000,
            expression_type: Some("TAG".into()),
            bname: Some("broker-a".into()),
        }
    }

    #[test]
    fn pull_request_writes_java_order_and_round_trips() {
        let f = round_trip(&pull());
        let keys: Vec<&str> = f.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "consumerGroup",
                "topic",
                "queueId",
                "queueOffset",
                "maxMsgNums",
                "sysFlag",
                "commitOffset",
                "suspendTimeoutMillis",
                "subVersion",
                "expressionType",
                "bname"
            ]
        );
        assert_eq!(f.get("subVersion"), Some("1700000000000"));
        assert_eq!(f.get("subscription"), None);
    }

    #[test]
    fn missing_required_field_names_the_java_field() {
        let mut f = ExtFields::new();
        pull().write_to(&mut f);
        f.remove("suspendTimeoutMillis");
        assert_eq!(
            PullMessageRequestHeader::read_from(&f),
            Err(CodecError::MissingField("suspendTimeoutMillis"))
        );
        assert_eq!(
            UnregisterClientRequestHeader::read_from(&fields(&[("clientId", "x")])),
            Err(CodecError::MissingField("clientID"))
        );
        assert_eq!(
            ResetOffsetRequestHeader::read_from(&fields(&[
                ("topic", "T"),
                ("group", "g"),
                ("timestamp", "1")
            ])),
            Err(CodecError::MissingField("isForce"))
        );
    }

    #[test]
    fn unparsable_number_is_invalid_field() {
        let f = fields(&[("offset", "12x")]);
        assert_eq!(
            QueryConsumerOffsetResponseHeader::read_from(&f),
            Err(CodecError::InvalidField {
                field: "offset",
                value: "12x".into()
            })
        );
        // An optional number present but broken is an error too.
        let f = fields(&[("topic", "T"), ("topicSysFlag", "")]);
        let mut f2 = ExtFields::new();
        CreateTopicRequestHeader::default().write_to(&mut f2);
        for (k, v) in f.iter() {
            f2.insert(k, v);
        }
        assert_eq!(
            CreateTopicRequestHeader::read_from(&f2),
            Err(CodecError::InvalidField {
                field: "topicSysFlag",
                value: String::new()
            })
        );
        // i32 overflow is rejected, as Java's parseInt would.
        let f = fields(&[("topic", "T"), ("queueId", "2147483648")]);
        assert!(matches!(
            GetMaxOffsetRequestHeader::read_from(&f),
            Err(CodecError::InvalidField {
                field: "queueId",
                ..
            })
        ));
    }

    #[test]
    fn booleans_parse_like_java() {
        let base = [("topic", "T"), ("group", "g"), ("timestamp", "5")];
        for (text, want) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("false", false),
            ("yes", false),
            ("1", false),
            ("", false),
        ] {
            let mut f = fields(&base);
            f.insert("isForce", text);
            assert_eq!(
                ResetOffsetRequestHeader::read_from(&f).unwrap().is_force,
                want,
                "{text:?}"
            );
        }
        // A defaulted primitive boolean reads as false when absent and is always written.
        let h = GetConsumerRunningInfoRequestHeader::read_from(&fields(&[
            ("consumerGroup", "cg"),
            ("clientId", "c"),
        ]))
        .unwrap();
        assert!(!h.jstack_enable);
        let f = round_trip(&h);
        assert_eq!(f.get("jstackEnable"), Some("false"));
        // An optional Boolean stays None when absent.
        let h = GetRouteInfoRequestHeader::read_from(&fields(&[("topic", "T")])).unwrap();
        assert_eq!(h.accept_standard_json_only, None);
        let h = GetRouteInfoRequestHeader::read_from(&fields(&[
            ("topic", "T"),
            ("acceptStandardJsonOnly", "True"),
        ]))
        .unwrap();
        assert_eq!(h.accept_standard_json_only, Some(true));
        assert_eq!(round_trip(&h).get("acceptStandardJsonOnly"), Some("true"));
    }

    fn v1() -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "T".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some("TAGS\u{1}TagA\u{2}".into()),
            reconsume_times: Some(2),
            unit_mode: false,
            batch: true,
            max_reconsume_times: Some(16),
            bname: Some("broker-a".into()),
        }
    }

    #[test]
    fn send_v1_v2_conversion() {
        let v1 = v1();
        let v2 = SendMessageRequestHeaderV2::from(&v1);
        assert_eq!(v2.a, "pg");
        assert_eq!(v2.c, "TBW102");
        assert_eq!(v2.e, 3);
        assert_eq!(v2.g, 1_700_000_000_000);
        assert_eq!(v2.j, Some(2));
        assert!(v2.m);
        assert_eq!(v2.l, Some(16));
        assert_eq!(v2.n.as_deref(), Some("broker-a"));
        assert_eq!(v2.bname, None);
        assert_eq!(SendMessageRequestHeader::from(&v2), v1);

        let f = round_trip(&v2);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"]
        );
        assert_eq!(f.get("k"), Some("false"));
        assert_eq!(f.get("m"), Some("true"));
        round_trip(&v1);
    }

    #[test]
    fn send_v2_optional_fields_are_omitted() {
        let v2 = SendMessageRequestHeaderV2 {
            a: "pg".into(),
            b: "T".into(),
            c: "TBW102".into(),
            d: 4,
            ..Default::default()
        };
        let f = round_trip(&v2);
        for k in ["i", "j", "l", "n", "bname"] {
            assert_eq!(f.get(k), None, "{k}");
        }
        assert_eq!(f.len(), 10);
    }

    #[test]
    fn create_topic_defaults_match_java() {
        let h = CreateTopicRequestHeader {
            topic: "T".into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 6,
            ..Default::default()
        };
        let f = round_trip(&h);
        assert_eq!(f.get("topicFilterType"), Some("SINGLE_TAG"));
        assert_eq!(f.get("order"), Some("false"));
        assert_eq!(f.get("topicSysFlag"), None);
    }

    #[test]
    fn representative_headers_round_trip() {
        round_trip(&PullMessageResponseHeader {
            suggest_which_broker_id: 1,
            next_begin_offset: 132,
            min_offset: 0,
            max_offset: -1,
        });
        round_trip(&SendMessageResponseHeader {
            msg_id: "7F00000100002A9F0000000000000000".into(),
            queue_id: 1,
            queue_offset: 5,
            transaction_id: Some("tx".into()),
        });
        round_trip(&ConsumerSendMsgBackRequestHeader {
            offset: 1024,
            group: "cg".into(),
            delay_level: 3,
            origin_msg_id: Some("id".into()),
            origin_topic: None,
            unit_mode: true,
            max_reconsume_times: Some(16),
            bname: None,
        });
        round_trip(&EndTransactionRequestHeader {
            producer_group: "pg".into(),
            tran_state_table_offset: 5,
            commit_log_offset: 1024,
            commit_or_rollback: 8,
            from_transaction_check: true,
            msg_id: "m".into(),
            transaction_id: None,
            bname: Some("b".into()),
        });
        let f = round_trip(&UnregisterClientRequestHeader {
            client_id: "127.0.0.1@1".into(),
            producer_group: None,
            consumer_group: Some("cg".into()),
        });
        assert_eq!(f.get("clientID"), Some("127.0.0.1@1"));
        let f = round_trip(&ResetOffsetRequestHeader {
            topic: "T".into(),
            group: "g".into(),
            timestamp: -1,
            is_force: true,
        });
        assert_eq!(f.get("isForce"), Some("true"));
        round_trip(&QueryMessageRequestHeader {
            topic: "T".into(),
            key: "k".into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
        });
        round_trip(&CheckTransactionStateRequestHeader {
            tran_state_table_offset: 1,
            commit_log_offset: 2,
            msg_id: Some("m".into()),
            transaction_id: Some("t".into()),
            offset_msg_id: None,
            bname: None,
        });
        round_trip(&ConsumeMessageDirectlyResultRequestHeader {
            consumer_group: "cg".into(),
            client_id: Some("c".into()),
            msg_id: Some("m".into()),
            broker_name: None,
        });
        round_trip(&SearchOffsetRequestHeader {
            topic: "T".into(),
            queue_id: 0,
            timestamp: 1,
            bname: Some("b".into()),
        });
    }
}
