//! Messages: [`Message`] (what a producer sends), [`MessageExt`] (what a consumer receives),
//! their [`Properties`] and the well-known property names ([`MessageConst`]).
//!
//! # Zero copy
//!
//! A [`MessageExt`] decoded from a pull response keeps its topic, body and properties as slices
//! of the response frame (`bytes::Bytes`): decoding allocates nothing per message unless the body
//! was compressed. Property lookups scan the raw properties string, which holds a handful of
//! entries. Properties the consumer adds later (`MIN_OFFSET`, `MAX_OFFSET`, ...) go into a small
//! override list that is allocated only when first used.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ClientErrorCode, Error, Result};

/// Separates a property's name from its value (Java `MessageDecoder.NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Separates properties (Java `MessageDecoder.PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Client error code for an invalid message (Java `ResponseCode.MESSAGE_ILLEGAL`).
const MESSAGE_ILLEGAL: ClientErrorCode = ClientErrorCode::MESSAGE_ILLEGAL;

/// Well-known property names, as Java's `MessageConst`. Use them with [`Message::property`] and
/// [`MessageExt::property`], e.g. `msg.property(MessageConst::PROPERTY_TAGS)`.
///
/// The names in [`MessageConst::RESERVED`] belong to the system: [`Message::put_user_property`]
/// rejects them.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageConst;

impl MessageConst {
    /// Message keys, separated by [`MessageConst::KEY_SEPARATOR`].
    pub const PROPERTY_KEYS: &'static str = "KEYS";
    /// The message tag.
    pub const PROPERTY_TAGS: &'static str = "TAGS";
    /// Whether the broker answers only after the message is stored (`"true"` by default).
    pub const PROPERTY_WAIT_STORE_MSG_OK: &'static str = "WAIT";
    /// The delay level of a scheduled message.
    pub const PROPERTY_DELAY_TIME_LEVEL: &'static str = "DELAY";
    /// The original topic of a retried message.
    pub const PROPERTY_RETRY_TOPIC: &'static str = "RETRY_TOPIC";
    /// The real topic of a delayed or transactional message.
    pub const PROPERTY_REAL_TOPIC: &'static str = "REAL_TOPIC";
    /// The real queue id of a delayed or transactional message.
    pub const PROPERTY_REAL_QUEUE_ID: &'static str = "REAL_QID";
    /// `"true"` on a transaction half message.
    pub const PROPERTY_TRANSACTION_PREPARED: &'static str = "TRAN_MSG";
    /// The producer group of a transactional message.
    pub const PROPERTY_PRODUCER_GROUP: &'static str = "PGROUP";
    /// The queue's minimum offset, added by the consumer after a pull.
    pub const PROPERTY_MIN_OFFSET: &'static str = "MIN_OFFSET";
    /// The queue's maximum offset, added by the consumer after a pull.
    pub const PROPERTY_MAX_OFFSET: &'static str = "MAX_OFFSET";
    /// Buyer id (legacy).
    pub const PROPERTY_BUYER_ID: &'static str = "BUYER_ID";
    /// The message id of the original message of a retry.
    pub const PROPERTY_ORIGIN_MESSAGE_ID: &'static str = "ORIGIN_MESSAGE_ID";
    /// Transfer flag (legacy).
    pub const PROPERTY_TRANSFER_FLAG: &'static str = "TRANSFER_FLAG";
    /// Correction flag (legacy).
    pub const PROPERTY_CORRECTION_FLAG: &'static str = "CORRECTION_FLAG";
    /// MQ2 flag (legacy).
    pub const PROPERTY_MQ2_FLAG: &'static str = "MQ2_FLAG";
    /// The reconsume count carried by a retry message.
    pub const PROPERTY_RECONSUME_TIME: &'static str = "RECONSUME_TIME";
    /// The region the message was stored in.
    pub const PROPERTY_MSG_REGION: &'static str = "MSG_REGION";
    /// Whether message tracing is on.
    pub const PROPERTY_TRACE_SWITCH: &'static str = "TRACE_ON";
    /// The client-generated unique message id.
    pub const PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &'static str = "UNIQ_KEY";
    /// The maximum reconsume times before the message goes to the DLQ.
    pub const PROPERTY_MAX_RECONSUME_TIMES: &'static str = "MAX_RECONSUME_TIMES";
    /// When consumption of the message started (ms), set by the consumer.
    pub const PROPERTY_CONSUME_START_TIMESTAMP: &'static str = "CONSUME_START_TIME";
    /// The queue offset of a transaction half message.
    pub const PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET: &'static str =
        "TRAN_PREPARED_QUEUE_OFFSET";
    /// How often the broker checked a transaction's state.
    pub const PROPERTY_TRANSACTION_CHECK_TIMES: &'static str = "TRANSACTION_CHECK_TIMES";
    /// Seconds before the broker first checks a transaction's state.
    pub const PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS: &'static str =
        "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// The namespace instance id.
    pub const PROPERTY_INSTANCE_ID: &'static str = "INSTANCE_ID";
    /// Correlation id of a request/reply message.
    pub const PROPERTY_CORRELATION_ID: &'static str = "CORRELATION_ID";
    /// The client a reply goes to.
    pub const PROPERTY_MESSAGE_REPLY_TO_CLIENT: &'static str = "REPLY_TO_CLIENT";
    /// Time to live of a request message.
    pub const PROPERTY_MESSAGE_TTL: &'static str = "TTL";
    /// When a reply arrived.
    pub const PROPERTY_REPLY_MESSAGE_ARRIVE_TIME: &'static str = "ARRIVE_TIME";
    /// When a reply was pushed.
    pub const PROPERTY_PUSH_REPLY_TIME: &'static str = "PUSH_REPLY_TIME";
    /// The cluster of a request message.
    pub const PROPERTY_CLUSTER: &'static str = "CLUSTER";
    /// The message type (`"reply"` for replies).
    pub const PROPERTY_MESSAGE_TYPE: &'static str = "MSG_TYPE";
    /// Light message queue dispatch targets.
    pub const PROPERTY_INNER_MULTI_DISPATCH: &'static str = "INNER_MULTI_DISPATCH";
    /// Light message queue offsets.
    pub const PROPERTY_INNER_MULTI_QUEUE_OFFSET: &'static str = "INNER_MULTI_QUEUE_OFFSET";
    /// The transaction id user property the producer adds (not reserved).
    pub const PROPERTY_TRANSACTION_ID: &'static str = "__transactionId__";
    /// Start deliver time (not reserved).
    pub const PROPERTY_START_DELIVER_TIME: &'static str = "__STARTDELIVERTIME";
    /// Separator between keys in [`MessageConst::PROPERTY_KEYS`].
    pub const KEY_SEPARATOR: &'static str = " ";

