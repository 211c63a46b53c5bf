//! The stored-message codec (Java `MessageDecoder`), message ids (`createMessageId`,
//! `MessageClientIDSetter`), batch encoding and the tags hash.
//!
//! Decoding never panics: every length is checked against the buffer. A record that does not
//! decode is skipped by its length prefix and the records after it are still decoded (Java stops
//! at the first bad record and loses the rest of the pull); see [`MessageDecoder::decode_batch`].

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{Message, MessageExt, Utf8Bytes};
use super::util::{hex_to_bytes, java_string_hash, now_millis, write_hex_upper};
use crate::error::CodecError;

/// `MessageSysFlag` bits carried in a stored record's SYSFLAG field.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageSysFlag;

impl MessageSysFlag {
    /// The body is compressed; the algorithm is in [`MessageSysFlag::COMPRESSION_TYPE_MASK`].
    pub const COMPRESSED_FLAG: i32 = 0x1;
    /// The message has several tags.
    pub const MULTI_TAGS_FLAG: i32 = 0x2;
    /// Not a transactional message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    /// A transaction half message.
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    /// A committed transactional message.
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    /// A rolled-back transactional message.
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// The born host is IPv6.
    pub const BORNHOST_V6_FLAG: i32 = 0x10;
    /// The store host is IPv6.
    pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x20;
    /// The message must be unwrapped (inner batch).
    pub const NEED_UNWRAP_FLAG: i32 = 0x40;
    /// The record is an inner batch.
    pub const INNER_BATCH_FLAG: i32 = 0x80;
    /// LZ4 compression (lz4-java frame format).
    pub const COMPRESSION_LZ4_TYPE: i32 = 0x100;
    /// Zstandard compression.
    pub const COMPRESSION_ZSTD_TYPE: i32 = 0x200;
    /// zlib compression (also what a type of 0 means, from older producers).
    pub const COMPRESSION_ZLIB_TYPE: i32 = 0x300;
    /// Mask of the compression type bits.
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
}

/// Magic code of a V1 stored record (topic length is an `i8`).
pub const MESSAGE_MAGIC_CODE: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a V2 stored record (5.x; topic length is an `i16`).
pub const MESSAGE_MAGIC_CODE_V2: i32 = 0xDAA3_20AB_u32 as i32;

/// The smallest possible stored record: IPv4 hosts, empty body, topic and properties.
const MIN_RECORD_LEN: usize = 91;

/// The default bound on a decompressed body: Java's default `maxMessageSize` (4 MiB). A body that
/// inflates past the bound does not decode, so a small record cannot expand to gigabytes.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;

/// zlib level Java producers use by default (`rocketmq.message.compressLevel`).
const ZLIB_LEVEL: u32 = 5;

/// Java's `MessageDecoder`: stored records, message ids and batch bodies.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageDecoder;

/// What [`MessageDecoder::decode_batch`] made of a pull body.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DecodedBatch {
    /// The records that decoded, in body order.
    pub messages: Vec<MessageExt>,
    /// Records that did not decode and were skipped by their length prefix, in body order.
    pub skipped: Vec<UndecodableRecord>,
    /// The record whose length prefix was unusable, if any: decoding stopped there, and nothing
    /// from [`UndecodableRecord::position`] to the end of the body was decoded.
    pub stopped: Option<UndecodableRecord>,
}

impl DecodedBatch {
    /// Records that did not decode: the skipped ones, plus one for a stop.
    pub fn undecodable(&self) -> usize {
        self.skipped.len() + usize::from(self.stopped.is_some())
    }

    /// The offset to pull from next, given the pull response's `next_begin_offset`.
    ///
    /// When decoding stopped early, the records after the stop were not decoded: the next pull
    /// starts right after the last decoded message, so the broker sends them again (the unusable
    /// record is then the first of its pull). When nothing decoded before the stop, there is no
    /// progress to keep, and `next_begin_offset` passes the whole pull, as Java does.
    pub fn next_pull_offset(&self, next_begin_offset: i64) -> i64 {
        match (&self.stopped, self.messages.last()) {
            (Some(_), Some(last)) => last.queue_offset().saturating_add(1),
            _ => next_begin_offset,
        }
    }

    /// Logs every undecodable record of a pull of `queue`, with the queue offsets around it.
    /// `next_pull_offset` is where the next pull of the queue starts.
    pub(crate) fn log_undecodable(&self, queue: &dyn std::fmt::Display, next_pull_offset: i64) {
        let around = |bad: &UndecodableRecord| {
            let before = bad
                .decoded_before
                .checked_sub(1)
                .and_then(|i| self.messages.get(i))
                .map(|m| m.queue_offset());
            let after = self
                .messages
                .get(bad.decoded_before)
                .map(|m| m.queue_offset());
            match (before, after) {
                (Some(b), Some(a)) => format!("between queue offsets {b} and {a}"),
                (Some(b), None) => format!("after queue offset {b}"),
                (None, Some(a)) => format!("before queue offset {a}"),
                (None, None) => "no record of the pull decoded".to_owned(),
            }
        };
        for bad in &self.skipped {
            log::error!(
                "pull of {queue}: skipped an undecodable {bad} ({}); the other records are delivered",
                around(bad)
            );
        }
        if let Some(bad) = &self.stopped {
            log::error!(
                "pull of {queue}: stopped at an undecodable {bad} ({}), whose length prefix cannot be \
                 trusted; {} records before it are delivered, the next pull starts at offset \
                 {next_pull_offset}",
                around(bad),
                self.messages.len()
            );
        }
    }
}

