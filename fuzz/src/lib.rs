//! What the fuzz targets and the seed generator share: building stored records and compressed
//! bodies, and the round-trip checks of a decoded [`RemotingCommand`].
//!
//! Every check here panics on a broken invariant, which libFuzzer reports as a crash.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use rocketmq_sync::codec::{MessageSysFlag, MESSAGE_MAGIC_CODE, MESSAGE_MAGIC_CODE_V2};
use rocketmq_sync::remoting::protocol::header::{
    CheckTransactionStateRequestHeader, ConsumeMessageDirectlyResultRequestHeader,
    GetConsumerRunningInfoRequestHeader, GetConsumerStatusRequestHeader,
    GetMaxOffsetResponseHeader, GetMinOffsetResponseHeader, NotifyConsumerIdsChangedRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetResponseHeader, ResetOffsetRequestHeader,
    SearchOffsetResponseHeader, SendMessageResponseHeader,
};
use rocketmq_sync::remoting::protocol::{
    CommandCustomHeader, ExtFields, FrameDecoder, RemotingCommand,
};

/// A compression a stored body may carry, with the sys-flag bits that announce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The compressed flag alone (no type bits): zlib, as 4.x brokers store it.
    LegacyZlib,
    /// Type bits `0x300`: zlib.
    Zlib,
    /// Type bits `0x100`: the LZ4 frame format (lz4-java's `LZ4FrameOutputStream`).
    Lz4,
    /// Type bits `0x200`: Zstandard frames (zstd-jni's `ZstdOutputStream`).
    Zstd,
}

impl Compression {
    /// All four, in the order a selector byte picks them.
    pub const ALL: [Compression; 4] = [
        Compression::LegacyZlib,
        Compression::Zlib,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The sys flag of a record whose body is compressed this way.
    pub fn sys_flag(self) -> i32 {
        MessageSysFlag::COMPRESSED_FLAG
            | match self {
                Compression::LegacyZlib => 0,
                Compression::Zlib => MessageSysFlag::COMPRESSION_ZLIB_TYPE,
                Compression::Lz4 => MessageSysFlag::COMPRESSION_LZ4_TYPE,
                Compression::Zstd => MessageSysFlag::COMPRESSION_ZSTD_TYPE,
            }
    }

    /// `data` compressed this way, as a Java producer would store it.
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::LegacyZlib | Compression::Zlib => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
                enc.write_all(data).expect("writing to a Vec");
                enc.finish().expect("writing to a Vec")
            }
            Compression::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(data).expect("writing to a Vec");
                enc.finish().expect("writing to a Vec")
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }
}

/// The fields of a stored record that the targets vary; the rest are fixed.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// SYSFLAG, as written (the host bits stay clear: both hosts are IPv4).
    pub sys_flag: i32,
    /// QUEUEOFFSET.
    pub queue_offset: i64,
    /// BODY, as stored (compressed or not).
    pub body: &'a [u8],
    /// TOPIC bytes.
    pub topic: &'a [u8],
    /// PROPERTIES bytes.
    pub properties: &'a [u8],
}

impl Record<'_> {
    /// The record as a broker stores it (Java `MessageDecoder.encode` layout), magic V2 when the
    /// topic is longer than 127 bytes. Lengths that do not fit their fields are truncated, which
    /// only makes a malformed record.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let v2 = self.topic.len() > i8::MAX as usize;
        let total = 4
            + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + 8
            + 8
            + 8
            + 4
            + 8
            + 4
            + self.body.len()
            + if v2 { 2 } else { 1 }
            + self.topic.len()
            + 2
            + self.properties.len();
        dst.put_i32(total as i32);
        dst.put_i32(if v2 {
            MESSAGE_MAGIC_CODE_V2
        } else {
            MESSAGE_MAGIC_CODE
        });
        dst.put_i32(0x3610_a686); // BODYCRC, unchecked by the client
        dst.put_i32(1); // QUEUEID
        dst.put_i32(0); // FLAG
        dst.put_i64(self.queue_offset);
        dst.put_i64(1024 + self.queue_offset); // PHYSICALOFFSET
        dst.put_i32(self.sys_flag);
        dst.put_i64(1_700_000_000_000); // BORNTIMESTAMP
        dst.put_slice(&[127, 0, 0, 1]);
        dst.put_i32(50_000);
        dst.put_i64(1_700_000_000_001); // STORETIMESTAMP
        dst.put_slice(&[127, 0, 0, 1]);
        dst.put_i32(10_911);
        dst.put_i32(0); // RECONSUMETIMES
        dst.put_i64(0); // PREPARED TRANSACTION OFFSET
        dst.put_i32(self.body.len() as i32);
        dst.put_slice(self.body);
        if v2 {
            dst.put_i16(self.topic.len() as i16);
        } else {
            dst.put_i8(self.topic.len() as i8);
        }
        dst.put_slice(self.topic);
        dst.put_i16(self.properties.len() as i16);
        dst.put_slice(self.properties);
    }
}

