//! Remoting bodies that need fastjson quirks (object map keys).
//!
//! fastjson writes a `Map<MessageQueue, X>` with each key serialized as a JSON *object*:
//! `{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:10}}`. That is not standard
//! JSON and `serde_json` rejects it, so this module has its own small parser ([`FjValue::parse`])
//! that accepts any value in key position (objects, numbers, strings, ...) and a writer that
//! produces both fastjson's compact form and its `toJson(true)` pretty form.
//!
//! Bodies decoded here:
//! * [`ResetOffsetBody`]: the RESET_CONSUMER_CLIENT_OFFSET request body;
//! * [`OffsetSerializeWrapper`]: the broadcasting consumer's local `offsets.json` (read in compact
//!   or pretty form, written in the pretty form, byte for byte as Java writes it).
//!
//! [`write_object_key_map`] and [`FjValue::object_key_map`] build the same shape for
//! `ConsumerRunningInfo.mqTable` and `GetConsumerStatusBody.messageQueueTable`.
//!
//! Bodies encoded here: `ConsumerRunningInfo` (the GET_CONSUMER_RUNNING_INFO response), with the
//! `ProcessQueueInfo` and [`ConsumeStatus`] it holds.
//!
//! Malformed input yields [`CodecError::Json`] naming the byte position; the parser never panics
//! and bounds its nesting depth, so hostile input cannot overflow the stack.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Number, Value};

use super::heartbeat::SubscriptionData;
pub(crate) use super::process_queue_info::ProcessQueueInfo;
use super::CodecError;
use super::MessageQueue;

/// Maximum nesting of arrays and objects accepted by [`FjValue::parse`].
const MAX_DEPTH: usize = 128;

/// A fastjson value: like [`serde_json::Value`] except that object keys may be any value.
///
/// Object members keep their order (insertion order when built, document order when parsed).
#[derive(Debug, Clone, PartialEq)]
pub enum FjValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, kept exactly as `serde_json` represents it.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<FjValue>),
    /// An object whose keys may be strings, numbers or objects.
    Object(Vec<(FjValue, FjValue)>),
}

impl FjValue {
    /// Parses fastjson text: standard JSON plus non-string object keys.
    ///
    /// Leading and trailing whitespace is allowed; anything else after the value is an error.
    pub fn parse(input: &str) -> Result<FjValue, CodecError> {
        let mut p = Parser {
            s: input.as_bytes(),
            pos: 0,
        };
        p.skip_ws();
        let v = p.value(0)?;
        p.skip_ws();
        if p.pos != p.s.len() {
            return Err(p.err("trailing characters after the value"));
        }
        Ok(v)
    }

