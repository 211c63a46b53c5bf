//! `MessageDecoder` on raw pull bodies: the input is the body of a pull response, decoded with
//! and without reading bodies (compressed records are inflated under the default bound).
//! See `check_batch` for what must hold.
#![no_main]

use bytes::Bytes;
use fuzz_support::check_batch;
use libfuzzer_sys::fuzz_target;
use rocketmq_sync::codec::{MessageDecoder, DEFAULT_MAX_BODY_SIZE};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    for read_body in [true, false] {
        let batch = MessageDecoder::decode_batch(body.clone(), read_body, DEFAULT_MAX_BODY_SIZE);
        check_batch(data, &batch, read_body, DEFAULT_MAX_BODY_SIZE);
    }
    // The message id parser takes text from users and brokers alike.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok((host, offset)) = MessageDecoder::decode_message_id(s) {
            let id = MessageDecoder::create_message_id(host, offset);
            assert_eq!(
                MessageDecoder::decode_message_id(&id).unwrap(),
                (host, offset)
            );
        }
    }
});
