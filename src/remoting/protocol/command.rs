//! `RemotingCommand`: one request or response on the wire, and its two header encodings.
//!
//! ```text
//! offset size  field
//! 0      4     total_len   = 4 + header_len + body_len (does not count itself)
//! 4      4     header_word = (serialize_type << 24) | header_len
//! 8      H     header (JSON text, or the ROCKETMQ binary form)
//! 8+H    B     body
//! ```
//!
//! [`RemotingCommand::decode`] takes a frame *without* its 4-byte length prefix (that is what
//! [`FrameDecoder`](super::FrameDecoder) yields). The body is a zero-copy slice of the frame.

use std::sync::atomic::{AtomicI32, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::CodecError;
use super::{ExtFields, RequestCode, ResponseCode};

/// The protocol version this client announces: Java's `MQVersion.Version.V4_9_8.ordinal()`.
///
/// Any value `>= 401` makes a 4.9.4+ name server answer route queries in standard JSON.
pub const CURRENT_VERSION: i32 = 409;

/// Flag bit 0: the command is a response.
pub const RPC_TYPE_RESPONSE: i32 = 1;
/// Flag bit 1: the request is one-way (no response will be sent).
pub const RPC_ONEWAY: i32 = 2;

static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(0);

/// Takes the next process-wide request id, like Java's `RemotingCommand.requestId`.
pub fn next_opaque() -> i32 {
    NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed)
}

/// How a command's header is encoded (Java `SerializeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson-compatible JSON text. The default.
    #[default]
    Json,
    /// RocketMQ's compact binary form.
    RocketMQ,
}

impl SerializeType {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMQ => 1,
        }
    }

    /// Parses the wire byte.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMQ),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMQ => "ROCKETMQ",
        }
    }
}

/// The language a peer declares (Java `LanguageCode`). Unknown values are kept as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    /// Java.
    pub const JAVA: LanguageCode = LanguageCode(0);
    /// C++.
    pub const CPP: LanguageCode = LanguageCode(1);
    /// .NET.
    pub const DOTNET: LanguageCode = LanguageCode(2);
    /// Python.
    pub const PYTHON: LanguageCode = LanguageCode(3);
    /// Delphi.
    pub const DELPHI: LanguageCode = LanguageCode(4);
    /// Erlang.
    pub const ERLANG: LanguageCode = LanguageCode(5);
    /// Ruby.
    pub const RUBY: LanguageCode = LanguageCode(6);
    /// Other.
    pub const OTHER: LanguageCode = LanguageCode(7);
    /// HTTP.
    pub const HTTP: LanguageCode = LanguageCode(8);
    /// Go.
    pub const GO: LanguageCode = LanguageCode(9);
    /// PHP.
    pub const PHP: LanguageCode = LanguageCode(10);
    /// OMS.
    pub const OMS: LanguageCode = LanguageCode(11);
    /// Rust (known to brokers from 4.9.4 on).
    pub const RUST: LanguageCode = LanguageCode(12);

    const NAMES: [&'static str; 13] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST",
    ];

    /// The JSON name (`"JAVA"`, `"RUST"`, ...); `"OTHER"` for unknown bytes.
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self.0 as usize).copied().unwrap_or("OTHER")
    }

    /// Parses a JSON name; unknown names map to [`LanguageCode::OTHER`].
    pub fn from_name(name: &str) -> Self {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| LanguageCode(i as u8))
            .unwrap_or(LanguageCode::OTHER)
    }
}

impl Default for LanguageCode {
    /// `JAVA`, as in Java's `ClientConfig`: brokers older than 4.9.4 reject `RUST`.
    fn default() -> Self {
        LanguageCode::JAVA
    }
}

/// A typed custom header: the fields that travel in `extFields` as strings.
///
/// Field names are the Java field names exactly (`consumerGroup`, `isForce`, `a`..`n`).
pub trait CommandCustomHeader: Sized {
    /// Writes every non-null field into `fields`, stringified as Java's `toString()` would.
    fn write_to(&self, fields: &mut ExtFields);
    /// Reads the header back; a missing required field is [`CodecError::MissingField`].
    fn read_from(fields: &ExtFields) -> Result<Self, CodecError>;
}

/// One remoting request or response.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotingCommand {
    code: i32,
    language: LanguageCode,
    version: i32,
    opaque: i32,
    flag: i32,
    remark: Option<String>,
    ext_fields: ExtFields,
    serialize_type: SerializeType,
    body: Option<Bytes>,
}

impl RemotingCommand {
    /// A new request with the next process-wide opaque.
    pub fn request(code: RequestCode) -> Self {
        RemotingCommand {
            code: code.0,
            language: LanguageCode::default(),
            version: CURRENT_VERSION,
            opaque: next_opaque(),
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            serialize_type: SerializeType::Json,
            body: None,
        }
    }

