//! The producer's send path per message, client side, through the public API.
//!
//! - `encode_send_message_v2_{json,rocketmq}`: the SEND_MESSAGE_V2 command alone, built as the
//!   producer builds it (the long header converted to the short one, the body attached) and
//!   encoded into a reused `BytesMut`.
//! - `send_oneway`: `DefaultMQProducer::send_oneway` of a 128-byte message: validation, message
//!   id, queue choice, header, encoding and the hand-off of the frame to the io thread. The call
//!   returns once the frame is queued for the socket, so its time is the caller's cost of a send.
//! - `send_async`: `send_async` with a no-op callback: the same, plus the callback and its entry
//!   in the response table. Only the calls are timed, as for `send_oneway`.
//! - `send_async_completed`: from the first `send_async` of a window of 1024 to the last
//!   callback: the whole round trip per message with 1024 in flight, the io thread, the peer
//!   and the callback thread included (they share the machine's cores with the caller).
//! - `send_sync_roundtrip`: one `send` at a time, answer included.
//!
//! The peer is an in-process broker and name server on a loopback port, written here on the
//! crate's public frame codec: it routes the topic to itself, answers every request that wants
//! an answer with SUCCESS (a send with the header a broker gives), and counts the sends it
//! receives. It stands in for a broker at no cost worth speaking of, so the figures are the
//! client's.
//!
//! The timed sends go in chunks of at most 1024; between chunks, untimed, the bench waits
//! until the peer has received every send (one-way) or every callback has run (async), so the
//! io thread never falls far behind and no send waits for a permit or a full write queue. The
//! io thread still runs during the timed calls, on the other core.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketmq_sync::remoting::protocol::header::{
    SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use rocketmq_sync::remoting::protocol::{
    FrameDecoder, RemotingCommand, RequestCode, ResponseCode, SerializeType,
};
use rocketmq_sync::{DefaultMQProducer, Message, MessageConst, SendStatus};

#[path = "support/done.rs"]
mod done;

use done::Done;

const TOPIC: &str = "BenchTopic";
const BROKER: &str = "bench-broker";
/// The body size of the figures in the project's issue (and `rmq-bench -s 128`).
const BODY: usize = 128;
/// Sends timed back to back before the bench lets the pipeline drain.
const CHUNK: u64 = 1024;

/// The in-process broker and name server. Its threads end with the process.
struct Peer {
    addr: String,
    /// SEND_MESSAGE(_V2) requests received, one-way ones included.
    sends: Arc<Done>,
}

impl Peer {
    fn start() -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap().to_string();
        let sends = Done::new();
        let (route_addr, counter) = (addr.clone(), sends.clone());
        thread::Builder::new()
            .name("peer-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (addr, sends) = (route_addr.clone(), counter.clone());
                    thread::Builder::new()
                        .name("peer-conn".into())
                        .spawn(move || serve(stream, &addr, &sends))
                        .expect("spawn a peer connection thread");
                }
            })
            .expect("spawn the peer's accept thread");
        Peer { addr, sends }
    }
}

/// Reads requests until EOF; the answers to one read go out in one write.
fn serve(mut stream: TcpStream, addr: &str, sends: &Done) {
    let _ = stream.set_nodelay(true);
    let route = route_body(addr);
    let mut decoder = FrameDecoder::default();
    let mut input = BytesMut::with_capacity(256 * 1024);
    let mut output = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        while let Some(req) = decoder
            .decode(&mut input)
            .expect("the client sends valid frames")
        {
            if req.is_response() {
                continue;
            }
            let code = req.request_code();
            let is_send = code == RequestCode::SEND_MESSAGE_V2 || code == RequestCode::SEND_MESSAGE;
            if is_send {
                sends.add_one();
            }
            if req.is_oneway() {
                continue;
            }
            let mut resp = if code == RequestCode::GET_ROUTEINFO_BY_TOPIC {
                if req.ext_fields().get("topic") == Some(TOPIC) {
                    RemotingCommand::response(ResponseCode::SUCCESS, None).with_body(route.clone())
                } else {
                    RemotingCommand::response(
                        ResponseCode::TOPIC_NOT_EXIST,
                        Some("no route".into()),
                    )
                }
            } else {
                let mut r = RemotingCommand::response(ResponseCode::SUCCESS, None);
                if is_send {
                    let h = r.ext_fields_mut();
                    h.put("msgId", "7F00000100002A9F0000000000000000");
                    h.put("queueId", 0);
                    h.put("queueOffset", 0);
                }
                r
            };
            resp.set_opaque(req.opaque());
            resp.mark_response();
            resp.encode(&mut output).expect("encode an answer");
        }
        if !output.is_empty() {
            if stream.write_all(&output).is_err() {
                return;
            }
            output.clear();
        }
    }
}

