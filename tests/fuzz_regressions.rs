//! Inputs the fuzz targets in `fuzz/` found crashing (a panic, or a broken round-trip invariant),
//! each reduced to what shows the defect, replayed through the public API.

use bytes::{BufMut, Bytes, BytesMut};
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