/// A stored record that did not decode.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UndecodableRecord {
    /// Byte position of the record in the pull body.
    pub position: usize,
    /// How many messages of the body decoded before this record (its index among them).
    pub decoded_before: usize,
    /// The record's length prefix (TOTALSIZE), if the body had four bytes for it.
    pub total_size: Option<i32>,
    /// The queue id from the record's header, when the header is intact (known magic code).
    pub queue_id: Option<i32>,
    /// The queue offset from the record's header, when the header is intact.
    pub queue_offset: Option<i64>,
    /// Why it did not decode.
    pub error: CodecError,
}

impl UndecodableRecord {
    fn new(body: &[u8], pos: usize, decoded_before: usize, error: CodecError) -> Self {
        let field = |at: usize, n: usize| body.get(pos + at..pos + at + n);
        let i32_at = |at| field(at, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let total_size = i32_at(0);
        // Only a known magic code makes the header fields worth reporting.
        let intact = matches!(i32_at(4), Some(MESSAGE_MAGIC_CODE | MESSAGE_MAGIC_CODE_V2));
        let queue_offset = field(20, 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        });
        UndecodableRecord {
            position: pos,
            decoded_before,
            total_size,
            queue_id: if intact { i32_at(12) } else { None },
            queue_offset: if intact { queue_offset } else { None },
            error,
        }
    }

    /// The length to skip, if the length prefix can be trusted to reach the next record: at
    /// least the smallest record and within the `remaining` bytes.
    fn usable_len(&self, remaining: usize) -> Option<usize> {
        let len = usize::try_from(self.total_size?).ok()?;
        (MIN_RECORD_LEN..=remaining).contains(&len).then_some(len)
    }
}

impl std::fmt::Display for UndecodableRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record at byte {}", self.position)?;
        match (self.queue_id, self.queue_offset) {
            (Some(q), Some(o)) => write!(f, " (queue id {q}, queue offset {o})")?,
            _ => write!(f, " (header unreadable)")?,
        }
        match self.total_size {
            Some(n) => write!(f, ", TOTALSIZE {n}")?,
            None => write!(f, ", no TOTALSIZE")?,
        }
        write!(
            f,
            ", after {} decoded messages: {}",
            self.decoded_before, self.error
        )
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(CodecError::Malformed(format!(
                "stored message truncated: {what} needs {n} bytes at offset {}, {} left",
                self.pos,
                self.buf.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn host(&mut self, v6: bool, what: &'static str) -> Result<SocketAddr, CodecError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?))
        };
        let port = self.i32(what)?;
        Ok(SocketAddr::new(ip, port as u16))
    }

    /// A length field that must not be negative.
    fn len(n: i64, what: &'static str) -> Result<usize, CodecError> {
        usize::try_from(n)
            .map_err(|_| CodecError::Malformed(format!("stored message has negative {what} {n}")))
    }
}

fn put_host(dst: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => dst.put_slice(&ip.octets()),
        IpAddr::V6(ip) => dst.put_slice(&ip.octets()),
    }
    dst.put_i32(addr.port() as i32);
}

fn host_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() {
        8
    } else {
        20
    }
}

impl MessageDecoder {
    /// Decodes the stored record at the start of `buf` (Java `decode(buffer, readBody,
    /// deCompressBody, isClient)`). The body, topic and properties are slices of `buf` (the body
    /// is copied only when it is decompressed). With `read_body == false` the body is skipped and
    /// left empty.
    pub fn decode(
        buf: &Bytes,
        read_body: bool,
        decompress_body: bool,
    ) -> Result<MessageExt, CodecError> {
        let mut pos = 0;
        Self::decode_at(buf, &mut pos, read_body, decompress_body)
    }

    /// Decodes the stored record starting at `*pos` and advances `*pos` past it. On error `*pos`
    /// is unchanged. A decompressed body is bounded by [`DEFAULT_MAX_BODY_SIZE`].
    pub fn decode_at(
        buf: &Bytes,
        pos: &mut usize,
        read_body: bool,
        decompress_body: bool,
    ) -> Result<MessageExt, CodecError> {
        Self::decode_at_with_limit(buf, pos, read_body, decompress_body, DEFAULT_MAX_BODY_SIZE)
    }

