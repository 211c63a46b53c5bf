//! Codec benchmarks: PULL_MESSAGE request encoding, pull-body decoding and full frame decoding.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::{
    FrameDecoder, RemotingCommand, RequestCode, ResponseCode, SerializeType,
};
use rocketmq_sync::{Message, MessageConst, MessageExt};

fn pull_request(serialize_type: SerializeType) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE);
    cmd.set_serialize_type(serialize_type);
    let f = cmd.ext_fields_mut();
    f.insert("consumerGroup", "cg");
    f.insert("topic", "T");
    f.insert("queueId", "1");
    f.insert("queueOffset", "100");
    f.insert("maxMsgNums", "32");
    f.insert("sysFlag", "2");
    f.insert("commitOffset", "0");
    f.insert("suspendTimeoutMillis", "15000");
    f.insert("subVersion", "1700000000000");
    f.insert("expressionType", "TAG");
    f.insert("bname", "broker-a");
    cmd
}

/// 32 stored messages with 128-byte bodies, as a broker returns them.
fn pull_body() -> Bytes {
    let mut body = BytesMut::new();
    for i in 0..32i64 {
        let msg = Message::new("TopicTest", vec![b'x'; 128])
            .with_tags("TagA")
            .with_keys(format!("key-{i}"));
        let mut m = MessageExt::from_message(&msg);
        m.put_property(
            MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
            format!("7F0000010000000000000000000{i:05X}"),
        );
        m.set_queue_offset(i);
        m.set_commit_log_offset(i * 300);
        m.set_store_host("127.0.0.1:10911".parse().unwrap());
        m.set_born_host("127.0.0.1:50000".parse().unwrap());
        body.extend_from_slice(&MessageDecoder::encode(&m, false).unwrap());
    }
    body.freeze()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");

    for (name, st) in [
        ("json", SerializeType::Json),
        ("rocketmq", SerializeType::RocketMQ),
    ] {
        let cmd = pull_request(st);
        let mut buf = BytesMut::with_capacity(1024);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("encode_pull_request_{name}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&cmd).encode(&mut buf).unwrap();
                black_box(buf.len());
            })
        });
    }

    let body = pull_body();
    g.throughput(Throughput::Elements(32));
    g.bench_function("decode_pull_body_32x128", |b| {
        b.iter(|| {
            let msgs = MessageDecoder::decodes(black_box(body.clone()));
            black_box(msgs.len());
        })
    });

    let mut response = RemotingCommand::response(ResponseCode::SUCCESS, None);
    let f = response.ext_fields_mut();
    f.insert("suggestWhichBrokerId", "0");
    f.insert("nextBeginOffset", "132");
    f.insert("minOffset", "0");
    f.insert("maxOffset", "200");
    response.set_body(body.clone());
    let frame = response.encode_to_bytes().unwrap();
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(frame.len());
    g.throughput(Throughput::Elements(32));
    g.bench_function("decode_pull_response_frame_32x128", |b| {
        b.iter(|| {
            // As a socket read would: copy the bytes in, then split, parse and decode.
            buf.extend_from_slice(black_box(&frame));
            let mut cmd = decoder.decode(&mut buf).unwrap().unwrap();
            let msgs = MessageDecoder::decodes(cmd.take_body().unwrap());
            black_box(msgs.len());
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
