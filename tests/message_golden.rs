//! Byte-exact checks of the message codec against vectors produced by the Java 4.9.8 client
//! (`shared/reference/golden-4.9.8.txt`), plus robustness against truncated and garbage input.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use rocketmq_sync::codec::{
    properties_to_string, string_to_properties, tags_code, topic_publish_queues,
    topic_subscribe_queues, MessageDecoder, MessageSysFlag, TopicRouteData, DEFAULT_MAX_BODY_SIZE,
};
use rocketmq_sync::CodecError;
use rocketmq_sync::{Message, MessageConst, MessageExt, MessageQueue};

/// Uppercase hex, as Java's `UtilAll.bytes2string` (the crate's own helper is private).
fn bytes_to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses hex; `None` for an odd length or a non-hex digit.
fn hex_to_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Finds the golden file: `$ROCKETMQ_SHARED_DIR/reference/golden-4.9.8.txt`, else
/// `shared/reference/golden-4.9.8.txt` in the manifest directory or any ancestor.
fn golden_path() -> PathBuf {
    const REL: &str = "reference/golden-4.9.8.txt";
    if let Ok(dir) = std::env::var("ROCKETMQ_SHARED_DIR") {
        let p = PathBuf::from(dir).join(REL);
        assert!(
            p.is_file(),
            "ROCKETMQ_SHARED_DIR is set but {} does not exist",
            p.display()
        );
        return p;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let p = dir.join("shared").join(REL);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "golden vectors not found: set ROCKETMQ_SHARED_DIR or put shared/{REL} in an ancestor of {}",
        manifest.display()
    );
}

/// The text of the golden section whose `### ` title starts with `title`, trimmed.
fn golden(title: &str) -> String {
    let text = std::fs::read_to_string(golden_path()).expect("read golden file");
    let mut sections = text.split("\n### ");
    let section = sections
        .find_map(|s| {
            let s = s.strip_prefix("### ").unwrap_or(s);
            s.starts_with(title).then_some(s)
        })
        .unwrap_or_else(|| panic!("golden section {title:?} missing"));
    let body = section.split_once('\n').map(|(_, b)| b).unwrap_or("");
    body.trim().to_owned()
}

fn golden_record() -> Bytes {
    let hex = golden("Stored message (MessageDecoder.encode) hex");
    let bytes = hex_to_bytes(&hex).expect("golden hex");
    assert_eq!(bytes.len(), 110);
    Bytes::from(bytes)
}