    /// [`MessageDecoder::decode_at`] with a bound on the decompressed body: a compressed body
    /// that inflates to more than `max_body_size` bytes is a [`CodecError::Decompress`].
    ///
    /// The record must span exactly its length prefix (TOTALSIZE); a record whose fields end
    /// elsewhere is [`CodecError::Malformed`], because a corrupt length inside it would otherwise
    /// shift every record after it.
    pub fn decode_at_with_limit(
        buf: &Bytes,
        pos: &mut usize,
        read_body: bool,
        decompress_body: bool,
        max_body_size: usize,
    ) -> Result<MessageExt, CodecError> {
        let mut r = Reader {
            buf: buf.as_ref(),
            pos: *pos,
        };
        let store_size = r.i32("TOTALSIZE")?;
        let magic = r.i32("MAGICCODE")?;
        if magic != MESSAGE_MAGIC_CODE && magic != MESSAGE_MAGIC_CODE_V2 {
            return Err(CodecError::Malformed(format!(
                "stored message at offset {} has unknown magic code {:#010X}",
                *pos, magic as u32
            )));
        }
        let body_crc = r.i32("BODYCRC")?;
        let queue_id = r.i32("QUEUEID")?;
        let flag = r.i32("FLAG")?;
        let queue_offset = r.i64("QUEUEOFFSET")?;
        let commit_log_offset = r.i64("PHYSICALOFFSET")?;
        let sys_flag = r.i32("SYSFLAG")?;
        let born_timestamp = r.i64("BORNTIMESTAMP")?;
        let born_host = r.host(sys_flag & MessageSysFlag::BORNHOST_V6_FLAG != 0, "BORNHOST")?;
        let store_timestamp = r.i64("STORETIMESTAMP")?;
        let store_host = r.host(
            sys_flag & MessageSysFlag::STOREHOSTADDRESS_V6_FLAG != 0,
            "STOREHOST",
        )?;
        let reconsume_times = r.i32("RECONSUMETIMES")?;
        let prepared_transaction_offset = r.i64("PREPARED TRANSACTION OFFSET")?;

        let body_len = r.i32("BODY length")?;
        let mut body = Bytes::new();
        if body_len > 0 {
            let start = r.pos;
            r.take(body_len as usize, "BODY")?;
            if read_body {
                body = buf.slice(start..r.pos);
                if decompress_body && sys_flag & MessageSysFlag::COMPRESSED_FLAG != 0 {
                    body = decompress(&body, sys_flag, max_body_size)?;
                }
            }
        }

        let topic_len = if magic == MESSAGE_MAGIC_CODE_V2 {
            Reader::len(r.i16("TOPIC length")?.into(), "topic length")?
        } else {
            Reader::len(r.i8("TOPIC length")?.into(), "topic length")?
        };
        let start = r.pos;
        r.take(topic_len, "TOPIC")?;
        let topic = Utf8Bytes::from_bytes_lossy(buf.slice(start..r.pos));

        // Java reads the properties only when the length is positive.
        let props_len = r.i16("PROPERTIES length")?;
        let raw_properties = if props_len > 0 {
            let start = r.pos;
            r.take(props_len as usize, "PROPERTIES")?;
            Utf8Bytes::from_bytes_lossy(buf.slice(start..r.pos))
        } else {
            Utf8Bytes::default()
        };

        if usize::try_from(store_size).ok() != Some(r.pos - *pos) {
            return Err(CodecError::Malformed(format!(
                "stored message at offset {} has TOTALSIZE {store_size} but its fields span {} bytes",
                *pos,
                r.pos - *pos
            )));
        }
        *pos = r.pos;
        let mut msg = MessageExt::new(String::new(), body);
        msg.topic = topic;
        msg.raw_properties = raw_properties;
        msg.store_size = store_size;
        msg.body_crc = body_crc;
        msg.queue_id = queue_id;
        msg.flag = flag;
        msg.queue_offset = queue_offset;
        msg.commit_log_offset = commit_log_offset;
        msg.sys_flag = sys_flag;
        msg.born_timestamp = born_timestamp;
        msg.born_host = born_host;
        msg.store_timestamp = store_timestamp;
        msg.store_host = store_host;
        msg.reconsume_times = reconsume_times;
        msg.prepared_transaction_offset = prepared_transaction_offset;
        Ok(msg)
    }

    /// Decodes a pull response body: a concatenation of stored records (Java `decodes`). A record
    /// that does not decode is skipped and logged, and every other record is returned; see
    /// [`MessageDecoder::decode_batch`], which also reports what was skipped.
    ///
    /// Nothing is allocated per uncompressed message: the result vector is sized once from the
    /// records' length prefixes, and every message holds slices of `body`.
    pub fn decodes(body: Bytes) -> Vec<MessageExt> {
        Self::decodes_with(body, true)
    }

    /// [`MessageDecoder::decodes`], choosing whether bodies are read.
    pub fn decodes_with(body: Bytes, read_body: bool) -> Vec<MessageExt> {
        let len = body.len();
        let batch = Self::decode_batch(body, read_body, DEFAULT_MAX_BODY_SIZE);
        for bad in batch.skipped.iter().chain(&batch.stopped) {
            log::warn!("decode stored messages: {bad} (body of {len} bytes)");
        }
        batch.messages
    }

    /// Decodes a pull response body, skipping records that do not decode.
    ///
    /// A record that does not decode (unknown magic code, bad lengths, a body that does not
    /// decompress or inflates past `max_body_size`) is skipped by its length prefix (TOTALSIZE)
    /// and reported in [`DecodedBatch::skipped`]; decoding goes on with the next record. When the
    /// length prefix itself is unusable (shorter than any record, or past the end of the body),
    /// decoding stops there and [`DecodedBatch::stopped`] says where; the messages before it are
    /// returned.
    ///
    /// Nothing is allocated per uncompressed message: the result vector is sized once from the
    /// records' length prefixes, every message holds slices of `body`, and `skipped` stays empty
    /// (unallocated) when every record decodes.
    pub fn decode_batch(body: Bytes, read_body: bool, max_body_size: usize) -> DecodedBatch {
        let mut batch = DecodedBatch {
            messages: Vec::with_capacity(count_records(&body)),
            skipped: Vec::new(),
            stopped: None,
        };
        let mut pos = 0;
        while pos < body.len() {
            match Self::decode_at_with_limit(&body, &mut pos, read_body, true, max_body_size) {
                Ok(m) => batch.messages.push(m),
                Err(error) => {
                    let bad = UndecodableRecord::new(&body, pos, batch.messages.len(), error);
                    match bad.usable_len(body.len() - pos) {
                        Some(len) => {
                            pos += len;
                            batch.skipped.push(bad);
                        }
                        None => {
                            batch.stopped = Some(bad);
                            break;
                        }
                    }
                }
            }
        }
        batch
    }