/// A frame without its length prefix, as [`RemotingCommand::decode`] takes it: the header word
/// (`serialize_type << 24 | header.len()`), the header, the body.
pub fn unprefixed_frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Bytes {
    let mut f = BytesMut::with_capacity(4 + header.len() + body.len());
    f.put_u32((u32::from(serialize_type) << 24) | (header.len() as u32 & 0x00FF_FFFF));
    f.put_slice(header);
    f.put_slice(body);
    f.freeze()
}

/// The same frame with its 4-byte length prefix, as it travels on the wire.
pub fn wire_frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let inner = unprefixed_frame(serialize_type, header, body);
    let mut f = Vec::with_capacity(4 + inner.len());
    f.put_u32(inner.len() as u32);
    f.extend_from_slice(&inner);
    f
}

/// Checks what must hold for any command that decoded: it encodes, the encoding decodes (through
/// a [`FrameDecoder`], leaving nothing behind) to an equal command, and encoding that again gives
/// the same bytes. Also reads every typed header the client takes from a peer out of its
/// `extFields`, and checks that each one that reads survives a write and a second read.
pub fn check_command_round_trip(cmd: &RemotingCommand) {
    let bytes = match cmd.encode_to_bytes() {
        Ok(b) => b,
        // Only a header past the 24-bit length could fail, and the decoded one fitted.
        Err(e) => panic!("a decoded command does not encode: {e}\n{cmd:?}"),
    };
    let mut buf = BytesMut::from(&bytes[..]);
    let again = FrameDecoder::new(usize::MAX)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("a re-encoded command does not decode: {e}\n{cmd:?}"))
        .expect("a re-encoded frame is complete");
    assert!(buf.is_empty(), "bytes left after a re-encoded frame");
    assert_eq!(&again, cmd, "decode(encode(cmd)) differs from cmd");
    let bytes2 = again.encode_to_bytes().expect("encodes");
    assert_eq!(bytes, bytes2, "encoding is not stable");
    check_typed_headers(cmd.ext_fields());
}

fn typed_header_round_trip<H: CommandCustomHeader + PartialEq + std::fmt::Debug>(
    fields: &ExtFields,
) {
    if let Ok(h) = H::read_from(fields) {
        let mut written = ExtFields::new();
        h.write_to(&mut written);
        let back = H::read_from(&written).expect("a written header reads back");
        assert_eq!(back, h, "typed header changed through write_to/read_from");
    }
}

/// Every header the client reads from a response or a broker request.
pub fn check_typed_headers(fields: &ExtFields) {
    typed_header_round_trip::<PullMessageResponseHeader>(fields);
    typed_header_round_trip::<SendMessageResponseHeader>(fields);
    typed_header_round_trip::<QueryConsumerOffsetResponseHeader>(fields);
    typed_header_round_trip::<GetMaxOffsetResponseHeader>(fields);
    typed_header_round_trip::<GetMinOffsetResponseHeader>(fields);
    typed_header_round_trip::<SearchOffsetResponseHeader>(fields);
    typed_header_round_trip::<NotifyConsumerIdsChangedRequestHeader>(fields);
    typed_header_round_trip::<ResetOffsetRequestHeader>(fields);
    typed_header_round_trip::<GetConsumerRunningInfoRequestHeader>(fields);
    typed_header_round_trip::<ConsumeMessageDirectlyResultRequestHeader>(fields);
    typed_header_round_trip::<GetConsumerStatusRequestHeader>(fields);
    typed_header_round_trip::<CheckTransactionStateRequestHeader>(fields);
}

