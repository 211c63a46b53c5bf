//! RemotingClient against the in-process FakeBroker: round trips, concurrency, faults.
//!
//! Every wait is a `recv_timeout` (or a condition polled up to a deadline), never a bare sleep.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::remoting::{RemotingClient, RemotingClientConfig, RequestContext};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::Error;

const SILENT: RequestCode = RequestCode(9001);
const CLOSE: RequestCode = RequestCode(9002);
const GARBAGE: RequestCode = RequestCode(9003);
const OVERSIZED: RequestCode = RequestCode(9004);
const ECHO: RequestCode = RequestCode(9005);
const SLOW: RequestCode = RequestCode(9006);

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = env_logger::builder().is_test(true).try_init();
    });
}

fn config() -> RemotingClientConfig {
    RemotingClientConfig {
        callback_threads: 2,
        ..RemotingClientConfig::default()
    }
}

fn client() -> RemotingClient {
    init();
    RemotingClient::start(config()).unwrap()
}

fn success_with_body(req: &RemotingCommand) -> RemotingCommand {
    let mut resp = RemotingCommand::response(ResponseCode::SUCCESS, None);
    if let Some(b) = req.body() {
        resp.set_body(b.clone());
    }
    resp
}

/// A fake whose behaviour depends on the request code.
fn scripted_broker() -> FakeBroker {
    FakeBroker::start(|req| match RequestCode(req.code()) {
        SILENT => FakeAction::NoResponse,
        CLOSE => FakeAction::CloseConnection,
        GARBAGE => FakeAction::SendRaw(b"\x00\x00\x00\x02hi".to_vec()),
        OVERSIZED => FakeAction::SendRaw(vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4]),
        SLOW => FakeAction::RespondAfter(Duration::from_millis(300), success_with_body(req)),
        _ => FakeAction::Respond(success_with_body(req)),
    })
    .unwrap()
}

fn request(code: RequestCode) -> RemotingCommand {
    RemotingCommand::request(code)
}

/// An address nobody listens on.
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

/// Polls `cond` until it holds or `within` elapses.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn assert_closed(err: &Error, reason_contains: &str) {
    match err {
        Error::ConnectionClosed { reason, .. } => assert!(
            reason.contains(reason_contains),
            "reason {reason:?} should mention {reason_contains:?}"
        ),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
}

#[test]
fn sync_round_trip() {
    let broker = scripted_broker();
    let client = client();
    let req = request(ECHO).with_body(&b"hello"[..]);
    let opaque = req.opaque();
    let resp = client
        .invoke_sync(&broker.addr(), req, Duration::from_secs(3))
        .unwrap();
    assert!(resp.is_response());
    assert_eq!(resp.opaque(), opaque);
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(resp.body().map(|b| &b[..]), Some(&b"hello"[..]));
    assert_eq!(client.connection_count(), 1);
    assert_eq!(client.pending_count(), 0);
    assert_eq!(broker.request_count(), 1);
}

#[test]
fn responses_are_ok_whatever_their_code() {
    let broker = FakeBroker::start(|_| {
        FakeAction::Respond(RemotingCommand::response(
            ResponseCode::SYSTEM_BUSY,
            Some("busy".into()),
        ))
    })
    .unwrap();
    let client = client();
    let resp = client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_BUSY);
    assert_eq!(resp.remark(), Some("busy"));
}

#[test]
fn thousand_concurrent_async_calls_complete_exactly_once() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (client, addr, tx) = (client.clone(), addr.clone(), tx.clone());
            s.spawn(move || {
                for i in 0..250u32 {
                    let id = t * 1000 + i;
                    let req = request(ECHO).with_body(id.to_be_bytes().to_vec());
                    let tx = tx.clone();
                    client
                        .invoke_async(&addr, req, Duration::from_secs(10), move |r| {
                            tx.send((id, r)).unwrap();
                        })
                        .unwrap();
                }
            });
        }
    });
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let (id, r) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("all callbacks within 10 s");
        let resp = r.unwrap();
        assert_eq!(resp.body().map(|b| &b[..]), Some(&id.to_be_bytes()[..]));
        assert!(seen.insert(id), "callback for {id} ran twice");
    }
    assert_eq!(seen.len(), 1000);
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "no callback runs twice"
    );
    assert_eq!(client.pending_count(), 0);
    assert_eq!(client.connection_count(), 1);
    assert_eq!(broker.request_count(), 1000);
}