#[test]
fn golden_stored_record_decodes_every_field() {
    let rec = golden_record();
    let m = MessageDecoder::decode(&rec, true, true).unwrap();
    assert_eq!(m.store_size(), 110);
    assert_eq!(m.queue_id(), 1);
    assert_eq!(m.flag(), 0);
    assert_eq!(m.queue_offset(), 5);
    assert_eq!(m.commit_log_offset(), 0x400);
    assert_eq!(m.sys_flag(), 0);
    assert_eq!(m.born_timestamp(), 0x18b_cfe5_6800);
    assert_eq!(
        m.born_host(),
        "127.0.0.1:50000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(m.store_timestamp(), 0x18b_cfe5_6801);
    assert_eq!(
        m.store_host(),
        "127.0.0.1:10911".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(m.reconsume_times(), 0);
    assert_eq!(m.prepared_transaction_offset(), 0);
    assert_eq!(m.body().as_ref(), b"hello");
    assert_eq!(m.topic(), "T");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.property("a"), Some("b"));
    assert_eq!(m.keys(), None);

    let expected = golden("decoded msgId");
    let parts: Vec<&str> = expected.split(" / ").collect();
    assert_eq!(m.offset_msg_id(), parts[0]);
    assert_eq!(m.msg_id(), parts[0], "no UNIQ_KEY: msg_id is the offset id");
    assert_eq!(m.properties().to_string(), parts[1]);
    assert_eq!(m.body_crc().to_string(), parts[2]);

    // Zero copy: the body and topic point into the record.
    let range = rec.as_ptr() as usize..rec.as_ptr() as usize + rec.len();
    assert!(range.contains(&(m.body().as_ptr() as usize)));
    assert!(range.contains(&(m.topic().as_ptr() as usize)));

    // msgId decodes back to the store host and offset.
    let (host, off) = MessageDecoder::decode_message_id(parts[0]).unwrap();
    assert_eq!((host, off), (m.store_host(), 0x400));
}

#[test]
fn golden_stored_record_re_encodes_byte_for_byte() {
    let rec = golden_record();
    let m = MessageDecoder::decode(&rec, true, true).unwrap();
    let again = MessageDecoder::encode(&m, false).unwrap();
    assert_eq!(
        bytes_to_hex(&again).to_lowercase(),
        golden("Stored message (MessageDecoder.encode) hex")
    );
}

fn golden_batch_messages() -> [Message; 2] {
    // Built in the order Java's HashMap iterates them: KEYS, WAIT, TAGS.
    let m1 = Message::new("T", "a")
        .with_keys("k1")
        .with_wait_store_msg_ok(true)
        .with_tags("TagA");
    let m2 = Message::new("T", "bb")
        .with_keys("k2")
        .with_wait_store_msg_ok(true)
        .with_tags("TagB");
    [m1, m2]
}

#[test]
fn golden_batch_body() {
    let body = MessageDecoder::encode_messages(&golden_batch_messages()).unwrap();
    assert_eq!(
        bytes_to_hex(&body).to_lowercase(),
        golden("Batch body (MessageDecoder.encodeMessages) hex")
    );
}

#[test]
fn golden_properties_to_string() {
    let expected = golden("properties2String(m1) escaped")
        .replace("\\u0001", "\u{1}")
        .replace("\\u0002", "\u{2}");
    let [m1, _] = golden_batch_messages();
    assert_eq!(m1.properties_string(), expected);
    assert_eq!(properties_to_string(m1.properties()), expected);
    assert_eq!(&string_to_properties(&expected), m1.properties());
}

#[test]
fn golden_route_data_both_forms() {
    let fastjson = golden("TopicRouteData default fastjson");
    let standard = golden("TopicRouteData standard");
    assert!(
        serde_json::from_str::<serde_json::Value>(&fastjson).is_err(),
        "quirk present"
    );
    let a = TopicRouteData::decode(fastjson.as_bytes()).unwrap();
    let b = TopicRouteData::decode(standard.as_bytes()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.order_topic_conf, None);
    assert_eq!(a.broker_datas.len(), 1);
    let bd = &a.broker_datas[0];
    assert_eq!(bd.cluster, "DefaultCluster");
    assert_eq!(bd.broker_name, "broker-a");
    assert_eq!(bd.master_addr(), Some("127.0.0.1:10911"));
    assert_eq!(
        bd.broker_addrs.get(&1).map(String::as_str),
        Some("127.0.0.1:10921")
    );
    let qd = &a.queue_datas[0];
    assert_eq!(
        (qd.read_queue_nums, qd.write_queue_nums, qd.perm),
        (4, 4, 6)
    );
    assert!(a.filter_server_table.is_empty());

    let publish = topic_publish_queues("T", &a).unwrap();
    assert_eq!(publish.len(), 4);
    assert_eq!(publish[3], MessageQueue::new("T", "broker-a", 3));
    assert_eq!(topic_subscribe_queues("T", &a).unwrap(), publish);
}

#[test]
fn golden_tag_hash_codes() {
    let expected = golden("hashCode TagA / TagB / *");
    let got = format!(
        "{} {} {}",
        tags_code(Some("TagA")),
        tags_code(Some("TagB")),
        tags_code(Some("*"))
    );
    assert_eq!(got, expected);
}

#[test]
fn golden_uniq_id_shape() {
    // The Java sample came from an IPv6 host (56 chars); ours use IPv4 or clock bytes (32).
    let sample = golden("sample createUniqID");
    assert_eq!(sample.len(), 56);
    let id = rocketmq_sync::codec::MessageClientIDSetter::create_uniq_id();
    assert_eq!(id.len(), 32);
    assert!(hex_to_bytes(&id).is_some());
    assert_eq!(id, id.to_uppercase());
}

fn stored(topic: &str, body: &[u8], sys_flag: i32) -> MessageExt {
    let msg = Message::new(topic, body.to_vec())
        .with_tags("TagA")
        .with_keys("k1 k2");
    let mut m = MessageExt::from_message(&msg);
    m.set_sys_flag(sys_flag);
    m.set_queue_offset(42);
    m.set_commit_log_offset(4096);
    m.set_store_host("10.1.2.3:10911".parse().unwrap());
    m.set_born_host("10.9.9.9:40000".parse().unwrap());
    m
}

#[test]
fn ipv6_hosts_round_trip() {
    let mut m = stored("T", b"v6", 0);
    m.set_born_host("[fd00::1]:40000".parse().unwrap());
    m.set_store_host("[fd00::2]:10911".parse().unwrap());
    let rec = MessageDecoder::encode(&m, false).unwrap();
    // 91 fixed bytes + 2 x 12 more for IPv6 hosts + body + topic + properties.
    assert_eq!(rec.len(), 91 + 24 + 2 + 1 + m.properties_string().len());
    let d = MessageDecoder::decode(&rec, true, true).unwrap();
    assert_eq!(
        d.sys_flag(),
        MessageSysFlag::BORNHOST_V6_FLAG | MessageSysFlag::STOREHOSTADDRESS_V6_FLAG
    );
    assert_eq!(d.born_host(), m.born_host());
    assert_eq!(d.store_host(), m.store_host());
    assert_eq!(d.body().as_ref(), b"v6");
    let id = d.offset_msg_id();
    assert_eq!(id.len(), 56);
    assert_eq!(
        id,
        "FD000000000000000000000000000002\
         00002A9F0000000000001000"
    );
    assert_eq!(
        MessageDecoder::decode_message_id(&id).unwrap(),
        (m.store_host(), 4096)
    );
}

#[test]
fn zlib_compressed_bodies_are_decompressed() {
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 17) as u8).collect();
    for type_bits in [MessageSysFlag::COMPRESSION_ZLIB_TYPE, 0] {
        let m = stored("T", &body, MessageSysFlag::COMPRESSED_FLAG | type_bits);
        let rec = MessageDecoder::encode(&m, true).unwrap();
        assert!(rec.len() < 1000, "body was compressed: {}", rec.len());
        let d = MessageDecoder::decode(&rec, true, true).unwrap();
        assert_eq!(d.body().as_ref(), &body[..]);
        assert_eq!(d.keys(), Some("k1 k2"));
        // Without decompression the stored bytes come back as-is.
        let raw = MessageDecoder::decode(&rec, true, false).unwrap();
        assert_ne!(raw.body().as_ref(), &body[..]);
        assert_eq!(raw.body()[0], 0x78, "zlib header");
    }
}