    /// Names users may not set with [`Message::put_user_property`] (Java `STRING_HASH_SET`).
    pub const RESERVED: &'static [&'static str] = &[
        Self::PROPERTY_TRACE_SWITCH,
        Self::PROPERTY_MSG_REGION,
        Self::PROPERTY_KEYS,
        Self::PROPERTY_TAGS,
        Self::PROPERTY_WAIT_STORE_MSG_OK,
        Self::PROPERTY_DELAY_TIME_LEVEL,
        Self::PROPERTY_RETRY_TOPIC,
        Self::PROPERTY_REAL_TOPIC,
        Self::PROPERTY_REAL_QUEUE_ID,
        Self::PROPERTY_TRANSACTION_PREPARED,
        Self::PROPERTY_PRODUCER_GROUP,
        Self::PROPERTY_MIN_OFFSET,
        Self::PROPERTY_MAX_OFFSET,
        Self::PROPERTY_BUYER_ID,
        Self::PROPERTY_ORIGIN_MESSAGE_ID,
        Self::PROPERTY_TRANSFER_FLAG,
        Self::PROPERTY_CORRECTION_FLAG,
        Self::PROPERTY_MQ2_FLAG,
        Self::PROPERTY_RECONSUME_TIME,
        Self::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
        Self::PROPERTY_MAX_RECONSUME_TIMES,
        Self::PROPERTY_CONSUME_START_TIMESTAMP,
        Self::PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET,
        Self::PROPERTY_TRANSACTION_CHECK_TIMES,
        Self::PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS,
        Self::PROPERTY_INSTANCE_ID,
        Self::PROPERTY_CORRELATION_ID,
        Self::PROPERTY_MESSAGE_REPLY_TO_CLIENT,
        Self::PROPERTY_MESSAGE_TTL,
        Self::PROPERTY_REPLY_MESSAGE_ARRIVE_TIME,
        Self::PROPERTY_PUSH_REPLY_TIME,
        Self::PROPERTY_CLUSTER,
        Self::PROPERTY_MESSAGE_TYPE,
        Self::PROPERTY_INNER_MULTI_DISPATCH,
        Self::PROPERTY_INNER_MULTI_QUEUE_OFFSET,
    ];

    /// `true` when `name` is reserved for the system.
    pub fn is_reserved(name: &str) -> bool {
        Self::RESERVED.contains(&name)
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A message's properties: an ordered map of string names to string values.
///
/// Order is deterministic: setting a name appends it, and setting an existing name moves it to
/// the end, so the encoded order is the order of the last writes. A message carries a handful of
/// properties, so lookups scan a vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    entries: Vec<(String, String)>,
}

impl Properties {
    /// An empty map.
    pub fn new() -> Self {
        Properties::default()
    }