#[test]
fn oneway_reaches_the_broker() {
    let broker = scripted_broker();
    let client = client();
    client
        .invoke_oneway(
            &broker.addr(),
            request(ECHO).with_body(&b"fire"[..]),
            Duration::from_secs(3),
        )
        .unwrap();
    let got = broker
        .recv_request(Duration::from_secs(3))
        .expect("one-way request arrives");
    assert!(got.is_oneway());
    assert_eq!(got.code(), ECHO.0);
    assert_eq!(got.body().map(|b| &b[..]), Some(&b"fire"[..]));
    assert_eq!(client.pending_count(), 0);
}

#[test]
fn sync_call_times_out_when_no_response_comes() {
    let broker = scripted_broker();
    let client = client();
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = client
        .invoke_sync(&broker.addr(), request(SILENT), timeout)
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(1200),
        "{elapsed:?}"
    );
    assert!(eventually(Duration::from_secs(2), || client
        .pending_count()
        == 0));
    // The timeout closed the connection; the next call opens a new one.
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
}

#[test]
fn async_callback_gets_timeout_from_the_sweep() {
    let broker = scripted_broker();
    let client = client();
    let (tx, rx) = unbounded();
    let start = Instant::now();
    client
        .invoke_async(
            &broker.addr(),
            request(SILENT),
            Duration::from_millis(300),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    let r = rx
        .recv_timeout(Duration::from_millis(300 + 1200))
        .expect("the sweep fails the call");
    let err = r.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(client.pending_count(), 0);
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn broker_closing_the_connection_fails_pending_calls_at_once() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    let start = Instant::now();
    client
        .invoke_async(&addr, request(SILENT), Duration::from_secs(20), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    let err = client
        .invoke_sync(&addr, request(CLOSE), Duration::from_secs(20))
        .unwrap_err();
    assert_closed(&err, "closed by peer");
    let async_err = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("async call failed promptly")
        .unwrap_err();
    assert_closed(&async_err, "closed by peer");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.pending_count(), 0);
    assert!(eventually(Duration::from_secs(2), || client
        .connection_count()
        == 0));

    // Reconnect on demand.
    let resp = client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(client.connection_count(), 1);
}

fn codec_error_closes_only_that_connection(code: RequestCode, reason: &str) {
    let bad = scripted_broker();
    let good = scripted_broker();
    let client = client();
    // Warm up the healthy connection first so it is open while the other one fails.
    client
        .invoke_sync(&good.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    let (tx, rx) = unbounded();
    client
        .invoke_async(
            &bad.addr(),
            request(SILENT),
            Duration::from_secs(20),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    let start = Instant::now();
    let err = client
        .invoke_sync(&bad.addr(), request(code), Duration::from_secs(20))
        .unwrap_err();
    assert_closed(&err, "codec error");
    assert_closed(&err, reason);
    let async_err = rx
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .unwrap_err();
    assert_closed(&async_err, reason);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(!client.is_connected(&bad.addr()));

    // The other connection is untouched.
    assert!(client.is_connected(&good.addr()));
    let resp = client
        .invoke_sync(&good.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(good.connection_count(), 1, "no reconnect was needed");
    assert_eq!(client.pending_count(), 0);
}

#[test]
fn garbage_bytes_close_that_connection_only() {
    init();
    codec_error_closes_only_that_connection(GARBAGE, "malformed");
}

#[test]
fn oversized_length_prefix_closes_that_connection_only() {
    init();
    codec_error_closes_only_that_connection(OVERSIZED, "exceeds the maximum");
}

#[test]
fn close_connection_then_reconnect_on_demand() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    let (tx, rx) = unbounded();
    client
        .invoke_async(&addr, request(SILENT), Duration::from_secs(20), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || client
        .pending_count()
        == 1));
    client.close_connection(&addr);
    let err = rx
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .unwrap_err();
    assert_closed(&err, "closed by the client");
    assert!(eventually(Duration::from_secs(2), || broker
        .connection_count()
        == 0));
    client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || broker
        .connection_count()
        == 1));
}

#[test]
fn connect_listener_hears_every_new_connection_and_only_those() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded::<String>();
    client.set_connect_listener(move |a| tx.send(a.to_owned()).unwrap());
    for _ in 0..3 {
        client
            .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
            .unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![addr.clone()]);
    // A reconnect after the connection closed is a new connection.
    client.close_connection(&addr);
    assert!(eventually(Duration::from_secs(2), || !client.is_connected(&addr)));
    client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![addr.clone()]);
    // A failed connect is not.
    let dead = dead_addr();
    assert!(client
        .invoke_sync(&dead, request(ECHO), Duration::from_secs(3))
        .is_err());
    assert!(rx.try_recv().is_err());
}

