#!/usr/bin/env python3
"""A tiny RocketMQ remoting client written from the protocol description alone, sharing no
code with rocketmq-sync, used to cross-check it against an independent implementation.

  independent_client.py send  --namesrv HOST:PORT --topic T --count N [--size BYTES]
  independent_client.py count --namesrv HOST:PORT --topic T [--expect N]

`send` sends N messages with SEND_MESSAGE_V2 (sync, one at a time) to the topic's first
broker, auto-creating the topic from TBW102 with 4 queues; bodies are "indep-<i>" padded to
BYTES. `count` reads every queue of the topic from offset 0 with PULL_MESSAGE, decodes the
stored records, and prints `read N messages, D distinct` (by UNIQ_KEY, else body); with
--expect it exits 1 unless exactly N distinct messages were read.
"""

import argparse
import json
import socket
import struct
import sys

OPAQUE = [0]


def call(addr, code, ext, body=b""):
    """One JSON-header request; returns (code, ext_fields, body) of the response."""
    OPAQUE[0] += 1
    header = json.dumps({
        "code": code, "extFields": {k: str(v) for k, v in ext.items()}, "flag": 0,
        "language": "PYTHON", "opaque": OPAQUE[0], "serializeTypeCurrentRPC": "JSON",
        "version": 409,
    }).encode()
    frame = struct.pack(">II", 4 + len(header) + len(body), len(header)) + header + body
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame)
        total = struct.unpack(">I", recv_exact(s, 4))[0]
        data = recv_exact(s, total)
    hlen = struct.unpack(">I", data[:4])[0] & 0xFFFFFF
    h = json.loads(data[4:4 + hlen])
    return h.get("code", 0), h.get("extFields", {}) or {}, data[4 + hlen:]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise IOError("connection closed")
        buf += chunk
    return buf


def route(namesrv, topic):
    code, _, body = call(namesrv, 105, {"topic": topic})
    if code != 0:
        return None
    # Tolerate fastjson's unquoted integer keys.
    text = body.decode()
    import re
    text = re.sub(r'([{,])(\d+):', r'\1"\2":', text)
    return json.loads(text)


def masters(r):
    return {b["brokerName"]: b["brokerAddrs"]["0"] for b in r["brokerDatas"] if "0" in b["brokerAddrs"]}


def send(args):
    r = route(args.namesrv, args.topic) or route(args.namesrv, "TBW102")
    if r is None:
        sys.exit("no route for %s nor TBW102" % args.topic)
    name, addr = sorted(masters(r).items())[0]
    for i in range(args.count):
        body = ("indep-%d" % i).encode().ljust(args.size, b".")
        props = "TAGS\x01Indep\x02KEYS\x01k%d\x02WAIT\x01true" % i
        ext = {"a": "independent_pg", "b": args.topic, "c": "TBW102", "d": 4, "e": i % 4,
               "f": 0, "g": 1700000000000, "h": 0, "i": props, "j": 0, "k": "false",
               "m": "false", "n": name}
        code, _, _ = call(addr, 310, ext, body)
        if code != 0:
            sys.exit("send %d failed with code %d" % (i, code))
    print("sent %d messages" % args.count)


def decode_records(body):
    """Yields (queue_offset, body bytes, properties dict) of each stored record (magic V1
    or V2)."""
    pos = 0
    while pos + 4 <= len(body):
        total, magic = struct.unpack(">iI", body[pos:pos + 8])
        rec = body[pos:pos + total]
        sysflag = struct.unpack(">i", rec[36:40])[0]
        qoff = struct.unpack(">q", rec[20:28])[0]
        p = 40 + 8  # born timestamp
        p += 20 if sysflag & 0x10 else 8  # born host
        p += 8  # store timestamp
        p += 20 if sysflag & 0x20 else 8  # store host
        p += 4 + 8  # reconsume times, prepared transaction offset
        blen = struct.unpack(">i", rec[p:p + 4])[0]
        msg_body = rec[p + 4:p + 4 + blen]
        p += 4 + blen
        if magic == 0xDAA320AB:  # V2: topic length is an i16
            tlen = struct.unpack(">h", rec[p:p + 2])[0]
            p += 2 + tlen
        else:
            tlen = struct.unpack(">b", rec[p:p + 1])[0]
            p += 1 + tlen
        plen = struct.unpack(">h", rec[p:p + 2])[0]
        props = {}
        for pair in rec[p + 2:p + 2 + plen].decode("utf-8", "replace").split("\x02"):
            if "\x01" in pair:
                k, v = pair.split("\x01", 1)
                props[k] = v
        yield qoff, msg_body, props
        pos += total


def count(args):
    r = route(args.namesrv, args.topic)
    if r is None:
        sys.exit("no route for %s" % args.topic)
    addrs = masters(r)
    bodies = []
    for q in r["queueDatas"]:
        addr = addrs[q["brokerName"]]
        for qid in range(q["readQueueNums"]):
            offset = 0
            while True:
                ext = {"consumerGroup": "independent_reader", "topic": args.topic,
                       "queueId": qid, "queueOffset": offset, "maxMsgNums": 32, "sysFlag": 4,
                       "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*",
                       "subVersion": 0, "expressionType": "TAG"}
                code, h, body = call(addr, 11, ext)
                nxt = int(h.get("nextBeginOffset", offset))
                if code == 0:
                    # A message is identified by the producer's UNIQ_KEY, else its body.
                    bodies.extend(pr.get("UNIQ_KEY", b) for _, b, pr in decode_records(body))
                    offset = nxt
                elif code in (19, 20) and nxt > offset:
                    offset = nxt
                else:
                    break
    distinct = len(set(bodies))
    print("read %d messages, %d distinct" % (len(bodies), distinct))
    if args.expect is not None and distinct != args.expect:
        sys.exit("expected %d distinct messages" % args.expect)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--namesrv", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--size", type=int, default=128)
    c = sub.add_parser("count")
    c.add_argument("--namesrv", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--expect", type=int)
    args = p.parse_args()
    send(args) if args.cmd == "send" else count(args)


if __name__ == "__main__":
    main()
