//! Golden frames printed by the real Java 4.9.8 classes: every remoting command in
//! `golden-4.9.8.txt` decodes to the right fields and typed header, and re-encodes to the
//! identical bytes.

mod support;

use bytes::{Bytes, BytesMut};
use rocketmq_sync::remoting::protocol::header::{
    GetRouteInfoRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader,
};
use rocketmq_sync::remoting::protocol::{
    CommandCustomHeader, FrameDecoder, LanguageCode, RemotingCommand, RequestCode, SerializeType,
};
use support::golden;

const PULL_JSON_HEX: &str = "PULL_MESSAGE JSON frame hex (encode())";
const PULL_JSON_TEXT: &str = "PULL_MESSAGE JSON header text";
const PULL_BINARY_HEX: &str = "PULL_MESSAGE ROCKETMQ frame hex (fastEncodeHeader, no body)";
const SEND_RESPONSE: &str = "SEND response JSON header";
const SEND_V2: &str = "SEND_MESSAGE_V2 JSON frame (header text)";
const ROUTE: &str = "GET_ROUTEINFO_BY_TOPIC JSON header";

/// Decodes exactly one frame from `bytes` through a `FrameDecoder`, leaving nothing behind.
fn decode_one(bytes: &[u8]) -> RemotingCommand {
    let mut buf = BytesMut::from(bytes);
    let cmd = FrameDecoder::default()
        .decode(&mut buf)
        .expect("golden frame decodes")
        .expect("golden frame is complete");
    assert!(buf.is_empty(), "{} bytes left after the frame", buf.len());
    cmd
}

fn encode(cmd: &RemotingCommand) -> Vec<u8> {
    cmd.encode_to_bytes().expect("encodes").to_vec()
}

/// A JSON header text from the golden file wrapped into a frame, decoded.
fn decode_json_header_text(title: &str) -> (String, RemotingCommand) {
    let text = golden::section(title);
    let cmd = decode_one(&golden::frame_from_header(0, text.as_bytes()));
    (text, cmd)
}

