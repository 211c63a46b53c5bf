//! `RPCHook` and `AclClientRPCHook` against the in-process `FakeBroker`: when hooks run on each
//! kind of call, that a producer and a consumer sign every request they send (to the name
//! server too), and how clients with different hooks share client instances.

mod support;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::remoting::{RemotingClient, RemotingClientConfig};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{
    AclClientRPCHook, DefaultMQProducer, Error, Message, RPCHook, SendStatus, SessionCredentials,
};
use support::fake::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Appends its name to the request's `order` field before, and to the response's remark after.
struct Tagger {
    name: &'static str,
    /// `(addr, request code, the request's order field)` of every response it saw.
    after: Mutex<Vec<(String, i32, String)>>,
}

impl Tagger {
    fn new(name: &'static str) -> Arc<Tagger> {
        Arc::new(Tagger {
            name,
            after: Mutex::new(Vec::new()),
        })
    }
}

impl RPCHook for Tagger {
    fn do_before_request(&self, _addr: &str, request: &mut RemotingCommand) {
        let order = request.ext_fields().get("order").unwrap_or("").to_owned();
        request
            .ext_fields_mut()
            .insert("order", format!("{order}{}", self.name));
    }

    fn do_after_response(
        &self,
        addr: &str,
        request: &RemotingCommand,
        response: &mut RemotingCommand,
    ) {
        let order = request.ext_fields().get("order").unwrap_or("").to_owned();
        self.after
            .lock()
            .push((addr.to_owned(), request.code(), order));
        let remark = response.remark().unwrap_or("").to_owned();
        response.set_remark(Some(format!("{remark}{}", self.name)));
    }
}

#[test]
fn hooks_run_in_order_before_every_call_and_after_every_response() {
    let fake = FakeBroker::echo().unwrap();
    let addr = fake.addr();
    let client = RemotingClient::start(RemotingClientConfig::default()).unwrap();
    let a = Tagger::new("a");
    let b = Tagger::new("b");
    client.register_rpc_hook(a.clone());
    client.register_rpc_hook(b.clone());
    client.register_rpc_hook(a.clone()); // the same Arc again: no effect
    client.register_rpc_hook(Arc::new(|_: &str, req: &mut RemotingCommand| {
        req.ext_fields_mut().insert("closure", "yes");
    }));

    // Sync: the request goes out tagged a, b; the caller sees the response after both hooks.
    let resp = client
        .invoke_sync(&addr, RemotingCommand::request(RequestCode(9100)), TIMEOUT)
        .unwrap();
    let seen = fake.recv_request(TIMEOUT).expect("sync request arrives");
    assert_eq!(seen.ext_fields().get("order"), Some("ab"));
    assert_eq!(seen.ext_fields().get("closure"), Some("yes"));
    assert_eq!(resp.remark(), Some("ab"));

    // Async: the callback sees the response after the hooks.
    let (tx, rx) = unbounded();
    client
        .invoke_async(
            &addr,
            RemotingCommand::request(RequestCode(9101)),
            TIMEOUT,
            move |r| {
                let _ = tx.send(r.map(|r| r.remark().map(str::to_owned)));
            },
        )
        .unwrap();
    let seen = fake.recv_request(TIMEOUT).expect("async request arrives");
    assert_eq!(seen.ext_fields().get("order"), Some("ab"));
    let remark = rx.recv_timeout(TIMEOUT).expect("callback ran").unwrap();
    assert_eq!(remark.as_deref(), Some("ab"));

    // One-way: hooked before, nothing after (there is no response).
    client
        .invoke_oneway(&addr, RemotingCommand::request(RequestCode(9102)), TIMEOUT)
        .unwrap();
    let seen = fake.recv_request(TIMEOUT).expect("one-way request arrives");
    assert_eq!(seen.ext_fields().get("order"), Some("ab"));

    // Each hook saw the two responses once, with the request as it was sent.
    for hook in [&a, &b] {
        let after = hook.after.lock().clone();
        assert_eq!(
            after,
            vec![
                (addr.clone(), 9100, "ab".to_owned()),
                (addr.clone(), 9101, "ab".to_owned()),
            ],
            "hook {}",
            hook.name
        );
    }
    client.shutdown();
}

/// Panics after every response.
struct PanicsAfter;

impl RPCHook for PanicsAfter {
    fn do_before_request(&self, _addr: &str, _request: &mut RemotingCommand) {}

    fn do_after_response(&self, _: &str, _: &RemotingCommand, _: &mut RemotingCommand) {
        panic!("hook panics on purpose");
    }
}

