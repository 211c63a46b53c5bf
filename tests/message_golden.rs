//! Byte-exact checks of the message codec against vectors produced by the Java 4.9.8 client
//! (`shared/reference/golden-4.9.8.txt`), plus robustness against truncated and garbage input.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use rocketmq_sync::remoting::protocol::{
    properties_to_string, string_to_properties, tags_code, topic_publish_queues,
    topic_subscribe_queues, MessageDecoder, MessageSysFlag, TopicRouteData,
};
use rocketmq_sync::CodecError;
use rocketmq_sync::{Message, MessageConst, MessageExt, MessageQueue};

/// Uppercase hex, as Java's `UtilAll.bytes2string` (the crate's own helper is private).
fn bytes_to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses hex; `None` for an odd length or a non-hex digit.
fn hex_to_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
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

    let publish = topic_publish_queues("T", &a);
    assert_eq!(publish.len(), 4);
    assert_eq!(publish[3], MessageQueue::new("T", "broker-a", 3));
    assert_eq!(topic_subscribe_queues("T", &a), publish);
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
    let id = rocketmq_sync::remoting::protocol::MessageClientIDSetter::create_uniq_id();
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

#[test]
fn unsupported_compression_is_a_clear_error() {
    let ok = MessageDecoder::encode(&stored("T", b"first", 0), false).unwrap();
    for (bits, name) in [
        (MessageSysFlag::COMPRESSION_LZ4_TYPE, "LZ4"),
        (MessageSysFlag::COMPRESSION_ZSTD_TYPE, "ZSTD"),
    ] {
        let m = stored(
            "T",
            b"not really compressed",
            MessageSysFlag::COMPRESSED_FLAG | bits,
        );
        let rec = MessageDecoder::encode(&m, false).unwrap();
        match MessageDecoder::decode(&rec, true, true) {
            Err(CodecError::Decompress(msg)) => assert!(msg.contains(name), "{msg}"),
            other => panic!("{name}: {other:?}"),
        }
        let mut body = ok.to_vec();
        body.extend_from_slice(&rec);
        body.extend_from_slice(&ok);
        let msgs = MessageDecoder::decodes(Bytes::from(body));
        assert_eq!(msgs.len(), 1, "stops at the undecodable record");
        assert_eq!(msgs[0].body().as_ref(), b"first");
    }
    // Corrupt zlib data is an error too, not a panic.
    let m = stored("T", b"garbage", MessageSysFlag::COMPRESSED_FLAG);
    let rec = MessageDecoder::encode(&m, false).unwrap();
    assert!(matches!(
        MessageDecoder::decode(&rec, true, true),
        Err(CodecError::Decompress(_))
    ));
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
fn garbage_record_stops_decoding() {
    let rec = golden_record();
    let mut body = [&rec[..], &rec[..], &rec[..]].concat();
    body[110 + 4] ^= 0xff; // bad magic in the second record
    assert_eq!(MessageDecoder::decodes(Bytes::from(body.clone())).len(), 1);
    // A negative topic length in the first record.
    let mut bad = rec.to_vec();
    bad[93] = 0x80; // 88 + 5 body bytes
    assert!(MessageDecoder::decodes(Bytes::from(bad)).is_empty());
    // A huge body length.
    let mut bad = rec.to_vec();
    bad[84..88].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(MessageDecoder::decode(&Bytes::from(bad), true, true).is_err());
    assert!(MessageDecoder::decodes(Bytes::new()).is_empty());
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