    /// Parses a body given as bytes, which must be UTF-8.
    pub fn parse_bytes(input: &[u8]) -> Result<FjValue, CodecError> {
        let s = std::str::from_utf8(input)
            .map_err(|e| CodecError::Json(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        FjValue::parse(s)
    }

    /// Converts any serializable value. Object members come out in alphabetical order, as
    /// fastjson writes Java beans.
    pub fn from_serialize<T: Serialize + ?Sized>(v: &T) -> Result<FjValue, CodecError> {
        let v = serde_json::to_value(v).map_err(|e| CodecError::Json(e.to_string()))?;
        Ok(FjValue::from(v))
    }

    /// Builds a map whose keys are written as JSON objects (fastjson's `Map<MessageQueue, X>`),
    /// in the order given.
    pub fn object_key_map<'a, K, V, I>(entries: I) -> Result<FjValue, CodecError>
    where
        K: Serialize + 'a + ?Sized,
        V: Serialize + 'a + ?Sized,
        I: IntoIterator<Item = (&'a K, &'a V)>,
    {
        let mut members = Vec::new();
        for (k, v) in entries {
            members.push((FjValue::from_serialize(k)?, FjValue::from_serialize(v)?));
        }
        Ok(FjValue::Object(members))
    }

    /// The member named `name` of an object (ASCII case-insensitive, as fastjson matches
    /// field names), or `None`.
    pub fn get(&self, name: &str) -> Option<&FjValue> {
        match self {
            FjValue::Object(members) => members.iter().find_map(|(k, v)| match k {
                FjValue::String(s) if s.eq_ignore_ascii_case(name) => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Converts to a standard [`serde_json::Value`]. Number keys become strings; object or array
    /// keys cannot be represented and give an error.
    pub fn to_json(&self) -> Result<Value, CodecError> {
        Ok(match self {
            FjValue::Null => Value::Null,
            FjValue::Bool(b) => Value::Bool(*b),
            FjValue::Number(n) => Value::Number(n.clone()),
            FjValue::String(s) => Value::String(s.clone()),
            FjValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(FjValue::to_json)
                    .collect::<Result<_, _>>()?,
            ),
            FjValue::Object(members) => {
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    let key = match k {
                        FjValue::String(s) => s.clone(),
                        FjValue::Number(n) => n.to_string(),
                        FjValue::Bool(b) => b.to_string(),
                        _ => {
                            return Err(CodecError::Json(
                                "an object or array key has no standard JSON form".into(),
                            ))
                        }
                    };
                    map.insert(key, v.to_json()?);
                }
                Value::Object(map)
            }
        })
    }

    /// Deserializes into `T` through [`FjValue::to_json`].
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, CodecError> {
        serde_json::from_value(self.to_json()?).map_err(|e| CodecError::Json(e.to_string()))
    }

    /// fastjson's compact form (`JSON.toJSONString(obj)`).
    pub fn to_compact_string(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    /// fastjson's pretty form (`JSON.toJSONString(obj, true)`): tab indentation, a new line before
    /// each member with a string key, none before an object key, and the closing brace of a
    /// non-empty object on its own line.
    pub fn to_pretty_string(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    /// Appends the compact form to `out`.
    pub fn write_compact(&self, out: &mut String) {
        match self {
            FjValue::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            FjValue::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    k.write_compact(out);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
            scalar => scalar.write_scalar(out),
        }
    }

    fn write_pretty(&self, out: &mut String, depth: usize) {
        match self {
            FjValue::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write_pretty(out, depth + 1);
                }
                if !items.is_empty() {
                    newline(out, depth);
                }
                out.push(']');
            }
            FjValue::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        // fastjson's MapSerializer only breaks the line before string keys.
                        FjValue::String(_) => {
                            newline(out, depth + 1);
                            k.write_scalar(out);
                        }
                        FjValue::Array(_) | FjValue::Object(_) => k.write_pretty(out, depth + 1),
                        _ => k.write_scalar(out),
                    }
                    out.push(':');
                    v.write_pretty(out, depth + 1);
                }
                if !members.is_empty() {
                    newline(out, depth);
                }
                out.push('}');
            }
            scalar => scalar.write_scalar(out),
        }
    }

    fn write_scalar(&self, out: &mut String) {
        match self {
            FjValue::Null => out.push_str("null"),
            FjValue::Bool(true) => out.push_str("true"),
            FjValue::Bool(false) => out.push_str("false"),
            FjValue::Number(n) => {
                let _ = write!(out, "{n}");
            }
            FjValue::String(s) => write_string(out, s),
            FjValue::Array(_) | FjValue::Object(_) => self.write_compact(out),
        }
    }
}

impl From<Value> for FjValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => FjValue::Null,
            Value::Bool(b) => FjValue::Bool(b),
            Value::Number(n) => FjValue::Number(n),
            Value::String(s) => FjValue::String(s),
            Value::Array(items) => FjValue::Array(items.into_iter().map(FjValue::from).collect()),
            Value::Object(map) => {
                let mut members: Vec<(String, Value)> = map.into_iter().collect();
                // Explicit sort: the order must not depend on serde_json's `preserve_order`.
                members.sort_by(|a, b| a.0.cmp(&b.0));
                FjValue::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (FjValue::String(k), FjValue::from(v)))
                        .collect(),
                )
            }
        }
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push('\t');
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `entries` as a fastjson map with object keys, in the order given, to `out`:
/// `{{"brokerName":"broker-a","queueId":0,"topic":"T"}:10,...}`.
///
/// Keys and values are serialized with serde; members of structs come out alphabetically, as
/// fastjson writes Java beans. Use it for `ConsumerRunningInfo.mqTable` and
/// `GetConsumerStatusBody.messageQueueTable`.
pub fn write_object_key_map<'a, K, V, I>(out: &mut String, entries: I) -> Result<(), CodecError>
where
    K: Serialize + 'a + ?Sized,
    V: Serialize + 'a + ?Sized,
    I: IntoIterator<Item = (&'a K, &'a V)>,
{
    FjValue::object_key_map(entries)?.write_compact(out);
    Ok(())
}

/// The GET_CONSUMER_RUNNING_INFO response body (Java `ConsumerRunningInfo`): one consumer's
/// settings, held queues, rates and subscriptions. [`encode`](Self::encode) writes it as
/// fastjson does, with `mqTable` keyed by queue objects.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerRunningInfo {
    /// Facts and settings (the `PROP_*` keys), in key order.
    pub(crate) properties: BTreeMap<String, String>,
    /// Each held queue and its state, in any order.
    pub(crate) mq_table: Vec<(MessageQueue, ProcessQueueInfo)>,
    /// Rates per topic.
    pub(crate) status_table: HashMap<String, ConsumeStatus>,
    /// The consumer's subscriptions.
    pub(crate) subscription_set: Vec<SubscriptionData>,
}