    /// Encodes `msg` as a stored record (Java `encode(MessageExt, needCompress)`), as a broker
    /// would return it. The body is zlib-compressed when `need_compress` is set and the sys flag
    /// has [`MessageSysFlag::COMPRESSED_FLAG`]. The host-address bits of the sys flag follow the
    /// actual address families; the magic code is V1 unless the topic is longer than 127 bytes.
    pub fn encode(msg: &MessageExt, need_compress: bool) -> Result<Bytes, CodecError> {
        let mut sys_flag = msg.sys_flag();
        for (addr, bit) in [
            (msg.born_host(), MessageSysFlag::BORNHOST_V6_FLAG),
            (msg.store_host(), MessageSysFlag::STOREHOSTADDRESS_V6_FLAG),
        ] {
            if addr.is_ipv6() {
                sys_flag |= bit;
            } else {
                sys_flag &= !bit;
            }
        }
        let compressed;
        let body: &[u8] = if need_compress && sys_flag & MessageSysFlag::COMPRESSED_FLAG != 0 {
            compressed = compress(msg.body(), sys_flag)?;
            &compressed
        } else {
            msg.body()
        };
        let topic = msg.topic().as_bytes();
        let v2 = topic.len() > i8::MAX as usize;
        if topic.len() > i16::MAX as usize {
            return Err(CodecError::malformed(format!(
                "topic of {} bytes is too long",
                topic.len()
            )));
        }
        let props = msg.properties_string();
        if props.len() > i16::MAX as usize {
            return Err(CodecError::malformed(format!(
                "properties of {} bytes exceed {} bytes",
                props.len(),
                i16::MAX
            )));
        }
        let body_len = i32::try_from(body.len())
            .map_err(|_| CodecError::malformed("body longer than i32::MAX"))?;
        let total = 4
            + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(&msg.born_host())
            + 8
            + host_len(&msg.store_host())
            + 4
            + 8
            + 4
            + body.len()
            + if v2 { 2 } else { 1 }
            + topic.len()
            + 2
            + props.len();
        let total_i32 = i32::try_from(total)
            .map_err(|_| CodecError::malformed("record longer than i32::MAX"))?;
        let mut dst = BytesMut::with_capacity(total);
        dst.put_i32(total_i32);
        dst.put_i32(if v2 {
            MESSAGE_MAGIC_CODE_V2
        } else {
            MESSAGE_MAGIC_CODE
        });
        dst.put_i32(msg.body_crc());
        dst.put_i32(msg.queue_id());
        dst.put_i32(msg.flag());
        dst.put_i64(msg.queue_offset());
        dst.put_i64(msg.commit_log_offset());
        dst.put_i32(sys_flag);
        dst.put_i64(msg.born_timestamp());
        put_host(&mut dst, &msg.born_host());
        dst.put_i64(msg.store_timestamp());
        put_host(&mut dst, &msg.store_host());
        dst.put_i32(msg.reconsume_times());
        dst.put_i64(msg.prepared_transaction_offset());
        dst.put_i32(body_len);
        dst.put_slice(body);
        if v2 {
            dst.put_i16(topic.len() as i16);
        } else {
            dst.put_i8(topic.len() as i8);
        }
        dst.put_slice(topic);
        dst.put_i16(props.len() as i16);
        dst.put_slice(props.as_bytes());
        debug_assert_eq!(dst.len(), total);
        Ok(dst.freeze())
    }

    /// Encodes one message of a batch (Java `encodeMessage`): `totalSize, magic=0, bodyCRC=0,
    /// flag, bodyLen, body, propsLen (i16), props`.
    pub fn encode_message(msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let props = msg.properties_string();
        if props.len() > i16::MAX as usize {
            return Err(CodecError::malformed(format!(
                "properties of {} bytes exceed {} bytes",
                props.len(),
                i16::MAX
            )));
        }
        let body = msg.body();
        let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
        let total_i32 = i32::try_from(total)
            .map_err(|_| CodecError::malformed("message longer than i32::MAX"))?;
        dst.reserve(total);
        dst.put_i32(total_i32);
        dst.put_i32(0);
        dst.put_i32(0);
        dst.put_i32(msg.flag());
        dst.put_i32(body.len() as i32);
        dst.put_slice(body);
        dst.put_i16(props.len() as i16);
        dst.put_slice(props.as_bytes());
        Ok(())
    }

    /// Encodes a batch body for `SEND_BATCH_MESSAGE` (Java `encodeMessages`). The caller has
    /// already validated the batch and set every `UNIQ_KEY`.
    pub fn encode_messages(msgs: &[Message]) -> Result<Bytes, CodecError> {
        let mut dst = BytesMut::new();
        for m in msgs {
            Self::encode_message(m, &mut dst)?;
        }
        Ok(dst.freeze())
    }