fn ext_pairs(cmd: &RemotingCommand) -> Vec<(String, String)> {
    cmd.ext_fields()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn sorted_ext_pairs(cmd: &RemotingCommand) -> Vec<(String, String)> {
    let mut v = ext_pairs(cmd);
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn expected_pull_header() -> PullMessageRequestHeader {
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

fn assert_pull_common(cmd: &RemotingCommand) {
    assert_eq!(cmd.code(), 11);
    assert_eq!(cmd.request_code(), RequestCode::PULL_MESSAGE);
    assert_eq!(cmd.opaque(), 7);
    assert_eq!(cmd.flag(), 0);
    assert!(!cmd.is_response());
    assert!(!cmd.is_oneway());
    assert_eq!(cmd.version(), 409);
    assert_eq!(cmd.language(), LanguageCode::JAVA);
    assert_eq!(cmd.remark(), None);
    assert_eq!(cmd.body(), None);
    assert_eq!(
        cmd.decode_header::<PullMessageRequestHeader>().unwrap(),
        expected_pull_header()
    );
}

#[test]
fn golden_file_has_every_remoting_section() {
    let titles: Vec<String> = golden::sections().into_iter().map(|(t, _)| t).collect();
    for t in [
        PULL_JSON_HEX,
        PULL_JSON_TEXT,
        PULL_BINARY_HEX,
        SEND_RESPONSE,
        SEND_V2,
        ROUTE,
    ] {
        assert!(titles.iter().any(|x| x == t), "missing section {t:?}");
    }
}

#[test]
fn pull_message_json_frame_decodes_and_reencodes_identically() {
    let bytes = golden::hex(&golden::section(PULL_JSON_HEX));
    let cmd = decode_one(&bytes);
    assert_eq!(cmd.serialize_type(), SerializeType::Json);
    assert_pull_common(&cmd);
    // HashMap order from Java, kept as decoded.
    assert_eq!(
        ext_pairs(&cmd),
        pairs(&[
            ("queueId", "1"),
            ("maxMsgNums", "32"),
            ("sysFlag", "2"),
            ("suspendTimeoutMillis", "15000"),
            ("commitOffset", "0"),
            ("bname", "broker-a"),
            ("topic", "T"),
            ("queueOffset", "100"),
            ("expressionType", "TAG"),
            ("subVersion", "1700000000000"),
            ("consumerGroup", "cg"),
        ])
    );
    assert_eq!(encode(&cmd), bytes, "re-encoded frame differs");

    // The header inside the frame is the golden header text.
    let text = golden::section(PULL_JSON_TEXT);
    assert_eq!(cmd.encode_header().unwrap(), text.as_bytes());
    assert_eq!(&bytes[8..], text.as_bytes());
}

#[test]
fn pull_message_json_header_text_decodes_like_the_frame() {
    let (text, cmd) = decode_json_header_text(PULL_JSON_TEXT);
    assert_pull_common(&cmd);
    let frame = decode_one(&golden::hex(&golden::section(PULL_JSON_HEX)));
    assert_eq!(cmd, frame);
    assert_eq!(cmd.encode_header().unwrap(), text.as_bytes());
}

#[test]
fn pull_message_binary_frame_decodes_and_reencodes_identically() {
    let bytes = golden::hex(&golden::section(PULL_BINARY_HEX));
    let cmd = decode_one(&bytes);
    assert_eq!(cmd.serialize_type(), SerializeType::RocketMQ);
    assert_pull_common(&cmd);
    // FastCodesHeader order from PullMessageRequestHeader.encode.
    assert_eq!(
        ext_pairs(&cmd),
        pairs(&[
            ("consumerGroup", "cg"),
            ("topic", "T"),
            ("queueId", "1"),
            ("queueOffset", "100"),
            ("maxMsgNums", "32"),
            ("sysFlag", "2"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "15000"),
            ("subVersion", "1700000000000"),
            ("expressionType", "TAG"),
            ("bname", "broker-a"),
        ])
    );
    assert_eq!(encode(&cmd), bytes, "re-encoded frame differs");
}

#[test]
fn pull_message_json_command_switched_to_binary_matches_golden_binary() {
    let json = decode_one(&golden::hex(&golden::section(PULL_JSON_HEX)));
    let golden_bytes = golden::hex(&golden::section(PULL_BINARY_HEX));
    let binary = decode_one(&golden_bytes);

    let mut switched = json.clone();
    switched.set_serialize_type(SerializeType::RocketMQ);
    let reencoded = encode(&switched);
    // Same length (same entries), possibly different entry order.
    assert_eq!(reencoded.len(), golden_bytes.len());
    let redecoded = decode_one(&reencoded);
    assert_eq!(redecoded.serialize_type(), SerializeType::RocketMQ);
    assert_eq!(redecoded.code(), binary.code());
    assert_eq!(redecoded.opaque(), binary.opaque());
    assert_eq!(redecoded.flag(), binary.flag());
    assert_eq!(redecoded.version(), binary.version());
    assert_eq!(redecoded.language(), binary.language());
    assert_eq!(redecoded.remark(), binary.remark());
    assert_eq!(redecoded.body(), binary.body());
    assert_eq!(sorted_ext_pairs(&redecoded), sorted_ext_pairs(&binary));

    // Building the request from the typed header writes Java's FastCodesHeader order, so the
    // binary frame comes out byte for byte.
    let header = json.decode_header::<PullMessageRequestHeader>().unwrap();
    let mut built = RemotingCommand::request_with_header(RequestCode::PULL_MESSAGE, &header);
    built.set_opaque(7);
    built.set_serialize_type(SerializeType::RocketMQ);
    assert_eq!(encode(&built), golden_bytes);
}

#[test]
fn send_response_header_decodes_and_reencodes_identically() {
    let (text, cmd) = decode_json_header_text(SEND_RESPONSE);
    assert_eq!(cmd.serialize_type(), SerializeType::Json);
    assert_eq!(cmd.code(), 0);
    assert_eq!(cmd.opaque(), 7);
    assert_eq!(cmd.flag(), 1);
    assert!(cmd.is_response());
    assert_eq!(cmd.version(), 409);
    assert_eq!(cmd.language(), LanguageCode::JAVA);
    assert_eq!(cmd.remark(), None);
    assert_eq!(
        ext_pairs(&cmd),
        pairs(&[
            ("queueId", "1"),
            ("TRACE_ON", "true"),
            ("MSG_REGION", "DefaultRegion"),
            ("msgId", "7F00000100002A9F0000000000000000"),
            ("queueOffset", "5"),
        ])
    );
    assert_eq!(
        cmd.decode_header::<SendMessageResponseHeader>().unwrap(),
        SendMessageResponseHeader {
            msg_id: "7F00000100002A9F0000000000000000".into(),
            queue_id: 1,
            queue_offset: 5,
            transaction_id: None,
        }
    );
    assert_eq!(cmd.ext_fields().get("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(cmd.ext_fields().get("TRACE_ON"), Some("true"));
    assert_eq!(
        String::from_utf8(cmd.encode_header().unwrap()).unwrap(),
        text
    );
    assert_eq!(encode(&cmd), golden::frame_from_header(0, text.as_bytes()));
}

fn expected_send_v2() -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        a: "pg".into(),
        b: "T".into(),
        c: "TBW102".into(),
        d: 4,
        e: 0,
        f: 0,
        g: 1_700_000_000_000,
        h: 0,
        i: Some("KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true".into()),
        j: Some(0),
        k: false,
        l: None,
        m: false,
        n: Some("broker-a".into()),
        bname: None,
    }
}

#[test]
fn send_message_v2_header_decodes_and_reencodes_identically() {
    let (text, cmd) = decode_json_header_text(SEND_V2);
    assert_eq!(cmd.code(), 310);
    assert_eq!(cmd.request_code(), RequestCode::SEND_MESSAGE_V2);
    assert_eq!(cmd.opaque(), 8);
    assert_eq!(cmd.flag(), 0);
    assert_eq!(cmd.version(), 409);
    assert_eq!(cmd.language(), LanguageCode::JAVA);
    assert_eq!(cmd.ext_fields().len(), 13); // a..n without l
                                            // The JSON escapes decode to the real separator characters.
    assert_eq!(
        cmd.ext_fields().get("i"),
        Some("KEYS\u{1}k1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true")
    );
    let v2 = cmd.decode_header::<SendMessageRequestHeaderV2>().unwrap();
    assert_eq!(v2, expected_send_v2());
    assert_eq!(
        String::from_utf8(cmd.encode_header().unwrap()).unwrap(),
        text
    );

    // The same header built from V1, as the producer does, gives the same text.
    let v1 = SendMessageRequestHeader::from(&v2);
    assert_eq!(v1.bname.as_deref(), Some("broker-a"));
    assert_eq!(v1.producer_group, "pg");
    assert_eq!(v1.default_topic_queue_nums, 4);
    let mut built = RemotingCommand::request_with_header(
        RequestCode::SEND_MESSAGE_V2,
        &SendMessageRequestHeaderV2::from(&v1),
    );
    built.set_opaque(8);
    assert_eq!(
        String::from_utf8(built.encode_header().unwrap()).unwrap(),
        text
    );
}

#[test]
fn get_route_info_header_decodes_and_reencodes_identically() {
    let (text, cmd) = decode_json_header_text(ROUTE);
    assert_eq!(cmd.code(), 105);
    assert_eq!(cmd.request_code(), RequestCode::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(cmd.opaque(), 9);
    assert_eq!(cmd.flag(), 0);
    assert_eq!(cmd.version(), 409);
    assert_eq!(cmd.language(), LanguageCode::JAVA);
    assert_eq!(ext_pairs(&cmd), pairs(&[("topic", "T")]));
    let h = cmd.decode_header::<GetRouteInfoRequestHeader>().unwrap();
    assert_eq!(
        h,
        GetRouteInfoRequestHeader {
            topic: "T".into(),
            accept_standard_json_only: None,
        }
    );
    assert_eq!(
        String::from_utf8(cmd.encode_header().unwrap()).unwrap(),
        text
    );

    let mut built = RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &h);
    built.set_opaque(9);
    assert_eq!(built.encode_header().unwrap(), text.as_bytes());
}

#[test]
fn decoded_body_is_kept_and_reencoded() {
    // A golden header with a body appended still re-encodes identically.
    let text = golden::section(ROUTE);
    let mut bytes = golden::frame_from_header(0, text.as_bytes());
    let body = b"hello";
    let total = u32::from_be_bytes(bytes[..4].try_into().unwrap()) + body.len() as u32;
    bytes[..4].copy_from_slice(&total.to_be_bytes());
    bytes.extend_from_slice(body);
    let cmd = decode_one(&bytes);
    assert_eq!(cmd.body(), Some(&Bytes::from_static(b"hello")));
    assert_eq!(encode(&cmd), bytes);
    // The typed header write path agrees with the decoded ext fields.
    let mut f = rocketmq_sync::remoting::protocol::ExtFields::new();
    cmd.decode_header::<GetRouteInfoRequestHeader>()
        .unwrap()
        .write_to(&mut f);
    assert_eq!(&f, cmd.ext_fields());
}

/// A Java `Map.toString()` (`{k=v, k=v}`) as sorted pairs.
fn java_map(text: &str) -> Vec<(String, String)> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .expect("a Java map");
    let mut pairs: Vec<(String, String)> = inner
        .split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

fn sorted_fields(cmd: &RemotingCommand) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = cmd
        .ext_fields()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn acl_hook_signs_exactly_as_java() {
    use rocketmq_sync::{AclClientRPCHook, RPCHook, SessionCredentials};

    // GET_CONSUMER_LIST_BY_GROUP, consumerGroup=cg, no body, no token.
    let hook = AclClientRPCHook::new(SessionCredentials::new("RocketMQ", "12345678"));
    let mut cmd = RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP);
    cmd.ext_fields_mut().insert("consumerGroup", "cg");
    hook.do_before_request("127.0.0.1:10911", &mut cmd);
    assert_eq!(
        sorted_fields(&cmd),
        java_map(&golden::section(
            "ACL extFields (AK=RocketMQ SK=12345678, header consumerGroup=cg, no body)"
        ))
    );

    // The SEND_MESSAGE_V2 golden header (13 fields with \u{1}/\u{2} separators), body "hello",
    // and a security token.
    let hook = AclClientRPCHook::new(
        SessionCredentials::new("RocketMQ", "12345678").with_security_token("tok"),
    );
    let (_, mut cmd) = decode_json_header_text(SEND_V2);
    cmd.set_body(&b"hello"[..]);
    hook.do_before_request("127.0.0.1:10911", &mut cmd);
    assert_eq!(
        sorted_fields(&cmd),
        java_map(&golden::section(
            "ACL extFields for SEND_MESSAGE_V2 above + body 'hello' + SecurityToken=tok"
        ))
    );
}