    /// The number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true` when `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, moving it to the end; returns the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let name = name.into();
        let old = self.remove(&name);
        self.entries.push((name, value.into()));
        old
    }

    /// Removes `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(i).1)
    }

    /// The properties in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Encodes as Java's `MessageDecoder.messageProperties2String`.
    pub fn encode(&self) -> String {
        properties_to_string(self)
    }

    /// Decodes Java's properties string; see [`string_to_properties`].
    pub fn decode(s: &str) -> Self {
        string_to_properties(s)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Properties::new();
        for (k, v) in iter {
            p.insert(k, v);
        }
        p
    }
}

/// Formats like Java's `HashMap.toString`: `{a=b, TAGS=TagA}`.
impl fmt::Display for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_map(f, self.iter())
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn write_map<'a>(
    f: &mut fmt::Formatter<'_>,
    entries: impl Iterator<Item = (&'a str, &'a str)>,
) -> fmt::Result {
    f.write_str("{")?;
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{k}={v}")?;
    }
    f.write_str("}")
}

/// Encodes properties as Java's `messageProperties2String`: `name\u{1}value\u{2}name\u{1}value`,
/// with no trailing separator.
pub fn properties_to_string(properties: &Properties) -> String {
    let len = properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum::<usize>();
    let mut s = String::with_capacity(len);
    for (k, v) in properties.iter() {
        if !s.is_empty() {
            s.push(PROPERTY_SEPARATOR);
        }
        s.push_str(k);
        s.push(NAME_VALUE_SEPARATOR);
        s.push_str(v);
    }
    s
}

/// Decodes Java's properties string (`string2messageProperties`): split on `\u{2}`; a piece whose
/// first `\u{1}` is neither its first nor its last character yields a pair; other pieces are
/// ignored. A name seen twice keeps the later value.
pub fn string_to_properties(s: &str) -> Properties {
    PropertyIter::new(s).collect()
}

/// Iterates the pairs of a raw properties string with Java's parsing rules, without allocating.
#[derive(Debug, Clone)]
pub(crate) struct PropertyIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> PropertyIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        PropertyIter {
            rest: if s.is_empty() { None } else { Some(s) },
        }
    }
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (piece, next) = match rest.find(PROPERTY_SEPARATOR) {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = next.filter(|n| !n.is_empty());
            if let Some(kv) = piece.find(NAME_VALUE_SEPARATOR) {
                if kv > 0 && kv < piece.len() - 1 {
                    return Some((&piece[..kv], &piece[kv + 1..]));
                }
            }
        }
    }
}

/// Looks `name` up in a raw properties string; the last occurrence wins, as in Java's map.
fn raw_property<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    PropertyIter::new(raw)
        .filter(|(k, _)| *k == name)
        .last()
        .map(|(_, v)| v)
}

fn check_user_property(name: &str, value: &str) -> Result<()> {
    match user_property_problem(name, value) {
        Some(problem) => Err(Error::client(MESSAGE_ILLEGAL, problem)),
        None => Ok(()),
    }
}

