//! Client-side helpers for the real-broker tests: unique names, a raw remoting client, route
//! queries, topic creation and reading a topic back with raw PULL_MESSAGE requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rocketmq_sync::{MessageExt, MessageQueue};

use rocketmq_sync::codec::{MessageDecoder, TopicRouteData};
use rocketmq_sync::remoting::protocol::header::{
    CreateTopicRequestHeader, GetRouteInfoRequestHeader, PullMessageRequestHeader,
    PullMessageResponseHeader,
};
use rocketmq_sync::remoting::protocol::{RemotingCommand, RequestCode, ResponseCode};
use rocketmq_sync::remoting::{RemotingClient, RemotingClientConfig};
use rocketmq_sync::{DefaultMQProducer, Message};

use super::broker::Cluster;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn producer(namesrv: &str, group: &str) -> DefaultMQProducer {
    let p = DefaultMQProducer::builder(group)
        .namesrv_addr(namesrv)
        .instance_name(unique("inst"))
        .build()
        .expect("valid producer config");
    p.start().expect("producer starts");
    p
}

/// Asks the name server for `topic`'s route with a raw request.
pub fn route(
    client: &RemotingClient,
    namesrv: &str,
    topic: &str,
) -> Result<TopicRouteData, String> {
    let req = RemotingCommand::request_with_header(
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        },
    );
    let resp = client
        .invoke_sync(namesrv, req, TIMEOUT)
        .map_err(|e| e.to_string())?;
    if resp.response_code() != ResponseCode::SUCCESS {
        return Err(format!("{} {:?}", resp.response_code(), resp.remark()));
    }
    TopicRouteData::decode(resp.body().expect("route body")).map_err(|e| e.to_string())
}

/// A raw PULL_MESSAGE of up to 32 messages of `mq` from `offset`, with the subscription `*` in
/// the request and no suspension (the broker answers at once).
pub fn pull_request(mq: &MessageQueue, offset: i64) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: "raw_pull_reader".to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        // SUBSCRIPTION flag: the broker takes the subscription from this request.
        sys_flag: 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".to_owned()),
        sub_version: 0,
        expression_type: Some("TAG".to_owned()),
        bname: Some(mq.broker_name.clone()),
    };
    RemotingCommand::request_with_header(RequestCode::PULL_MESSAGE, &header)
}

/// Reads every message of `mq` from offset 0 with raw PULL_MESSAGE requests.
pub fn pull_all(client: &RemotingClient, broker_addr: &str, mq: &MessageQueue) -> Vec<MessageExt> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = pull_request(mq, offset);
        let resp = client
            .invoke_sync(broker_addr, req, TIMEOUT)
            .expect("pull answered");
        let code = resp.response_code();
        let rh: PullMessageResponseHeader = resp.decode_header().expect("pull response header");
        match code {
            ResponseCode::SUCCESS => {
                let body = resp.body().cloned().expect("FOUND has a body");
                let msgs = MessageDecoder::decodes(body);
                assert!(!msgs.is_empty(), "FOUND with no decodable message");
                out.extend(msgs);
                offset = rh.next_begin_offset;
            }
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY
                if rh.next_begin_offset > offset =>
            {
                offset = rh.next_begin_offset
            }
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => break,
            other => panic!("pull of {mq} failed: {other} {:?}", resp.remark()),
        }
    }
    out
}

/// Every message of `topic` on every broker of the route.
pub fn read_topic(client: &RemotingClient, namesrv: &str, topic: &str) -> Vec<MessageExt> {
    let r = route(client, namesrv, topic).expect("topic has a route");
    let mut all = Vec::new();
    for q in &r.queue_datas {
        let addr = r
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.master_addr())
            .expect("broker has a master")
            .to_owned();
        for id in 0..q.read_queue_nums {
            all.extend(pull_all(
                client,
                &addr,
                &MessageQueue::new(topic, &q.broker_name, id),
            ));
        }
    }
    all
}

/// Reads until `expected` messages are there (the broker dispatches to the consume queue
/// asynchronously) or the deadline passes.
pub fn read_topic_until(
    client: &RemotingClient,
    namesrv: &str,
    topic: &str,
    expected: usize,
) -> Vec<MessageExt> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = read_topic(client, namesrv, topic);
        if all.len() >= expected || Instant::now() > deadline {
            return all;
        }
        std::thread::yield_now();
    }
}

/// Creates `topic` with `queues` queues on every broker of the cluster (what `mqadmin updateTopic -c`
/// does) and waits until the name server's route lists them all.
pub fn create_topic_on_all_brokers(
    client: &RemotingClient,
    cluster: &Cluster,
    topic: &str,
    queues: i32,
) {
    for b in &cluster.brokers {
        let header = CreateTopicRequestHeader {
            topic: topic.to_owned(),
            default_topic: "TBW102".to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            ..Default::default()
        };
        let req =
            RemotingCommand::request_with_header(RequestCode::UPDATE_AND_CREATE_TOPIC, &header);
        let resp = client
            .invoke_sync(&b.addr, req, TIMEOUT)
            .expect("create topic answered");
        assert_eq!(
            resp.response_code(),
            ResponseCode::SUCCESS,
            "{:?}",
            resp.remark()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = route(client, &cluster.namesrv_addr, topic) {
            if r.queue_datas.len() == cluster.brokers.len() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the route of {topic} never listed every broker"
        );
        std::thread::yield_now();
    }
}

pub fn raw_client() -> RemotingClient {
    RemotingClient::start(RemotingClientConfig::default()).expect("remoting client starts")
}

/// Sends every message asynchronously with at most `window` in flight. A send the broker
/// refused with SYSTEM_BUSY (its flow control: the message was not stored) is sent again
/// synchronously, as an application backing off would, so each message is stored once; any
/// other failure panics.
pub fn send_all_async(p: &DefaultMQProducer, msgs: &[Message], window: usize) {
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, rocketmq_sync::Result<()>)>();
    let settle = |(i, r): (usize, rocketmq_sync::Result<()>)| {
        let mut result = r;
        for _ in 0..5 {
            match result {
                Ok(()) => return,
                Err(e) if e.is_system_busy() => {
                    result = p.send(&msgs[i]).map(|_| ());
                }
                Err(e) => panic!("send {i} failed: {e}"),
            }
        }
        result.unwrap_or_else(|e| panic!("send {i} still refused after 5 tries: {e}"));
    };
    let mut in_flight = 0;
    for (i, msg) in msgs.iter().enumerate() {
        if in_flight == window {
            settle(
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("async send completes"),
            );
            in_flight -= 1;
        }
        loop {
            let tx = tx.clone();
            match p.send_async(msg, move |r| tx.send((i, r.map(|_| ()))).unwrap()) {
                Ok(()) => break,
                Err(e) if e.is_too_many_requests() => std::thread::yield_now(),
                Err(e) => panic!("async send {i} refused: {e}"),
            }
        }
        in_flight += 1;
    }
    for _ in 0..in_flight {
        settle(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("async send completes"),
        );
    }
}