#[test]
fn a_panicking_after_hook_does_not_lose_an_async_callback() {
    let fake = FakeBroker::echo().unwrap();
    let client = RemotingClient::start(RemotingClientConfig::default()).unwrap();
    client.register_rpc_hook(Arc::new(PanicsAfter));
    let tagger = Tagger::new("t");
    client.register_rpc_hook(tagger.clone());
    let (tx, rx) = unbounded();
    client
        .invoke_async(
            &fake.addr(),
            RemotingCommand::request(RequestCode(9103)),
            TIMEOUT,
            move |r| {
                let _ = tx.send(r.map(|r| r.remark().map(str::to_owned)));
            },
        )
        .unwrap();
    // The callback ran with the response, and the hook after the panicking one ran too.
    let remark = rx.recv_timeout(TIMEOUT).expect("callback ran").unwrap();
    assert_eq!(remark.as_deref(), Some("t"));
    client.shutdown();
}

/// Request codes a fake saw.
type Codes = Arc<Mutex<Vec<i32>>>;

/// A fake name server and broker that checks the signature of every request (but route
/// queries, unless `check_namesrv`) like an ACL broker: requests signed by `ak` with `sk` are
/// served, others get NO_PERMISSION. The codes of the requests it checked and served, and of
/// those it refused, go to the returned lists. The topic's queue holds `stored` messages.
fn checking_fake(
    ak: &'static str,
    sk: &'static str,
    stored: usize,
    check_namesrv: bool,
) -> (FakeBroker, Codes, Codes) {
    let verifier = AclClientRPCHook::new(SessionCredentials::new(ak, sk));
    let served: Codes = Arc::default();
    let refused: Codes = Arc::default();
    let (s, r) = (served.clone(), refused.clone());
    let offsets: Arc<Mutex<Option<i64>>> = Arc::default();
    let fake = start_fake(move |req| {
        let f = req.ext_fields();
        let valid = f.get("AccessKey") == Some(ak)
            && f.get("Signature") == Some(verifier.signature(req).as_str());
        let checked = check_namesrv || req.request_code() != RequestCode::GET_ROUTEINFO_BY_TOPIC;
        if checked && !valid {
            r.lock().push(req.code());
            return Some(FakeAction::Respond(RemotingCommand::response(
                ResponseCode::NO_PERMISSION,
                Some("Authentication credentials are invalid".into()),
            )));
        }
        s.lock().push(req.code());
        if let Some(a) = offset_storage(&offsets, req) {
            return Some(a);
        }
        match req.request_code() {
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 => {
                let mut r = ok();
                let h = r.ext_fields_mut();
                h.put("msgId", "0A0000010000000000000000");
                h.put("queueId", 0);
                h.put("queueOffset", 0);
                Some(FakeAction::Respond(r))
            }
            RequestCode::PULL_MESSAGE => {
                Some(pull_action(field(req, "queueOffset"), stored as i64))
            }
            _ => None,
        }
    });
    (fake, served, refused)
}

#[test]
fn a_producer_and_a_consumer_sign_every_request_name_server_included() {
    let (fake, served, refused) = checking_fake("ak", "the-secret", 5, true);
    let hook: Arc<dyn RPCHook> = Arc::new(AclClientRPCHook::new(SessionCredentials::new(
        "ak",
        "the-secret",
    )));
    // The same Arc on both: they share one client instance.
    let producer = DefaultMQProducer::builder("acl_fake_pg")
        .namesrv_addr(fake.addr())
        .instance_name("acl-fake-shared")
        .rpc_hook(hook.clone())
        .build()
        .unwrap();
    producer.start().unwrap();
    let sent = producer.send(&Message::new(TOPIC, "hello")).unwrap();
    assert_eq!(sent.send_status(), SendStatus::SendOk);

    let (tx, rx) = unbounded();
    let consumer = consumer_from_first(&fake, "acl_fake_cg", "acl-fake-shared")
        .rpc_hook(hook)
        .register_message_listener_concurrently(recording(tx))
        .build()
        .unwrap();
    consumer.start().unwrap();
    assert_eq!(consumer.client_id(), producer.client_id());
    let mut got: Vec<String> = (0..5)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).expect("consumed"))
        .collect();
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    consumer.shutdown(TIMEOUT).unwrap();
    producer.shutdown(TIMEOUT).unwrap();

    assert_eq!(
        *refused.lock(),
        Vec::<i32>::new(),
        "unsigned or badly signed requests"
    );
    let served = served.lock().clone();
    for code in [
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        RequestCode::HEART_BEAT,
        RequestCode::SEND_MESSAGE_V2,
        RequestCode::PULL_MESSAGE,
        RequestCode::QUERY_CONSUMER_OFFSET,
        RequestCode::UNREGISTER_CLIENT,
    ] {
        assert!(served.contains(&code.0), "no signed {code:?} in {served:?}");
    }
}