#[test]
fn too_many_async_requests_is_rejected_without_calling_back() {
    init();
    let broker = scripted_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        async_permits: 4,
        ..config()
    })
    .unwrap();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    for _ in 0..4 {
        let tx = tx.clone();
        client
            .invoke_async(&addr, request(SLOW), Duration::from_secs(10), move |r| {
                tx.send(r).unwrap()
            })
            .unwrap();
    }
    let called = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&called);
    let err = client
        .invoke_async(&addr, request(SLOW), Duration::from_secs(10), move |_| {
            flag.store(true, Ordering::SeqCst)
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyRequests { limit: 4 }),
        "{err:?}"
    );
    for _ in 0..4 {
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    }
    // Permits come back once the callbacks have returned.
    let (tx2, rx2) = unbounded();
    assert!(eventually(Duration::from_secs(2), || {
        let tx2 = tx2.clone();
        client
            .invoke_async(&addr, request(ECHO), Duration::from_secs(5), move |r| {
                tx2.send(r).unwrap()
            })
            .is_ok()
    }));
    rx2.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(
        !called.load(Ordering::SeqCst),
        "rejected callback must never run"
    );
}

#[test]
fn broker_request_is_answered_by_a_processor_on_the_callback_pool() {
    const NOTIFY: RequestCode = RequestCode::NOTIFY_CONSUMER_IDS_CHANGED;
    const PANICS: RequestCode = RequestCode(9100);
    const UNKNOWN: RequestCode = RequestCode(9101);
    let broker = scripted_broker();
    let client = client();
    let (thread_tx, thread_rx) = unbounded();
    client.register_processor(
        NOTIFY,
        Arc::new(move |ctx: &RequestContext, req: RemotingCommand| {
            let name = std::thread::current().name().map(str::to_string);
            thread_tx.send((name, ctx.peer_addr().to_string())).unwrap();
            Some(
                RemotingCommand::response(ResponseCode::SUCCESS, None)
                    .with_body(req.body().cloned().unwrap_or_default()),
            )
        }),
    );
    client.register_processor(
        PANICS,
        Arc::new(
            |_: &RequestContext, _: RemotingCommand| -> Option<RemotingCommand> {
                panic!("processor exploded")
            },
        ),
    );
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();

    let push = request(NOTIFY).with_body(&b"ids"[..]);
    assert_eq!(broker.push_request(&push), 1);
    let resp = broker
        .recv_response(Duration::from_secs(3))
        .expect("answered");
    assert_eq!(resp.opaque(), push.opaque());
    assert!(resp.is_response());
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(resp.body().map(|b| &b[..]), Some(&b"ids"[..]));
    let (name, peer) = thread_rx.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(
        name.as_deref().unwrap_or("").starts_with("rmq-cb"),
        "{name:?}"
    );
    assert_eq!(peer, broker.addr());

    let unknown = request(UNKNOWN);
    broker.push_request(&unknown);
    let resp = broker.recv_response(Duration::from_secs(3)).unwrap();
    assert_eq!(resp.opaque(), unknown.opaque());
    assert_eq!(
        resp.response_code(),
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED
    );
    assert_eq!(resp.remark(), Some(" request type 9101 not supported"));

    let panics = request(PANICS);
    broker.push_request(&panics);
    let resp = broker.recv_response(Duration::from_secs(3)).unwrap();
    assert_eq!(resp.opaque(), panics.opaque());
    assert_eq!(resp.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(resp.remark().unwrap_or("").contains("processor exploded"));

    // The client still works after a processor panic.
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(broker.received_responses().len(), 3);
}

#[test]
fn namesrv_failover_skips_a_dead_address() {
    init();
    let live = scripted_broker();
    let dead = dead_addr();
    // The list is shuffled and the start index random: use several clients so the dead address
    // comes first for some of them.
    for _ in 0..6 {
        let client = RemotingClient::start(RemotingClientConfig {
            callback_threads: 1,
            ..RemotingClientConfig::default()
        })
        .unwrap();
        client.update_namesrv_addr_list(vec![dead.clone(), live.addr()]);
        let resp = client
            .invoke_namesrv_sync(request(ECHO), Duration::from_secs(3))
            .unwrap();
        assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
        assert_eq!(client.chosen_namesrv_addr(), Some(live.addr()));
        // The chosen one is reused.
        client
            .invoke_namesrv_sync(request(ECHO), Duration::from_secs(3))
            .unwrap();
        assert_eq!(client.connection_count(), 1);
        client.shutdown();
    }
}

#[test]
fn namesrv_all_dead_is_a_connect_error_listing_them() {
    let client = client();
    let (a, b) = (dead_addr(), dead_addr());
    client.update_namesrv_addr_list(vec![a.clone(), b.clone()]);
    let err = client
        .invoke_namesrv_sync(request(ECHO), Duration::from_secs(3))
        .unwrap_err();
    match &err {
        Error::Connect { addr, .. } => {
            assert!(addr.contains(&a) && addr.contains(&b), "{addr}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    let empty = self::client();
    let err = empty
        .invoke_namesrv_sync(request(ECHO), Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[test]
fn connect_to_a_closed_port_fails_fast() {
    let client = client();
    let start = Instant::now();
    let err = client
        .invoke_sync(&dead_addr(), request(ECHO), Duration::from_secs(3))
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    // Async: the call returns the error and the callback never runs.
    let called = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&called);
    let err = client
        .invoke_async(
            &dead_addr(),
            request(ECHO),
            Duration::from_secs(3),
            move |_| flag.store(true, Ordering::SeqCst),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    client.shutdown();
    assert!(!called.load(Ordering::SeqCst));
    assert_eq!(client.pending_count(), 0);
}

#[test]
fn shutdown_fails_pending_calls_and_joins() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    client
        .invoke_async(&addr, request(SILENT), Duration::from_secs(30), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    let (sync_tx, sync_rx) = unbounded();
    let sync_client = client.clone();
    let sync_addr = addr.clone();
    let waiter = std::thread::Builder::new()
        .name("sync-waiter".into())
        .spawn(move || {
            let r = sync_client.invoke_sync(&sync_addr, request(SILENT), Duration::from_secs(30));
            sync_tx.send(r).unwrap();
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || client
        .pending_count()
        == 2));

    let start = Instant::now();
    client.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    client.shutdown(); // idempotent

    let err = rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap()
        .unwrap_err();
    assert_closed(&err, "shut down");
    let err = sync_rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap()
        .unwrap_err();
    assert_closed(&err, "shut down");
    waiter.join().unwrap();
    assert_eq!(client.pending_count(), 0);
    assert_eq!(client.connection_count(), 0);
    assert!(eventually(Duration::from_secs(2), || broker
        .connection_count()
        == 0));

    let err = client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
}

#[test]
fn dropping_the_last_handle_shuts_down() {
    let broker = scripted_broker();
    let client = client();
    let (tx, rx) = unbounded();
    client
        .invoke_async(
            &broker.addr(),
            request(SILENT),
            Duration::from_secs(30),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || client
        .pending_count()
        == 1));
    drop(client);
    let err = rx
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .unwrap_err();
    assert_closed(&err, "shut down");
    assert!(eventually(Duration::from_secs(2), || broker
        .connection_count()
        == 0));
}

#[test]
fn idle_connections_are_closed() {
    init();
    let broker = scripted_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        channel_max_idle: Duration::from_millis(200),
        ..config()
    })
    .unwrap();
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(client.connection_count(), 1);
    assert!(eventually(Duration::from_secs(3), || client
        .connection_count()
        == 0));
    // And it comes back on demand.
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
}

#[test]
fn broker_shutdown_is_seen_as_eof() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    client
        .invoke_async(&addr, request(SILENT), Duration::from_secs(30), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || broker
        .request_count()
        == 1));
    broker.shutdown();
    let err = rx
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
    assert_eq!(client.pending_count(), 0);
}

/// Many threads calling at once on an address with no connection all get their responses: one
/// connects, the others wait for it or find its connection. (The register race this guards
/// against is a few instructions wide and this never caught it; the unit test
/// `remoting::client::tests::a_call_that_finds_a_new_connection_succeeds` pins it down.)
#[test]
fn concurrent_first_calls_on_a_fresh_address_all_succeed() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    const THREADS: usize = 8;
    for round in 0..200 {
        // No call is in flight here, so closing fails nothing; the address is fresh again.
        client.close_connection(&addr);
        let barrier = std::sync::Barrier::new(THREADS);
        let failures: Vec<Error> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        client.invoke_sync(&addr, request(ECHO), Duration::from_secs(5))
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap().err())
                .collect()
        });
        assert!(
            failures.is_empty(),
            "round {round}: concurrent first calls failed: {failures:?}"
        );
    }
    assert_eq!(broker.accepted_count(), 200, "one connection per round");
}

