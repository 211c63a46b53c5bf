//! `MessageDecoder` on compressed bodies (zlib, LZ4, ZSTD), structured so that every input
//! reaches a decompressor.
//!
//! Input: `[mode] [max: 2] [pos: 2] [xor] [payload]`.
//! * `mode` bits 0-1 pick the compression (legacy zlib flag, zlib, LZ4, ZSTD); bit 2 set: the
//!   target compresses `payload` itself (then flips `xor` into the byte at `pos`, if `xor` is not
//!   0); clear: `payload` is the stored body as is; bit 3 set: bodies are not read.
//! * `max`: with its top bit set, the bound on the inflated body (`max & 0x7FFF` bytes);
//!   otherwise the default bound.
//!
//! The compressed record sits between two plain records. Whatever the body, the plain records
//! decode and the compressed one either decodes (within the bound) or is skipped alone; a body
//! the target compressed itself, unflipped, decodes to the payload exactly when it fits the bound.
#![no_main]

use bytes::Bytes;
use fuzz_support::{check_batch, Compression, Record};
use libfuzzer_sys::fuzz_target;
use rocketmq_sync::codec::{MessageDecoder, DEFAULT_MAX_BODY_SIZE};
use rocketmq_sync::CodecError;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, payload) = data.split_at(6);
    let mode = head[0];
    let compression = Compression::ALL[usize::from(mode & 3)];
    let self_compressed = mode & 4 != 0;
    let read_body = mode & 8 == 0;
    let max = if head[1] & 0x80 != 0 {
        usize::from(u16::from_be_bytes([head[1] & 0x7F, head[2]]))
    } else {
        DEFAULT_MAX_BODY_SIZE
    };
    let pos = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let xor = head[5];

    let mut stored = if self_compressed {
        compression.compress(payload)
    } else {
        payload.to_vec()
    };
    let flipped = self_compressed && xor != 0 && !stored.is_empty();
    if flipped {
        let i = pos % stored.len();
        stored[i] ^= xor;
    }

    let plain = |queue_offset| Record {
        sys_flag: 0,
        queue_offset,
        body: b"plain",
        topic: b"T",
        properties: b"TAGS\x01TagA\x02KEYS\x01k1",
    };
    let mut body = Vec::new();
    plain(0).encode(&mut body);
    Record {
        sys_flag: compression.sys_flag(),
        queue_offset: 1,
        body: &stored,
        topic: b"T",
        properties: b"UNIQ_KEY\x01ABC",
    }
    .encode(&mut body);
    plain(2).encode(&mut body);

    let batch = MessageDecoder::decode_batch(Bytes::from(body.clone()), read_body, max);
    check_batch(&body, &batch, read_body, max);
    assert!(
        batch.stopped.is_none(),
        "a record with a true TOTALSIZE stopped the batch"
    );
    assert_eq!(batch.messages.len() + batch.skipped.len(), 3);
    let offsets: Vec<i64> = batch.messages.iter().map(|m| m.queue_offset()).collect();
    assert_eq!(
        offsets.first(),
        Some(&0),
        "the plain record before was lost"
    );
    assert_eq!(offsets.last(), Some(&2), "the plain record after was lost");
    if !read_body {
        assert_eq!(offsets, [0, 1, 2], "an unread body cannot fail to decode");
        return;
    }
    if let Some(m) = batch.messages.iter().find(|m| m.queue_offset() == 1) {
        assert!(m.body().len() <= max);
        if self_compressed && !flipped {
            assert_eq!(
                &m.body()[..],
                payload,
                "the body did not inflate to the payload"
            );
        }
    } else if self_compressed && !flipped {
        assert!(
            payload.len() > max,
            "a valid {compression:?} body within the bound was skipped"
        );
        assert!(
            matches!(batch.skipped[0].error, CodecError::Decompress(_)),
            "an oversized body is a decompression error, got {}",
            batch.skipped[0].error
        );
    }
});
