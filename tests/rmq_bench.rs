//! `rmq-bench` against the shared real-broker cluster: the producer, consumer and rawpull modes
//! run as the built binary, and their status and summary lines must parse and agree with what
//! the broker stored (read back independently with raw pulls).

mod support;

use std::collections::HashMap;
use std::process::Command;

use support::broker::Cluster;
use support::client::*;

const N: u64 = 2000;

/// What one run printed on stdout, its exit status and stderr.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn rmq_bench(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-bench"))
        .args(args)
        // The tool's own bound, so that a hang fails the test instead of stalling it.
        .args(["--duration", "120"])
        .output()
        .expect("rmq-bench runs");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    };
    assert!(
        run.ok,
        "rmq-bench {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// The numbers after each of `labels`, which must appear in this order and start the line.
fn status_fields(line: &str, labels: &[&str]) -> Option<Vec<f64>> {
    if !line.starts_with(labels[0]) {
        return None;
    }
    let mut rest = line;
    let mut values = Vec::new();
    for label in labels {
        let at = rest.find(label)?;
        rest = rest[at + label.len()..].trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        values.push(rest[..end].parse().ok()?);
        rest = &rest[end..];
    }
    rest.trim().is_empty().then_some(values)
}

const SEND: &[&str] = &[
    "Send TPS:",
    "Max RT(ms):",
    "Average RT(ms):",
    "Send Failed:",
    "Response Failed:",
];
const CONSUME: &[&str] = &[
    "Consume TPS:",
    "Average(B2C) RT(ms):",
    "Average(S2C) RT(ms):",
    "MAX(B2C) RT(ms):",
    "MAX(S2C) RT(ms):",
];

/// Every status line starting with `labels[0]`, parsed; each must parse completely.
fn status_lines(run: &Run, labels: &[&str]) -> Vec<Vec<f64>> {
    let lines: Vec<Vec<f64>> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with(labels[0]))
        .map(|l| status_fields(l, labels).unwrap_or_else(|| panic!("status line {l:?} parses")))
        .collect();
    assert!(
        !lines.is_empty(),
        "no {:?} line in\n{}",
        labels[0],
        run.stdout
    );
    lines
}

/// The `SUMMARY` line's fields; it must be the last line and every field numeric but `mode`.
fn summary(run: &Run, mode: &str) -> HashMap<String, f64> {
    let last = run.stdout.lines().last().expect("some output");
    let rest = last
        .strip_prefix("SUMMARY ")
        .unwrap_or_else(|| panic!("last line {last:?} is the summary"));
    let mut fields = HashMap::new();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=').expect("key=value");
        if k == "mode" {
            assert_eq!(v, mode);
        } else {
            let v: f64 = v.parse().unwrap_or_else(|_| panic!("{k}={v} is a number"));
            fields.insert(k.to_owned(), v);
        }
    }
    for k in [
        "tps", "p50_ms", "p99_ms", "max_ms", "cpu_s", "rss_kib", "threads", "count", "failed",
    ] {
        assert!(fields.contains_key(k), "summary {last:?} has {k}");
    }
    assert!(
        fields["rss_kib"] > 0.0 && fields["threads"] >= 1.0,
        "{last}"
    );
    assert!(fields["p50_ms"] <= fields["p99_ms"], "{last}");
    assert!(fields["p99_ms"] <= fields["max_ms"] * 1.04, "{last}");
    fields
}

#[test]
fn producer_consumer_and_rawpull_report_in_javas_wording() {
    let cluster = Cluster::shared();
    let namesrv = cluster.namesrv_addr.as_str();
    let topic = unique("BenchTopic");
    let count = N.to_string();

    let produced = rmq_bench(&[
        "producer", "-n", namesrv, "-t", &topic, "--mode", "async", "--count", &count, "-w", "2",
    ]);
    let send = status_lines(&produced, SEND);
    let last = send.last().expect("a send line");
    assert_eq!((last[3], last[4]), (0.0, 0.0), "no send failed");
    let s = summary(&produced, "producer");
    assert_eq!((s["count"], s["failed"]), (N as f64, 0.0));
    // The broker holds exactly what the tool says it sent.
    let stored = read_topic_until(&raw_client(), namesrv, &topic, N as usize);
    assert_eq!(stored.len() as u64, N);

    let consumed = rmq_bench(&[
        "consumer",
        "-n",
        namesrv,
        "-t",
        &topic,
        "-g",
        &unique("bench_cg"),
        "--count",
        &count,
    ]);
    let lines = status_lines(&consumed, CONSUME);
    assert!(lines.iter().any(|l| l[0] > 0.0), "{}", consumed.stdout);
    let s = summary(&consumed, "consumer");
    assert_eq!(s["count"], N as f64, "{}", consumed.stdout);

    let pulled = rmq_bench(&["rawpull", "-n", namesrv, "-t", &topic, "--count", &count]);
    let lines = status_lines(&pulled, CONSUME);
    assert!(lines.iter().any(|l| l[0] > 0.0), "{}", pulled.stdout);
    let s = summary(&pulled, "rawpull");
    assert_eq!(s["count"], N as f64, "{}", pulled.stdout);
    // Messages born before the pull: their born-to-consume times are not negative.
    assert!(s["p50_ms"] >= 0.0);
}