    /// The offset message id: uppercase hex of the store host's IP, its port (i32) and the
    /// commit-log offset (i64). 32 characters for IPv4, 56 for IPv6.
    pub fn create_message_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
        let mut s = String::with_capacity(56);
        match store_host.ip() {
            IpAddr::V4(ip) => write_hex_upper(&mut s, &ip.octets()),
            IpAddr::V6(ip) => write_hex_upper(&mut s, &ip.octets()),
        }
        write_hex_upper(&mut s, &(store_host.port() as i32).to_be_bytes());
        write_hex_upper(&mut s, &commit_log_offset.to_be_bytes());
        s
    }

    /// Reverses [`MessageDecoder::create_message_id`]: the store host and commit-log offset.
    pub fn decode_message_id(msg_id: &str) -> Result<(SocketAddr, i64), CodecError> {
        let bad = || CodecError::InvalidField {
            field: "msgId",
            value: msg_id.to_owned(),
        };
        let bytes = hex_to_bytes(msg_id).ok_or_else(bad)?;
        let (ip, rest) = match bytes.len() {
            16 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&bytes[..4]);
                (IpAddr::V4(Ipv4Addr::from(a)), &bytes[4..])
            }
            28 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&bytes[..16]);
                (IpAddr::V6(Ipv6Addr::from(a)), &bytes[16..])
            }
            _ => return Err(bad()),
        };
        let mut port = [0u8; 4];
        port.copy_from_slice(&rest[..4]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&rest[4..12]);
        Ok((
            SocketAddr::new(ip, i32::from_be_bytes(port) as u16),
            i64::from_be_bytes(offset),
        ))
    }
}

/// Counts the records of a pull body by their length prefixes, to size the result vector once.
/// The count is a hint: a bad prefix just stops the count.
fn count_records(body: &[u8]) -> usize {
    let (mut pos, mut n) = (0usize, 0usize);
    while let Some(prefix) = body.get(pos..pos + 4) {
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        match usize::try_from(size) {
            Ok(size) if size >= MIN_RECORD_LEN && size <= body.len() - pos => {
                n += 1;
                pos += size;
            }
            _ => break,
        }
    }
    n
}

fn compression_name(sys_flag: i32) -> &'static str {
    match sys_flag & MessageSysFlag::COMPRESSION_TYPE_MASK {
        0 | MessageSysFlag::COMPRESSION_ZLIB_TYPE => "ZLIB",
        MessageSysFlag::COMPRESSION_LZ4_TYPE => "LZ4",
        MessageSysFlag::COMPRESSION_ZSTD_TYPE => "ZSTD",
        _ => "unknown",
    }
}

/// Decompresses a stored body by the compression type in `sys_flag`, reading at most
/// `max_body_size` bytes of output.
///
/// Memory: the output buffer never grows past `max_body_size + 1` bytes, whatever the body
/// claims or holds. Besides it, each codec has a working set bounded independently of the input:
/// zlib its 32 KiB window; LZ4 one compressed and one decompressed block (the frame's block size,
/// at most 4 MiB each, 8 MiB + 64 KiB in linked mode); ZSTD its history window, which is kept no
/// larger than `max_body_size` (see [`zstd_reader`]), plus two 128 KiB blocks.
pub(crate) fn decompress(
    body: &[u8],
    sys_flag: i32,
    max_body_size: usize,
) -> Result<Bytes, CodecError> {
    let name = compression_name(sys_flag);
    let err = |e: std::io::Error| CodecError::Decompress(format!("{name}: {e}"));
    match name {
        "ZLIB" => read_bounded(
            flate2::read::ZlibDecoder::new(body),
            body.len(),
            max_body_size,
        )
        .map_err(err),
        // lz4-java's LZ4FrameOutputStream writes the standard LZ4 frame format.
        "LZ4" => read_bounded(
            lz4_flex::frame::FrameDecoder::new(body),
            body.len(),
            max_body_size,
        )
        .map_err(err),
        // zstd-jni's ZstdOutputStream writes standard Zstandard frames.
        "ZSTD" => {
            let dec = zstd_reader(body, max_body_size)
                .map_err(|e| CodecError::Decompress(format!("{name}: {e}")))?;
            read_bounded(dec, body.len(), max_body_size).map_err(err)
        }
        _ => Err(CodecError::Decompress(format!(
            "unknown compression type (sys flag {sys_flag:#x})"
        ))),
    }
}