/// A response frame with `opaque` and `body`, as raw bytes.
fn response_frame(opaque: i32, body: &'static [u8]) -> Vec<u8> {
    let mut resp = RemotingCommand::response(ResponseCode::SUCCESS, None).with_body(body);
    resp.set_opaque(opaque);
    resp.mark_response();
    resp.encode_to_bytes().unwrap().to_vec()
}

/// Opaques are sequential, so any peer can guess one that is pending on another connection. A
/// response completes a call only when it comes from the connection the request left by.
#[test]
fn a_response_from_another_connection_does_not_complete_a_call() {
    init();
    let (release_tx, release_rx) = unbounded::<()>();
    let a = FakeBroker::start(move |_| {
        let resp = RemotingCommand::response(ResponseCode::SUCCESS, None).with_body(&b"from A"[..]);
        FakeAction::RespondWhen(release_rx.clone(), resp)
    })
    .unwrap();
    // B answers every request with a forged response carrying A's opaque, then its own.
    let target = Arc::new(std::sync::atomic::AtomicI32::new(-1));
    let forged_opaque = Arc::clone(&target);
    let b = FakeBroker::start(move |req| {
        let mut raw = response_frame(forged_opaque.load(Ordering::SeqCst), b"forged by B");
        raw.extend(response_frame(req.opaque(), b"from B"));
        FakeAction::SendRaw(raw)
    })
    .unwrap();
    let client = client();
    let (tx, rx) = unbounded();
    let to_a = request(ECHO);
    target.store(to_a.opaque(), Ordering::SeqCst);
    client
        .invoke_async(&a.addr(), to_a, Duration::from_secs(10), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || a.request_count() == 1));

    // B's own response follows the forged one on B's connection: once B's call has its answer,
    // the loop has seen the forgery.
    let from_b = client
        .invoke_sync(&b.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(from_b.body().map(|b| &b[..]), Some(&b"from B"[..]));
    assert_eq!(client.pending_count(), 1, "A's call must still be waiting");
    assert_eq!(client.unmatched_responses(), 1);

    drop(release_tx);
    let from_a = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("A's call completes")
        .unwrap();
    assert_eq!(from_a.body().map(|b| &b[..]), Some(&b"from A"[..]));
    assert_eq!(client.unmatched_responses(), 1);
}