    /// A new request carrying `header` in its `extFields`.
    pub fn request_with_header<H: CommandCustomHeader>(code: RequestCode, header: &H) -> Self {
        let mut cmd = Self::request(code);
        header.write_to(&mut cmd.ext_fields);
        cmd
    }

    /// A response with `code` and `remark`. Its opaque is 0 until set: use
    /// [`RemotingCommand::response_to`] to answer a request.
    pub fn response(code: ResponseCode, remark: Option<String>) -> Self {
        RemotingCommand {
            code: code.0,
            language: LanguageCode::default(),
            version: CURRENT_VERSION,
            opaque: 0,
            flag: RPC_TYPE_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            serialize_type: SerializeType::Json,
            body: None,
        }
    }

    /// A response to `request`: same opaque, same serialize type, the response flag set.
    pub fn response_to(
        request: &RemotingCommand,
        code: ResponseCode,
        remark: Option<String>,
    ) -> Self {
        let mut r = Self::response(code, remark);
        r.opaque = request.opaque;
        r.serialize_type = request.serialize_type;
        r
    }

    /// The raw code: a [`RequestCode`] for requests, a [`ResponseCode`] for responses.
    pub fn code(&self) -> i32 {
        self.code
    }
    /// The code read as a request code.
    pub fn request_code(&self) -> RequestCode {
        RequestCode(self.code)
    }
    /// The code read as a response code.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode(self.code)
    }
    /// Sets the code.
    pub fn set_code(&mut self, code: i32) {
        self.code = code;
    }
    /// The declared language.
    pub fn language(&self) -> LanguageCode {
        self.language
    }
    /// Sets the declared language.
    pub fn set_language(&mut self, language: LanguageCode) {
        self.language = language;
    }
    /// The peer's protocol version.
    pub fn version(&self) -> i32 {
        self.version
    }
    /// Sets the protocol version.
    pub fn set_version(&mut self, version: i32) {
        self.version = version;
    }
    /// The request id; a response echoes its request's.
    pub fn opaque(&self) -> i32 {
        self.opaque
    }
    /// Sets the request id.
    pub fn set_opaque(&mut self, opaque: i32) {
        self.opaque = opaque;
    }
    /// The raw flag word.
    pub fn flag(&self) -> i32 {
        self.flag
    }
    /// Sets the raw flag word.
    pub fn set_flag(&mut self, flag: i32) {
        self.flag = flag;
    }
    /// `true` when the response bit is set.
    pub fn is_response(&self) -> bool {
        self.flag & RPC_TYPE_RESPONSE != 0
    }
    /// `true` when the one-way bit is set.
    pub fn is_oneway(&self) -> bool {
        self.flag & RPC_ONEWAY != 0
    }
    /// Sets the one-way bit.
    pub fn mark_oneway(&mut self) {
        self.flag |= RPC_ONEWAY;
    }
    /// Sets the response bit.
    pub fn mark_response(&mut self) {
        self.flag |= RPC_TYPE_RESPONSE;
    }
    /// The remark (error text on responses).
    pub fn remark(&self) -> Option<&str> {
        self.remark.as_deref()
    }
    /// Sets the remark.
    pub fn set_remark(&mut self, remark: Option<String>) {
        self.remark = remark;
    }
    /// The custom-header fields.
    pub fn ext_fields(&self) -> &ExtFields {
        &self.ext_fields
    }
    /// The custom-header fields, mutably.
    pub fn ext_fields_mut(&mut self) -> &mut ExtFields {
        &mut self.ext_fields
    }
    /// Decodes the typed custom header from `extFields`.
    pub fn decode_header<H: CommandCustomHeader>(&self) -> Result<H, CodecError> {
        H::read_from(&self.ext_fields)
    }
    /// How the header is (or will be) encoded.
    pub fn serialize_type(&self) -> SerializeType {
        self.serialize_type
    }
    /// Chooses the header encoding.
    pub fn set_serialize_type(&mut self, t: SerializeType) {
        self.serialize_type = t;
    }
    /// The body, if any.
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }
    /// Takes the body out.
    pub fn take_body(&mut self) -> Option<Bytes> {
        self.body.take()
    }
    /// Sets the body. An empty body is the same as none on the wire.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        let b: Bytes = body.into();
        self.body = if b.is_empty() { None } else { Some(b) };
    }
    /// Builder-style [`set_body`](Self::set_body).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.set_body(body);
        self
    }

    /// The header bytes in this command's serialize type.
    pub fn encode_header(&self) -> Result<Vec<u8>, CodecError> {
        match self.serialize_type {
            SerializeType::Json => self.encode_json_header(),
            SerializeType::RocketMQ => self.encode_binary_header(),
        }
    }

    /// Appends the whole frame, length prefix included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        let header = self.encode_header()?;
        if header.len() > 0x00FF_FFFF {
            return Err(CodecError::malformed(format!(
                "header of {} bytes does not fit in 24 bits",
                header.len()
            )));
        }
        let body_len = self.body.as_ref().map_or(0, |b| b.len());
        let total = 4 + header.len() + body_len;
        if total > i32::MAX as usize {
            return Err(CodecError::FrameTooLarge {
                len: total,
                max: i32::MAX as usize,
            });
        }
        dst.reserve(4 + total);
        dst.put_u32(total as u32);
        dst.put_u32(((self.serialize_type.code() as u32) << 24) | header.len() as u32);
        dst.put_slice(&header);
        if let Some(b) = &self.body {
            dst.put_slice(b);
        }
        Ok(())
    }

    /// The whole frame as one buffer.
    pub fn encode_to_bytes(&self) -> Result<Bytes, CodecError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes a frame without its 4-byte total-length prefix. The body is a slice of `frame`.
    pub fn decode(frame: Bytes) -> Result<Self, CodecError> {
        if frame.len() < 4 {
            return Err(CodecError::malformed(format!(
                "frame of {} bytes is shorter than its header word",
                frame.len()
            )));
        }
        let word = (&frame[..4]).get_u32();
        let header_len = (word & 0x00FF_FFFF) as usize;
        let type_byte = (word >> 24) as u8;
        if header_len > frame.len() - 4 {
            return Err(CodecError::malformed(format!(
                "header length {} exceeds the {} bytes left in the frame",
                header_len,
                frame.len() - 4
            )));
        }
        let serialize_type = SerializeType::from_code(type_byte)
            .ok_or_else(|| CodecError::malformed(format!("unknown serialize type {type_byte}")))?;
        let header = &frame[4..4 + header_len];
        let mut cmd = match serialize_type {
            SerializeType::Json => Self::decode_json_header(header)?,
            SerializeType::RocketMQ => Self::decode_binary_header(header)?,
        };
        cmd.serialize_type = serialize_type;
        let body_start = 4 + header_len;
        if frame.len() > body_start {
            cmd.body = Some(frame.slice(body_start..));
        }
        Ok(cmd)
    }

    fn encode_json_header(&self) -> Result<Vec<u8>, CodecError> {
        // fastjson writes members in alphabetical order and omits nulls.
        #[derive(Serialize)]
        struct JsonHeader<'a> {
            code: i32,
            #[serde(rename = "extFields", skip_serializing_if = "Option::is_none")]
            ext_fields: Option<&'a ExtFields>,
            flag: i32,
            language: &'static str,
            opaque: i32,
            #[serde(skip_serializing_if = "Option::is_none")]
            remark: Option<&'a str>,
            #[serde(rename = "serializeTypeCurrentRPC")]
            serialize_type: &'static str,
            version: i32,
        }
        let h = JsonHeader {
            code: self.code,
            ext_fields: if self.ext_fields.is_empty() {
                None
            } else {
                Some(&self.ext_fields)
            },
            flag: self.flag,
            language: self.language.name(),
            opaque: self.opaque,
            remark: self.remark.as_deref(),
            serialize_type: self.serialize_type.name(),
            version: self.version,
        };
        serde_json::to_vec(&h).map_err(|e| CodecError::Json(e.to_string()))
    }

    fn decode_json_header(header: &[u8]) -> Result<Self, CodecError> {
        #[derive(Deserialize)]
        struct JsonHeader {
            #[serde(default)]
            code: i32,
            #[serde(default, rename = "extFields")]
            ext_fields: Option<ExtFields>,
            #[serde(default)]
            flag: i32,
            #[serde(default, deserialize_with = "language_from_json")]
            language: LanguageCode,
            #[serde(default)]
            opaque: i32,
            #[serde(default)]
            remark: Option<String>,
            #[serde(default)]
            version: i32,
        }
        let h: JsonHeader =
            serde_json::from_slice(header).map_err(|e| CodecError::Json(e.to_string()))?;
        Ok(RemotingCommand {
            code: h.code,
            language: h.language,
            version: h.version,
            opaque: h.opaque,
            flag: h.flag,
            remark: h.remark,
            ext_fields: h.ext_fields.unwrap_or_default(),
            serialize_type: SerializeType::Json,
            body: None,
        })
    }

    fn encode_binary_header(&self) -> Result<Vec<u8>, CodecError> {
        let remark = self.remark.as_deref().unwrap_or("").as_bytes();
        // The length fields are 16 (keys) and 32 (remark, values, map) bits wide: refuse what
        // does not fit instead of writing a frame whose lengths disagree with its contents.
        if let Some((k, _)) = self
            .ext_fields
            .iter()
            .find(|(k, _)| k.len() > u16::MAX as usize)
        {
            return Err(CodecError::malformed(format!(
                "extFields key of {} bytes does not fit the 16-bit length of the binary header",
                k.len()
            )));
        }
        let map_len: usize = self
            .ext_fields
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum();
        if remark.len() > i32::MAX as usize || map_len > i32::MAX as usize {
            return Err(CodecError::malformed(
                "remark or extFields too long for the binary header",
            ));
        }
        let mut out = Vec::with_capacity(2 + 1 + 2 + 4 + 4 + 4 + remark.len() + 4 + map_len);
        out.put_i16(self.code as i16);
        out.put_u8(self.language.0);
        out.put_i16(self.version as i16);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        out.put_i32(remark.len() as i32);
        out.put_slice(remark);
        out.put_i32(map_len as i32);
        for (k, v) in self.ext_fields.iter() {
            out.put_u16(k.len() as u16);
            out.put_slice(k.as_bytes());
            out.put_i32(v.len() as i32);
            out.put_slice(v.as_bytes());
        }
        Ok(out)
    }

    fn decode_binary_header(mut h: &[u8]) -> Result<Self, CodecError> {
        let header_len = h.len();
        fn need(h: &[u8], n: usize, what: &str) -> Result<(), CodecError> {
            if h.remaining() < n {
                Err(CodecError::malformed(format!(
                    "binary header truncated reading {what}"
                )))
            } else {
                Ok(())
            }
        }
        fn string(
            h: &mut &[u8],
            len: usize,
            limit: usize,
            what: &str,
        ) -> Result<String, CodecError> {
            if len > limit {
                return Err(CodecError::malformed(format!(
                    "{what} length {len} exceeds the header length {limit}"
                )));
            }
            need(h, len, what)?;
            let s = std::str::from_utf8(&h[..len])
                .map_err(|_| CodecError::malformed(format!("{what} is not UTF-8")))?
                .to_owned();
            h.advance(len);
            Ok(s)
        }
        need(h, 2 + 1 + 2 + 4 + 4 + 4, "fixed fields")?;
        let code = h.get_i16() as i32;
        let language = LanguageCode(h.get_u8());
        let version = h.get_i16() as i32;
        let opaque = h.get_i32();
        let flag = h.get_i32();
        let remark_len = h.get_i32();
        if remark_len < 0 {
            return Err(CodecError::malformed("negative remark length"));
        }
        let remark = if remark_len > 0 {
            Some(string(&mut h, remark_len as usize, header_len, "remark")?)
        } else {
            None
        };
        need(h, 4, "extFields length")?;
        let ext_len = h.get_i32();
        if ext_len < 0 || ext_len as usize > header_len {
            return Err(CodecError::malformed(format!(
                "extFields length {ext_len} exceeds the header length {header_len}"
            )));
        }
        need(h, ext_len as usize, "extFields")?;
        let mut map = &h[..ext_len as usize];
        let mut ext_fields = ExtFields::new();
        while map.has_remaining() {
            need(map, 2, "key length")?;
            let klen = map.get_u16() as usize;
            let key = string(&mut map, klen, header_len, "key")?;
            need(map, 4, "value length")?;
            let vlen = map.get_i32();
            if vlen < 0 {
                return Err(CodecError::malformed("negative value length"));
            }
            let val = string(&mut map, vlen as usize, header_len, "value")?;
            // Java reads empty strings as null and skips null entries.
            if !key.is_empty() && !val.is_empty() {
                ext_fields.insert(key, val);
            }
        }
        Ok(RemotingCommand {
            code,
            language,
            version,
            opaque,
            flag,
            remark,
            ext_fields,
            serialize_type: SerializeType::RocketMQ,
            body: None,
        })
    }
}

fn language_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    // fastjson writes the enum name; be lenient and accept the ordinal too. An unknown ordinal
    // is OTHER, like an unknown name: JSON has no name to re-encode it with.
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => LanguageCode::from_name(&s),
        serde_json::Value::Number(n) => n
            .as_u64()
            .filter(|n| *n < LanguageCode::NAMES.len() as u64)
            .map(|n| LanguageCode(n as u8))
            .unwrap_or(LanguageCode::OTHER),
        _ => LanguageCode::OTHER,
    })
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ExtFields, A::Error> {
                let mut out = ExtFields::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    // Values are strings from Java; stringify scalars from lenient peers.
                    let v = match v {
                        serde_json::Value::Null => continue,
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}
