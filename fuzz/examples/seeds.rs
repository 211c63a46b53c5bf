//! Writes the seed corpora, `corpus/<target>/`, from the golden vectors that the Java 4.9.8
//! classes printed (`shared/reference/golden-4.9.8.txt`).
//!
//! ```sh
//! cd fuzz && cargo run --example seeds
//! ```
//!
//! The golden file is found through `ROCKETMQ_SHARED_DIR` (the `shared` directory), else as
//! `shared/reference/golden-4.9.8.txt` in an ancestor of this crate, as the main crate's tests
//! find it. Each seed is named after what it holds; existing files are overwritten, others are
//! left alone.

use std::path::{Path, PathBuf};

use fuzz_support::{unprefixed_frame, wire_frame, Compression, Record};
use rocketmq_sync::remoting::protocol::{RemotingCommand, SerializeType};

const FILE: &str = "golden-4.9.8.txt";

fn golden_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROCKETMQ_SHARED_DIR") {
        return Path::new(&dir).join("reference").join(FILE);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|d| d.join("shared").join("reference").join(FILE))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "cannot find shared/reference/{FILE} above {}; set ROCKETMQ_SHARED_DIR",
                here.display()
            )
        })
}

/// `(title, content)` per `### title` section, trailing blank lines dropped.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            out.push((title.trim().to_owned(), String::new()));
        } else if let Some((_, content)) = out.last_mut() {
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(line);
        }
    }
    for (_, c) in &mut out {
        let n = c.trim_end().len();
        c.truncate(n);
    }
    out
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex"))
        .collect()
}

struct Golden(Vec<(String, String)>);

impl Golden {
    fn get(&self, title_prefix: &str) -> &str {
        self.0
            .iter()
            .find(|(t, _)| t.starts_with(title_prefix))
            .map(|(_, c)| c.as_str())
            .unwrap_or_else(|| panic!("golden file has no section {title_prefix:?}"))
    }
}

struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
        self.written += 1;
    }
}

/// A frame input for the `frame` target: `[head] [splits] [stream]`.
fn frame_input(head_max: u8, splits: &[u8], stream: &[u8]) -> Vec<u8> {
    let mut v = vec![(head_max << 4) | splits.len() as u8];
    v.extend_from_slice(splits);
    v.extend_from_slice(stream);
    v
}

/// A `message_compressed` input: `[mode] [max: 2] [pos: 2] [xor] [payload]`.
fn compressed_input(mode: u8, max: Option<u16>, pos: u16, xor: u8, payload: &[u8]) -> Vec<u8> {
    let max = max.map_or(0, |m| 0x8000 | m);
    let mut v = vec![mode];
    v.extend_from_slice(&max.to_be_bytes());
    v.extend_from_slice(&pos.to_be_bytes());
    v.push(xor);
    v.extend_from_slice(payload);
    v
}