/// The topic's route: four queues on the peer itself.
fn route_body(addr: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"brokerDatas":[{{"brokerAddrs":{{"0":"{addr}"}},"brokerName":"{BROKER}","cluster":"C"}}],"filterServerTable":{{}},"queueDatas":[{{"brokerName":"{BROKER}","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}}]}}"#
    ))
}

fn started_producer(peer: &Peer) -> DefaultMQProducer {
    let producer = DefaultMQProducer::builder("bench_pg")
        .namesrv_addr(peer.addr.clone())
        .instance_name("producer-send-bench")
        .build()
        .expect("producer settings are valid");
    producer.start().expect("the producer starts");
    // The route is fetched and the connection made before anything is timed.
    let r = producer
        .send(&message())
        .expect("the peer answers a sync send");
    assert_eq!(r.send_status(), SendStatus::SendOk);
    producer
}

fn message() -> Message {
    Message::new(TOPIC, vec![b'x'; BODY])
}

/// Times `send` over `iters` sends, in chunks of at most [`CHUNK`], calling `drain(total)`
/// untimed after each chunk with the number of sends so far.
fn timed_chunks(
    iters: u64,
    sent_before: &mut u64,
    mut send: impl FnMut(),
    drain: impl Fn(u64),
) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let begin = Instant::now();
        for _ in 0..n {
            send();
        }
        spent += begin.elapsed();
        left -= n;
        *sent_before += n;
        drain(*sent_before);
    }
    spent
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("producer");
    g.throughput(Throughput::Elements(1));
    let body = Bytes::from(vec![b'x'; BODY]);
    // A message's properties as the producer sends them: its unique id, and WAIT.
    let mut msg = message();
    msg.put_property(
        MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
        "7F00000100002A9F0000000000000000",
    );
    let properties = msg.properties_string();
    for (name, st) in [
        ("json", SerializeType::Json),
        ("rocketmq", SerializeType::RocketMQ),
    ] {
        let mut buf = BytesMut::with_capacity(1024);
        g.bench_function(format!("encode_send_message_v2_{name}"), |b| {
            b.iter(|| {
                let header = SendMessageRequestHeader {
                    producer_group: "bench_pg".to_owned(),
                    topic: TOPIC.to_owned(),
                    default_topic: "TBW102".to_owned(),
                    default_topic_queue_nums: 4,
                    queue_id: 1,
                    sys_flag: 0,
                    born_timestamp: 1_700_000_000_000,
                    flag: 0,
                    properties: Some(properties.clone()),
                    reconsume_times: Some(0),
                    unit_mode: false,
                    batch: false,
                    max_reconsume_times: None,
                    bname: Some(BROKER.to_owned()),
                };
                let v2 = SendMessageRequestHeaderV2::from(&header);
                let mut cmd =
                    RemotingCommand::request_with_header(RequestCode::SEND_MESSAGE_V2, &v2)
                        .with_body(body.clone());
                cmd.set_serialize_type(st);
                buf.clear();
                cmd.encode(&mut buf).unwrap();
                std::hint::black_box(buf.len());
            })
        });
    }
    g.finish();
}

fn send(c: &mut Criterion) {
    let peer = Peer::start();
    let producer = started_producer(&peer);
    let msg = message();
    let mut g = c.benchmark_group("producer");
    g.throughput(Throughput::Elements(1));

    // Sends the peer has counted so far (the warm-up's included).
    let mut sends = peer.sends.count();
    g.bench_function("send_oneway", |b| {
        b.iter_custom(|iters| {
            timed_chunks(
                iters,
                &mut sends,
                || producer.send_oneway(&msg).expect("queued"),
                |total| peer.sends.wait_for(total),
            )
        })
    });

    let callbacks = Done::new();
    let failed = Arc::new(AtomicU64::new(0));
    let send_async = || {
        let (callbacks, failed) = (callbacks.clone(), failed.clone());
        producer
            .send_async(&msg, move |r| {
                if r.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                callbacks.add_one();
            })
            .expect("in flight");
    };
    let mut calls = 0u64;
    g.bench_function("send_async", |b| {
        b.iter_custom(|iters| {
            timed_chunks(iters, &mut calls, send_async, |total| {
                callbacks.wait_for(total)
            })
        })
    });
    g.bench_function("send_async_completed", |b| {
        b.iter_custom(|iters| {
            let begin = Instant::now();
            timed_chunks(iters, &mut calls, send_async, |total| {
                callbacks.wait_for(total)
            });
            begin.elapsed()
        })
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0, "async sends failed");

    g.bench_function("send_sync_roundtrip", |b| {
        b.iter(|| {
            let r = producer.send(&msg).expect("answered");
            assert_eq!(r.send_status(), SendStatus::SendOk);
        })
    });
    g.finish();
    producer
        .shutdown(Duration::from_secs(10))
        .expect("the producer shuts down");
}

criterion_group!(benches, encode, send);
criterion_main!(benches);