/// The Zstandard frame magic number, as it appears on the wire (little endian).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A streaming decoder of the Zstandard frame `body` whose memory stays within about
/// `max_body_size`.
///
/// The decoder keeps the frame's whole declared window of history before it hands out a byte,
/// and a frame may declare a window of up to 128 MiB (the library's limit) with almost no input.
/// But no match can reach back past the start of the content, and content past `max_body_size`
/// is refused anyway, so a window larger than `max_body_size` is never needed: the frame header
/// is read first and
/// - a declared content size past `max_body_size` is refused at once;
/// - a declared window larger than the smallest window descriptor covering `max_body_size` is
///   replaced by that descriptor (the header has no checksum), so every frame whose content fits
///   the bound still decodes, with the smaller window.
fn zstd_reader(
    body: &[u8],
    max_body_size: usize,
) -> Result<impl Read + '_, std::borrow::Cow<'static, str>> {
    let max = u64::try_from(max_body_size).unwrap_or(u64::MAX);
    let mut header = [0u8; 6];
    let mut header_len = 0;
    let mut window_limit = zstd_window(ZSTD_MIN_WINDOW_DESCRIPTOR);
    if let (Some(magic), Some(&descriptor)) = (body.get(..4), body.get(4)) {
        if magic == ZSTD_MAGIC {
            let single_segment = descriptor & 0x20 != 0;
            let fcs_flag = descriptor >> 6;
            let dict_len = [0usize, 1, 2, 4][usize::from(descriptor & 0x3)];
            let fcs_len = match (fcs_flag, single_segment) {
                (0, false) => 0,
                (0, true) => 1,
                (1, _) => 2,
                (2, _) => 4,
                _ => 8,
            };
            let fcs_at = 5 + usize::from(!single_segment) + dict_len;
            if let Some(field) = body.get(fcs_at..fcs_at + fcs_len).filter(|f| !f.is_empty()) {
                let mut le = [0u8; 8];
                le[..fcs_len].copy_from_slice(field);
                let declared = u64::from_le_bytes(le) + if fcs_len == 2 { 256 } else { 0 };
                if declared > max {
                    return Err(format!(
                        "the frame declares {declared} bytes of content, past the maximum of \
                         {max_body_size} bytes"
                    )
                    .into());
                }
                window_limit = window_limit.max(declared);
            }
            if !single_segment {
                if let Some(&declared) = body.get(5) {
                    let covering = zstd_covering_window_descriptor(max);
                    header_len = 6;
                    header.copy_from_slice(&body[..6]);
                    if zstd_window(declared) > zstd_window(covering) {
                        header[5] = covering;
                    }
                    window_limit = window_limit.max(zstd_window(header[5]));
                }
            }
        }
    }
    let source = std::io::Cursor::new(header)
        .take(header_len as u64)
        .chain(&body[header_len..]);
    // The library's own default limit still applies to single-segment frames (their window is
    // their content size, checked against the bound above).
    let limit = window_limit.max(ruzstd::decoding::DEFAULT_MAX_WINDOW_SIZE);
    ruzstd::decoding::StreamingDecoder::new_with_max_window_size(source, limit)
        .map_err(|e| e.to_string().into())
}

/// The smallest Zstandard window descriptor (1 KiB).
const ZSTD_MIN_WINDOW_DESCRIPTOR: u8 = 0;

/// The window a Zstandard window descriptor declares: `2^(10 + exponent) * (1 + mantissa/8)`.
fn zstd_window(descriptor: u8) -> u64 {
    let base = 1u64 << (10 + (descriptor >> 3));
    base + (base / 8) * u64::from(descriptor & 0x7)
}

/// The smallest window descriptor whose window is at least `bytes` (the largest one if none).
fn zstd_covering_window_descriptor(bytes: u64) -> u8 {
    (0..=u8::MAX)
        .find(|&d| zstd_window(d) >= bytes)
        .unwrap_or(u8::MAX)
}

/// Reads `r` to the end, failing once the output exceeds `max` bytes (without reading more
/// than one byte past it). The buffer grows geometrically from a guess of four times the input,
/// but never past `max + 1` bytes, so a bomb costs at most the bound.
fn read_bounded(mut r: impl Read, input_len: usize, max: usize) -> std::io::Result<Bytes> {
    let limit = max.saturating_add(1);
    let initial = input_len.saturating_mul(4).max(64).min(limit);
    let mut out: Vec<u8> = vec![0; initial];
    // `out[..filled]` is output; the rest is zeroed space for the next read.
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled == limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the body inflates past the maximum of {max} bytes"),
                ));
            }
            let grown = filled.saturating_mul(2).min(limit);
            // Exact: `resize` alone would double the capacity, past the limit.
            out.reserve_exact(grown - filled);
            out.resize(grown, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.truncate(filled);
    // The buffer may be up to twice the body, and a message can sit in a process queue a while.
    if out.capacity() - out.len() > out.len() / 4 {
        out.shrink_to_fit();
    }
    Ok(Bytes::from(out))
}

fn compress(body: &[u8], sys_flag: i32) -> Result<Vec<u8>, CodecError> {
    match compression_name(sys_flag) {
        "ZLIB" => {
            let mut enc = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(body.len() / 2 + 16),
                flate2::Compression::new(ZLIB_LEVEL),
            );
            enc.write_all(body)
                .and_then(|_| enc.finish())
                .map_err(|e| CodecError::Decompress(format!("zlib compress: {e}")))
        }
        name => Err(CodecError::Decompress(format!(
            "compression type {name} (sys flag {sys_flag:#x}) is not supported; only ZLIB is"
        ))),
    }
}

/// The tags hash the broker stores in the consume queue and filters by (Java
/// `tagsString2tagsCode`): 0 without tags, else Java's `String.hashCode`.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        None | Some("") => 0,
        Some(t) => java_string_hash(t) as i64,
    }
}

// ---------------------------------------------------------------------------------------------
// Unique ids

/// Generates the client-side unique message id (`UNIQ_KEY`), as Java's `MessageClientIDSetter`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageClientIDSetter;

/// `(ms since the epoch << 16) | counter` of the last id; never goes backwards, so ids are
/// unique within the process even when more than 65536 are made in one millisecond.
static LAST_ID_CLOCK: AtomicU64 = AtomicU64::new(0);

