//! `DefaultMQAdminExt`'s wire format against the in-process `FakeBroker` (name server and
//! broker at one address), for what a real broker does not show: the `_UNIQUE_KEY_QUERY` flag,
//! messages the index returns for a colliding key hash, a broker that does not know a request
//! code, and a body the admin cannot read.

mod support;

use std::sync::Arc;

use parking_lot::Mutex;
use rocketmq_sync::codec::MessageDecoder;
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::testing::{FakeAction, FakeBroker};
use rocketmq_sync::{DefaultMQAdminExt, MessageExt, MessageQueue};
use support::client::unique;
use support::fake::{ok, route_body, start_fake, start_fake_with, Membership, BROKER, TOPIC};

fn admin(fake: &FakeBroker) -> DefaultMQAdminExt {
    let admin = DefaultMQAdminExt::builder()
        .namesrv_addr(fake.addr())
        .instance_name(unique("admin"))
        .build()
        .unwrap();
    admin.start().unwrap();
    admin
}

fn stored(body: &str, props: &[(&str, &str)]) -> Vec<u8> {
    let mut m = MessageExt::new(TOPIC, body.to_owned());
    for (k, v) in props {
        m.put_property(*k, *v);
    }
    MessageDecoder::encode(&m, false).unwrap().to_vec()
}

fn query_answer(records: Vec<u8>) -> FakeAction {
    let mut r = ok().with_body(records);
    r.ext_fields_mut()
        .put("indexLastUpdateTimestamp", 1_700_000_000_123_i64);
    r.ext_fields_mut().put("indexLastUpdatePhyoffset", 4096);
    FakeAction::Respond(r)
}

#[test]
fn a_key_query_keeps_only_messages_whose_keys_match() {
    let seen: Arc<Mutex<Vec<RemotingCommand>>> = Arc::default();
    let log = seen.clone();
    let fake = start_fake(move |req| {
        (req.request_code() == RequestCode::QUERY_MESSAGE).then(|| {
            log.lock().push(req.clone());
            let mut body = stored("exact", &[("KEYS", "k1")]);
            body.extend(stored("among-others", &[("KEYS", "a k1 b")]));
            // Same index hash, other key: the broker cannot tell them apart.
            body.extend(stored("collision", &[("KEYS", "k1x")]));
            body.extend(stored("no-keys", &[]));
            query_answer(body)
        })
    });
    let admin = admin(&fake);
    let r = admin.query_message(TOPIC, "k1", 32, 10, 20).unwrap();
    let bodies: Vec<String> = r
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    assert_eq!(bodies, vec!["exact", "among-others"]);
    assert_eq!(r.index_last_update_timestamp, 1_700_000_000_123);
    assert!(r.messages.iter().all(|m| m.broker_name() == Some(BROKER)));

    let req = seen.lock()[0].clone();
    let f = req.ext_fields();
    assert_eq!(f.get("topic"), Some(TOPIC));
    assert_eq!(f.get("key"), Some("k1"));
    assert_eq!(f.get("maxNum"), Some("32"));
    assert_eq!(f.get("beginTimestamp"), Some("10"));
    assert_eq!(f.get("endTimestamp"), Some("20"));
    assert_eq!(f.get("_UNIQUE_KEY_QUERY"), Some("false"));
    admin.shutdown();
}