/// A peer that stops answering without closing (a half-open connection, a wedged broker): one
/// sync timeout closes the connection, as Java's `closeSocketIfTimeout` does, so its other calls
/// fail at once and the next call opens a new connection.
#[test]
fn a_sync_timeout_closes_the_connection_and_the_next_call_reconnects() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    client
        .invoke_async(&addr, request(SILENT), Duration::from_secs(30), move |r| {
            tx.send(r).unwrap()
        })
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || broker
        .request_count()
        == 1));
    let err = client
        .invoke_sync(&addr, request(SILENT), Duration::from_millis(300))
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let other = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the other call on the timed-out connection fails with it")
        .unwrap_err();
    assert_closed(&other, "timed out");
    assert_eq!(client.pending_count(), 0);
    client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert_eq!(
        broker.accepted_count(),
        2,
        "the call after the timeout reconnected"
    );
}

/// A name server that stalls: the call to it times out and the next name-server call goes to
/// the other one.
#[test]
fn a_stalled_namesrv_is_left_for_the_other_one() {
    init();
    let stalled = Arc::new(std::sync::Mutex::new(String::new()));
    let namesrv = |stalled: Arc<std::sync::Mutex<String>>| {
        let me = Arc::new(std::sync::Mutex::new(String::new()));
        let my_addr = Arc::clone(&me);
        let broker = FakeBroker::start(move |req| {
            if *stalled.lock().unwrap() == *my_addr.lock().unwrap() {
                FakeAction::NoResponse
            } else {
                FakeAction::Respond(success_with_body(req))
            }
        })
        .unwrap();
        *me.lock().unwrap() = broker.addr();
        broker
    };
    let (ns1, ns2) = (namesrv(Arc::clone(&stalled)), namesrv(Arc::clone(&stalled)));
    let client = client();
    client.update_namesrv_addr_list(vec![ns1.addr(), ns2.addr()]);
    client
        .invoke_namesrv_sync(request(ECHO), Duration::from_secs(3))
        .unwrap();
    let first = client
        .chosen_namesrv_addr()
        .expect("a name server was chosen");
    let (bad, good) = if first == ns1.addr() {
        (&ns1, &ns2)
    } else {
        (&ns2, &ns1)
    };
    *stalled.lock().unwrap() = bad.addr();
    let err = client
        .invoke_namesrv_sync(request(ECHO), Duration::from_millis(300))
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.broker_addr(), Some(&*bad.addr()));
    let before = good.request_count();
    client
        .invoke_namesrv_sync(request(ECHO), Duration::from_secs(3))
        .expect("the next call goes to the name server that answers");
    assert_eq!(client.chosen_namesrv_addr(), Some(good.addr()));
    assert_eq!(good.request_count(), before + 1);
}

