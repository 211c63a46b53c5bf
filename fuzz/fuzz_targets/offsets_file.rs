//! The broadcasting consumer's local offsets file (`offsets.json`, Java's
//! `OffsetSerializeWrapper`), read as `LocalFileOffsetStore` reads it: bytes, lossily made UTF-8,
//! then parsed. A file that parses is rewritten (pretty form, as the store persists it) to text
//! that parses to the same table, and setting an offset reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocketmq_sync::remoting::protocol::body::OffsetSerializeWrapper;

fuzz_target!(|data: &[u8]| {
    let content = String::from_utf8_lossy(data);
    let Ok(mut wrapper) = OffsetSerializeWrapper::decode(content.as_bytes()) else {
        return;
    };
    let text = wrapper.encode_pretty().expect("a decoded table encodes");
    let back = OffsetSerializeWrapper::decode(text.as_bytes()).expect("the rewritten file parses");
    assert_eq!(back, wrapper, "the rewritten file holds another table");
    if let Some((mq, offset)) = wrapper.offset_table.first().cloned() {
        assert_eq!(wrapper.get(&mq), Some(offset));
        wrapper.put(&mq, offset.wrapping_add(1));
        assert_eq!(wrapper.get(&mq), Some(offset.wrapping_add(1)));
    }
});