/// A stored record at queue offset `offset` whose body is `stored_body` as-is, with the
/// compressed flag and `type_bits` in its sys flag.
fn compressed_record(stored_body: &[u8], type_bits: i32, offset: i64) -> Bytes {
    let mut m = stored(
        "T",
        stored_body,
        MessageSysFlag::COMPRESSED_FLAG | type_bits,
    );
    m.set_queue_offset(offset);
    MessageDecoder::encode(&m, false).unwrap()
}

/// LZ4 as lz4-java's `LZ4FrameOutputStream` writes it by default: the frame format with
/// independent 4 MiB blocks.
fn lz4_frame(data: &[u8]) -> Vec<u8> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    use std::io::Write;
    let info = FrameInfo::new()
        .block_size(BlockSize::Max4MB)
        .block_mode(BlockMode::Independent);
    let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn lz4_and_zstd_bodies_are_decompressed() {
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 17) as u8).collect();
    for (bits, frame) in [
        (MessageSysFlag::COMPRESSION_LZ4_TYPE, lz4_frame(&body)),
        (MessageSysFlag::COMPRESSION_ZSTD_TYPE, zstd_frame(&body)),
    ] {
        assert!(frame.len() < 1000, "compressed: {}", frame.len());
        let rec = compressed_record(&frame, bits, 42);
        let d = MessageDecoder::decode(&rec, true, true).unwrap();
        assert_eq!(d.body().as_ref(), &body[..], "type bits {bits:#x}");
        assert_eq!(d.keys(), Some("k1 k2"));
        // Without decompression the stored bytes come back as-is.
        let raw = MessageDecoder::decode(&rec, true, false).unwrap();
        assert_eq!(raw.body().as_ref(), &frame[..]);
    }
}