/// Only reads count as activity for the idle close: writes into a peer that never answers
/// (heartbeats into a half-open connection) do not keep a connection open.
#[test]
fn writes_alone_do_not_keep_an_idle_connection_open() {
    init();
    let broker = scripted_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        channel_max_idle: Duration::from_millis(300),
        ..config()
    })
    .unwrap();
    let addr = broker.addr();
    // One-way requests get no answer: the connection is written to but never read from.
    let reconnected = eventually(Duration::from_secs(5), || {
        client
            .invoke_oneway(&addr, request(ECHO), Duration::from_secs(3))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20)); // pacing, not synchronisation
        broker.accepted_count() >= 2
    });
    assert!(
        reconnected,
        "the connection was never closed as idle: {} connection(s) accepted",
        broker.accepted_count()
    );
}

const STOP_READING: RequestCode = RequestCode(9007);

/// A fake that stops reading a connection once it gets [`STOP_READING`], and echoes otherwise.
fn wedging_broker() -> FakeBroker {
    FakeBroker::start(|req| match RequestCode(req.code()) {
        STOP_READING => FakeAction::StopReading,
        _ => FakeAction::Respond(success_with_body(req)),
    })
    .unwrap()
}

/// A 256 KiB request.
fn big_request() -> RemotingCommand {
    static BODY: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| bytes::Bytes::from(vec![7u8; 256 * 1024]));
    request(ECHO).with_body(body.clone())
}

/// A peer that stops reading: once the socket buffers and `max_queued_bytes` are full, calls
/// are refused at once with `WriteQueueFull` rather than queued; the connection is closed after
/// `write_stall_timeout` and its calls fail; the next call reconnects.
#[test]
fn a_peer_that_stops_reading_fills_the_queue_then_loses_the_connection() {
    init();
    let broker = wedging_broker();
    let limit = 1024 * 1024;
    let client = RemotingClient::start(RemotingClientConfig {
        max_queued_bytes: limit,
        write_stall_timeout: Duration::from_secs(2),
        ..config()
    })
    .unwrap();
    let addr = broker.addr();
    client
        .invoke_oneway(&addr, request(STOP_READING), Duration::from_secs(3))
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || broker
        .request_count()
        == 1));

    // Keep sending until the connection is given up. 256 x 256 KiB = 64 MiB: far more than
    // loopback socket buffers plus the 1 MiB bound.
    let (tx, rx) = unbounded();
    let (mut accepted, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first_end = loop {
        if let Ok(r) = rx.try_recv() {
            break r;
        }
        assert!(
            accepted < 256,
            "all {accepted} requests of 256 KiB were queued for a peer that reads nothing"
        );
        assert!(
            Instant::now() < deadline,
            "the stuck connection was never closed"
        );
        let tx = tx.clone();
        match client.invoke_async(&addr, big_request(), Duration::from_secs(30), move |r| {
            let _ = tx.send(r);
        }) {
            Ok(()) => accepted += 1,
            Err(Error::WriteQueueFull { limit: l, .. }) => {
                assert_eq!(l, limit);
                refused += 1;
                std::thread::sleep(Duration::from_millis(5)); // pacing, not synchronisation
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    };
    assert!(refused > 0, "no request was refused");
    // The calls on the stuck connection fail with it, long before their 30 s; a call sent
    // after the close went out on a new connection and succeeds.
    assert_closed(&first_end.unwrap_err(), "not reading");
    for i in 1..accepted {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => assert_closed(&e, "not reading"),
            Err(_) => panic!("call {i} of {accepted} never ended"),
        }
    }
    assert_eq!(client.pending_count(), 0);
    client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert!(broker.accepted_count() >= 2);
}

/// An async call that times out gives its permit back, but its frame may still be queued: the
/// byte bound, not the permits, must stop a caller that keeps sending from growing the queue.
#[test]
fn timed_out_async_calls_cannot_grow_the_write_queue() {
    init();
    let broker = wedging_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        async_permits: 4,
        max_queued_bytes: 1024 * 1024,
        write_stall_timeout: Duration::from_secs(60),
        ..config()
    })
    .unwrap();
    let addr = broker.addr();
    client
        .invoke_oneway(&addr, request(STOP_READING), Duration::from_secs(3))
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || broker
        .request_count()
        == 1));
    let (tx, rx) = unbounded();
    let (mut accepted, mut refused_in_a_row) = (0, 0);
    // Once the socket buffers are full, the queue never drains: every later call is refused.
    while refused_in_a_row < 100 {
        assert!(
            accepted < 256,
            "{accepted} requests of 256 KiB were queued for a peer that reads nothing"
        );
        let tx = tx.clone();
        match client.invoke_async(&addr, big_request(), Duration::from_millis(20), move |r| {
            let _ = tx.send(r);
        }) {
            Ok(()) => {
                accepted += 1;
                refused_in_a_row = 0;
            }
            // All permits taken: wait for a call to time out.
            Err(Error::TooManyRequests { .. }) => {
                let r = rx
                    .recv_timeout(Duration::from_secs(5))
                    .expect("a call ends");
                assert!(r.unwrap_err().is_timeout());
            }
            Err(Error::WriteQueueFull { .. }) => {
                refused_in_a_row += 1;
                std::thread::sleep(Duration::from_millis(2)); // pacing, not synchronisation
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
}

/// Requests from a peer wait for the callback pool in a bounded queue: beyond it they are
/// answered `SYSTEM_BUSY` ("[OVERLOAD]...") at once, one-way ones are dropped, and none of them
/// reaches the processor.
#[test]
fn broker_requests_beyond_the_bound_are_answered_system_busy() {
    const BLOCKS: RequestCode = RequestCode(9102);
    init();
    let broker = scripted_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        callback_threads: 1,
        max_pending_broker_requests: 4,
        ..config()
    })
    .unwrap();
    let (release_tx, release_rx) = unbounded::<()>();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    client.register_processor(
        BLOCKS,
        Arc::new(move |_: &RequestContext, req: RemotingCommand| {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            Some(RemotingCommand::response_to(
                &req,
                ResponseCode::SUCCESS,
                None,
            ))
        }),
    );
    client
        .invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(3))
        .unwrap();

    // One runs, three wait: the bound is reached; the next sixteen are refused at once.
    let pushed: Vec<RemotingCommand> = (0..20).map(|_| request(BLOCKS)).collect();
    for p in &pushed {
        assert_eq!(broker.push_request(p), 1);
    }
    for p in &pushed[4..] {
        let resp = broker
            .recv_response(Duration::from_secs(3))
            .expect("a request beyond the bound is answered at once");
        assert_eq!(resp.opaque(), p.opaque());
        assert_eq!(resp.response_code(), ResponseCode::SYSTEM_BUSY);
        assert!(
            resp.remark().unwrap_or("").starts_with("[OVERLOAD]"),
            "{:?}",
            resp.remark()
        );
    }
    // One-way requests beyond the bound are dropped.
    for _ in 0..5 {
        let mut oneway = request(BLOCKS);
        oneway.mark_oneway();
        broker.push_request(&oneway);
    }
    assert!(eventually(Duration::from_secs(3), || client
        .rejected_broker_requests()
        == 21));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only one runs at a time");

    // Released, the four accepted ones are answered, and new requests are accepted again.
    drop(release_tx);
    let mut answered: Vec<i32> = (0..4)
        .map(|_| {
            let resp = broker.recv_response(Duration::from_secs(3)).unwrap();
            assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
            resp.opaque()
        })
        .collect();
    answered.sort();
    let mut expected: Vec<i32> = pushed[..4].iter().map(|p| p.opaque()).collect();
    expected.sort();
    assert_eq!(answered, expected);
    let again = request(BLOCKS);
    broker.push_request(&again);
    let resp = broker.recv_response(Duration::from_secs(3)).unwrap();
    assert_eq!(resp.opaque(), again.opaque());
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(client.rejected_broker_requests(), 21);
}

