//! Property tests for the frame codec: encode/decode round trips in both header encodings,
//! stream splitting at any point, and robustness against arbitrary bytes.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use rocketmq_sync::remoting::protocol::{
    FrameDecoder, LanguageCode, RemotingCommand, RequestCode, SerializeType,
};
use rocketmq_sync::CodecError;

/// A small maximum so the arbitrary-bytes tests can reach it.
const SMALL_MAX: usize = 64 * 1024;

fn short_string(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly ASCII, so keys collide now and then and values look like real ones.
        proptest::collection::vec(proptest::char::range('a', 'e'), 0..max),
        proptest::collection::vec(any::<char>(), 0..max),
    ]
    .prop_map(String::from_iter)
}

fn serialize_type() -> impl Strategy<Value = SerializeType> {
    prop_oneof![Just(SerializeType::Json), Just(SerializeType::RocketMQ)]
}

prop_compose! {
    fn command()(
        code in any::<i32>(),
        language in any::<u8>(),
        version in any::<i32>(),
        opaque in any::<i32>(),
        flag in any::<i32>(),
        remark in proptest::option::of(short_string(12)),
        ext in proptest::collection::vec((short_string(6), short_string(10)), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..48),
        st in serialize_type(),
    ) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(RequestCode(code));
        cmd.set_language(LanguageCode(language));
        cmd.set_version(version);
        cmd.set_opaque(opaque);
        cmd.set_flag(flag);
        cmd.set_remark(remark);
        for (k, v) in ext {
            cmd.ext_fields_mut().insert(k, v);
        }
        cmd.set_body(body);
        cmd.set_serialize_type(st);
        cmd
    }
}

/// What `cmd` should look like after a trip over the wire in its serialize type.
fn normalised(cmd: &RemotingCommand) -> RemotingCommand {
    let mut n = cmd.clone();
    match cmd.serialize_type() {
        SerializeType::Json => {
            // Unknown language bytes have no JSON name and come back as OTHER.
            if cmd.language().0 > LanguageCode::RUST.0 {
                n.set_language(LanguageCode::OTHER);
            }
        }
        SerializeType::RocketMQ => {
            // code and version are i16 on the wire; empty strings decode as absent.
            n.set_code(cmd.code() as i16 as i32);
            n.set_version(cmd.version() as i16 as i32);
            if cmd.remark() == Some("") {
                n.set_remark(None);
            }
            let kept: Vec<(String, String)> = cmd
                .ext_fields()
                .iter()
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            *n.ext_fields_mut() = kept.into_iter().collect();
        }
    }
    n
}

fn encode_all(cmds: &[RemotingCommand]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for c in cmds {
        c.encode(&mut buf).expect("encodes");
    }
    buf.to_vec()
}

/// Drains every complete frame out of `buf`.
fn drain(dec: &mut FrameDecoder, buf: &mut BytesMut, out: &mut Vec<RemotingCommand>) {
    while let Some(cmd) = dec.decode(buf).expect("valid stream decodes") {
        out.push(cmd);
    }
}

