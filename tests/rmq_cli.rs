//! The `rmq` binary against the shared real-broker cluster: every command and every mqadmin
//! alias runs as the built binary, and what it reports is checked against the broker (raw
//! pulls, routes) or against another `rmq` command. Exit codes for bad input are checked too.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::broker::{wait_until, Cluster};
use support::client::{raw_client, read_topic_until, unique};

/// What one run of `rmq` printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{self:?}"))
    }
    /// One JSON value per stdout line.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }
}

fn rmq_cmd(namesrv: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rmq"));
    cmd.env_remove("NAMESRV_ADDR")
        .arg("-n")
        .arg(namesrv)
        .args(args);
    cmd
}

/// Runs `rmq -n NAMESRV ARGS` with `stdin` as its input.
fn rmq_with_input(namesrv: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = rmq_cmd(namesrv, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rmq starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    let out = child.wait_with_output().expect("rmq runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8"),
    }
}

fn rmq(namesrv: &str, args: &[&str]) -> Run {
    rmq_with_input(namesrv, args, "")
}

/// Runs `rmq` and requires exit code 0.
fn ok(namesrv: &str, args: &[&str]) -> Run {
    let run = rmq(namesrv, args);
    assert_eq!(run.code, 0, "rmq {args:?} failed: {run:?}");
    assert!(run.stderr.lines().count() <= 1, "{run:?}");
    run
}

/// Runs `rmq` and requires `code`, with a one-line `rmq: ...` error on stderr.
fn fails(namesrv: &str, args: &[&str], code: i32) -> Run {
    let run = rmq(namesrv, args);
    assert_eq!(run.code, code, "rmq {args:?}: {run:?}");
    if code != 2 || run.stderr.starts_with("rmq:") {
        assert_eq!(run.stderr.lines().count(), 1, "one error line: {run:?}");
        assert!(run.stderr.starts_with("rmq: "), "{run:?}");
    }
    run
}

/// A topic with `queues` read and write queues on the cluster, made by `rmq topic create`.
fn new_topic(namesrv: &str, queues: u32) -> String {
    let topic = unique("RmqCli");
    let q = queues.to_string();
    let run = ok(
        namesrv,
        &[
            "topic", "create", "-t", &topic, "-r", &q, "-w", &q, "--json",
        ],
    );
    let v = run.json();
    assert_eq!(v["topic"], topic.as_str());
    assert_eq!(v["read_queue_nums"], queues);
    assert!(!v["brokers"].as_array().expect("brokers").is_empty(), "{v}");
    topic
}

fn bodies(msgs: &[Value]) -> BTreeSet<String> {
    msgs.iter()
        .map(|m| m["body"].as_str().expect("text body").to_owned())
        .collect()
}