fn main() {
    let path = golden_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let g = Golden(sections(&text));
    let mut c = Corpus {
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        written: 0,
    };

    // Remoting frames and headers.
    let pull_json = hex(g.get("PULL_MESSAGE JSON frame hex"));
    let pull_binary = hex(g.get("PULL_MESSAGE ROCKETMQ frame hex"));
    let json_headers = [
        ("pull", g.get("PULL_MESSAGE JSON header text")),
        ("send-response", g.get("SEND response JSON header")),
        ("send-v2", g.get("SEND_MESSAGE_V2 JSON frame (header text)")),
        ("route-request", g.get("GET_ROUTEINFO_BY_TOPIC JSON header")),
    ];
    let mut stream = pull_json.clone();
    stream.extend_from_slice(&pull_binary);
    for (name, header) in json_headers {
        c.put("header_json", name, header.as_bytes());
        let frame = wire_frame(0, header.as_bytes(), b"hello");
        c.put(
            "frame",
            &format!("json-{name}"),
            &frame_input(0, &[], &frame),
        );
        stream.extend_from_slice(&frame);
        // The same command with a binary header, as this crate encodes it.
        let mut cmd = RemotingCommand::decode(unprefixed_frame(0, header.as_bytes(), b""))
            .expect("golden header decodes");
        cmd.set_serialize_type(SerializeType::RocketMQ);
        let binary = cmd.encode_header().expect("encodes");
        c.put("header_rocketmq", name, &binary);
        stream.extend_from_slice(&wire_frame(1, &binary, b""));
    }
    c.put("header_json", "pull-frame", &pull_json[8..]);
    c.put("header_rocketmq", "pull-frame", &pull_binary[8..]);
    c.put("frame", "pull-json", &frame_input(0, &[], &pull_json));
    c.put("frame", "pull-rocketmq", &frame_input(0, &[], &pull_binary));
    c.put("frame", "stream", &frame_input(0, &[], &stream));
    c.put(
        "frame",
        "stream-split",
        &frame_input(0, &[1, 7, 0, 200, 3], &stream),
    );
    c.put(
        "frame",
        "stream-max-4096",
        &frame_input(0xE, &[64], &stream),
    );
    c.put("frame", "stream-max-64", &frame_input(0xF, &[5], &stream));

    // Stored records.
    let stored = hex(g.get("Stored message (MessageDecoder.encode) hex"));
    c.put("message_decoder", "stored", &stored);
    c.put(
        "message_decoder",
        "stored-twice",
        &[&stored[..], &stored[..]].concat(),
    );
    c.put(
        "message_decoder",
        "batch-body",
        &hex(g.get("Batch body (MessageDecoder.encodeMessages) hex")),
    );
    let props = g.get("properties2String(m1) escaped");
    let props = props
        .replace("\\u0001", "\u{1}")
        .replace("\\u0002", "\u{2}");
    let text_body = g
        .get("GET_CONSUMER_RUNNING_INFO response body JSON")
        .as_bytes();
    for (i, comp) in Compression::ALL.into_iter().enumerate() {
        let name = format!("{comp:?}").to_lowercase();
        let packed = comp.compress(text_body);
        let mut rec = Vec::new();
        Record {
            sys_flag: comp.sys_flag(),
            queue_offset: 7,
            body: &packed,
            topic: b"TopicTest",
            properties: props.as_bytes(),
        }
        .encode(&mut rec);
        c.put("message_decoder", &format!("compressed-{name}"), &rec);
        let mode = i as u8;
        c.put(
            "message_compressed",
            &format!("{name}-self"),
            &compressed_input(mode | 4, None, 0, 0, text_body),
        );
        c.put(
            "message_compressed",
            &format!("{name}-self-bounded"),
            &compressed_input(mode | 4, Some(100), 0, 0, text_body),
        );
        c.put(
            "message_compressed",
            &format!("{name}-self-flipped"),
            &compressed_input(mode | 4, None, 9, 0x40, text_body),
        );
        c.put(
            "message_compressed",
            &format!("{name}-raw"),
            &compressed_input(mode, None, 0, 0, &packed),
        );
    }

    // JSON bodies.
    for (name, title) in [
        ("route-fastjson", "TopicRouteData default fastjson"),
        ("route-standard", "TopicRouteData standard"),
        ("heartbeat", "HEART_BEAT body JSON"),
        ("lock-batch", "LOCK_BATCH_MQ body JSON"),
        ("lock-batch-response", "LOCK_BATCH_MQ response body JSON"),
        (
            "consumer-list",
            "GET_CONSUMER_LIST_BY_GROUP response body JSON",
        ),
        ("offsets-file", "LocalFileOffsetStore offsets.json"),
        ("reset-offset", "RESET_CONSUMER_CLIENT_OFFSET body JSON"),
        (
            "running-info",
            "GET_CONSUMER_RUNNING_INFO response body JSON",
        ),
        (
            "consume-directly",
            "CONSUME_MESSAGE_DIRECTLY response body JSON",
        ),
    ] {
        c.put("json_bodies", name, g.get(title).as_bytes());
    }

    // The offsets file: Java's pretty form, the compact form, and the empty shapes.
    let offsets = g.get("LocalFileOffsetStore offsets.json");
    c.put("offsets_file", "pretty", offsets.as_bytes());
    let compact = rocketmq_sync::remoting::protocol::body::FjValue::parse(offsets)
        .expect("golden offsets parse")
        .to_compact_string();
    c.put("offsets_file", "compact", compact.as_bytes());
    c.put("offsets_file", "empty-object", b"{}");
    c.put("offsets_file", "null-table", br#"{"offsetTable":null}"#);
    c.put(
        "offsets_file",
        "string-key",
        br#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":3,\"topic\":\"T\"}":5}}"#,
    );

    eprintln!(
        "wrote {} seeds under {} from {}",
        c.written,
        c.root.display(),
        path.display()
    );
}