/// Why `name = value` may not be a user property (Java `putUserProperty`'s checks), if it may not.
fn user_property_problem(name: &str, value: &str) -> Option<String> {
    if MessageConst::is_reserved(name) {
        return Some(format!(
            "The Property<{name}> is used by system, input another please"
        ));
    }
    if name.trim().is_empty() || value.trim().is_empty() {
        return Some("The name or value of property can not be null or blank string!".to_owned());
    }
    if name.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR])
        || value.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR])
    {
        return Some(format!(
            "The property <{name}> contains the separator characters \\u0001 or \\u0002"
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Message

/// A message to send (Java `Message`).
///
/// ```
/// use rocketmq_sync::{Message, MessageConst};
/// let msg = Message::new("TopicTest", "hello")
///     .with_tags("TagA")
///     .with_keys("order-1")
///     .with_user_property("region", "eu");
/// assert_eq!(msg.tags(), Some("TagA"));
/// assert_eq!(msg.property(MessageConst::PROPERTY_WAIT_STORE_MSG_OK), Some("true"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    flag: i32,
    properties: Properties,
    body: Bytes,
    /// Why a [`Message::with_user_property`] call was refused (the first one); the producer
    /// refuses to send the message with this reason.
    refused_user_property: Option<Box<str>>,
}

impl Message {
    /// A message for `topic` with `body`. Like Java's constructors it sets `WAIT=true`.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        let mut properties = Properties::new();
        properties.insert(MessageConst::PROPERTY_WAIT_STORE_MSG_OK, "true");
        Message {
            topic: topic.into(),
            flag: 0,
            properties,
            body: body.into(),
            refused_user_property: None,
        }
    }

    /// Sets the tag.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.set_tags(tags);
        self
    }

    /// Sets the keys string (several keys are separated by a space).
    pub fn with_keys(mut self, keys: impl Into<String>) -> Self {
        self.set_keys(keys);
        self
    }

    /// Sets several keys, joined with a space as Java's `setKeys(Collection)`.
    pub fn with_key_list<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for k in keys {
            if !joined.is_empty() {
                joined.push_str(MessageConst::KEY_SEPARATOR);
            }
            joined.push_str(k.as_ref());
        }
        self.set_keys(joined);
        self
    }

    /// Sets the delay level (1 = 1s, 2 = 5s, ... with the broker's default levels).
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.set_delay_level(level);
        self
    }

    /// Sets whether the broker answers only once the message is stored.
    pub fn with_wait_store_msg_ok(mut self, wait: bool) -> Self {
        self.set_wait_store_msg_ok(wait);
        self
    }

    /// Sets the user flag.
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// Adds a user property and returns the message, for chaining (Java `putUserProperty`).
    ///
    /// A name or value that [`Message::put_user_property`] refuses (a reserved name of
    /// [`MessageConst::RESERVED`], a blank name or value, the separator characters) is not
    /// added; the message remembers the first refusal, and every producer send of it fails
    /// with that reason ([`Error::Client`] code 13) before anything goes out. Use
    /// [`Message::put_user_property`] to learn of the refusal at once.
    pub fn with_user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match user_property_problem(&name, &value) {
            None => {
                self.properties.insert(name, value);
            }
            Some(problem) => {
                if self.refused_user_property.is_none() {
                    self.refused_user_property = Some(problem.into_boxed_str());
                }
            }
        }
        self
    }

    /// `Err` when a [`Message::with_user_property`] call on this message was refused: the
    /// reason of the first refusal, as [`Error::Client`] code 13. Producers check this before
    /// sending.
    pub fn check_user_properties(&self) -> Result<()> {
        match &self.refused_user_property {
            None => Ok(()),
            Some(problem) => Err(Error::client(
                MESSAGE_ILLEGAL,
                format!("{problem} (set by Message::with_user_property; the message was not sent)"),
            )),
        }
    }

    /// Adds a user property (Java `putUserProperty`). Fails with [`Error::Client`] code 13 when
    /// `name` is one of [`MessageConst::RESERVED`], when the name or value is blank, or when either
    /// contains the separator characters `\u{1}` or `\u{2}`.
    pub fn put_user_property(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<()> {
        let (name, value) = (name.into(), value.into());
        check_user_property(&name, &value)?;
        self.properties.insert(name, value);
        Ok(())
    }

    /// Sets any property, reserved names included, without checks. This is the low-level call
    /// Java reaches through `MessageAccessor.putProperty`; prefer the typed setters.
    pub fn put_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.properties.insert(name, value);
    }

    /// Removes a property; returns its value.
    pub fn clear_property(&mut self, name: &str) -> Option<String> {
        self.properties.remove(name)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Changes the topic.
    pub fn set_topic(&mut self, topic: impl Into<String>) {
        self.topic = topic.into();
    }

    /// The user flag.
    pub fn flag(&self) -> i32 {
        self.flag
    }

    /// Sets the user flag.
    pub fn set_flag(&mut self, flag: i32) {
        self.flag = flag;
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_TAGS)
    }

    /// Sets the tag.
    pub fn set_tags(&mut self, tags: impl Into<String>) {
        self.put_property(MessageConst::PROPERTY_TAGS, tags);
    }

    /// The keys string (space-separated).
    pub fn keys(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_KEYS)
    }

    /// Sets the keys string.
    pub fn set_keys(&mut self, keys: impl Into<String>) {
        self.put_property(MessageConst::PROPERTY_KEYS, keys);
    }

    /// The delay level, 0 when unset or unparsable.
    pub fn delay_level(&self) -> i32 {
        self.property(MessageConst::PROPERTY_DELAY_TIME_LEVEL)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Sets the delay level.
    pub fn set_delay_level(&mut self, level: i32) {
        self.put_property(MessageConst::PROPERTY_DELAY_TIME_LEVEL, level.to_string());
    }

    /// Whether the broker answers only once the message is stored; `true` unless set to
    /// `"false"`, as in Java.
    pub fn wait_store_msg_ok(&self) -> bool {
        self.property(MessageConst::PROPERTY_WAIT_STORE_MSG_OK) != Some("false")
    }

    /// Sets [`Message::wait_store_msg_ok`].
    pub fn set_wait_store_msg_ok(&mut self, wait: bool) {
        self.put_property(
            MessageConst::PROPERTY_WAIT_STORE_MSG_OK,
            if wait { "true" } else { "false" },
        );
    }

    /// The client-generated unique id (`UNIQ_KEY`), once the producer has set it.
    pub fn uniq_key(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
    }

    /// The value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name)
    }

    /// All properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The properties encoded for the wire (Java `properties2String`).
    pub fn properties_string(&self) -> String {
        properties_to_string(&self.properties)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("flag", &self.flag)
            .field("properties", &self.properties)
            .field("body_len", &self.body.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// MessageExt

/// UTF-8 text held in a `Bytes`, so it can be a slice of a received frame.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps `bytes`; invalid UTF-8 is replaced (and then copied), as Java's `new String` does.
    pub(crate) fn from_bytes_lossy(bytes: Bytes) -> Self {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Utf8Bytes(bytes),
            Err(_) => Utf8Bytes(Bytes::from(
                String::from_utf8_lossy(&bytes).into_owned().into_bytes(),
            )),
        }
    }

    pub(crate) fn from_string(s: String) -> Self {
        Utf8Bytes(Bytes::from(s.into_bytes()))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always valid: every constructor checked or produced UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A received message (Java `MessageExt`/`MessageClientExt`), usually decoded from a pull
/// response by [`MessageDecoder`](crate::common::MessageDecoder).
///
/// Cloning is cheap: the topic, body and properties are reference-counted slices of the
/// received frame. `MessageExt` is `Send + Sync`.
#[derive(Clone)]
pub struct MessageExt {
    pub(crate) topic: Utf8Bytes,
    pub(crate) flag: i32,
    pub(crate) body: Bytes,
    /// The properties string as stored.
    pub(crate) raw_properties: Utf8Bytes,
    /// Properties set after decoding; consulted before `raw_properties`.
    pub(crate) overrides: Option<Box<Properties>>,
    pub(crate) queue_id: i32,
    pub(crate) store_size: i32,
    pub(crate) queue_offset: i64,
    pub(crate) sys_flag: i32,
    pub(crate) born_timestamp: i64,
    pub(crate) born_host: SocketAddr,
    pub(crate) store_timestamp: i64,
    pub(crate) store_host: SocketAddr,
    pub(crate) commit_log_offset: i64,
    pub(crate) body_crc: i32,
    pub(crate) reconsume_times: i32,
    pub(crate) prepared_transaction_offset: i64,
    pub(crate) broker_name: Option<Arc<str>>,
    /// `MIN_OFFSET`/`MAX_OFFSET` of the pull that returned the message, shared by its batch.
    pub(crate) pull_offsets: Option<Arc<PullOffsets>>,
}

/// The queue's offset range that one pull response reported (its `minOffset` and `maxOffset`),
/// which Java's consumer puts on every pulled message as the `MIN_OFFSET` and `MAX_OFFSET`
/// properties.
///
/// One value is made per pull, with both numbers formatted once, and shared by all messages of
/// the pull through an `Arc`, so setting the two properties costs no allocation per message. See
/// [`MessageExt::set_pull_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOffsets {
    min: i64,
    max: i64,
    /// Both values formatted, `min` then `max`, in one allocation.
    text: String,
    /// Where `max` starts in `text`.
    split: usize,
}

impl PullOffsets {
    /// The range `min..max` as a pull response header gives it.
    pub fn new(min: i64, max: i64) -> Self {
        use fmt::Write as _;
        // 20 bytes hold any i64 in decimal.
        let mut text = String::with_capacity(40);
        let _ = write!(text, "{min}");
        let split = text.len();
        let _ = write!(text, "{max}");
        PullOffsets {
            min,
            max,
            text,
            split,
        }
    }

    /// The queue's min offset when the message was pulled.
    pub fn min(&self) -> i64 {
        self.min
    }

    /// The queue's max offset when the message was pulled.
    pub fn max(&self) -> i64 {
        self.max
    }

    fn min_str(&self) -> &str {
        &self.text[..self.split]
    }

    fn max_str(&self) -> &str {
        &self.text[self.split..]
    }

    /// The property value for `name` if it is `MIN_OFFSET` or `MAX_OFFSET`.
    fn property(&self, name: &str) -> Option<&str> {
        match name {
            MessageConst::PROPERTY_MIN_OFFSET => Some(self.min_str()),
            MessageConst::PROPERTY_MAX_OFFSET => Some(self.max_str()),
            _ => None,
        }
    }
}

const UNSPECIFIED_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

macro_rules! accessors {
    ($( $(#[$doc:meta])* $field:ident, $setter:ident : $ty:ty; )*) => {
        $(
            $(#[$doc])*
            pub fn $field(&self) -> $ty {
                self.$field
            }
            #[doc = concat!("Sets [`MessageExt::", stringify!($field), "`].")]
            pub fn $setter(&mut self, value: $ty) {
                self.$field = value;
            }
        )*
    };
}

impl MessageExt {
    /// A message with `topic` and `body` and every other field zero, for tests and for building
    /// stored records with [`MessageDecoder::encode`](crate::common::MessageDecoder::encode).
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        MessageExt {
            topic: Utf8Bytes::from_string(topic.into()),
            flag: 0,
            body: body.into(),
            raw_properties: Utf8Bytes::default(),
            overrides: None,
            queue_id: 0,
            store_size: 0,
            queue_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: UNSPECIFIED_ADDR,
            store_timestamp: 0,
            store_host: UNSPECIFIED_ADDR,
            commit_log_offset: 0,
            body_crc: 0,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            broker_name: None,
            pull_offsets: None,
        }
    }

    /// A received-message view of `msg`: its topic, flag, body and properties.
    pub fn from_message(msg: &Message) -> Self {
        let mut ext = MessageExt::new(msg.topic(), msg.body().clone());
        ext.flag = msg.flag();
        ext.raw_properties = Utf8Bytes::from_string(msg.properties_string());
        ext
    }

    accessors! {
        /// The queue id.
        queue_id, set_queue_id: i32;
        /// The stored record's total size in bytes.
        store_size, set_store_size: i32;
        /// The logical offset in the consume queue.
        queue_offset, set_queue_offset: i64;
        /// The system flag (`MessageSysFlag` bits), as stored.
        sys_flag, set_sys_flag: i32;
        /// When the producer created the message (ms since the epoch).
        born_timestamp, set_born_timestamp: i64;
        /// The producer's address.
        born_host, set_born_host: SocketAddr;
        /// When the broker stored the message (ms since the epoch).
        store_timestamp, set_store_timestamp: i64;
        /// The storing broker's address.
        store_host, set_store_host: SocketAddr;
        /// The physical offset in the broker's commit log.
        commit_log_offset, set_commit_log_offset: i64;
        /// CRC32 of the stored body, as a signed int.
        body_crc, set_body_crc: i32;
        /// How often the message was consumed again after a failure.
        reconsume_times, set_reconsume_times: i32;
        /// The prepared transaction offset.
        prepared_transaction_offset, set_prepared_transaction_offset: i64;
        /// The user flag.
        flag, set_flag: i32;
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// Changes the topic, as the consumer does when it resets a retry topic.
    pub fn set_topic(&mut self, topic: impl Into<String>) {
        self.topic = Utf8Bytes::from_string(topic.into());
    }

    /// The body, decompressed if it was stored compressed.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// The value of a property: one set with [`MessageExt::put_property`] first, then
    /// `MIN_OFFSET`/`MAX_OFFSET` from [`MessageExt::set_pull_offsets`], then the stored ones.
    pub fn property(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.overrides.as_ref().and_then(|o| o.get(name)) {
            return Some(v);
        }
        if let Some(v) = self.pull_offsets.as_deref().and_then(|p| p.property(name)) {
            return Some(v);
        }
        raw_property(self.raw_properties.as_str(), name)
    }

    /// Sets the `MIN_OFFSET` and `MAX_OFFSET` properties from the pull that returned the message,
    /// as Java's consumer does. The value is shared, so setting it on each message of a pull
    /// costs no allocation.
    pub fn set_pull_offsets(&mut self, offsets: Arc<PullOffsets>) {
        self.pull_offsets = Some(offsets);
    }

    /// The offsets set by [`MessageExt::set_pull_offsets`].
    pub fn pull_offsets(&self) -> Option<&PullOffsets> {
        self.pull_offsets.as_deref()
    }

    /// Sets a property on the received message (e.g. `MIN_OFFSET`, `CONSUME_START_TIME`). The
    /// first call allocates a small override list; stored properties are not copied.
    pub fn put_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.overrides
            .get_or_insert_with(Default::default)
            .insert(name, value);
    }

    /// All properties, stored ones first, then those set later (which replace stored ones of
    /// the same name). This allocates; use [`MessageExt::property`] for lookups.
    pub fn properties(&self) -> Properties {
        let mut p = string_to_properties(self.raw_properties.as_str());
        if let Some(po) = &self.pull_offsets {
            p.insert(MessageConst::PROPERTY_MIN_OFFSET, po.min_str());
            p.insert(MessageConst::PROPERTY_MAX_OFFSET, po.max_str());
        }
        if let Some(o) = &self.overrides {
            for (k, v) in o.iter() {
                p.insert(k, v);
            }
        }
        p
    }

    /// Replaces all properties.
    pub fn set_properties(&mut self, properties: &Properties) {
        self.raw_properties = Utf8Bytes::from_string(properties_to_string(properties));
        self.overrides = None;
        self.pull_offsets = None;
    }

    /// The properties string as it goes on the wire, without copying when nothing was set
    /// after decoding.
    pub fn properties_string(&self) -> Cow<'_, str> {
        if self.overrides.is_none() && self.pull_offsets.is_none() {
            Cow::Borrowed(self.raw_properties.as_str())
        } else {
            Cow::Owned(properties_to_string(&self.properties()))
        }
    }

    /// The tag.
    pub fn tags(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_TAGS)
    }

    /// The keys string (space-separated).
    pub fn keys(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_KEYS)
    }

    /// The delay level, 0 when unset.
    pub fn delay_level(&self) -> i32 {
        self.property(MessageConst::PROPERTY_DELAY_TIME_LEVEL)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The message id users see (Java `MessageClientExt.getMsgId`): the producer's `UNIQ_KEY`
    /// if present, else [`MessageExt::offset_msg_id`].
    pub fn msg_id(&self) -> Cow<'_, str> {
        match self.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
            Some(id) => Cow::Borrowed(id),
            None => Cow::Owned(self.offset_msg_id()),
        }
    }

    /// The broker-side id: store host and commit-log offset as uppercase hex (32 characters for
    /// IPv4, 56 for IPv6). Computed on each call.
    pub fn offset_msg_id(&self) -> String {
        super::decoder::MessageDecoder::create_message_id(self.store_host, self.commit_log_offset)
    }

    /// The broker name, once the consumer has set it.
    pub fn broker_name(&self) -> Option<&str> {
        self.broker_name.as_deref()
    }

    /// Sets the broker name (shared, so setting it on each message of a pull is cheap).
    pub fn set_broker_name(&mut self, name: Arc<str>) {
        self.broker_name = Some(name);
    }

    /// A copy that shares no memory with the frame this message was decoded from: the topic,
    /// body and stored properties are copied. For a message that outlives its pull (a local
    /// retry), which would otherwise keep the whole frame alive.
    pub(crate) fn detached(&self) -> MessageExt {
        MessageExt {
            topic: Utf8Bytes(Bytes::copy_from_slice(&self.topic.0)),
            body: Bytes::copy_from_slice(&self.body),
            raw_properties: Utf8Bytes(Bytes::copy_from_slice(&self.raw_properties.0)),
            ..self.clone()
        }
    }
}