impl MessageClientIDSetter {
    /// A new unique id: uppercase hex of this host's IPv4 address (or 4 clock-derived bytes when
    /// there is none), the pid as an `i16`, a per-process random `i32` (Java uses the class
    /// loader's hash code), the milliseconds since the start of the current month as an `i32`,
    /// and a counter as an `i16`. 32 characters.
    ///
    /// The month starts at 00:00 UTC (Java uses the local time zone); only uniqueness matters to
    /// the broker. The prefix is computed once; each call reads the clock and does one
    /// compare-and-swap.
    pub fn create_uniq_id() -> String {
        let prefix = uniq_id_prefix();
        let now = (now_millis().max(0) as u64) << 16;
        let mut old = LAST_ID_CLOCK.load(Ordering::Relaxed);
        let next = loop {
            let next = now.max(old + 1);
            match LAST_ID_CLOCK.compare_exchange_weak(
                old,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next,
                Err(o) => old = o,
            }
        };
        let ms = (next >> 16) as i64;
        let counter = (next & 0xffff) as u16;
        let since_month = ms - month_start_utc(ms);
        let mut s = String::with_capacity(32);
        s.push_str(prefix);
        write_hex_upper(&mut s, &(since_month as i32).to_be_bytes());
        write_hex_upper(&mut s, &counter.to_be_bytes());
        s
    }

    /// About when the unique id `id` was made (Java `getNearlyTimeFromID`), ms since the epoch,
    /// as seen at `now`: the id holds the milliseconds since the start of its month, taken to be
    /// this month, or the last one when that would be after `now`. The month starts at 00:00 UTC
    /// here; a Java producer counts from local midnight, so the time may be up to 14 hours late
    /// and callers searching by it should allow that much. `None` when `id` is not a unique id
    /// (32 hex characters for IPv4, 56 for IPv6).
    pub fn nearly_time_from_id(id: &str, now: i64) -> Option<i64> {
        let bytes = hex_to_bytes(id)?;
        if bytes.len() != 16 && bytes.len() != 28 {
            return None;
        }
        let t = &bytes[bytes.len() - 6..bytes.len() - 2];
        // Unsigned: a month has more milliseconds than an `i32` holds, and the id keeps the
        // low 32 bits.
        let since_month = i64::from(u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
        let this_month = month_start_utc(now);
        let time = this_month + since_month;
        Some(if time > now {
            month_start_utc(this_month - 1) + since_month
        } else {
            time
        })
    }

    /// Sets `UNIQ_KEY` on `msg` unless it already has one (Java `setUniqID`).
    pub fn set_uniq_id(msg: &mut Message) {
        if msg.uniq_key().is_none() {
            msg.put_property(
                super::message::MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                Self::create_uniq_id(),
            );
        }
    }
}

fn uniq_id_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let ip = local_ipv4().unwrap_or_else(|| {
            let t = now_millis().to_be_bytes();
            [t[4], t[5], t[6], t[7]]
        });
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_millis() as u64);
        let random = h.finish() as i32;
        let mut s = String::with_capacity(20);
        write_hex_upper(&mut s, &ip);
        write_hex_upper(&mut s, &(std::process::id() as i16).to_be_bytes());
        write_hex_upper(&mut s, &random.to_be_bytes());
        s
    })
}

/// This host's IPv4 address (see [`super::util::local_ipv4`]), if it has a non-loopback one.
fn local_ipv4() -> Option<[u8; 4]> {
    super::util::local_ipv4().map(|ip| ip.octets())
}

/// Milliseconds since the epoch of 00:00 UTC on the first day of the month containing `ms`.
fn month_start_utc(ms: i64) -> i64 {
    let days = ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1) * 86_400_000
}