/// `latency` with a push consumer (one-way sends) and over the floor's bare long polls (sync
/// sends): every message sent is measured once, and the summary's percentiles are ordered.
#[test]
fn latency_measures_every_message_with_push_and_floor() {
    let cluster = Cluster::shared();
    let namesrv = cluster.namesrv_addr.as_str();
    let topic = unique("BenchLatency");
    let count = 300u64;
    let n = count.to_string();
    for (variant, extra) in [
        ("push", &["--mode", "oneway"][..]),
        ("floor", &["--mode", "sync", "--floor"][..]),
    ] {
        let group = unique("bench_lat_cg");
        let mut args = vec![
            "latency", "-n", namesrv, "-t", &topic, "-g", &group, "--rate", "200", "--count", &n,
        ];
        args.extend_from_slice(extra);
        let run = rmq_bench(&args);
        let send = status_lines(&run, SEND);
        let last = send.last().expect("a send line");
        assert_eq!((last[3], last[4]), (0.0, 0.0), "{variant}: no send failed");
        let consume = status_lines(&run, CONSUME);
        assert!(
            consume.iter().any(|l| l[0] > 0.0),
            "{variant}: {}",
            run.stdout
        );
        let s = summary(&run, "latency");
        assert_eq!(
            (s["count"], s["sent"], s["failed"]),
            (count as f64, count as f64, 0.0),
            "{variant}: {}",
            run.stdout
        );
        assert_eq!(s["floor"], f64::from(u8::from(variant == "floor")));
        assert!(
            0.0 < s["p50_ms"] && s["p50_ms"] <= s["p99_ms"] && s["p99_ms"] <= s["max_ms"],
            "{variant}: {}",
            run.stdout
        );
        assert!(
            run.stderr.contains("took a warm-up message from each of"),
            "{variant}: {}",
            run.stderr
        );
    }
}

#[test]
fn bad_flags_are_refused_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-bench"))
        .args(["producer", "--mode", "fast"])
        .output()
        .expect("rmq-bench runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode") && err.contains("sync"), "{err}");

    // Too small a body for the stamp: refused before anything connects.
    let out = Command::new(env!("CARGO_BIN_EXE_rmq-bench"))
        .args(["latency", "-n", "127.0.0.1:1", "-s", "16"])
        .output()
        .expect("rmq-bench runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-s must be at least 24"), "{err}");
}

/// `rawsend` and `producer --queues 3 --disable-callback-executor`: each creates its topic
/// with the queues asked for, and the broker holds exactly what each says it sent.
#[test]
fn rawsend_and_a_producer_with_io_thread_callbacks_store_what_they_report() {
    let cluster = Cluster::shared();
    let namesrv = cluster.namesrv_addr.as_str();
    let client = raw_client();

    let topic = unique("RawSendTopic");
    let sent = rmq_bench(&["rawsend", "-n", namesrv, "-t", &topic, "--count", "200"]);
    let lines = status_lines(&sent, SEND);
    assert!(!lines.is_empty(), "{}", sent.stdout);
    let s = summary(&sent, "rawsend");
    assert_eq!((s["count"], s["failed"]), (200.0, 0.0), "{}", sent.stdout);
    assert_eq!(read_topic_until(&client, namesrv, &topic, 200).len(), 200);
    let r = route(&client, namesrv, &topic).expect("rawsend created the topic");
    assert_eq!(r.queue_datas[0].write_queue_nums, 8);
    // Pipelined: one thread writes, another reads.
    let sent = rmq_bench(&[
        "rawsend", "-n", namesrv, "-t", &topic, "--window", "16", "--count", "300",
    ]);
    let s = summary(&sent, "rawsend");
    assert_eq!((s["count"], s["failed"]), (300.0, 0.0), "{}", sent.stdout);
    assert_eq!(read_topic_until(&client, namesrv, &topic, 500).len(), 500);

    let topic = unique("IoCallbackBench");
    let produced = rmq_bench(&[
        "producer",
        "-n",
        namesrv,
        "-t",
        &topic,
        "--queues",
        "3",
        "--disable-callback-executor",
        "--count",
        "300",
    ]);
    let s = summary(&produced, "producer");
    assert_eq!(
        (s["count"], s["failed"]),
        (300.0, 0.0),
        "{}",
        produced.stdout
    );
    assert_eq!(read_topic_until(&client, namesrv, &topic, 300).len(), 300);
    let r = route(&client, namesrv, &topic).expect("the producer created the topic");
    assert_eq!(r.queue_datas[0].write_queue_nums, 3);
}

/// `consumer --poll` drains with a lite pull consumer exactly what was sent; `pollidle` times
/// empty polls on an idle topic, each of which must come back empty.
#[test]
fn poll_consumer_and_pollidle_report_in_javas_wording() {
    let cluster = Cluster::shared();
    let namesrv = cluster.namesrv_addr.as_str();
    let topic = unique("BenchPoll");
    let count = N.to_string();
    rmq_bench(&[
        "producer", "-n", namesrv, "-t", &topic, "--mode", "async", "--count", &count,
    ]);
    assert_eq!(
        read_topic_until(&raw_client(), namesrv, &topic, N as usize).len() as u64,
        N
    );
    let polled = rmq_bench(&[
        "consumer",
        "-n",
        namesrv,
        "-t",
        &topic,
        "-g",
        &unique("bench_poll_cg"),
        "--poll",
        "--count",
        &count,
    ]);
    let lines = status_lines(&polled, CONSUME);
    assert!(lines.iter().any(|l| l[0] > 0.0), "{}", polled.stdout);
    let s = summary(&polled, "poll");
    assert_eq!(s["count"], N as f64, "{}", polled.stdout);

    let idle = rmq_bench(&[
        "pollidle",
        "-n",
        namesrv,
        "-t",
        &unique("BenchIdle"),
        "--polls",
        "20",
        "--timeout-ms",
        "5",
    ]);
    let s = summary(&idle, "pollidle");
    assert_eq!((s["count"], s["failed"]), (20.0, 0.0), "{}", idle.stdout);
    assert_eq!(s["timeout_ms"], 5.0);
}