#[test]
fn a_wrong_secret_is_refused_with_no_permission_at_once() {
    // The name server is open, as with a real ACL cluster; the broker refuses.
    let (fake, served, refused) = checking_fake("ak", "the-secret", 0, false);
    let producer = DefaultMQProducer::builder("acl_fake_wrong_pg")
        .namesrv_addr(fake.addr())
        .instance_name("acl-fake-wrong")
        .rpc_hook(Arc::new(AclClientRPCHook::new(SessionCredentials::new(
            "ak", "not-it",
        ))))
        .send_msg_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    producer.start().unwrap();
    let started = std::time::Instant::now();
    let err = producer.send(&Message::new(TOPIC, "x")).unwrap_err();
    let took = started.elapsed();
    assert!(err.is_no_permission(), "{err:?}");
    assert!(!err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("NO_PERMISSION")
            && err
                .to_string()
                .contains("Authentication credentials are invalid"),
        "{err}"
    );
    // Refused at once, not at the 30 s timeout.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(refused.lock().contains(&RequestCode::SEND_MESSAGE_V2.0));
    assert!(!served.lock().contains(&RequestCode::SEND_MESSAGE_V2.0));
    producer.shutdown(TIMEOUT).unwrap();
}

#[test]
fn clients_with_other_hooks_never_share_an_instance() {
    let fake = start_fake(|_| None);
    let hook_a: Arc<dyn RPCHook> = Arc::new(AclClientRPCHook::new(SessionCredentials::new(
        "a",
        "secret-of-a",
    )));
    let hook_b: Arc<dyn RPCHook> = Arc::new(AclClientRPCHook::new(SessionCredentials::new(
        "b",
        "secret-of-b",
    )));
    let producer = |group: &str, instance: Option<&str>, hook: Option<&Arc<dyn RPCHook>>| {
        let mut b = DefaultMQProducer::builder(group).namesrv_addr(fake.addr());
        if let Some(i) = instance {
            b = b.instance_name(i);
        }
        if let Some(h) = hook {
            b = b.rpc_hook(h.clone());
        }
        b.build().unwrap()
    };

    // Default instance names: the first client's hook is the default instance's; a client
    // with the same Arc shares it, any other gets an instance of its own. (No other test of
    // this binary uses the default instance.)
    let with_a = producer("hook_pg_a", None, Some(&hook_a));
    with_a.start().unwrap();
    let with_a_too = producer("hook_pg_a2", None, Some(&hook_a));
    let plain = producer("hook_pg_plain", None, None);
    let with_b = producer("hook_pg_b", None, Some(&hook_b));
    for p in [&with_a_too, &plain, &with_b] {
        p.start().unwrap();
    }
    assert_eq!(
        with_a_too.client_id(),
        with_a.client_id(),
        "same Arc, shared"
    );
    let ids: Vec<String> = [&with_a, &plain, &with_b]
        .iter()
        .map(|p| p.client_id().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    assert_ne!(ids[1], ids[2]);

    // An instance name in use with another hook: refused, naming the hook.
    let named_a = producer("hook_pg_named_a", Some("hook-named"), Some(&hook_a));
    named_a.start().unwrap();
    for (group, hook) in [
        ("hook_pg_named_b", Some(&hook_b)),
        ("hook_pg_named_none", None),
    ] {
        let other = producer(group, Some("hook-named"), hook);
        let err = other.start().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("RPC hook"), "{err}");
        assert!(!format!("{err} {err:?}").contains("secret-of"), "{err:?}");
    }
    let named_a_too = producer("hook_pg_named_a2", Some("hook-named"), Some(&hook_a));
    named_a_too.start().unwrap();
    assert_eq!(named_a_too.client_id(), named_a.client_id());

    for p in [
        &plain,
        &with_a,
        &with_b,
        &with_a_too,
        &named_a,
        &named_a_too,
    ] {
        p.shutdown(TIMEOUT).unwrap();
    }
}

#[test]
fn a_route_query_refused_by_the_name_server_is_the_senders_error() {
    // The name server checks signatures too (5.x, rocketmq-rust with authentication).
    let (fake, _served, refused) = checking_fake("ak", "the-secret", 0, true);
    let producer = DefaultMQProducer::builder("acl_fake_ns_pg")
        .namesrv_addr(fake.addr())
        .instance_name("acl-fake-ns")
        .rpc_hook(Arc::new(AclClientRPCHook::new(SessionCredentials::new(
            "ak", "not-it",
        ))))
        .build()
        .unwrap();
    producer.start().unwrap();
    let err = producer.send(&Message::new(TOPIC, "x")).unwrap_err();
    assert!(refused
        .lock()
        .contains(&RequestCode::GET_ROUTEINFO_BY_TOPIC.0));
    // Not just "no route": the refusal, with its code and remark.
    assert!(err.is_no_permission(), "{err:?}");
    assert!(err.is_topic_not_found(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("NO_PERMISSION") && text.contains("Authentication credentials are invalid"),
        "{text}"
    );
    producer.shutdown(TIMEOUT).unwrap();
}