// Howard Hinnant's proleptic Gregorian calendar conversions.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {

    #[test]
    fn nearly_time_from_id_reads_the_time_back() {
        let before = now_millis();
        let id = MessageClientIDSetter::create_uniq_id();
        let t = MessageClientIDSetter::nearly_time_from_id(&id, now_millis()).unwrap();
        assert!(
            t >= before && t <= now_millis(),
            "{t} not in [{before}, now]"
        );
        // Seen in the next month, it is still last month's time.
        let next_month = month_start_utc(t) + 40 * 86_400_000;
        assert_eq!(
            MessageClientIDSetter::nearly_time_from_id(&id, month_start_utc(next_month)),
            Some(t)
        );
        assert_eq!(MessageClientIDSetter::nearly_time_from_id("XYZ", 0), None);
        assert_eq!(
            MessageClientIDSetter::nearly_time_from_id(&"0".repeat(30), 0),
            None
        );
    }
    use super::*;
    use crate::common::message::MessageConst;

    fn sample() -> MessageExt {
        let msg = Message::new("T", "hello").with_tags("TagA");
        let mut m = MessageExt::from_message(&msg);
        m.set_queue_id(3);
        m.set_queue_offset(9);
        m.set_commit_log_offset(0x400);
        m.set_store_host("127.0.0.1:10911".parse().unwrap());
        m.set_born_host("10.0.0.1:5000".parse().unwrap());
        m
    }

    #[test]
    fn encode_decode_round_trip() {
        let m = sample();
        let rec = MessageDecoder::encode(&m, false).unwrap();
        let d = MessageDecoder::decode(&rec, true, true).unwrap();
        assert_eq!(d.store_size() as usize, rec.len());
        assert_eq!(d.topic(), "T");
        assert_eq!(d.body().as_ref(), b"hello");
        assert_eq!(d.tags(), Some("TagA"));
        assert_eq!(d.queue_id(), 3);
        assert_eq!(d.queue_offset(), 9);
        assert_eq!(d.born_host(), m.born_host());
        assert_eq!(d.offset_msg_id(), "7F00000100002A9F0000000000000400");
        let skipped = MessageDecoder::decode(&rec, false, false).unwrap();
        assert!(skipped.body().is_empty());
        assert_eq!(skipped.tags(), Some("TagA"));
    }

    #[test]
    fn long_topic_uses_v2_magic() {
        let topic = "t".repeat(200);
        let mut m = sample();
        m.set_topic(topic.clone());
        let rec = MessageDecoder::encode(&m, false).unwrap();
        assert_eq!(&rec[4..8], &MESSAGE_MAGIC_CODE_V2.to_be_bytes());
        let d = MessageDecoder::decode(&rec, true, true).unwrap();
        assert_eq!(d.topic(), topic);
        assert_eq!(d.tags(), Some("TagA"));
    }

    #[test]
    fn message_id_round_trip() {
        let v4: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let id = MessageDecoder::create_message_id(v4, 1024);
        assert_eq!(id, "7F00000100002A9F0000000000000400");
        assert_eq!(MessageDecoder::decode_message_id(&id).unwrap(), (v4, 1024));
        let v6: SocketAddr = "[fd00::1]:10911".parse().unwrap();
        let id = MessageDecoder::create_message_id(v6, -5);
        assert_eq!(id.len(), 56);
        assert_eq!(MessageDecoder::decode_message_id(&id).unwrap(), (v6, -5));
        assert!(MessageDecoder::decode_message_id("ABC").is_err());
        assert!(MessageDecoder::decode_message_id(&"G".repeat(32)).is_err());
    }

    #[test]
    fn uniq_ids_are_unique_and_well_formed() {
        let n = 100_000;
        let mut set = std::collections::HashSet::with_capacity(n);
        for _ in 0..n {
            let id = MessageClientIDSetter::create_uniq_id();
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
            assert!(set.insert(id));
        }
        let a = MessageClientIDSetter::create_uniq_id();
        assert_eq!(&a[..20], uniq_id_prefix());
        let pid = format!("{:04X}", std::process::id() as i16 as u16);
        assert_eq!(&a[8..12], pid);
        let mut m = Message::new("T", "x");
        MessageClientIDSetter::set_uniq_id(&mut m);
        let first = m.uniq_key().unwrap().to_owned();
        MessageClientIDSetter::set_uniq_id(&mut m);
        assert_eq!(
            m.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
            Some(first.as_str())
        );
    }

    #[test]
    fn month_start() {
        // 2023-11-14T22:13:20Z -> 2023-11-01T00:00:00Z
        assert_eq!(month_start_utc(1_700_000_000_000), 1_698_796_800_000);
        assert_eq!(month_start_utc(0), 0);
        // 2024-03-01T00:00:00Z exactly (after a leap February).
        assert_eq!(month_start_utc(1_709_251_200_000), 1_709_251_200_000);
        assert_eq!(month_start_utc(1_709_251_199_999), 1_706_745_600_000);
    }

    #[test]
    fn tags_codes() {
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("")), 0);
        assert_eq!(tags_code(Some("TagA")), 2598919);
    }

    #[test]
    fn zstd_window_descriptors() {
        assert_eq!(zstd_window(0), 1024);
        assert_eq!(zstd_window(1), 1024 + 128);
        assert_eq!(zstd_window(12 << 3), 4 << 20);
        assert_eq!(zstd_covering_window_descriptor(0), 0);
        assert_eq!(zstd_covering_window_descriptor(4 << 20), 12 << 3);
        assert_eq!(
            zstd_covering_window_descriptor((4 << 20) + 1),
            (12 << 3) | 1
        );
        assert_eq!(zstd_covering_window_descriptor(u64::MAX), u8::MAX);
        // Monotonic, so the first covering descriptor is the smallest covering window.
        assert!((1..=u8::MAX).all(|d| zstd_window(d) > zstd_window(d - 1)));
    }

    #[test]
    fn a_zstd_frame_declaring_a_huge_window_still_decodes_when_its_content_fits() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut frame = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        // No content size, not single-segment: byte 5 is the window descriptor. Declare 128 MiB.
        assert_eq!(frame[4] & 0xE0, 0, "{:#x}", frame[4]);
        frame[5] = (27 - 10) << 3;
        let out = decompress(&frame, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 400_000).unwrap();
        assert_eq!(out, data);
        // Under a bound smaller than the content it is refused, with the smaller window.
        let e = decompress(&frame, MessageSysFlag::COMPRESSION_ZSTD_TYPE, 200_000).unwrap_err();
        assert!(e.to_string().contains("200000"), "{e}");
    }

    #[test]
    fn bounded_reads_stop_exactly_at_the_bound() {
        let data = vec![1u8; 5000];
        let out = read_bounded(&data[..], 10, 5000).unwrap();
        assert_eq!(out.len(), 5000);
        let e = read_bounded(&data[..], 10, 4999).unwrap_err();
        assert!(e.to_string().contains("4999"), "{e}");
        assert!(read_bounded(&[][..], 0, 0).unwrap().is_empty());
    }

    #[test]
    fn record_count_hint() {
        let rec = MessageDecoder::encode(&sample(), false).unwrap();
        let mut two = rec.to_vec();
        two.extend_from_slice(&rec);
        assert_eq!(count_records(&two), 2);
        two.truncate(two.len() - 1);
        assert_eq!(count_records(&two), 1);
        assert_eq!(count_records(&[0xff; 3]), 0);
        assert_eq!(count_records(&[0xff; 8]), 0);
    }
}