impl ConsumerRunningInfo {
    /// The name-server addresses, each followed by `;`.
    pub(crate) const PROP_NAMESERVER_ADDR: &'static str = "PROP_NAMESERVER_ADDR";
    /// The thread pool's core size.
    pub(crate) const PROP_THREADPOOL_CORE_SIZE: &'static str = "PROP_THREADPOOL_CORE_SIZE";
    /// `true` for an orderly consumer.
    pub(crate) const PROP_CONSUME_ORDERLY: &'static str = "PROP_CONSUME_ORDERLY";
    /// `CONSUME_PASSIVELY` (push) or `CONSUME_ACTIVELY` (pull).
    pub(crate) const PROP_CONSUME_TYPE: &'static str = "PROP_CONSUME_TYPE";
    /// The client version, `V4_9_8` style.
    pub(crate) const PROP_CLIENT_VERSION: &'static str = "PROP_CLIENT_VERSION";
    /// When the consumer started, ms since the epoch.
    pub(crate) const PROP_CONSUMER_START_TIMESTAMP: &'static str = "PROP_CONSUMER_START_TIMESTAMP";

    /// The body in fastjson's compact form: members in alphabetical order, `mqTable` sorted by
    /// queue, `statusTable` by topic.
    pub(crate) fn encode(&self) -> Result<String, CodecError> {
        let mut queues: Vec<&(MessageQueue, ProcessQueueInfo)> = self.mq_table.iter().collect();
        queues.sort_by(|a, b| a.0.cmp(&b.0));
        let status: BTreeMap<&String, &ConsumeStatus> = self.status_table.iter().collect();
        let root = FjValue::Object(vec![
            (
                FjValue::String("mqTable".into()),
                FjValue::object_key_map(queues.iter().map(|(k, v)| (k, v)))?,
            ),
            (
                FjValue::String("properties".into()),
                FjValue::from_serialize(&self.properties)?,
            ),
            (
                FjValue::String("statusTable".into()),
                FjValue::from_serialize(&status)?,
            ),
            (
                FjValue::String("subscriptionSet".into()),
                FjValue::from_serialize(&self.subscription_set)?,
            ),
        ]);
        Ok(root.to_compact_string())
    }
}

/// Rates and round trips of one topic (Java `ConsumeStatus`), since the previous snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStatus {
    /// Mean pull round trip, ms.
    #[serde(rename = "pullRT")]
    pub pull_rt: f64,
    /// Messages pulled per second.
    #[serde(rename = "pullTPS")]
    pub pull_tps: f64,
    /// Mean listener call time, ms.
    #[serde(rename = "consumeRT")]
    pub consume_rt: f64,
    /// Messages consumed successfully per second.
    #[serde(rename = "consumeOKTPS")]
    pub consume_ok_tps: f64,
    /// Messages whose consumption failed per second.
    #[serde(rename = "consumeFailedTPS")]
    pub consume_failed_tps: f64,
    /// Messages whose consumption failed, in total.
    pub consume_failed_msgs: u64,
    /// Pulled records that could not be decoded and were skipped, in total (not in Java).
    pub undecodable_msgs: u64,
}

/// Decodes a `Map<MessageQueue, Long>` value (object keys).
fn decode_offset_table(v: Option<&FjValue>) -> Result<Vec<(MessageQueue, i64)>, CodecError> {
    decode_queue_map(v, "offsetTable", |mq, v| match v {
        FjValue::Number(n) => n
            .as_i64()
            .ok_or_else(|| CodecError::Json(format!("offset of {mq} is not a long"))),
        _ => Err(CodecError::Json(format!("offset of {mq} is not a long"))),
    })
}