#[test]
fn sent_from_arguments_and_stdin_is_stored_and_consumed_by_push_and_poll() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 4);

    let from_args = ok(
        ns,
        &[
            "send", "-t", &topic, "-c", "TagA", "-k", "key1", "--json", "a1", "a2", "a3",
        ],
    )
    .json();
    assert_eq!(from_args["sent"], 3);
    let from_stdin = rmq_with_input(ns, &["send", "-t", &topic, "--json"], "s1\ns2\n");
    assert_eq!(from_stdin.code, 0, "{from_stdin:?}");
    let from_stdin = from_stdin.json();
    assert_eq!(from_stdin["sent"], 2);
    let mut sent_ids = BTreeSet::new();
    for r in from_args["results"]
        .as_array()
        .into_iter()
        .chain(from_stdin["results"].as_array())
        .flatten()
    {
        assert_eq!(r["send_status"], "SEND_OK", "{r}");
        sent_ids.insert(r["msg_id"].as_str().expect("msg_id").to_owned());
    }
    assert_eq!(sent_ids.len(), 5);
    let want: BTreeSet<String> = ["a1", "a2", "a3", "s1", "s2"].map(String::from).into();

    // The broker holds exactly those bodies (read back with raw pulls, not with rmq).
    let stored = read_topic_until(&raw_client(), ns, &topic, 5);
    let stored: BTreeSet<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    assert_eq!(stored, want);

    // The table for people has mqadmin's headings and one row per message.
    let table = ok(ns, &["send", "-t", &topic, "t1"]);
    assert!(table.stdout.starts_with("#Broker Name"), "{table:?}");
    assert_eq!(table.stdout.lines().count(), 2, "{table:?}");

    // Push: every message once, with its tag and key, ids as the send reported them.
    let push = ok(
        ns,
        &[
            "consume", "-t", &topic, "--from", "first", "--print", "--json", "--count", "6",
            "--idle", "60",
        ],
    );
    let msgs = push.json_lines();
    assert_eq!(msgs.len(), 6, "{push:?}");
    let mut want_all = want.clone();
    want_all.insert("t1".into());
    assert_eq!(bodies(&msgs), want_all);
    for m in &msgs {
        if m["body"].as_str().unwrap().starts_with('a') {
            assert_eq!(
                (m["tags"].as_str(), m["keys"].as_str()),
                (Some("TagA"), Some("key1"))
            );
            assert!(sent_ids.contains(m["msg_id"].as_str().unwrap()), "{m}");
        }
    }

    // Poll, with a named group: --count 4 hands out (and commits) 4; the next run gets the
    // remaining 2 and then stops at --idle.
    let group = unique("rmq_cli_poll");
    let first = ok(
        ns,
        &[
            "consume", "-t", &topic, "-g", &group, "--poll", "--from", "first", "--print",
            "--json", "--count", "4", "--idle", "60",
        ],
    );
    let rest = ok(
        ns,
        &[
            "consume", "-t", &topic, "-g", &group, "--poll", "--print", "--json", "--idle", "3",
        ],
    );
    let mut seen = bodies(&first.json_lines());
    assert_eq!(seen.len(), 4, "{first:?}");
    let rest = rest.json_lines();
    assert_eq!(rest.len(), 2, "{rest:?}");
    seen.extend(bodies(&rest));
    assert_eq!(
        seen, want_all,
        "each message exactly once over the two runs"
    );

    // Counting without --print: one JSON summary.
    let counted = ok(
        ns,
        &[
            "consume", "-t", &topic, "--from", "first", "--json", "--count", "6", "--idle", "60",
        ],
    )
    .json();
    assert_eq!(counted["consumed"], 6);
}

#[test]
fn consume_stops_at_idle_and_reports_an_incomplete_count() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 2);
    ok(ns, &["send", "-t", &topic, "x1", "x2"]);
    let run = rmq(
        ns,
        &[
            "consume", "-t", &topic, "--from", "first", "--json", "--count", "5", "--idle", "3",
        ],
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.json()["consumed"], 2);
    assert!(run.stderr.contains("incomplete: 2 of 5"), "{run:?}");

    // The run's own group keeps its offsets in a temporary directory, removed at the end.
    let group = run.json()["group"].as_str().expect("group").to_owned();
    assert!(
        !std::env::temp_dir().join(&group).exists(),
        "{group}'s offsets"
    );
}

#[test]
fn consume_from_last_skips_what_was_stored_before_it_started() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 2);
    ok(ns, &["send", "-t", &topic, "old1", "old2"]);
    for poll in [false, true] {
        let mut args = vec![
            "consume", "-t", &topic, "--from", "last", "--print", "--json", "--count", "2",
            "--idle", "60",
        ];
        if poll {
            args.push("--poll");
        }
        let mut child = rmq_cmd(ns, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rmq consume starts");
        // The consumer's start line comes after the instant `--from last` counts from.
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("start line");
        assert!(line.contains("consuming"), "{line:?}");
        let new = if poll {
            ["pnew1", "pnew2"]
        } else {
            ["new1", "new2"]
        };
        ok(ns, &["send", "-t", &topic, new[0], new[1]]);
        let out = child.wait_with_output().expect("rmq consume ends");
        assert!(out.status.success(), "{out:?}");
        let run = Run {
            code: 0,
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::new(),
        };
        assert_eq!(
            bodies(&run.json_lines()),
            new.map(String::from).into(),
            "poll={poll}"
        );
    }
}

