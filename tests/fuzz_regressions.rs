//! Inputs the fuzz targets in `fuzz/` found crashing (a panic, or a broken round-trip invariant),
//! each reduced to what shows the defect, replayed through the public API.

use bytes::{BufMut, Bytes, BytesMut};
use rocketmq_sync::codec::{topic_publish_queues, topic_subscribe_queues, TopicRouteData};
use rocketmq_sync::remoting::protocol::body::FjValue;
use rocketmq_sync::remoting::protocol::{LanguageCode, RemotingCommand, SerializeType};

/// A frame without its length prefix: the header word, then the header.
fn unprefixed_frame(serialize_type: SerializeType, header: &[u8]) -> Bytes {
    let mut f = BytesMut::new();
    f.put_u32((u32::from(serialize_type.code()) << 24) | header.len() as u32);
    f.put_slice(header);
    f.freeze()
}

/// Decodes `cmd`'s own encoding (without the length prefix).
fn reencoded(cmd: &RemotingCommand) -> RemotingCommand {
    let bytes = cmd.encode_to_bytes().expect("a decoded command encodes");
    RemotingCommand::decode(bytes.slice(4..)).expect("a re-encoded command decodes")
}

/// fuzz target `header_json`: a JSON header whose `language` is an ordinal no language has
/// decoded to that number, but encoded as `"OTHER"`, so decode → encode → decode changed it.
#[test]
fn json_header_unknown_language_ordinal_survives_a_round_trip() {
    let cmd = RemotingCommand::decode(unprefixed_frame(
        SerializeType::Json,
        br#"{"code":310,"flag":0,"language":155,"opaque":0,"version":409}"#,
    ))
    .expect("the header decodes");
    assert_eq!(reencoded(&cmd), cmd, "decode(encode(cmd)) differs from cmd");
    assert_eq!(cmd.language(), LanguageCode::OTHER);
}

/// fuzz target `json_bodies`: a number whose text serde_json read with its default, imprecise
/// float parsing gave a value that printed as text reading back as a different value, so a
/// fastjson body did not survive parse → print → parse.
#[test]
fn fastjson_numbers_survive_print_and_parse() {
    for text in [
        // A 31-digit integer, past u64: read as a double.
        "2222222021011122222222202101111",
        "2.2222220210111225e+30",
        "{\"pullTPS\":0.30000000000000004,\"n\":[1e-7,123456789012345678901234567890]}",
    ] {
        let v = FjValue::parse(text).expect("parses");
        let compact = v.to_compact_string();
        assert_eq!(
            FjValue::parse(&compact).expect("compact form parses"),
            v,
            "{text} printed as {compact} reads back differently"
        );
        let pretty = v.to_pretty_string();
        assert_eq!(FjValue::parse(&pretty).expect("pretty form parses"), v);
    }
}

/// Decodes `body` as a route and builds the producer's and the consumer's queue lists from it.
/// `Err` when the route is refused, at decoding or at building.
fn build_route_queues(body: &[u8]) -> Result<(), rocketmq_sync::CodecError> {
    let route = TopicRouteData::decode(body)?;
    topic_publish_queues("T", &route)?;
    // Whether this returns the list or a `Result`, it must return.
    let _ = topic_subscribe_queues("T", &route);
    Ok(())
}

/// fuzz target `json_bodies`: `[":488888888"]` decodes as a route (serde reads a struct from an
/// array) whose orderTopicConf asks for 488888888 queues of broker "": building them tried to
/// allocate 27 GB and aborted the process. Queue counts from the name server are bounded.
#[test]
fn route_with_a_huge_order_topic_conf_is_refused() {
    assert!(build_route_queues(br#"[":488888888"]"#).is_err());
    assert!(build_route_queues(br#"{"orderTopicConf":"broker-a:2147483647"}"#).is_err());
}

/// The same defect through `queueDatas`: 2^31 - 1 read or write queues of one broker.
#[test]
fn route_with_huge_queue_counts_is_refused() {
    let route = |read: i32, write: i32| {
        format!(
            r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"127.0.0.1:10911"}},"brokerName":"broker-a","cluster":"c"}}],"queueDatas":[{{"brokerName":"broker-a","perm":6,"readQueueNums":{read},"writeQueueNums":{write}}}]}}"#
        )
    };
    assert!(build_route_queues(route(i32::MAX, 4).as_bytes()).is_err());
    assert!(build_route_queues(route(4, i32::MAX).as_bytes()).is_err());
    // A real route still builds.
    assert!(build_route_queues(route(8, 8).as_bytes()).is_ok());
}