/// Decodes a fastjson `Map<MessageQueue, V>` member named `what` (object keys, or keys written
/// as strings holding the object), each value by `value`. Absent or `null` is an empty map.
pub(crate) fn decode_queue_map<V>(
    v: Option<&FjValue>,
    what: &str,
    mut value: impl FnMut(&MessageQueue, &FjValue) -> Result<V, CodecError>,
) -> Result<Vec<(MessageQueue, V)>, CodecError> {
    let members = match v {
        None | Some(FjValue::Null) => return Ok(Vec::new()),
        Some(FjValue::Object(members)) => members,
        Some(_) => return Err(CodecError::Json(format!("{what} is not an object"))),
    };
    let mut table = Vec::with_capacity(members.len());
    for (k, v) in members {
        let not_a_queue = |e: CodecError| CodecError::Json(format!("{what} key: {e}"));
        let mq: MessageQueue = match k {
            FjValue::Object(_) => k.deserialize().map_err(not_a_queue)?,
            // Tolerate a key that was written as a string holding the object.
            FjValue::String(s) => FjValue::parse(s)
                .and_then(|k| k.deserialize())
                .map_err(not_a_queue)?,
            _ => {
                return Err(CodecError::Json(format!(
                    "{what} key is not a MessageQueue"
                )))
            }
        };
        let value = value(&mq, v)?;
        table.push((mq, value));
    }
    Ok(table)
}

fn encode_offset_table(table: &[(MessageQueue, i64)]) -> Result<FjValue, CodecError> {
    FjValue::object_key_map(table.iter().map(|(mq, off)| (mq, off)))
}

/// RESET_CONSUMER_CLIENT_OFFSET request body (Java `ResetOffsetBody`):
/// `{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:10}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResetOffsetBody {
    /// Queue → offset to reset to, in document order.
    pub offset_table: Vec<(MessageQueue, i64)>,
}

impl ResetOffsetBody {
    /// Decodes the body. A missing `offsetTable` gives an empty table.
    pub fn decode(body: &[u8]) -> Result<Self, CodecError> {
        let v = FjValue::parse_bytes(body)?;
        if !matches!(v, FjValue::Object(_)) {
            return Err(CodecError::Json("ResetOffsetBody is not an object".into()));
        }
        Ok(ResetOffsetBody {
            offset_table: decode_offset_table(v.get("offsetTable"))?,
        })
    }

    /// Encodes the body in fastjson's compact form.
    pub fn encode(&self) -> Result<String, CodecError> {
        let v = FjValue::Object(vec![(
            FjValue::String("offsetTable".into()),
            encode_offset_table(&self.offset_table)?,
        )]);
        Ok(v.to_compact_string())
    }
}

/// The broadcasting consumer's local offset file (Java `OffsetSerializeWrapper`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetSerializeWrapper {
    /// Queue → next offset to consume, in document (or insertion) order.
    pub offset_table: Vec<(MessageQueue, i64)>,
}

impl OffsetSerializeWrapper {
    /// Decodes the file content, compact or pretty.
    pub fn decode(content: &[u8]) -> Result<Self, CodecError> {
        let v = FjValue::parse_bytes(content)?;
        if !matches!(v, FjValue::Object(_)) {
            return Err(CodecError::Json(
                "OffsetSerializeWrapper is not an object".into(),
            ));
        }
        Ok(OffsetSerializeWrapper {
            offset_table: decode_offset_table(v.get("offsetTable"))?,
        })
    }

    /// Encodes as Java's `toJson(true)` does, byte for byte (tab indentation, no trailing
    /// new line), entries in table order.
    pub fn encode_pretty(&self) -> Result<String, CodecError> {
        let v = FjValue::Object(vec![(
            FjValue::String("offsetTable".into()),
            encode_offset_table(&self.offset_table)?,
        )]);
        Ok(v.to_pretty_string())
    }

    /// Sets `mq`'s offset, replacing an existing entry in place or appending a new one.
    pub fn put(&mut self, mq: &MessageQueue, offset: i64) {
        match self.offset_table.iter_mut().find(|(m, _)| m == mq) {
            Some(entry) => entry.1 = offset,
            None => self.offset_table.push((mq.clone(), offset)),
        }
    }

    /// `mq`'s offset, if present.
    pub fn get(&self, mq: &MessageQueue) -> Option<i64> {
        self.offset_table
            .iter()
            .find(|(m, _)| m == mq)
            .map(|(_, off)| *off)
    }
}