#[test]
fn topic_create_route_and_list_with_their_mqadmin_aliases() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let broker = &cluster.brokers[0];

    // rmq topic create: the route shows the queue counts asked for.
    let t1 = new_topic(ns, 3);
    let route = ok(ns, &["topic", "route", "-t", &t1, "--json"]).json();
    let qd = &route["queueDatas"][0];
    assert_eq!(
        (qd["readQueueNums"].as_i64(), qd["writeQueueNums"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        broker.addr.as_str()
    );
    let table = ok(ns, &["topic", "route", "-t", &t1]).stdout;
    assert!(
        table.contains("#Read Queues") && table.contains(&broker.addr),
        "{table}"
    );

    // updateTopic -b ADDR with different read and write counts, then -c CLUSTER.
    let t2 = unique("RmqCliAlias");
    let created = ok(
        ns,
        &[
            "updateTopic",
            "-b",
            &broker.addr,
            "-t",
            &t2,
            "-r",
            "2",
            "-w",
            "5",
        ],
    );
    assert!(
        created
            .stdout
            .contains(&format!("create topic to {} success.", broker.addr)),
        "{created:?}"
    );
    let route = ok(ns, &["topicRoute", "-t", &t2, "--json"]).json();
    let qd = &route["queueDatas"][0];
    assert_eq!(
        (qd["readQueueNums"].as_i64(), qd["writeQueueNums"].as_i64()),
        (Some(2), Some(5))
    );
    let t3 = unique("RmqCliCluster");
    let on_cluster = ok(
        ns,
        &[
            "updateTopic",
            "-c",
            "DefaultCluster",
            "-t",
            &t3,
            "-r",
            "1",
            "-w",
            "1",
            "--json",
        ],
    )
    .json();
    assert_eq!(on_cluster["brokers"][0], broker.addr.as_str());

    // topic list and topicList know all three.
    let listed = ok(ns, &["topic", "list", "--json"]).json();
    let names: BTreeSet<&str> = listed["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [&t1, &t2, &t3] {
        assert!(names.contains(t.as_str()), "{t} in {names:?}");
    }
    let plain = ok(ns, &["topicList"]).stdout;
    assert!(plain.lines().any(|l| l == t2), "{plain}");

    // A topic the name server does not know: exit 3.
    fails(ns, &["topic", "route", "-t", &unique("NoSuchTopic")], 3);
    fails(
        ns,
        &["consume", "-t", &unique("NoSuchTopic"), "--idle", "1"],
        3,
    );
}

#[test]
fn progress_shows_the_committed_offsets_and_the_lag() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 2);
    let group = unique("rmq_cli_progress");
    ok(ns, &["send", "-t", &topic, "p1", "p2", "p3", "p4"]);
    // --poll commits exactly what it handed out: 3 of the 4.
    ok(
        ns,
        &[
            "consume", "-t", &topic, "-g", &group, "--poll", "--from", "first", "--count", "3",
            "--idle", "60",
        ],
    );

    let v = ok(ns, &["progress", &group, "--json"]).json();
    assert_eq!(v["group"], group.as_str());
    let queues = v["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 2, "{v}");
    let sum = |f: &str| queues.iter().map(|q| q[f].as_i64().unwrap()).sum::<i64>();
    assert_eq!(sum("broker_offset"), 4, "{v}");
    assert_eq!(sum("consumer_offset"), 3, "{v}");
    assert_eq!(v["diff_total"], 1, "{v}");

    let table = ok(ns, &["consumerProgress", "-g", &group]).stdout;
    assert!(table.starts_with("#Topic"), "{table}");
    assert!(
        table.contains("#Consumer Offset") && table.contains("Diff Total: 1"),
        "{table}"
    );

    // -t narrows to one topic; a group that never consumed is not found.
    let one = ok(ns, &["progress", &group, "-t", &topic, "--json"]).json();
    assert_eq!(one["queues"].as_array().unwrap().len(), 2);
    fails(ns, &["progress", &unique("rmq_cli_nogroup")], 3);

    // A consumer online: its queues show its client IP, as mqadmin's Client IP column.
    let online = unique("rmq_cli_online");
    let mut child = rmq_cmd(
        ns,
        &[
            "consume", "-t", &topic, "-g", &online, "--from", "first", "--idle", "120",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("rmq consume starts");
    let mut last = None;
    let shown = wait_until(Duration::from_secs(30), || {
        let run = rmq(ns, &["progress", &online, "--json"]);
        let ips: Vec<Value> = if run.code == 0 {
            run.json()["queues"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|q| q["topic"] == topic.as_str())
                .map(|q| q["client_ip"].clone())
                .collect()
        } else {
            Vec::new()
        };
        last = Some(run);
        ips.len() == 2 && ips.iter().all(|ip| ip == "127.0.0.1")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(shown, "no client IP for every queue of {topic}: {last:?}");
}

#[test]
fn messages_are_found_by_key_offset_id_and_unique_key() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 2);
    let key = unique("k");
    let sent = ok(
        ns,
        &[
            "send", "-t", &topic, "-k", &key, "--json", "body-one", "body-two",
        ],
    )
    .json();
    let results = sent["results"].as_array().unwrap();
    let offset_id = results[0]["offset_msg_id"].as_str().unwrap().to_owned();
    let uniq_id = results[1]["msg_id"].as_str().unwrap().to_owned();

    // The broker indexes keys in the background: ask until both are found.
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let run = rmq(
                ns,
                &["message", "query", "-t", &topic, "-k", &key, "--json"],
            );
            let done = run.code == 0
                && run.json()["messages"]
                    .as_array()
                    .is_some_and(|m| m.len() == 2);
            found = Some(run);
            done
        }),
        "key {key} not found: {found:?}"
    );
    let found = found.unwrap().json();
    assert_eq!(
        bodies(found["messages"].as_array().unwrap()),
        ["body-one", "body-two"].map(String::from).into()
    );
    let table = ok(ns, &["queryMsgByKey", "-t", &topic, "-k", &key]).stdout;
    assert!(
        table.starts_with("#Message ID") && table.contains(&offset_id),
        "{table}"
    );

    // By offset msgId, positional and as mqadmin's -i.
    let one = ok(ns, &["message", "get", &offset_id, "--json"]).json();
    assert_eq!(
        (one["body"].as_str(), one["topic"].as_str()),
        (Some("body-one"), Some(topic.as_str()))
    );
    assert_eq!(one["keys"], key.as_str());
    let shown = ok(ns, &["queryMsgById", "-i", &offset_id]).stdout;
    assert!(
        shown.contains("OffsetID:") && shown.contains("body-one"),
        "{shown}"
    );
    // By unique key, with the topic.
    let two = ok(ns, &["message", "get", "-t", &topic, &uniq_id, "--json"]).json();
    assert_eq!(two["body"], "body-two");

    // Bad input and missing messages.
    fails(ns, &["message", "get", "not-a-msg-id"], 2);
    fails(ns, &["queryMsgById", "-i", "ABCDEF"], 2);
    // Well formed, at the broker's address, past anything it stored.
    let missing = format!("{}7FFFFFFFFFFFFF00", &offset_id[..16]);
    fails(ns, &["message", "get", &missing], 3);
    fails(
        ns,
        &[
            "message",
            "get",
            "-t",
            &topic,
            "00000000000000000000000000000000",
        ],
        3,
    );
    fails(
        ns,
        &["message", "query", "-t", &topic, "-k", &unique("nokey")],
        3,
    );
}