/// A peer that floods frames does not keep `rmq-io` to itself: a call to another peer is
/// registered, sent and answered while the flood goes on.
#[test]
fn a_flooding_peer_does_not_starve_other_connections() {
    init();
    let flooder = TcpListener::bind("127.0.0.1:0").unwrap();
    let flood_addr = flooder.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let flood = std::thread::Builder::new()
        .name("flooder".into())
        .spawn(move || {
            use std::io::Write;
            let (mut s, _) = flooder.accept().unwrap();
            // Answers to nothing, back to back: 1 MiB per write.
            let one = response_frame(i32::MIN, b"flood");
            let chunk: Vec<u8> = one.repeat((1 << 20) / one.len());
            let mut written = 0usize;
            while !stopping.load(Ordering::Relaxed) && s.write_all(&chunk).is_ok() {
                written += chunk.len();
            }
            written
        })
        .unwrap();
    let broker = scripted_broker();
    let client = client();
    client
        .invoke_oneway(&flood_addr, request(ECHO), Duration::from_secs(3))
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || client
        .unmatched_responses()
        > 10_000));

    let result = client.invoke_sync(&broker.addr(), request(ECHO), Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    client.shutdown();
    let flooded = flood.join().unwrap();
    result.unwrap_or_else(|e| {
        panic!("the call to the other peer failed while {flooded} bytes flooded in: {e:?}")
    });
}