/// Checks what must hold for any decoded pull body: every byte is accounted for (decoded
/// records, skipped records and the undecoded tail after a stop add up to the body), skipped
/// records are in body order, no inflated body passes `max_body_size`, every decoded message
/// answers its accessors, its offset message id decodes back to its store host and offset, and
/// an uncompressed message re-encodes to a record with the same fields.
pub fn check_batch(
    body: &[u8],
    batch: &rocketmq_sync::codec::DecodedBatch,
    read_body: bool,
    max_body_size: usize,
) {
    use rocketmq_sync::codec::MessageDecoder;

    let decoded: usize = batch
        .messages
        .iter()
        .map(|m| usize::try_from(m.store_size()).expect("a decoded record has a positive size"))
        .sum();
    let skipped: usize = batch
        .skipped
        .iter()
        .map(|s| usize::try_from(s.total_size.expect("a skipped record has a TOTALSIZE")).unwrap())
        .sum();
    let tail = batch
        .stopped
        .as_ref()
        .map_or(0, |s| body.len() - s.position);
    assert_eq!(
        decoded + skipped + tail,
        body.len(),
        "the decoded, skipped and undecoded parts do not add up to the body"
    );
    let mut last = None;
    for s in batch.skipped.iter().chain(&batch.stopped) {
        assert!(
            last.is_none_or(|p| p < s.position),
            "undecodable records out of order"
        );
        assert!(s.decoded_before <= batch.messages.len());
        last = Some(s.position);
        let _ = s.to_string();
    }
    for m in &batch.messages {
        if !read_body {
            assert!(
                m.body().is_empty(),
                "a body was read with read_body == false"
            );
        }
        if m.sys_flag() & MessageSysFlag::COMPRESSED_FLAG != 0 && read_body {
            assert!(
                m.body().len() <= max_body_size,
                "an inflated body passed the limit"
            );
        }
        let _ = (
            m.properties(),
            m.tags(),
            m.keys(),
            m.delay_level(),
            m.msg_id(),
        );
        let id = m.offset_msg_id();
        let (host, offset) = MessageDecoder::decode_message_id(&id)
            .unwrap_or_else(|e| panic!("offset message id {id} does not decode: {e}"));
        assert_eq!((host, offset), (m.store_host(), m.commit_log_offset()));
        let _ = format!("{m:?}");
        check_message_round_trip(m, read_body);
    }
}

/// An uncompressed message re-encodes (when its lengths fit) to a record that decodes to the
/// same fields.
fn check_message_round_trip(m: &rocketmq_sync::MessageExt, read_body: bool) {
    use rocketmq_sync::codec::MessageDecoder;

    if !read_body || m.sys_flag() & MessageSysFlag::COMPRESSED_FLAG != 0 {
        return;
    }
    let Ok(rec) = MessageDecoder::encode(m, false) else {
        return; // topic or properties grew past their i16 lengths by UTF-8 replacement
    };
    let back = MessageDecoder::decode(&rec, true, true)
        .unwrap_or_else(|e| panic!("a re-encoded record does not decode: {e}"));
    let fields = |m: &rocketmq_sync::MessageExt| {
        (
            m.topic().to_owned(),
            m.body().clone(),
            m.properties_string().into_owned(),
            (m.body_crc(), m.queue_id(), m.flag(), m.sys_flag()),
            (m.queue_offset(), m.commit_log_offset()),
            (m.born_timestamp(), m.born_host()),
            (m.store_timestamp(), m.store_host()),
            (m.reconsume_times(), m.prepared_transaction_offset()),
        )
    };
    assert_eq!(fields(&back), fields(m), "decode(encode(message)) differs");
}