/// A recursive-descent parser over bytes; `pos` is always a char boundary between tokens.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> CodecError {
        CodecError::Json(format!("{what} at byte {}", self.pos))
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<FjValue, CodecError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(FjValue::String(self.string()?)),
            Some(b't') => self.literal("true", FjValue::Bool(true)),
            Some(b'f') => self.literal("false", FjValue::Bool(false)),
            Some(b'n') => self.literal("null", FjValue::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &str, v: FjValue) -> Result<FjValue, CodecError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<FjValue, CodecError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(FjValue::Object(members));
        }
        loop {
            self.skip_ws();
            let key = self.value(depth)?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let val = self.value(depth)?;
            members.push((key, val));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(FjValue::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<FjValue, CodecError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(FjValue::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(FjValue::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<FjValue, CodecError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == int_start {
            return Err(self.err("expected a digit"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == frac {
                return Err(self.err("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let exp = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == exp {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        // The token is ASCII, so the slice is valid UTF-8.
        let token = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
        token
            .parse::<Number>()
            .map(FjValue::Number)
            .map_err(|_| CodecError::Json(format!("number {token:?} out of range at byte {start}")))
    }

    fn hex4(&mut self) -> Result<u32, CodecError> {
        let digits = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go.
            let run_start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' {
                    break;
                }
                self.pos += 1;
            }
            // The input is a &str and the run ends at an ASCII byte or the end, so it is
            // a char boundary.
            out.push_str(std::str::from_utf8(&self.s[run_start..self.pos]).unwrap_or_default());
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => {
                    self.pos += 1; // '\\'
                    let esc = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.pos..].starts_with(b"\\u")
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    self.pos = save;
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            // A lone surrogate (which Java strings may hold) becomes U+FFFD.
                            out.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
            }
        }
    }
}

/// A `MessageQueue` as fastjson writes it: members in alphabetical order.
#[derive(Serialize)]
struct SortedMq<'a> {
    #[serde(rename = "brokerName")]
    broker_name: &'a str,
    #[serde(rename = "queueId")]
    queue_id: i32,
    topic: &'a str,
}

/// Java `LockBatchRequestBody` / `UnlockBatchRequestBody`, members in fastjson's order.
#[derive(Serialize)]
struct LockBatchBodyJson<'a> {
    #[serde(rename = "clientId")]
    client_id: &'a str,
    #[serde(rename = "consumerGroup")]
    consumer_group: &'a str,
    #[serde(rename = "mqSet")]
    mq_set: Vec<SortedMq<'a>>,
    /// A 5.x member that the rocketmq-rust broker requires (FACTS §22); 4.9.x brokers ignore it.
    #[serde(rename = "onlyThisBroker")]
    only_this_broker: bool,
}

/// The body of `LOCK_BATCH_MQ` and `UNLOCK_BATCH_MQ` (Java `LockBatchRequestBody`,
/// `UnlockBatchRequestBody`): `group`'s client `client_id` asks for (or gives up) `mqs`.
/// Always carries `"onlyThisBroker":false`.
pub(crate) fn lock_batch_body(client_id: &str, group: &str, mqs: &[MessageQueue]) -> Vec<u8> {
    let body = LockBatchBodyJson {
        client_id,
        consumer_group: group,
        mq_set: mqs
            .iter()
            .map(|m| SortedMq {
                broker_name: &m.broker_name,
                queue_id: m.queue_id,
                topic: &m.topic,
            })
            .collect(),
        only_this_broker: false,
    };
    serde_json::to_vec(&body).expect("plain strings and numbers always serialize")
}

/// Decodes a `LOCK_BATCH_MQ` answer (Java `LockBatchResponseBody`): the queues now locked
/// for the caller. An absent body or member is an empty set.
pub(crate) fn decode_lock_batch_response(
    body: Option<&[u8]>,
) -> Result<Vec<MessageQueue>, CodecError> {
    #[derive(serde::Deserialize)]
    struct Resp {
        #[serde(rename = "lockOKMQSet", default)]
        lock_ok_mq_set: Vec<MessageQueue>,
    }
    match body {
        None => Ok(Vec::new()),
        Some([]) => Ok(Vec::new()),
        Some(b) => serde_json::from_slice::<Resp>(b)
            .map(|r| r.lock_ok_mq_set)
            .map_err(|e| CodecError::Json(e.to_string())),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lock_batch_body_is_golden_and_carries_only_this_broker() {
        let mqs = [
            MessageQueue::new("T", "broker-a", 1),
            MessageQueue::new("T", "broker-a", 2),
        ];
        let body = lock_batch_body("127.0.0.1@12345#1", "cg", &mqs);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"clientId":"127.0.0.1@12345#1","consumerGroup":"cg","mqSet":[{"brokerName":"broker-a","queueId":1,"topic":"T"},{"brokerName":"broker-a","queueId":2,"topic":"T"}],"onlyThisBroker":false}"#
        );
    }

    #[test]
    fn lock_batch_response_decodes_the_locked_set() {
        let got = decode_lock_batch_response(Some(
            br#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":1,"topic":"T"}]}"#,
        ))
        .unwrap();
        assert_eq!(got, vec![MessageQueue::new("T", "broker-a", 1)]);
        assert!(decode_lock_batch_response(None).unwrap().is_empty());
        assert!(decode_lock_batch_response(Some(b"{}")).unwrap().is_empty());
        assert!(decode_lock_batch_response(Some(b"[")).is_err());
    }
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Copied byte for byte from golden-4.9.8.txt, "LocalFileOffsetStore offsets.json".
    const GOLDEN_PRETTY: &str = "{\n\t\"offsetTable\":{{\n\t\t\t\"brokerName\":\"broker-a\",\n\t\t\t\"queueId\":1,\n\t\t\t\"topic\":\"T\"\n\t\t}:7,{\n\t\t\t\"brokerName\":\"broker-a\",\n\t\t\t\"queueId\":0,\n\t\t\t\"topic\":\"T\"\n\t\t}:42\n\t}\n}";
    const GOLDEN_RESET: &str =
        r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:10}}"#;
    const GOLDEN_RUNNING_INFO: &str = r#"{"mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CONSUME_ORDERLY":"false"},"statusTable":{"T":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":0.0,"consumeRT":0.0,"pullRT":0.0,"pullTPS":0.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[2598919,2598920],"expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,"tagsSet":["TagA","TagB"],"topic":"T"}]}"#;

    fn golden_table() -> Vec<(MessageQueue, i64)> {
        vec![
            (MessageQueue::new("T", "broker-a", 1), 7),
            (MessageQueue::new("T", "broker-a", 0), 42),
        ]
    }

    #[test]
    fn offset_wrapper_encodes_golden_pretty_byte_for_byte() {
        let w = OffsetSerializeWrapper {
            offset_table: golden_table(),
        };
        assert_eq!(w.encode_pretty().unwrap(), GOLDEN_PRETTY);
    }

    #[test]
    fn offset_wrapper_decodes_pretty_and_compact() {
        let w = OffsetSerializeWrapper::decode(GOLDEN_PRETTY.as_bytes()).unwrap();
        assert_eq!(w.offset_table, golden_table());
        let compact = FjValue::parse(GOLDEN_PRETTY).unwrap().to_compact_string();
        assert_eq!(
            compact,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:7,{"brokerName":"broker-a","queueId":0,"topic":"T"}:42}}"#
        );
        let w2 = OffsetSerializeWrapper::decode(compact.as_bytes()).unwrap();
        assert_eq!(w2, w);
        assert_eq!(w.get(&MessageQueue::new("T", "broker-a", 0)), Some(42));
        assert_eq!(w.get(&MessageQueue::new("T", "broker-b", 0)), None);
    }

    #[test]
    fn offset_wrapper_empty_table_forms() {
        let empty = OffsetSerializeWrapper::default();
        assert_eq!(empty.encode_pretty().unwrap(), "{\n\t\"offsetTable\":{}\n}");
        assert_eq!(OffsetSerializeWrapper::decode(b"{}").unwrap(), empty);
        assert_eq!(
            OffsetSerializeWrapper::decode(br#"{"offsetTable":null}"#).unwrap(),
            empty
        );
    }

    #[test]
    fn offset_wrapper_put_replaces_in_place_and_appends() {
        let mut w = OffsetSerializeWrapper {
            offset_table: golden_table(),
        };
        w.put(&MessageQueue::new("T", "broker-a", 1), 8);
        w.put(&MessageQueue::new("T", "broker-b", 0), 3);
        assert_eq!(
            w.offset_table[0],
            (MessageQueue::new("T", "broker-a", 1), 8)
        );
        assert_eq!(
            w.offset_table[2],
            (MessageQueue::new("T", "broker-b", 0), 3)
        );
    }

    #[test]
    fn reset_offset_body_golden() {
        let b = ResetOffsetBody::decode(GOLDEN_RESET.as_bytes()).unwrap();
        assert_eq!(
            b.offset_table,
            vec![(MessageQueue::new("T", "broker-a", 0), 10)]
        );
        assert_eq!(b.encode().unwrap(), GOLDEN_RESET);
        // Whitespace and member case are tolerated, as fastjson does.
        let spaced = " { \"OffsetTable\" : { { \"topic\" : \"T\", \"queueId\" : 0, \"brokerName\" : \"broker-a\" } : 10 } } ";
        assert_eq!(ResetOffsetBody::decode(spaced.as_bytes()).unwrap(), b);
    }

    #[test]
    fn reset_offset_body_rejects_bad_shapes() {
        for bad in [
            r#"[]"#,
            r#"{"offsetTable":[]}"#,
            r#"{"offsetTable":{1:10}}"#,
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:"x"}}"#,
            r#"{"offsetTable":{{"brokerName":"b","queueId":0}:1}}"#,
        ] {
            assert!(
                matches!(
                    ResetOffsetBody::decode(bad.as_bytes()),
                    Err(CodecError::Json(_))
                ),
                "{bad}"
            );
        }
    }

    /// The whole GET_CONSUMER_RUNNING_INFO body, byte for byte: members and map keys in
    /// fastjson's order, queues as object keys sorted by queue, whatever order they came in.
    #[test]
    fn consumer_running_info_encodes_as_golden() {
        let q = |topic: &str, id: i32, commit: i64| {
            (
                MessageQueue::new(topic, "broker-a", id),
                ProcessQueueInfo {
                    commit_offset: commit,
                    cached_msg_count: id,
                    ..ProcessQueueInfo::default()
                },
            )
        };
        let status = ConsumeStatus {
            pull_rt: 1.5,
            pull_tps: 64.0,
            consume_rt: 2.25,
            consume_ok_tps: 60.0,
            consume_failed_tps: 0.0,
            consume_failed_msgs: 3,
            undecodable_msgs: 1,
        };
        let prop = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let info = ConsumerRunningInfo {
            properties: BTreeMap::from([
                prop("PROP_CONSUME_ORDERLY", "false"),
                prop("PROP_THREADPOOL_CORE_SIZE", "20"),
                prop("PROP_CONSUMER_START_TIMESTAMP", "1700000000123"),
                prop("PROP_NAMESERVER_ADDR", "127.0.0.1:9876;127.0.0.2:9876;"),
                prop("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY"),
                prop("PROP_CLIENT_VERSION", "V4_9_8"),
            ]),
            mq_table: vec![q("T", 1, 7), q("%RETRY%cg", 0, -1), q("T", 0, 42)],
            status_table: HashMap::from([
                ("T".to_owned(), status.clone()),
                ("%RETRY%cg".to_owned(), ConsumeStatus::default()),
            ]),
            subscription_set: vec![SubscriptionData {
                code_set: BTreeSet::from([2598919]),
                expression_type: "TAG".into(),
                sub_string: "TagA".into(),
                sub_version: 1700000000000,
                tags_set: BTreeSet::from(["TagA".to_owned()]),
                topic: "T".into(),
                ..SubscriptionData::default()
            }],
        };
        let body = info.encode().unwrap();
        let golden = r#"{"mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"%RETRY%cg"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":-1,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0},{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0},{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":1,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":7,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CLIENT_VERSION":"V4_9_8","PROP_CONSUMER_START_TIMESTAMP":"1700000000123","PROP_CONSUME_ORDERLY":"false","PROP_CONSUME_TYPE":"CONSUME_PASSIVELY","PROP_NAMESERVER_ADDR":"127.0.0.1:9876;127.0.0.2:9876;","PROP_THREADPOOL_CORE_SIZE":"20"},"statusTable":{"%RETRY%cg":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":0.0,"consumeRT":0.0,"pullRT":0.0,"pullTPS":0.0,"undecodableMsgs":0},"T":{"consumeFailedMsgs":3,"consumeFailedTPS":0.0,"consumeOKTPS":60.0,"consumeRT":2.25,"pullRT":1.5,"pullTPS":64.0,"undecodableMsgs":1}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T"}]}"#;
        assert_eq!(body, golden);
    }

    #[test]
    fn process_queue_info_serializes_with_fastjson_names_in_golden_order() {
        // The golden mqTable value (GET_CONSUMER_RUNNING_INFO).
        let golden = r#"{"cachedMsgCount":0,"cachedMsgMaxOffset":0,"cachedMsgMinOffset":0,"cachedMsgSizeInMiB":0,"commitOffset":42,"droped":false,"lastConsumeTimestamp":0,"lastLockTimestamp":0,"lastPullTimestamp":0,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}"#;
        let zero = ProcessQueueInfo {
            commit_offset: 42,
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&zero).unwrap(), golden);
        assert_eq!(
            serde_json::from_str::<ProcessQueueInfo>(golden).unwrap(),
            zero
        );
    }

    #[test]
    fn running_info_golden_round_trips_through_fj_value() {
        let v = FjValue::parse(GOLDEN_RUNNING_INFO).unwrap();
        assert_eq!(v.to_compact_string(), GOLDEN_RUNNING_INFO);
        let mq_table = v.get("mqTable").unwrap();
        let FjValue::Object(members) = mq_table else {
            panic!("mqTable is an object")
        };
        let mq: MessageQueue = members[0].0.deserialize().unwrap();
        assert_eq!(mq, MessageQueue::new("T", "broker-a", 0));
        assert_eq!(
            members[0].1.get("commitOffset"),
            Some(&FjValue::Number(42.into()))
        );
        // Standard-keyed parts convert to serde_json.
        let props = v.get("properties").unwrap().to_json().unwrap();
        assert_eq!(props["PROP_CONSUME_ORDERLY"], "false");
        assert!(mq_table.to_json().is_err());
    }

    #[test]
    fn write_object_key_map_produces_fastjson_form() {
        #[derive(Serialize)]
        struct Info {
            #[serde(rename = "commitOffset")]
            commit_offset: i64,
            #[serde(rename = "cachedMsgCount")]
            cached_msg_count: i32,
        }
        let mq0 = MessageQueue::new("T", "broker-a", 0);
        let mq1 = MessageQueue::new("T", "broker-a", 1);
        let i0 = Info {
            commit_offset: 42,
            cached_msg_count: 1,
        };
        let i1 = Info {
            commit_offset: 7,
            cached_msg_count: 0,
        };
        let mut out = String::new();
        write_object_key_map(&mut out, [(&mq0, &i0), (&mq1, &i1)]).unwrap();
        assert_eq!(
            out,
            r#"{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"cachedMsgCount":1,"commitOffset":42},{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":0,"commitOffset":7}}"#
        );
        let mut empty = String::new();
        write_object_key_map::<MessageQueue, i64, _>(&mut empty, []).unwrap();
        assert_eq!(empty, "{}");
    }

    #[test]
    fn standard_json_and_number_keys_parse() {
        let v = FjValue::parse(r#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"x"},"a":[1,-2.5e3,true,null,"\u00e9\ud83d\ude00\n"]}"#).unwrap();
        let j = v.to_json().unwrap();
        assert_eq!(j["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert_eq!(j["a"][1].as_f64(), Some(-2500.0));
        assert_eq!(j["a"][4], "é😀\n");
    }

    #[test]
    fn strings_round_trip_with_escapes() {
        let s = "q\"b\\s/\u{1}\t\u{8}\u{c}\r\né";
        let v = FjValue::String(s.into());
        let text = v.to_compact_string();
        assert_eq!(FjValue::parse(&text).unwrap(), v);
        let parsed: String = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, s);
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("", 0),
            ("{", 1),
            ("{\"a\" 1}", 5),
            ("[1,]", 3),
            ("{\"a\":1} x", 8),
            ("\"abc", 4),
            ("tru", 0),
            ("-", 1),
            ("1.", 2),
            ("\"\\x\"", 2),
            ("\"\\u12\"", 3),
        ];
        for (input, pos) in cases {
            match FjValue::parse(input) {
                Err(CodecError::Json(m)) => {
                    assert!(m.ends_with(&format!("at byte {pos}")), "{input:?}: {m}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert!(matches!(
            FjValue::parse_bytes(b"{\"a\":\"\xff\"}"),
            Err(CodecError::Json(m)) if m.contains("byte 6")
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(matches!(FjValue::parse(&deep), Err(CodecError::Json(_))));
        let deep_keys = "{".repeat(100_000);
        assert!(matches!(
            FjValue::parse(&deep_keys),
            Err(CodecError::Json(_))
        ));
    }

    fn arb_mq() -> impl Strategy<Value = MessageQueue> {
        ("[a-zA-Z%_\"\\\\é]{0,8}", "[a-z\\-]{0,8}", any::<i32>())
            .prop_map(|(t, b, q)| MessageQueue::new(t, b, q))
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,64}") {
            let _ = FjValue::parse(&s);
            let _ = ResetOffsetBody::decode(s.as_bytes());
            let _ = OffsetSerializeWrapper::decode(s.as_bytes());
        }

        #[test]
        fn arbitrary_json_like_strings_never_panic(s in "[{}\\[\\]:,\"0-9a-z\\\\ .eE+\\-]{0,64}") {
            let _ = FjValue::parse(&s);
            let _ = ResetOffsetBody::decode(s.as_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FjValue::parse_bytes(&b);
            let _ = OffsetSerializeWrapper::decode(&b);
        }

        #[test]
        fn offset_table_round_trips(table in proptest::collection::vec((arb_mq(), any::<i64>()), 0..6)) {
            let w = OffsetSerializeWrapper { offset_table: table.clone() };
            let pretty = w.encode_pretty().unwrap();
            prop_assert_eq!(OffsetSerializeWrapper::decode(pretty.as_bytes()).unwrap(), w);
            let r = ResetOffsetBody { offset_table: table };
            let compact = r.encode().unwrap();
            prop_assert_eq!(ResetOffsetBody::decode(compact.as_bytes()).unwrap(), r);
        }
    }
}