impl fmt::Debug for MessageExt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Props<'a>(&'a MessageExt);
        impl fmt::Debug for Props<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_map(f, self.0.properties().iter())
            }
        }
        f.debug_struct("MessageExt")
            .field("topic", &self.topic())
            .field("queue_id", &self.queue_id)
            .field("queue_offset", &self.queue_offset)
            .field("commit_log_offset", &self.commit_log_offset)
            .field("sys_flag", &self.sys_flag)
            .field("store_host", &self.store_host)
            .field("reconsume_times", &self.reconsume_times)
            .field("properties", &Props(self))
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_message_shares_no_memory_with_its_frame() {
        let mut original = MessageExt::new("TopicA", "body-bytes");
        original.put_property("KEYS", "k");
        original.set_queue_offset(9);
        let frame = crate::common::MessageDecoder::encode(&original, false).unwrap();
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let decoded = crate::common::MessageDecoder::decodes(frame.clone()).remove(0);
        let inside = |p: *const u8| range.contains(&(p as usize));
        assert!(inside(decoded.body().as_ptr()), "decoding is zero-copy");
        let copy = decoded.detached();
        for (what, p) in [
            ("topic", copy.topic.0.as_ptr()),
            ("body", copy.body.as_ptr()),
            ("properties", copy.raw_properties.0.as_ptr()),
        ] {
            assert!(!inside(p), "the {what} still points into the frame");
        }
        assert_eq!(copy.topic(), "TopicA");
        assert_eq!(&copy.body()[..], b"body-bytes");
        assert_eq!(copy.keys(), Some("k"));
        assert_eq!(copy.queue_offset(), 9);
    }

    #[test]
    fn properties_string_round_trip_and_order() {
        let m = Message::new("T", "a")
            .with_keys("k1")
            .with_wait_store_msg_ok(true)
            .with_tags("TagA");
        assert_eq!(
            m.properties_string(),
            "KEYS\u{1}k1\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA"
        );
        let p = string_to_properties(&m.properties_string());
        assert_eq!(&p, m.properties());
        assert_eq!(p.to_string(), "{KEYS=k1, WAIT=true, TAGS=TagA}");
        assert_eq!(properties_to_string(&Properties::new()), "");
    }

    #[test]
    fn java_parse_rules() {
        // Pieces too short, with no separator, or with the separator first/last are ignored;
        // the value may contain \u{1}; the later duplicate wins.
        let p = string_to_properties(
            "\u{1}x\u{2}ab\u{2}k\u{1}\u{2}a\u{1}b\u{1}c\u{2}a\u{1}z\u{2}\u{2}n\u{1}v",
        );
        assert_eq!(p.get("a"), Some("z"));
        assert_eq!(p.get("n"), Some("v"));
        assert_eq!(p.len(), 2);
        assert_eq!(raw_property("a\u{1}b\u{1}c", "a"), Some("b\u{1}c"));
        assert!(string_to_properties("").is_empty());
    }

    #[test]
    fn defaults_and_getters() {
        let m = Message::new("T", "body")
            .with_key_list(["k1", "k2"])
            .with_delay_level(3)
            .with_flag(7);
        assert_eq!(m.keys(), Some("k1 k2"));
        assert_eq!(m.delay_level(), 3);
        assert!(m.wait_store_msg_ok());
        assert_eq!(m.flag(), 7);
        assert_eq!(m.body().as_ref(), b"body");
        let m = m.with_wait_store_msg_ok(false);
        assert!(!m.wait_store_msg_ok());
        assert_eq!(m.tags(), None);
    }

    #[test]
    fn reserved_user_properties_are_rejected() {
        let mut m = Message::new("T", "x");
        for name in MessageConst::RESERVED {
            match m.put_user_property(*name, "v") {
                Err(Error::Client { code, message, .. }) => {
                    assert_eq!(code, ClientErrorCode::MESSAGE_ILLEGAL);
                    assert!(message.contains(name), "{message}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(m.put_user_property(" ", "v").is_err());
        assert!(m.put_user_property("a", "").is_err());
        assert!(m.put_user_property("a", "x\u{2}y").is_err());
        m.put_user_property("region", "eu").unwrap();
        assert_eq!(m.property("region"), Some("eu"));
        assert!(MessageConst::is_reserved("UNIQ_KEY"));
        assert!(!MessageConst::is_reserved(
            MessageConst::PROPERTY_TRANSACTION_ID
        ));
    }

    #[test]
    fn with_user_property_chains_and_remembers_the_first_refusal() {
        let ok = Message::new("T", "x")
            .with_user_property("region", "eu")
            .with_user_property("tier", "gold");
        assert_eq!(ok.property("region"), Some("eu"));
        assert_eq!(ok.property("tier"), Some("gold"));
        ok.check_user_properties().unwrap();

        let bad = Message::new("T", "x")
            .with_user_property("UNIQ_KEY", "mine")
            .with_user_property("a", "")
            .with_user_property("region", "eu");
        assert_eq!(bad.property("UNIQ_KEY"), None, "a refused name is not set");
        assert_eq!(bad.property("region"), Some("eu"));
        match bad.check_user_properties() {
            Err(Error::Client { code, message, .. }) => {
                assert_eq!(code, ClientErrorCode::MESSAGE_ILLEGAL);
                assert!(
                    message.starts_with("The Property<UNIQ_KEY> is used by system"),
                    "the first refusal is reported: {message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_ne!(
            bad,
            Message::new("T", "x").with_user_property("region", "eu")
        );
    }

    #[test]
    fn message_ext_overrides_and_clone() {
        let msg = Message::new("T", "b").with_tags("TagA");
        let mut ext = MessageExt::from_message(&msg);
        assert_eq!(ext.tags(), Some("TagA"));
        assert!(ext.overrides.is_none());
        ext.put_property(MessageConst::PROPERTY_TAGS, "TagB");
        ext.put_property(MessageConst::PROPERTY_MIN_OFFSET, "3");
        assert_eq!(ext.tags(), Some("TagB"));
        assert_eq!(ext.property("MIN_OFFSET"), Some("3"));
        assert_eq!(
            ext.properties().to_string(),
            "{WAIT=true, TAGS=TagB, MIN_OFFSET=3}"
        );
        let c = ext.clone();
        ext.set_topic("%RETRY%g");
        assert_eq!(c.topic(), "T");
        assert_eq!(ext.topic(), "%RETRY%g");
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<MessageExt>();
        assert_send_sync::<Message>();
    }

    #[test]
    fn pull_offsets_are_properties() {
        let msg = Message::new("T", "b").with_tags("TagA");
        let mut ext = MessageExt::from_message(&msg);
        assert_eq!(ext.property(MessageConst::PROPERTY_MAX_OFFSET), None);
        let shared = Arc::new(PullOffsets::new(-1, i64::MAX));
        ext.set_pull_offsets(shared.clone());
        let other = ext.clone();
        assert_eq!(Arc::strong_count(&shared), 3, "shared, not copied");
        assert_eq!(ext.property("MIN_OFFSET"), Some("-1"));
        assert_eq!(other.property("MAX_OFFSET"), Some("9223372036854775807"));
        assert_eq!(ext.pull_offsets().map(PullOffsets::max), Some(i64::MAX));
        assert_eq!(ext.tags(), Some("TagA"));
        assert_eq!(
            ext.properties().to_string(),
            "{WAIT=true, TAGS=TagA, MIN_OFFSET=-1, MAX_OFFSET=9223372036854775807}"
        );
        assert!(ext
            .properties_string()
            .contains("MAX_OFFSET\u{1}9223372036854775807"));
        // A property put later wins, as Java's putProperty replaces the value.
        ext.put_property(MessageConst::PROPERTY_MAX_OFFSET, "5");
        assert_eq!(ext.property("MAX_OFFSET"), Some("5"));
        ext.set_properties(&Properties::new());
        assert_eq!(ext.property("MIN_OFFSET"), None);
    }

    #[test]
    fn utf8_bytes_lossy() {
        let u = Utf8Bytes::from_bytes_lossy(Bytes::from_static(b"a\xffb"));
        assert_eq!(u.as_str(), "a\u{fffd}b");
        let u = Utf8Bytes::from_bytes_lossy(Bytes::from_static("é".as_bytes()));
        assert_eq!(u.as_str(), "é");
    }
}