#[test]
fn a_unique_key_query_sends_the_flag_and_matches_uniq_key() {
    let id = rocketmq_sync::codec::MessageClientIDSetter::create_uniq_id();
    let other = rocketmq_sync::codec::MessageClientIDSetter::create_uniq_id();
    let seen: Arc<Mutex<Vec<RemotingCommand>>> = Arc::default();
    let log = seen.clone();
    let (want, not) = (id.clone(), other.clone());
    let fake = start_fake(move |req| {
        (req.request_code() == RequestCode::QUERY_MESSAGE).then(|| {
            log.lock().push(req.clone());
            let mut body = stored("other", &[("UNIQ_KEY", not.as_str())]);
            body.extend(stored("wanted", &[("UNIQ_KEY", want.as_str())]));
            query_answer(body)
        })
    });
    let admin = admin(&fake);
    let m = admin.query_message_by_unique_key(TOPIC, &id).unwrap();
    assert_eq!(&m.body()[..], b"wanted");
    let req = seen.lock()[0].clone();
    assert_eq!(req.ext_fields().get("_UNIQUE_KEY_QUERY"), Some("true"));
    assert_eq!(req.ext_fields().get("key"), Some(id.as_str()));
    // The time range starts (a day) before the id's time, and is open at the end.
    let begin: i64 = req
        .ext_fields()
        .get("beginTimestamp")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        begin <= now - 86_000_000 && begin >= now - 87_000_000,
        "{begin}"
    );
    assert_eq!(
        req.ext_fields().get("endTimestamp"),
        Some(i64::MAX.to_string().as_str())
    );
    admin.shutdown();
}

#[test]
fn query_not_found_is_an_empty_result() {
    let fake = start_fake(|req| {
        (req.request_code() == RequestCode::QUERY_MESSAGE).then(|| {
            FakeAction::Respond(RemotingCommand::response(
                ResponseCode::QUERY_NOT_FOUND,
                Some("no message".into()),
            ))
        })
    });
    let admin = admin(&fake);
    assert!(admin
        .query_message(TOPIC, "k", 32, 0, i64::MAX)
        .unwrap()
        .messages
        .is_empty());
    let e = admin.query_message_by_unique_key(TOPIC, "k").unwrap_err();
    assert_eq!(e.client_error_code().map(i32::from), Some(208), "{e}");
    admin.shutdown();
}

#[test]
fn a_broker_without_the_request_code_is_a_typed_error() {
    let membership = Membership::default();
    let addr = membership.addr.clone();
    let fake = start_fake_with(membership, move |req| match req.request_code() {
        RequestCode::GET_MIN_OFFSET | RequestCode::GET_CONSUME_STATS => {
            Some(FakeAction::Respond(RemotingCommand::response(
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                Some("request type not supported".into()),
            )))
        }
        // The group `g` lives on the fake.
        RequestCode::GET_ROUTEINFO_BY_TOPIC
            if req.ext_fields().get("topic") == Some("%RETRY%g") =>
        {
            let addr = addr.get().expect("address known");
            Some(FakeAction::Respond(ok().with_body(route_body(addr))))
        }
        _ => None,
    });
    let admin = admin(&fake);
    let e = admin
        .min_offset(&MessageQueue::new(TOPIC, BROKER, 0))
        .unwrap_err();
    assert_eq!(
        e.response_code(),
        Some(ResponseCode::REQUEST_CODE_NOT_SUPPORTED),
        "{e}"
    );
    assert_eq!(e.broker_addr(), Some(fake.addr().as_str()));
    let e = admin.examine_consume_stats("g", None).unwrap_err();
    assert_eq!(
        e.response_code(),
        Some(ResponseCode::REQUEST_CODE_NOT_SUPPORTED),
        "{e}"
    );
    admin.shutdown();
}

#[test]
fn an_unreadable_body_is_a_codec_error_not_a_panic() {
    let fake = start_fake(|req| match req.request_code() {
        RequestCode::GET_BROKER_CLUSTER_INFO | RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
            Some(FakeAction::Respond(
                ok().with_body(b"{\"brokerAddrTable\":[".to_vec()),
            ))
        }
        RequestCode::VIEW_MESSAGE_BY_ID => Some(FakeAction::Respond(ok().with_body(vec![0; 7]))),
        _ => None,
    });
    let admin = admin(&fake);
    let e = admin.examine_broker_cluster_info().unwrap_err();
    assert!(matches!(e, rocketmq_sync::Error::Codec(_)), "{e}");
    let e = admin.fetch_all_topic_list().unwrap_err();
    assert!(matches!(e, rocketmq_sync::Error::Codec(_)), "{e}");
    let id = MessageDecoder::create_message_id(fake.addr().parse().unwrap(), 77);
    let e = admin.view_message(&id).unwrap_err();
    assert!(e.to_string().contains("no decodable message"), "{e}");
    admin.shutdown();
}