/// Feeds `bytes` in the chunks delimited by `cuts` (sorted offsets) to one decoder.
fn decode_in_chunks(bytes: &[u8], cuts: &[usize]) -> Vec<RemotingCommand> {
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        buf.extend_from_slice(&bytes[start..cut]);
        start = cut;
        drain(&mut dec, &mut buf, &mut out);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_round_trips(cmd in command()) {
        let bytes = cmd.encode_to_bytes().unwrap();
        let total = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(total + 4, bytes.len());
        let word = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
        prop_assert_eq!(word >> 24, cmd.serialize_type().code() as u32);

        let decoded = RemotingCommand::decode(bytes.slice(4..)).unwrap();
        prop_assert_eq!(&decoded, &normalised(&cmd));
        // A decoded command re-encodes to the same bytes (binary: once normalised).
        prop_assert_eq!(decoded.encode_to_bytes().unwrap(), normalised(&cmd).encode_to_bytes().unwrap());
    }

    #[test]
    fn json_and_binary_forms_convert_into_each_other(cmd in command()) {
        // A command read from JSON, switched to the binary form, reads back as the same command
        // sent in binary directly.
        let mut cmd = cmd;
        if cmd.language().0 > LanguageCode::RUST.0 {
            cmd.set_language(LanguageCode::OTHER);
        }
        let mut json = cmd.clone();
        json.set_serialize_type(SerializeType::Json);
        let mut switched =
            RemotingCommand::decode(json.encode_to_bytes().unwrap().slice(4..)).unwrap();
        switched.set_serialize_type(SerializeType::RocketMQ);
        let via_binary =
            RemotingCommand::decode(switched.encode_to_bytes().unwrap().slice(4..)).unwrap();
        let mut binary = cmd;
        binary.set_serialize_type(SerializeType::RocketMQ);
        prop_assert_eq!(via_binary, normalised(&binary));
    }

    #[test]
    fn a_stream_split_at_every_point_decodes_the_same(
        cmds in proptest::collection::vec(command(), 1..4),
    ) {
        let bytes = encode_all(&cmds);
        let want: Vec<RemotingCommand> = cmds.iter().map(normalised).collect();
        prop_assert_eq!(&decode_in_chunks(&bytes, &[]), &want);
        for cut in 0..=bytes.len() {
            let got = decode_in_chunks(&bytes, &[cut]);
            prop_assert_eq!(&got, &want, "split at {}", cut);
        }
    }

    #[test]
    fn a_stream_split_many_ways_decodes_the_same(
        cmds in proptest::collection::vec(command(), 1..6),
        cut_seeds in proptest::collection::vec(any::<proptest::sample::Index>(), 0..16),
    ) {
        let bytes = encode_all(&cmds);
        let want: Vec<RemotingCommand> = cmds.iter().map(normalised).collect();
        let mut cuts: Vec<usize> = cut_seeds.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(decode_in_chunks(&bytes, &cuts), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(
        prefix in prop_oneof![
            // A length near or over the small maximum, to exercise the reserve path.
            (0u32..=(SMALL_MAX as u32 + 16)).prop_map(Some),
            Just(None),
        ],
        type_byte in prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        cut_seeds in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let mut bytes = Vec::new();
        if let Some(len) = prefix {
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.push(type_byte);
        }
        bytes.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cut_seeds.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();

        let mut dec = FrameDecoder::new(SMALL_MAX);
        let mut buf = BytesMut::new();
        let mut start = 0;
        'feed: for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            buf.extend_from_slice(&bytes[start..cut]);
            start = cut;
            loop {
                let r = dec.decode(&mut buf);
                prop_assert!(
                    buf.capacity() <= SMALL_MAX + 8,
                    "capacity {} after {:?}", buf.capacity(), r.as_ref().map(|c| c.is_some())
                );
                match r {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    // After an error the connection is closed; stop feeding.
                    Err(_) => break 'feed,
                }
            }
        }

        // The command decoder alone never panics on arbitrary input either, with or without a
        // plausible header word in front.
        let _ = RemotingCommand::decode(Bytes::from(tail.clone()));
        let mut framed = Vec::with_capacity(tail.len() + 4);
        let header_len = (tail.len() as u32).min(prefix.unwrap_or(0));
        framed.extend_from_slice(&(((type_byte as u32 & 1) << 24) | header_len).to_be_bytes());
        framed.extend_from_slice(&tail);
        let _ = RemotingCommand::decode(Bytes::from(framed));
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        cmd in command(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = cmd.encode_to_bytes().unwrap().to_vec();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = RemotingCommand::decode(Bytes::from(bytes[4..].to_vec()));
        let mut dec = FrameDecoder::new(SMALL_MAX);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
        prop_assert!(buf.capacity() <= SMALL_MAX + 8);
    }
}

#[test]
fn length_just_over_the_max_is_rejected_without_allocating() {
    for len in [SMALL_MAX as u32 + 1, SMALL_MAX as u32 + 1000, u32::MAX] {
        let mut dec = FrameDecoder::new(SMALL_MAX);
        let mut buf = BytesMut::with_capacity(16);
        buf.put_u32(len);
        buf.put_u32(0);
        let cap = buf.capacity();
        assert_eq!(
            dec.decode(&mut buf),
            Err(CodecError::FrameTooLarge {
                len: len as usize,
                max: SMALL_MAX
            })
        );
        assert_eq!(
            buf.capacity(),
            cap,
            "the decoder reserved memory for len {len}"
        );
    }

    // Exactly the maximum is accepted: the decoder waits for the rest and reserves only that.
    let mut dec = FrameDecoder::new(SMALL_MAX);
    let mut buf = BytesMut::new();
    buf.put_u32(SMALL_MAX as u32);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= SMALL_MAX + 4);
    assert!(buf.capacity() <= SMALL_MAX + 8);
}

#[test]
fn length_prefix_below_the_header_word_is_malformed() {
    for len in 0u32..4 {
        let mut buf = BytesMut::new();
        buf.put_u32(len);
        buf.put_u32(0);
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }
}

#[test]
fn fewer_than_four_bytes_wait_for_more() {
    let mut dec = FrameDecoder::default();
    for n in 0..4 {
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff][..n.min(3)]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
}

#[test]
fn binary_key_too_long_for_its_u16_length_is_an_encode_error() {
    // The binary form stores key lengths in 16 bits; a longer key must not produce a frame whose
    // length fields disagree with its contents.
    let mut cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE);
    cmd.set_serialize_type(SerializeType::RocketMQ);
    cmd.ext_fields_mut().insert("k".repeat(70_000), "v");
    match cmd.encode_to_bytes() {
        Err(CodecError::Malformed(_)) => {}
        Ok(bytes) => panic!(
            "encoded a {}-byte frame that decodes as {:?}",
            bytes.len(),
            RemotingCommand::decode(bytes.slice(4..)).map(|c| c.ext_fields().len())
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
    // The JSON form has no such limit.
    cmd.set_serialize_type(SerializeType::Json);
    let bytes = cmd.encode_to_bytes().unwrap();
    let back = RemotingCommand::decode(bytes.slice(4..)).unwrap();
    assert_eq!(back.ext_fields(), cmd.ext_fields());
}