#[test]
fn cluster_lists_the_brokers_with_their_addresses() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let v = ok(ns, &["cluster", "--json"]).json();
    for b in &cluster.brokers {
        let listed = v["clusters"]["DefaultCluster"]
            .as_array()
            .expect("DefaultCluster")
            .iter()
            .any(|e| e["broker_name"] == b.name.as_str() && e["addrs"]["0"] == b.addr.as_str());
        assert!(listed, "{} at {} in {v}", b.name, b.addr);
    }
    let table = ok(ns, &["clusterList"]).stdout;
    assert!(table.starts_with("#Cluster Name"), "{table}");
    assert!(table.contains(&cluster.brokers[0].addr), "{table}");
    fails(ns, &["cluster", "-c", "NoSuchCluster"], 3);
}

#[test]
fn usage_errors_and_an_unreachable_name_server_have_their_exit_codes() {
    // Nothing listens on port 1.
    let dead = "127.0.0.1:1";
    fails(dead, &["topic", "list"], 4);
    fails(dead, &["cluster"], 4);
    fails(dead, &["send", "-t", "AnyTopic", "x"], 4);
    fails(dead, &["consume", "-t", "AnyTopic", "--idle", "1"], 4);

    // No name server at all: neither -n nor NAMESRV_ADDR.
    let out = Command::new(env!("CARGO_BIN_EXE_rmq"))
        .env_remove("NAMESRV_ADDR")
        .args(["topic", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NAMESRV_ADDR"),
        "{out:?}"
    );
    // NAMESRV_ADDR is read from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_rmq"))
        .env("NAMESRV_ADDR", dead)
        .args(["topic", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // clap's usage errors.
    fails(dead, &["send"], 2);
    fails(dead, &["no-such-command"], 2);
    fails(dead, &["consume", "-t", "T", "--from", "middle"], 2);
    fails(dead, &["consume", "-t", "T", "--idle", "-1"], 2);
    // An empty stdin line cannot be sent: a usage error, before anything reaches a broker.
    let run = rmq_with_input(dead, &["send", "-t", "T"], "\n");
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn every_command_and_alias_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["send"],
        &["consume"],
        &["topic"],
        &["topic", "create"],
        &["topic", "route"],
        &["topic", "list"],
        &["progress"],
        &["message"],
        &["message", "query"],
        &["message", "get"],
        &["cluster"],
        &["updateTopic"],
        &["topicRoute"],
        &["topicList"],
        &["consumerProgress"],
        &["queryMsgByKey"],
        &["queryMsgById"],
        &["clusterList"],
    ];
    for cmd in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_rmq"))
            .args(*cmd)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Usage: rmq"),
            "{cmd:?}: {out:?}"
        );
    }
    let top = Command::new(env!("CARGO_BIN_EXE_rmq"))
        .arg("--help")
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    for needle in [
        "Exit codes:",
        "updateTopic",
        "consumerProgress",
        "queryMsgById",
        "NAMESRV_ADDR",
    ] {
        assert!(top.contains(needle), "{needle} in\n{top}");
    }
}

#[test]
fn a_bad_stdin_line_stops_the_send_and_reports_what_was_sent() {
    let cluster = Cluster::shared();
    let ns = cluster.namesrv_addr.as_str();
    let topic = new_topic(ns, 1);
    let run = rmq_with_input(ns, &["send", "-t", &topic, "--json"], "first\n\nthird\n");
    assert_eq!(run.code, 2, "{run:?}");
    let v = run.json();
    assert_eq!(
        (v["sent"].as_i64(), v["failed"].as_bool()),
        (Some(1), Some(true)),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("stdin line 2"), "{v}");
    assert!(run.stderr.contains("stdin line 2 is empty"), "{run:?}");
    // The broker has the line before the bad one, and nothing after it.
    let stored = read_topic_until(&raw_client(), ns, &topic, 1);
    let bodies: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    assert_eq!(bodies, ["first"]);
}