#[test]
fn corrupt_or_unknown_compressed_bodies_are_clear_errors() {
    for (bits, name) in [
        (MessageSysFlag::COMPRESSION_LZ4_TYPE, "LZ4"),
        (MessageSysFlag::COMPRESSION_ZSTD_TYPE, "ZSTD"),
        (MessageSysFlag::COMPRESSION_ZLIB_TYPE, "ZLIB"),
        (0, "ZLIB"),
    ] {
        let rec = compressed_record(b"not really compressed", bits, 42);
        match MessageDecoder::decode(&rec, true, true) {
            Err(CodecError::Decompress(msg)) => assert!(msg.contains(name), "{msg}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let rec = compressed_record(b"x", 0x400, 42);
    match MessageDecoder::decode(&rec, true, true) {
        Err(CodecError::Decompress(msg)) => assert!(msg.contains("0x401"), "{msg}"),
        other => panic!("unknown type: {other:?}"),
    }
}

#[test]
fn an_undecodable_record_is_skipped_and_the_others_are_decoded() {
    let ok = |offset: i64| {
        let mut m = stored("T", format!("m{offset}").as_bytes(), 0);
        m.set_queue_offset(offset);
        MessageDecoder::encode(&m, false).unwrap()
    };
    let bad_zstd = compressed_record(b"garbage", MessageSysFlag::COMPRESSION_ZSTD_TYPE, 1);
    let bad_lz4 = compressed_record(b"garbage", MessageSysFlag::COMPRESSION_LZ4_TYPE, 3);
    let body = [&ok(0)[..], &bad_zstd, &ok(2), &bad_lz4, &ok(4)].concat();
    let batch =
        MessageDecoder::decode_batch(Bytes::from(body.clone()), true, DEFAULT_MAX_BODY_SIZE);
    let offsets: Vec<i64> = batch.messages.iter().map(|m| m.queue_offset()).collect();
    assert_eq!(offsets, [0, 2, 4]);
    assert_eq!(batch.messages[1].body().as_ref(), b"m2");
    assert!(batch.stopped.is_none());
    assert_eq!(batch.undecodable(), 2);
    // The header of each is intact, so its queue and offset are known.
    let skipped: Vec<_> = batch
        .skipped
        .iter()
        .map(|r| (r.position, r.decoded_before, r.queue_id, r.queue_offset))
        .collect();
    let at = ok(0).len();
    assert_eq!(
        skipped,
        [
            (at, 1, Some(0), Some(1)),
            (2 * at + bad_zstd.len(), 2, Some(0), Some(3))
        ]
    );
    assert!(matches!(batch.skipped[0].error, CodecError::Decompress(_)));
    assert!(batch.skipped[1].to_string().contains("queue offset 3"));
    // `decodes` does the same.
    assert_eq!(MessageDecoder::decodes(Bytes::from(body)).len(), 3);
}

#[test]
fn an_inflation_bomb_is_rejected_and_skipped() {
    use std::io::Write;
    // 64 MiB of zeros deflates to about 64 KiB.
    let huge = vec![0u8; 64 << 20];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(9));
    z.write_all(&huge).unwrap();
    let bomb = z.finish().unwrap();
    assert!(bomb.len() < 128 << 10, "{}", bomb.len());
    let rec = compressed_record(&bomb, MessageSysFlag::COMPRESSION_ZLIB_TYPE, 7);
    match MessageDecoder::decode(&rec, true, true) {
        Err(CodecError::Decompress(msg)) => {
            assert!(msg.contains(&DEFAULT_MAX_BODY_SIZE.to_string()), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    let next = compressed_record(&z_of(b"after"), MessageSysFlag::COMPRESSION_ZLIB_TYPE, 8);
    let body = Bytes::from([&rec[..], &next[..]].concat());
    let batch = MessageDecoder::decode_batch(body, true, DEFAULT_MAX_BODY_SIZE);
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.messages[0].body().as_ref(), b"after");
    assert_eq!(batch.skipped[0].queue_offset, Some(7));

    // The bound is the decoder's parameter, and holds for every codec: exactly the maximum
    // decodes, one byte more does not.
    let data = vec![7u8; 1000];
    for (bits, frame) in [
        (MessageSysFlag::COMPRESSION_ZLIB_TYPE, z_of(&data)),
        (MessageSysFlag::COMPRESSION_LZ4_TYPE, lz4_frame(&data)),
        (MessageSysFlag::COMPRESSION_ZSTD_TYPE, zstd_frame(&data)),
    ] {
        let rec = compressed_record(&frame, bits, 9);
        let fits = MessageDecoder::decode_batch(rec.clone(), true, 1000);
        assert_eq!(fits.messages.len(), 1, "type bits {bits:#x}");
        assert_eq!(fits.messages[0].body().len(), 1000);
        let too_big = MessageDecoder::decode_batch(rec, true, 999);
        assert!(too_big.messages.is_empty(), "type bits {bits:#x}");
        assert!(
            matches!(too_big.skipped[0].error, CodecError::Decompress(_)),
            "{:?}",
            too_big.skipped
        );
    }
}

fn z_of(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

#[test]
fn uniq_key_is_the_msg_id() {
    let msg = Message::new("T", "x");
    let mut m = MessageExt::from_message(&msg);
    m.put_property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "ABC");
    assert_eq!(m.msg_id(), "ABC");
    let rec = MessageDecoder::encode(&m, false).unwrap();
    let d = MessageDecoder::decode(&rec, true, true).unwrap();
    assert_eq!(d.msg_id(), "ABC");
    assert_eq!(d.offset_msg_id(), "0".repeat(32));
}

#[test]
fn truncated_input_returns_complete_records_only() {
    let rec = golden_record();
    let three: Vec<u8> = [&rec[..], &rec[..], &rec[..]].concat();
    for cut in 0..=three.len() {
        let msgs = MessageDecoder::decodes(Bytes::copy_from_slice(&three[..cut]));
        assert_eq!(msgs.len(), cut / rec.len(), "cut at {cut}");
        for m in &msgs {
            assert_eq!(m.body().as_ref(), b"hello");
            assert_eq!(m.tags(), Some("TagA"));
        }
    }
}

#[test]
fn a_garbage_record_is_skipped_by_its_length_prefix() {
    let rec = golden_record();
    let mut body = [&rec[..], &rec[..], &rec[..]].concat();
    body[110 + 4] ^= 0xff; // bad magic in the second record
    let batch =
        MessageDecoder::decode_batch(Bytes::from(body.clone()), true, DEFAULT_MAX_BODY_SIZE);
    assert_eq!(batch.messages.len(), 2, "the first and the third");
    assert_eq!(batch.skipped.len(), 1);
    let bad = &batch.skipped[0];
    assert_eq!((bad.position, bad.total_size), (110, Some(110)));
    // With a bad magic code the header cannot be trusted: no queue offset is claimed.
    assert_eq!((bad.queue_id, bad.queue_offset), (None, None));
    assert_eq!(MessageDecoder::decodes(Bytes::from(body)).len(), 2);

    // A negative topic length in the first record: skipped, the second decodes.
    let mut bad = [&rec[..], &rec[..]].concat();
    bad[93] = 0x80; // 88 + 5 body bytes
    assert_eq!(MessageDecoder::decodes(Bytes::from(bad)).len(), 1);
    // A huge body length: the record does not decode.
    let mut bad = rec.to_vec();
    bad[84..88].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(MessageDecoder::decode(&Bytes::from(bad), true, true).is_err());
    assert!(MessageDecoder::decodes(Bytes::new()).is_empty());

    // Fields that end before TOTALSIZE: the record is skipped whole, not read half-way.
    let mut longer = rec.to_vec();
    longer[..4].copy_from_slice(&120i32.to_be_bytes());
    longer.extend_from_slice(&[0u8; 10]);
    let body = [&rec[..], &longer, &rec[..]].concat();
    let batch = MessageDecoder::decode_batch(Bytes::from(body), true, DEFAULT_MAX_BODY_SIZE);
    assert_eq!(batch.messages.len(), 2);
    assert_eq!(
        batch.skipped[0].queue_offset,
        Some(5),
        "the header is intact"
    );
    assert!(batch.skipped[0].error.to_string().contains("TOTALSIZE 120"));
}

#[test]
fn a_nonsense_length_prefix_stops_decoding_after_what_decoded() {
    let rec = golden_record();
    for prefix in [i32::MAX, 111, 0, -1, 90] {
        let mut body = [&rec[..], &rec[..]].concat();
        body[110..114].copy_from_slice(&prefix.to_be_bytes());
        body[114] ^= 0xff; // and a bad magic code, so that the record does not decode
        let batch = MessageDecoder::decode_batch(Bytes::from(body), true, DEFAULT_MAX_BODY_SIZE);
        assert_eq!(batch.messages.len(), 1, "prefix {prefix}");
        assert!(batch.skipped.is_empty());
        let stop = batch.stopped.as_ref().expect("stopped");
        assert_eq!((stop.position, stop.total_size), (110, Some(prefix)));
        assert_eq!(batch.undecodable(), 1);
        // The next pull starts after the last decoded message (offset 5), to get the rest again.
        assert_eq!(batch.next_pull_offset(40), 6);
    }
    // Nothing decoded before the stop: the pull's next offset passes it, as Java does.
    let mut body = rec.to_vec();
    body[..4].copy_from_slice(&0i32.to_be_bytes());
    let batch = MessageDecoder::decode_batch(Bytes::from(body), true, DEFAULT_MAX_BODY_SIZE);
    assert!(batch.messages.is_empty() && batch.stopped.is_some());
    assert_eq!(batch.next_pull_offset(40), 40);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let msgs = MessageDecoder::decodes(Bytes::from(data));
        for m in &msgs {
            let _ = (m.topic(), m.tags(), m.msg_id(), m.properties());
        }
    }

    #[test]
    fn mutated_golden_records_never_panic(
        flips in proptest::collection::vec((0usize..330, any::<u8>()), 1..8),
        cut in 0usize..=330,
    ) {
        let rec = golden_record();
        let mut body = [&rec[..], &rec[..], &rec[..]].concat();
        for (i, b) in flips {
            body[i] = b;
        }
        body.truncate(cut);
        let msgs = MessageDecoder::decodes(Bytes::from(body));
        prop_assert!(msgs.len() <= 3);
        for m in &msgs {
            let _ = (m.topic(), m.keys(), m.offset_msg_id(), m.properties());
        }
    }

    #[test]
    fn stored_records_round_trip(
        topic in "[A-Za-z0-9_%-]{1,200}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        tags in "[A-Za-z0-9]{1,10}",
        queue_offset in any::<i64>(),
        reconsume in any::<i32>(),
    ) {
        let mut m = stored(&topic, &body, 0);
        m.put_property(MessageConst::PROPERTY_TAGS, tags.clone());
        m.set_queue_offset(queue_offset);
        m.set_reconsume_times(reconsume);
        let rec = MessageDecoder::encode(&m, false).unwrap();
        let d = MessageDecoder::decode(&rec, true, true).unwrap();
        prop_assert_eq!(d.topic(), topic.as_str());
        prop_assert_eq!(d.body().as_ref(), &body[..]);
        prop_assert_eq!(d.tags(), Some(tags.as_str()));
        prop_assert_eq!(d.queue_offset(), queue_offset);
        prop_assert_eq!(d.reconsume_times(), reconsume);
        prop_assert_eq!(d.store_size() as usize, rec.len());
    }
}
