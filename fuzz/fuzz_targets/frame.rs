//! The frame decoder on a byte stream that arrives in arbitrary pieces.
//!
//! Input: `[n] [n split bytes] [stream]`. The stream is fed to a [`FrameDecoder`] in reads whose
//! lengths cycle through the split bytes (0 is an empty read), draining every complete frame
//! after each read, as `rmq-io` does. What comes out (the commands, then the first error if any)
//! must not depend on how the stream was split: it is compared with one read of the whole
//! stream. The maximum frame length is the default, or a small one the first byte picks, so the
//! too-large path is reached too. Every decoded command must survive the round-trip checks.
#![no_main]

use bytes::BytesMut;
use fuzz_support::check_command_round_trip;
use libfuzzer_sys::fuzz_target;
use rocketmq_sync::remoting::protocol::{FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN};

/// What a stream decodes to: the commands, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<RemotingCommand>,
    /// The error that stopped decoding, as text (`CodecError` has no `PartialEq`).
    error: Option<String>,
    /// Bytes left undecoded when the stream ended without an error.
    pending: usize,
}

fn run(max: usize, stream: &[u8], splits: &[u8]) -> Outcome {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        commands: Vec::new(),
        error: None,
        pending: 0,
    };
    // Only zeros (or no split bytes) would never make progress: read everything at once.
    let whole = splits.iter().all(|&s| s == 0);
    let mut reads = splits.iter().cycle().map(|&s| usize::from(s));
    let mut rest = stream;
    loop {
        let n = if whole {
            rest.len()
        } else {
            reads.next().unwrap_or(0).min(rest.len())
        };
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(cmd)) => out.commands.push(cmd),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
        if rest.is_empty() {
            out.pending = buf.len();
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(head & 0x0F).min(rest.len());
    let (splits, stream) = rest.split_at(n);
    let max = match head >> 4 {
        0xF => 64,
        0xE => 4096,
        _ => DEFAULT_MAX_FRAME_LEN,
    };
    let whole = run(max, stream, &[]);
    let split = run(max, stream, splits);
    assert_eq!(split, whole, "the split stream decodes differently");
    for cmd in &whole.commands {
        check_command_round_trip(cmd);
    }
});
