//! The ROCKETMQ binary header serialization: the input is the header of a frame (serialize
//! type 1). A header that decodes must survive the round-trip checks (decode → encode → decode
//! equal, encoding stable, typed headers re-read).
#![no_main]

use fuzz_support::{check_command_round_trip, unprefixed_frame};
use libfuzzer_sys::fuzz_target;
use rocketmq_sync::remoting::protocol::{RemotingCommand, SerializeType};

fuzz_target!(|data: &[u8]| {
    let frame = unprefixed_frame(SerializeType::RocketMQ.code(), data, b"body");
    if let Ok(cmd) = RemotingCommand::decode(frame) {
        assert_eq!(cmd.serialize_type(), SerializeType::RocketMQ);
        assert_eq!(cmd.body().map(|b| &b[..]), Some(&b"body"[..]));
        check_command_round_trip(&cmd);
    }
});