/// `disable_callback_executor`: a successful call's callback runs on the io thread itself; a
/// failed one (here a timeout) still runs on the callback pool. Every callback runs once.
#[test]
fn with_the_callback_executor_disabled_successes_call_back_on_the_io_thread() {
    init();
    let broker = scripted_broker();
    let client = RemotingClient::start(RemotingClientConfig {
        disable_callback_executor: true,
        ..config()
    })
    .unwrap();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    for i in 0..100u32 {
        let tx = tx.clone();
        let req = request(ECHO).with_body(i.to_be_bytes().to_vec());
        client
            .invoke_async(&addr, req, Duration::from_secs(10), move |r| {
                let thread = std::thread::current().name().map(str::to_owned);
                tx.send((Some(i), r.is_ok(), thread)).unwrap();
            })
            .unwrap();
    }
    let tx2 = tx.clone();
    client
        .invoke_async(
            &addr,
            request(SILENT),
            Duration::from_millis(200),
            move |r| {
                let thread = std::thread::current().name().map(str::to_owned);
                tx2.send((None, r.is_ok(), thread)).unwrap();
            },
        )
        .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..101 {
        let (id, ok, thread) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("every callback runs");
        match id {
            Some(id) => {
                assert!(ok, "call {id} succeeded");
                assert_eq!(thread.as_deref(), Some("rmq-io"), "call {id}");
                assert!(seen.insert(id), "call {id} called back twice");
            }
            None => {
                assert!(!ok, "the silent call timed out");
                assert_eq!(
                    thread.as_deref(),
                    Some("rmq-cb"),
                    "a failure runs on the pool"
                );
            }
        }
    }
    assert_eq!(seen.len(), 100);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

/// A peer that answers and closes at once: the answer and the hang-up can arrive in one read
/// event. The call completes, and the connection is seen closed without any further traffic
/// (the short-read shortcut must not skip the EOF).
#[test]
fn an_answer_followed_at_once_by_a_close_completes_and_the_close_is_seen() {
    init();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = std::thread::Builder::new()
        .name("test-peer".into())
        .spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut frame).unwrap();
            let req = RemotingCommand::decode(bytes::Bytes::from(frame)).unwrap();
            s.write_all(&response_frame(req.opaque(), b"last words"))
                .unwrap();
            // Dropping the socket sends the FIN right behind the answer.
        })
        .unwrap();
    let client = client();
    let resp = client
        .invoke_sync(&addr, request(ECHO), Duration::from_secs(5))
        .expect("the answer before the close arrives");
    assert_eq!(resp.body().map(|b| &b[..]), Some(&b"last words"[..]));
    peer.join().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || client.connection_count() == 0),
        "the close was never noticed"
    );
}

/// Sync callers write their requests into the socket themselves while the loop writes async
/// ones and the rest of large sync requests that the socket buffer did not take at once: the
/// frames must never interleave. Every call gets its own echo back, once.
#[test]
fn sync_calls_written_by_their_callers_never_interleave_with_queued_frames() {
    let broker = scripted_broker();
    let client = client();
    let addr = broker.addr();
    let (tx, rx) = unbounded();
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let (client, addr) = (client.clone(), addr.clone());
            s.spawn(move || {
                for i in 0..150u32 {
                    let id = t * 1000 + i;
                    // Every 50th request is 2 MiB: more than a socket buffer takes at once.
                    let mut body = id.to_be_bytes().to_vec();
                    if i % 50 == 49 {
                        body.resize(2 << 20, (id % 251) as u8);
                    }
                    let resp = client
                        .invoke_sync(
                            &addr,
                            request(ECHO).with_body(body.clone()),
                            Duration::from_secs(30),
                        )
                        .unwrap_or_else(|e| panic!("sync call {id}: {e}"));
                    assert_eq!(resp.body().map(|b| &b[..]), Some(&body[..]), "call {id}");
                }
            });
        }
        let (client, addr, tx) = (client.clone(), addr.clone(), tx.clone());
        s.spawn(move || {
            for i in 0..450u32 {
                let id = 10_000 + i;
                let tx = tx.clone();
                client
                    .invoke_async(
                        &addr,
                        request(ECHO).with_body(id.to_be_bytes().to_vec()),
                        Duration::from_secs(30),
                        move |r| {
                            tx.send((id, r)).unwrap();
                        },
                    )
                    .unwrap();
            }
        });
    });
    let mut seen = HashSet::new();
    for _ in 0..450 {
        let (id, r) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every async call completes");
        let resp = r.unwrap_or_else(|e| panic!("async call {id}: {e}"));
        assert_eq!(resp.body().map(|b| &b[..]), Some(&id.to_be_bytes()[..]));
        assert!(seen.insert(id), "call {id} called back twice");
    }
    assert_eq!(
        client.connection_count(),
        1,
        "no codec error closed the connection"
    );
    assert_eq!(broker.request_count(), 900);
    assert_eq!(client.pending_count(), 0);
}
