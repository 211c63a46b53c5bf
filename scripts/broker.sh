#!/usr/bin/env bash
# broker.sh — install and run a real local RocketMQ cluster for rocketmq-sync's tests.
#
# The cluster is the rocketmq-rust 1.0.0 name server and broker from crates.io
# (binaries rocketmq-namesrv-rust and rocketmq-broker-rust), installed once into a cache
# that survives between runs:
#
#   cache dir     ${ROCKETMQ_SYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-sync}
#   install root  $CACHE/rocketmq-1.0.0        (binaries in $CACHE/rocketmq-1.0.0/bin)
#   TLS broker    $CACHE/rocketmq-1.0.0-tls    (the broker again, built with its `tls`
#                                               feature, which its default build lacks;
#                                               the name server has TLS by default)
#   cargo target  $CACHE/target                (shared, so the broker build reuses the
#                                               name server's dependency builds)
#
# Usage:
#   scripts/broker.sh install
#       Make sure the pinned binaries exist (cargo install --locked --version 1.0.0 when
#       missing; takes 15-25 minutes the first time, the TLS broker 10-20 more). Safe to run
#       concurrently (flock). Prints NAMESRV_BIN=..., BROKER_BIN=... and BROKER_TLS_BIN=...
#       on stdout.
#
#   scripts/broker.sh start [--brokers N] [--slaves] [--no-auto-create] [--acl FILE] [--dir DIR]
#                           [--store-dir SDIR] [--owner-pid PID] [--timeout SECS]
#                           [--broker-set KEY=VALUE]...
#                           [--tls CERT KEY [--tls-client-auth CA CERT KEY]]
#       Start one name server and N brokers (broker-a, broker-b, ...; cluster
#       DefaultCluster) on 127.0.0.1 with free ports, in DIR (default: a fresh
#       mktemp dir); the message stores go in DIR/<broker>/store unless its file system is
#       too full (see "Disk space" below). Waits (default 60 s) until the name server
#       answers a real GET_BROKER_CLUSTER_INFO request listing every broker and every
#       broker answers a real request. Writes DIR/cluster.env and prints it on stdout
#       (KEY=VALUE lines: CLUSTER_DIR, NAMESRV_ADDR, NAMESRV_PID, BROKER_NAMES,
#       BROKER_A_ADDR, BROKER_A_PID, BROKER_A_STORE, ...). Progress and errors go to
#       stderr; on failure the tail of every log is printed and everything started is
#       stopped.
#       --no-auto-create  brokers run with autoCreateTopicEnable = false
#       --broker-set KEY=VALUE
#                         one more setting of every broker's [broker] table (repeatable),
#                         VALUE written as TOML as given, e.g. enablePropertyFilter=true (SQL92
#                         filtering) or transactionCheckInterval=1000 (milliseconds between
#                         transaction check rounds).
#       --slaves          every master broker-x gets a slave broker-x-slave (brokerId 1,
#                         brokerRole SLAVE, slaveReadEnable) replicating from the master's HA
#                         port; cluster.env lists them in SLAVE_NAMES, with BROKER_X_SLAVE_OF.
#                         rocketmq-rust 1.0.0 replicates the commit log to a slave but does not
#                         index what it receives while running: a slave serves the messages it
#                         had when it started (see tests/fault_brokers.rs, scenario 11).
#       --acl FILE        the name server and the brokers require signed requests
#                         (authenticationEnabled and authorizationEnabled of rocketmq-auth):
#                         the accounts and permissions of FILE, a Java-style plain_acl.yml
#                         (accounts: accessKey, secretKey, admin, defaultTopicPerm,
#                         defaultGroupPerm, topicPerms, groupPerms; literal names only),
#                         copied to DIR/namesrv/plain_acl.yml and DIR/<broker>/conf/. A super
#                         user with a random secret is added: the brokers sign their
#                         registrations with it, and so do the script's own probes and tests
#                         that need admin requests (ACL_ADMIN_ACCESS_KEY and
#                         ACL_ADMIN_SECRET_KEY in cluster.env, a test secret kept in plain
#                         text there). Unsigned or wrongly signed requests are answered with
#                         NO_PERMISSION (16).
#       --store-dir SDIR  put the message stores in a fresh directory under SDIR (default:
#                         $ROCKETMQ_SYNC_STORE_DIR), wherever the disk stands; recorded in
#                         cluster.env as STORE_ROOT and deleted by stop --rm-store and --rm.
#       --owner-pid PID   also start a watchdog that stops the cluster (and deletes its
#                         stores) once PID has exited, even if it was SIGKILLed.
#       --tls CERT KEY    brokers accept only TLS (tls.server.mode enforcing), with this PEM
#                         certificate chain and key; they run the TLS broker build. The name
#                         server accepts TLS with the same certificate, and plaintext too
#                         (permissive): the brokers register with it in plaintext (their
#                         client side has no TLS setting), so it cannot require TLS. A client
#                         with TLS on uses it for both. Writes TLS_* keys to cluster.env.
#       --tls-client-auth CA CERT KEY
#                         brokers also require a client certificate signed by CA (mutual
#                         TLS); the script's own probes present CERT and KEY.
#
#   scripts/broker.sh stop DIR [--rm-store | --rm]
#       Stop every process listed in DIR/cluster.env (SIGTERM, up to 5 s, then SIGKILL).
#       Idempotent. --rm-store then deletes the message stores (logs are kept), --rm the
#       whole DIR (and the stores, wherever they are).
#
#   scripts/broker.sh kill-broker DIR broker-a      SIGKILL one broker (fault tests); a slave
#                                                   is named broker-a-slave.
#   scripts/broker.sh restart-broker DIR broker-a   start it again: same config, ports, store.
#   scripts/broker.sh kill-namesrv DIR              SIGKILL the name server.
#   scripts/broker.sh restart-namesrv DIR           start it again on its port; it answers at
#                                                   once, and lists the brokers once they have
#                                                   registered again (within their 30 s period).
#   scripts/broker.sh status DIR                    print cluster.env and what is alive.
#
# Disk space: a rocketmq-rust 1.0.0 broker counts its disk as used = 1 - f_bavail / f_blocks
# (statvfs of the store; blocks reserved for root count as used, so this is often well above
# what df shows). Above diskSpaceWarningLevelRatio, which it caps at 90 %, it marks the store
# full: it refuses every write (a send is answered SYSTEM_BUSY, "store_not_writeable") and,
# when that holds at startup, refuses to start ("Service lifecycle operation failed",
# rollback). A fresh store also needs one commit log file's size free. The generated
# broker.toml sets the ratios to the highest the broker accepts (it requires
# diskMaxUsedSpaceRatio < diskSpaceCleanForciblyRatio < diskSpaceWarningLevelRatio and refuses
# to start otherwise), turns off the forced deletion of unexpired files, and makes the store's
# files small (the broker preallocates each at full size: 1 GiB of commit log and 420 MB of
# index per broker by default). When DIR's file system would be over STORE_DISK_LIMIT (85 %)
# with the brokers' stores, and neither --store-dir nor ROCKETMQ_SYNC_STORE_DIR is given,
# start puts the stores on tmpfs under /dev/shm if that has room, and says so on stderr
# (tests' stores are small and temporary).
#
# Environment: ROCKETMQ_SYNC_CACHE (see above), ROCKETMQ_SYNC_START_TIMEOUT (seconds),
# ROCKETMQ_SYNC_LOG_FILTER (log filter for the servers, default "info"),
# ROCKETMQ_SYNC_STORE_DIR (default of --store-dir).
set -euo pipefail

readonly ROCKETMQ_VERSION=1.0.0
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT
CACHE="${ROCKETMQ_SYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-sync}"
readonly CACHE
readonly INSTALL_ROOT="$CACHE/rocketmq-$ROCKETMQ_VERSION"
readonly NAMESRV_BIN="$INSTALL_ROOT/bin/rocketmq-namesrv-rust"
readonly BROKER_BIN="$INSTALL_ROOT/bin/rocketmq-broker-rust"
readonly INSTALL_ROOT_TLS="$CACHE/rocketmq-$ROCKETMQ_VERSION-tls"
readonly BROKER_TLS_BIN="$INSTALL_ROOT_TLS/bin/rocketmq-broker-rust"
readonly CLUSTER_NAME=DefaultCluster

# Message store: the broker's own fence (percent; it caps diskSpaceWarningLevelRatio at 90),
# the fullness above which start looks for another place for the stores (a margin for the
# stores themselves and for other users of a shared disk during a run), and what one broker's
# store takes with the file sizes below: a commit log file, the index, consume queues.
readonly BROKER_DISK_WARNING_RATIO=90
readonly STORE_DISK_LIMIT=85
readonly STORE_BYTES_PER_BROKER=$((256 * 1024 * 1024))
# Preallocated file sizes: tests store a few MB, and larger volumes roll over to new files.
readonly STORE_COMMIT_LOG_FILE_SIZE=$((128 * 1024 * 1024))
readonly STORE_CONSUME_QUEUE_FILE_SIZE=$((30000 * 20)) # 30000 entries of 20 bytes
readonly STORE_INDEX_SLOTS=50000
readonly STORE_INDEX_ENTRIES=200000

log() { printf '[broker.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# alive PID — the process exists and is not a zombie (an orphan may wait a moment to be reaped).
alive() {
    local pid=$1 stat
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        [[ ${stat:0:1} != Z ]] || return 1
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# install

binary_version() {
    # `--version` prints the binary name and `version=1.0.0`.
    "$1" --version 2>&1 | sed -n 's/^version=//p' | head -n 1
}

cmd_install() {
    [[ $# -eq 0 ]] || die "install takes no arguments"
    mkdir -p "$CACHE"
    if [[ ! -x $NAMESRV_BIN || ! -x $BROKER_BIN || ! -x $BROKER_TLS_BIN ]]; then
        command -v cargo >/dev/null || die "cargo is needed to install the RocketMQ binaries"
        exec 9>"$CACHE/install.lock"
        log "waiting for the install lock $CACHE/install.lock"
        flock 9
        local crate bin
        for crate in rocketmq-namesrv rocketmq-broker; do
            bin="$INSTALL_ROOT/bin/$crate-rust"
            if [[ -x $bin ]]; then
                continue
            fi
            log "installing $crate $ROCKETMQ_VERSION into $INSTALL_ROOT (takes a while the first time)"
            log "+ CARGO_TARGET_DIR=$CACHE/target cargo install --locked --version $ROCKETMQ_VERSION --root $INSTALL_ROOT $crate"
            CARGO_TARGET_DIR="$CACHE/target" cargo install --locked --version "$ROCKETMQ_VERSION" \
                --root "$INSTALL_ROOT" "$crate" >&2 ||
                die "cargo install of $crate $ROCKETMQ_VERSION failed (see above)"
            [[ -x $bin ]] || die "cargo install of $crate did not produce $bin"
        done
        if [[ ! -x $BROKER_TLS_BIN ]]; then
            log "installing rocketmq-broker $ROCKETMQ_VERSION with its tls feature into $INSTALL_ROOT_TLS"
            log "+ CARGO_TARGET_DIR=$CACHE/target cargo install --locked --version $ROCKETMQ_VERSION --features tls --root $INSTALL_ROOT_TLS rocketmq-broker"
            CARGO_TARGET_DIR="$CACHE/target" cargo install --locked --version "$ROCKETMQ_VERSION" \
                --features tls --root "$INSTALL_ROOT_TLS" rocketmq-broker >&2 ||
                die "cargo install of rocketmq-broker $ROCKETMQ_VERSION --features tls failed (see above)"
            [[ -x $BROKER_TLS_BIN ]] || die "cargo install of the TLS broker did not produce $BROKER_TLS_BIN"
        fi
        flock -u 9
        exec 9>&-
    fi
    local bin version
    for bin in "$NAMESRV_BIN" "$BROKER_BIN" "$BROKER_TLS_BIN"; do
        version=$(binary_version "$bin")
        [[ $version == "$ROCKETMQ_VERSION" ]] ||
            die "$bin reports version '${version}', expected $ROCKETMQ_VERSION (delete $(dirname "$(dirname "$bin")") to reinstall)"
        log "using $bin (version $version)"
    done
    printf 'NAMESRV_BIN=%s\nBROKER_BIN=%s\nBROKER_TLS_BIN=%s\nROCKETMQ_VERSION=%s\n' \
        "$NAMESRV_BIN" "$BROKER_BIN" "$BROKER_TLS_BIN" "$ROCKETMQ_VERSION"
}

# ensure_installed [BROKER_BINARY] — the name server and that broker binary (default: the
# plain one) exist; installs what is missing otherwise.
ensure_installed() {
    local broker=${1:-$BROKER_BIN}
    if [[ ! -x $NAMESRV_BIN || ! -x $broker ]]; then
        cmd_install >/dev/null # stdout only repeats the paths; progress goes to stderr
    fi
}

# ---------------------------------------------------------------------------------------------
# small python3 helpers: free ports and real remoting requests

readonly PY_HELPER='
import json, os, random, re, socket, ssl, struct, sys

def bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

def ports(blocks):
    # One port for the name server, then per broker a block of 4 consecutive ports:
    # fast port (listen-2), unused, listen port, HA port. Chosen at random below the
    # ephemeral range so concurrent starters and outgoing connections rarely collide.
    out, taken = [], set()
    rng = random.SystemRandom()
    def pick(width):
        for _ in range(2000):
            base = rng.randrange(20000, 32000 - width)
            block = range(base, base + width)
            if any(p in taken for p in block):
                continue
            if all(bindable(p) for p in block):
                taken.update(block)
                return base
        sys.exit("no free port block found")
    out.append(pick(1))
    for _ in range(blocks):
        out.append(pick(4))
    print(" ".join(map(str, out)))

def signed(ext, access_key, secret_key):
    # RocketMQ ACL signing: HMAC-SHA1 over the values of the sorted extFields, base64.
    import base64, hashlib, hmac
    ext = dict(ext, AccessKey=access_key)
    content = "".join(ext[k] for k in sorted(ext)).encode()
    ext["Signature"] = base64.b64encode(
        hmac.new(secret_key.encode(), content, hashlib.sha1).digest()).decode()
    return ext

def connect(host, port, timeout, tls):
    s = socket.create_connection((host, int(port)), timeout=timeout)
    if not tls:
        return s
    # A liveness probe: it does not verify the server (the tests do that), but it presents
    # the client certificate that a broker requiring one needs.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if os.environ.get("PROBE_TLS_CERT"):
        ctx.load_cert_chain(os.environ["PROBE_TLS_CERT"], os.environ["PROBE_TLS_KEY"])
    return ctx.wrap_socket(s, server_hostname=host)

def rpc(addr, code, timeout=3.0, ext=None, tls=False):
    host, port = addr.rsplit(":", 1)
    head = {"code": code, "flag": 0, "language": "JAVA", "opaque": 1,
            "serializeTypeCurrentRPC": "JSON", "version": 409}
    if ext:
        head["extFields"] = ext
    header = json.dumps(head, separators=(",", ":")).encode()
    frame = struct.pack(">II", 4 + len(header), len(header)) + header
    with connect(host, port, timeout, tls) as s:
        s.settimeout(timeout)
        s.sendall(frame)
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("connection closed by %s" % addr)
                buf += chunk
            return buf
        (total,) = struct.unpack(">I", read(4))
        data = read(total)
    (word,) = struct.unpack(">I", data[:4])
    hlen = word & 0xFFFFFF
    head = json.loads(data[4:4 + hlen])
    return head, data[4 + hlen:]

def lenient_json(body):
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        # fastjson writes non-string map keys bare ({0:"addr"}); quote them.
        return json.loads(re.sub(r"([{,])\s*(-?\d+)\s*:", r"\1\"\2\":", text))

def registered(nsaddr, expected, access_key=None, secret_key=None):
    ext = signed({}, access_key, secret_key) if access_key else None
    head, body = rpc(nsaddr, 106, ext=ext)
    if head.get("code") != 0:
        sys.exit("GET_BROKER_CLUSTER_INFO answered code %s remark %r" % (head.get("code"), head.get("remark")))
    table = lenient_json(body).get("brokerAddrTable") or {}
    missing = []
    for item in expected:
        name, addr = item.split("=", 1)
        addrs = (table.get(name) or {}).get("brokerAddrs") or {}
        if addr not in [str(a) for a in addrs.values()]:
            missing.append("%s (%s)" % (name, addr))
    if missing:
        sys.exit("name server %s does not list %s yet; it lists %s"
                 % (nsaddr, ", ".join(missing), sorted(table)))

def ping(addr, code, access_key=None, secret_key=None):
    ext = signed({}, access_key, secret_key) if access_key else None
    head, _ = rpc(addr, code, ext=ext, tls=os.environ.get("PROBE_TLS") == "1")
    if head.get("code") != 0:
        sys.exit("%s answered request %d with code %s remark %r"
                 % (addr, code, head.get("code"), head.get("remark")))

def port_open(addr):
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as e:
        sys.exit("%s not accepting connections yet: %s" % (addr, e))

try:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        ports(int(args[0]))
    elif cmd == "registered":
        # registered NSADDR [--signer AK SK] NAME=ADDR...
        if args[1:2] == ["--signer"]:
            registered(args[0], args[4:], args[2], args[3])
        else:
            registered(args[0], args[1:])
    elif cmd == "ping":
        ping(args[0], int(args[1]), *args[2:4])
    elif cmd == "secret":
        import secrets
        print(secrets.token_hex(16))
    elif cmd == "port-open":
        port_open(args[0])
    else:
        sys.exit("unknown helper command " + cmd)
except (OSError, ValueError, KeyError, AttributeError) as e:
    sys.exit("%s: %s" % (type(e).__name__, e))
'

py() { python3 -c "$PY_HELPER" "$@"; }

# ---------------------------------------------------------------------------------------------
# cluster state (DIR/cluster.env)

# Keys of the broker named NAME: broker-a -> BROKER_A
broker_key() {
    local name=$1
    name=${name^^}
    printf '%s' "${name//[^A-Z0-9]/_}"
}

declare -A STATE=()
STATE_KEYS=()

state_set() {
    local key=$1 value=$2
    if [[ -z ${STATE[$key]+x} ]]; then
        STATE_KEYS+=("$key")
    fi
    STATE[$key]=$value
}

state_get() { printf '%s' "${STATE[$1]:-}"; }

state_load() {
    local dir=$1 key value
    STATE=()
    STATE_KEYS=()
    [[ -f $dir/cluster.env ]] || return 1
    while IFS='=' read -r key value; do
        [[ -n $key && $key != \#* ]] || continue
        state_set "$key" "$value"
    done <"$dir/cluster.env"
}

state_write() {
    local dir=$1 key tmp
    tmp="$dir/cluster.env.tmp.$$"
    {
        for key in "${STATE_KEYS[@]}"; do
            printf '%s=%s\n' "$key" "${STATE[$key]}"
        done
    } >"$tmp"
    mv -f "$tmp" "$dir/cluster.env"
}

# ---------------------------------------------------------------------------------------------
# start

# write_broker_toml FILE NAME NSADDR PORT HA_PORT STORE AUTO_CREATE AUTH [MASTER_HA_ADDR]
# A master (brokerId 0, ASYNC_MASTER), or with MASTER_HA_ADDR a slave of NAME's master
# (brokerId 1, SLAVE) that replicates from that HA address and serves reads (slaveReadEnable).
write_broker_toml() {
    local file=$1 name=$2 nsaddr=$3 port=$4 ha_port=$5 store=$6 auto_create=$7 auth=${8:-} master_ha=${9:-}
    local broker_id=0 role=ASYNC_MASTER broker_extra="" store_extra=""
    if [[ -n $master_ha ]]; then
        broker_id=1
        role=SLAVE
        # The broker table has its own brokerRole: the slave's replication starts only when
        # both say SLAVE.
        broker_extra=$'brokerRole = "SLAVE"\nslaveReadEnable = true'
        store_extra="haMasterAddress = \"$master_ha\""
    fi
    cat >"$file" <<EOF
# Generated by scripts/broker.sh for rocketmq-sync tests.
[broker]
namesrvAddr = "$nsaddr"
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
listenPort = $port
storePathRootDir = "$store"
autoCreateTopicEnable = $auto_create
$broker_extra
${START_BROKER_SETTINGS:-}
$auth

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "$name"
brokerClusterName = "$CLUSTER_NAME"
brokerId = $broker_id

[store]
storeType = "LocalFile"
brokerRole = "$role"
storePathRootDir = "$store"
haListenAddress = "127.0.0.1"
haListenPort = $ha_port
# See "Disk space" in scripts/broker.sh: the highest ratios the broker accepts (it reads
# 88/89/90 as 88/85/90 %, capping the forced-clean ratio at 85), no forced deletion of
# unexpired files, small preallocated files.
diskMaxUsedSpaceRatio = $((BROKER_DISK_WARNING_RATIO - 2))
diskSpaceCleanForciblyRatio = $((BROKER_DISK_WARNING_RATIO - 1))
diskSpaceWarningLevelRatio = $BROKER_DISK_WARNING_RATIO
cleanFileForciblyEnable = false
mappedFileSizeCommitLog = $STORE_COMMIT_LOG_FILE_SIZE
mappedFileSizeConsumeQueue = $STORE_CONSUME_QUEUE_FILE_SIZE
maxHashSlotNum = $STORE_INDEX_SLOTS
maxIndexNum = $STORE_INDEX_ENTRIES
$store_extra
EOF
    if [[ -n $(state_get TLS_CERT) ]]; then
        cat >>"$file" <<EOF

[broker.brokerServerConfig.tlsConfig]
enable = true

[broker.brokerServerConfig.tlsConfig.server]
mode = "enforcing"
certPath = "$(state_get TLS_CERT)"
keyPath = "$(state_get TLS_KEY)"
EOF
        if [[ -n $(state_get TLS_CLIENT_CA) ]]; then
            cat >>"$file" <<EOF
needClientAuth = "require"
authClient = true
trustCertPath = "$(state_get TLS_CLIENT_CA)"
EOF
        fi
    fi
}

# The name server's config with TLS: permissive (TLS and plaintext) with the cluster's
# certificate. Dotted keys: the name server also reads the file's lines as Java properties.
write_namesrv_toml() {
    local file=$1
    cat >"$file" <<EOF
# Generated by scripts/broker.sh for rocketmq-sync tests.
tls.server.mode = "permissive"
tls.server.certPath = "$(state_get TLS_CERT)"
tls.server.keyPath = "$(state_get TLS_KEY)"
EOF
}

# auth_toml HOME ACL_FILE ADMIN_AK ADMIN_SK — the keys (of the name server's TOML, and of a
# broker's [broker] table) that turn on authentication and authorization (rocketmq-auth): users
# and permissions from ACL_FILE, plus the super user ADMIN_AK.
auth_toml() {
    local home=$1 acl_file=$2 ak=$3 sk=$4
    cat <<EOF
authenticationEnabled = true
authorizationEnabled = true
authConfigPath = "$home/auth"
aclFile = "$acl_file"
initAuthenticationUser = "$ak:$sk"
EOF
}

# Common environment of the servers: a private HOME (the name server writes
# $HOME/rocketmq-namesrv/... otherwise), backtraces on panics.
server_env() {
    local home=$1
    mkdir -p "$home"
    printf '%s\n' "HOME=$home" "RUST_BACKTRACE=1"
}

spawn_namesrv() {
    local dir=$1 port=$2
    local home="$dir/namesrv" envs conf=()
    mapfile -t envs < <(server_env "$home")
    if [[ -n $(state_get TLS_CERT) ]]; then
        write_namesrv_toml "$home/namesrv.toml"
        conf=(-c "$home/namesrv.toml")
    elif [[ -f $home/namesrv.toml ]]; then
        conf=(-c "$home/namesrv.toml")
    fi
    env "${envs[@]}" "$NAMESRV_BIN" "${conf[@]}" --bindAddress 127.0.0.1 --listenPort "$port" \
        --rocketmqHome "$home" --kvConfigPath "$home/kvConfig.json" \
        --log-filter "${ROCKETMQ_SYNC_LOG_FILTER:-info}" \
        </dev/null >>"$dir/namesrv.log" 2>&1 &
    SPAWNED_PID=$!
}

spawn_broker() {
    local dir=$1 name=$2 nsaddr=$3
    local home="$dir/$name" envs bin
    bin=$(state_get BROKER_BIN)
    mapfile -t envs < <(server_env "$home")
    env "${envs[@]}" ROCKETMQ_HOME="$home" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback \
        "${bin:-$BROKER_BIN}" -c "$home/conf/broker.toml" -n "$nsaddr" \
        --log-filter "${ROCKETMQ_SYNC_LOG_FILTER:-info}" \
        </dev/null >>"$dir/$name.log" 2>&1 &
    SPAWNED_PID=$!
}

print_log_tails() {
    local dir=$1 f
    for f in "$dir"/*.log; do
        [[ -f $f ]] || continue
        printf '\n----- last 40 lines of %s -----\n' "$f" >&2
        # The servers always colour their logs; strip the escape codes.
        tail -n 40 "$f" | sed $'s/\x1b\\[[0-9;]*m//g' >&2 || true
    done
    printf -- '----- end of logs -----\n' >&2
}

# wait_ready DIR DEADLINE NAME... — every listed broker answers and is registered.
wait_ready() {
    local dir=$1 deadline=$2
    shift 2
    local nsaddr name key master addr reason expected=() pending signer=() registered_args=()
    nsaddr=$(state_get NAMESRV_ADDR)
    if [[ -n $(state_get ACL_ADMIN_ACCESS_KEY) ]]; then
        signer=("$(state_get ACL_ADMIN_ACCESS_KEY)" "$(state_get ACL_ADMIN_SECRET_KEY)")
        registered_args=(--signer "${signer[@]}")
    fi
    for name in "$@"; do
        key=$(broker_key "$name")
        # A slave registers under its master's broker name.
        master=$(state_get "${key}_OF")
        expected+=("${master:-$name}=$(state_get "${key}_ADDR")")
    done
    while :; do
        reason=""
        alive "$(state_get NAMESRV_PID)" || reason="the name server (pid $(state_get NAMESRV_PID)) exited"
        for name in "$@"; do
            key=$(broker_key "$name")
            [[ -n $reason ]] || alive "$(state_get "${key}_PID")" ||
                reason="$name (pid $(state_get "${key}_PID")) exited"
        done
        if [[ -n $reason ]]; then
            log "error: $reason during startup"
            return 1
        fi
        pending=""
        if ! pending=$(py port-open "$nsaddr" 2>&1); then
            :
        else
            pending=""
            for name in "$@"; do
                addr=$(state_get "$(broker_key "$name")_ADDR")
                # GET_BROKER_RUNTIME_INFO (28): the broker itself answers a real request
                # (signed by the super user when the brokers require signatures).
                if ! pending=$(probe_env py ping "$addr" 28 "${signer[@]}" 2>&1); then
                    pending="$name: $pending"
                    break
                fi
                pending=""
            done
            if [[ -z $pending ]] &&
                ! pending=$(py registered "$nsaddr" "${registered_args[@]}" "${expected[@]}" 2>&1); then
                :
            elif [[ -z $pending ]]; then
                return 0
            fi
        fi
        if ((SECONDS >= deadline)); then
            log "error: cluster in $dir not ready before the deadline; last check: $pending"
            return 1
        fi
        sleep 0.25
    done
}

# probe_env CMD... — run CMD with the cluster's TLS probe settings in its environment.
probe_env() {
    if [[ -n $(state_get TLS_CERT) ]]; then
        PROBE_TLS=1 PROBE_TLS_CERT=$(state_get TLS_PROBE_CERT) PROBE_TLS_KEY=$(state_get TLS_PROBE_KEY) "$@"
    else
        "$@"
    fi
}

start_watchdog() {
    local dir=$1 owner=$2
    # Polls the owner once a second; when it is gone, becomes `broker.sh stop DIR --rm-store`.
    (
        trap '' HUP INT
        while alive "$owner"; do
            sleep 1
        done
        exec "$SCRIPT" stop "$dir" --rm-store
    ) </dev/null >>"$dir/watchdog.log" 2>&1 &
    WATCHDOG_SPAWNED=$!
}

# store_room PATH NEED — whether the file system of PATH stays at most STORE_DISK_LIMIT percent
# full, counted as the broker does (f_bavail of f_blocks), once NEED more bytes are used there.
# Sets ROOM to a description of its state for the log.
store_room() {
    local path=$1 need=$2 blocks avail size total free
    ROOM="unknown (cannot stat $path)"
    read -r blocks avail size < <(stat -f -c '%b %a %S' "$path" 2>/dev/null) || return 1
    [[ $blocks =~ ^[0-9]+$ && $avail =~ ^[0-9]+$ && $size =~ ^[0-9]+$ && $blocks -gt 0 ]] || return 1
    total=$((blocks * size))
    free=$((avail * size))
    ROOM="$(((blocks - avail) * 100 / blocks)) % used by the broker's count, $((free >> 20)) MiB available of $((total >> 20)) MiB"
    ((free >= need && (total - free + need) * 100 <= total * STORE_DISK_LIMIT))
}

# choose_store_root DIR BROKERS — sets START_STORE_ROOT to the directory that holds the
# brokers' stores (START_STORE_ROOT/<broker>), or to "" for DIR/<broker>/store.
choose_store_root() {
    local dir=$1 need=$(($2 * STORE_BYTES_PER_BROKER)) asked=$START_STORE_DIR why
    START_STORE_ROOT=""
    if [[ -n $asked ]]; then
        mkdir -p "$asked" || die "cannot create the store directory $asked"
        START_STORE_ROOT=$(mktemp -d "$asked/rocketmq-sync-store.XXXXXX") ||
            die "cannot create a store directory under $asked"
        if ! store_room "$START_STORE_ROOT" "$need"; then
            log "warning: the file system of $asked is $ROOM; brokers refuse to start and to store messages above $BROKER_DISK_WARNING_RATIO % (using it as asked)"
        fi
        log "message stores in $START_STORE_ROOT"
        return 0
    fi
    store_room "$dir" "$need" && return 0
    why="the file system of $dir is $ROOM, too full for $2 broker store(s) of up to $((STORE_BYTES_PER_BROKER >> 20)) MiB (brokers refuse to start and to store messages above $BROKER_DISK_WARNING_RATIO %)"
    if [[ -d /dev/shm && -w /dev/shm && $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
        if store_room /dev/shm "$need"; then
            START_STORE_ROOT=$(mktemp -d /dev/shm/rocketmq-sync-store.XXXXXX) ||
                die "cannot create a store directory under /dev/shm"
            log "$why; putting the message stores on tmpfs in $START_STORE_ROOT (/dev/shm: $ROOM)"
            return 0
        fi
        why+="; /dev/shm has no room either ($ROOM)"
    else
        why+="; there is no writable tmpfs /dev/shm"
    fi
    log "warning: $why; starting with the stores in $dir anyway (--store-dir or ROCKETMQ_SYNC_STORE_DIR choose another place)"
}

# disk_hint — after a failed start: the broker's log says only "Service lifecycle operation
# failed" when its store's disk is too full, so name the disk if it may be the cause.
disk_hint() {
    local key store
    for key in "${STATE_KEYS[@]}"; do
        [[ $key == BROKER_*_STORE ]] || continue
        store=${STATE[$key]}
        store_room "$store" "$STORE_COMMIT_LOG_FILE_SIZE" ||
            log "note: the file system of $store is $ROOM; a broker does not start when its store is fuller than $BROKER_DISK_WARNING_RATIO % or has less than one commit log file ($((STORE_COMMIT_LOG_FILE_SIZE >> 20)) MiB) free"
    done
}

# remove_store_root ROOT — delete a store directory made by choose_store_root.
remove_store_root() {
    local root=$1
    [[ -n $root && -d $root ]] || return 0
    [[ $(basename "$root") == rocketmq-sync-store.* ]] || {
        log "warning: not deleting $root: not a store directory made by broker.sh"
        return 0
    }
    rm -rf "$root"
}

cmd_start() {
    local brokers=1 auto_create=true acl_file="" dir="" owner="" slaves=false
    local timeout="${ROCKETMQ_SYNC_START_TIMEOUT:-60}"
    local tls=() client_auth=() f
    START_STORE_DIR=${ROCKETMQ_SYNC_STORE_DIR:-}
    START_BROKER_SETTINGS=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --tls)
                [[ $# -ge 3 ]] || die "--tls needs CERT KEY"
                tls=("$2" "$3")
                shift 3
                ;;
            --tls-client-auth)
                [[ $# -ge 4 ]] || die "--tls-client-auth needs CA CERT KEY"
                client_auth=("$2" "$3" "$4")
                shift 4
                ;;
            --brokers) brokers=${2:?--brokers needs a number}; shift 2 ;;
            --no-auto-create) auto_create=false; shift ;;
            --broker-set)
                [[ ${2:-} =~ ^[A-Za-z][A-Za-z0-9]*=.+$ ]] || die "--broker-set needs KEY=VALUE, got '${2:-}'"
                START_BROKER_SETTINGS+="${2%%=*} = ${2#*=}"$'\n'
                shift 2
                ;;
            --slaves) slaves=true; shift ;;
            --acl) acl_file=${2:?--acl needs a plain_acl.yml file}; shift 2 ;;
            --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
            --store-dir) START_STORE_DIR=${2:?--store-dir needs a directory}; shift 2 ;;
            --owner-pid) owner=${2:?--owner-pid needs a pid}; shift 2 ;;
            --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
            *) die "start: unknown argument '$1'" ;;
        esac
    done
    [[ $brokers =~ ^[1-9][0-9]*$ && $brokers -le 26 ]] || die "--brokers must be 1..26"
    [[ -z $owner || $owner =~ ^[0-9]+$ ]] || die "--owner-pid must be a number"
    [[ -z $owner ]] || alive "$owner" || die "owner pid $owner is not running"
    if [[ -n $acl_file ]]; then
        [[ -f $acl_file && -r $acl_file ]] || die "--acl: cannot read $acl_file"
        acl_file=$(cd "$(dirname "$acl_file")" && pwd)/$(basename "$acl_file")
    fi
    [[ ${#client_auth[@]} -eq 0 || ${#tls[@]} -gt 0 ]] || die "--tls-client-auth needs --tls"
    for f in "${tls[@]}" "${client_auth[@]}"; do
        [[ -r $f ]] || die "TLS file '$f' is not readable"
    done
    [[ -z $acl_file || ${#tls[@]} -eq 0 ]] || die "--acl and --tls cannot be combined"
    command -v python3 >/dev/null || die "python3 is needed to pick ports and probe the cluster"
    START_BROKER_BIN=$BROKER_BIN
    [[ ${#tls[@]} -eq 0 ]] || START_BROKER_BIN=$BROKER_TLS_BIN
    ensure_installed "$START_BROKER_BIN"
    # Absolute paths: the servers run in directories of their own.
    START_TLS=()
    for f in "${tls[@]}" "${client_auth[@]}"; do
        START_TLS+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
    done

    if [[ -z $dir ]]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/rocketmq-sync-cluster.XXXXXX")
    else
        mkdir -p "$dir"
        dir=$(cd "$dir" && pwd)
        if state_load "$dir"; then
            local k
            for k in "${STATE_KEYS[@]}"; do
                if [[ $k == *_PID ]] && alive "${STATE[$k]}"; then
                    die "$dir already has a running cluster ($k=${STATE[$k]}); stop it first"
                fi
            done
        fi
    fi

    local names=() i letters=abcdefghijklmnopqrstuvwxyz
    for ((i = 0; i < brokers; i++)); do
        names+=("broker-${letters:i:1}")
    done
    choose_store_root "$dir" "${#names[@]}"

    local attempt started=$SECONDS
    for attempt in 1 2 3; do
        if start_once "$dir" "$auto_create" "$acl_file" "$timeout" "$slaves" "${names[@]}"; then
            if [[ -n $owner ]]; then
                start_watchdog "$dir" "$owner"
                state_set OWNER_PID "$owner"
                state_set WATCHDOG_PID "$WATCHDOG_SPAWNED"
                state_write "$dir"
            fi
            log "cluster ready in $((SECONDS - started)) s: name server $(state_get NAMESRV_ADDR), brokers ${names[*]}$([[ $slaves == true ]] && echo " with slaves") (dir $dir${START_STORE_ROOT:+, stores in $START_STORE_ROOT})"
            cat "$dir/cluster.env"
            return 0
        fi
        if grep -qi 'address already in use' "$dir"/*.log 2>/dev/null && [[ $attempt -lt 3 ]]; then
            log "a port was taken meanwhile; retrying with new ports (attempt $((attempt + 1)))"
            cmd_stop "$dir" >/dev/null 2>&1 || true
            mkdir -p "$dir/failed-attempt-$attempt"
            mv "$dir"/*.log "$dir/failed-attempt-$attempt/" 2>/dev/null || true
            continue
        fi
        print_log_tails "$dir"
        disk_hint
        cmd_stop "$dir" || true
        # Stores outside DIR may be on tmpfs, in memory: they hold nothing to diagnose.
        remove_store_root "$START_STORE_ROOT"
        die "could not start the cluster (files kept in $dir)"
    done
}

# start_once DIR AUTO_CREATE ACL_FILE TIMEOUT NAME... — one attempt with freshly picked ports.
start_once() {
    local dir=$1 auto_create=$2 acl_file=$3 timeout=$4 slaves=$5
    shift 5
    local names=("$@") procs=("$@") slave_names=() ports nsport nsaddr name key i base auth="" admin_sk store
    local master master_ha
    if [[ $slaves == true ]]; then
        for name in "${names[@]}"; do
            slave_names+=("$name-slave")
        done
        procs+=("${slave_names[@]}")
    fi
    read -r -a ports <<<"$(py ports "${#procs[@]}")" || return 1
    [[ ${#ports[@]} -eq $((1 + ${#procs[@]})) ]] || { log "error: could not pick ports"; return 1; }
    nsport=${ports[0]}
    nsaddr="127.0.0.1:$nsport"

    STATE=()
    STATE_KEYS=()
    state_set CLUSTER_DIR "$dir"
    state_set CLUSTER_NAME "$CLUSTER_NAME"
    state_set ROCKETMQ_VERSION "$ROCKETMQ_VERSION"
    state_set AUTO_CREATE_TOPIC "$auto_create"
    state_set BROKER_BIN "$START_BROKER_BIN"
    [[ -z $START_STORE_ROOT ]] || state_set STORE_ROOT "$START_STORE_ROOT"
    if [[ ${#START_TLS[@]} -gt 0 ]]; then
        state_set TLS_CERT "${START_TLS[0]}"
        state_set TLS_KEY "${START_TLS[1]}"
        if [[ ${#START_TLS[@]} -gt 2 ]]; then
            state_set TLS_CLIENT_CA "${START_TLS[2]}"
            state_set TLS_PROBE_CERT "${START_TLS[3]}"
            state_set TLS_PROBE_KEY "${START_TLS[4]}"
        fi
    fi
    state_set BROKER_NAMES "$(IFS=,; printf '%s' "${names[*]}")"
    state_set SLAVE_NAMES "$(IFS=,; printf '%s' "${slave_names[*]}")"
    state_set NAMESRV_ADDR "$nsaddr"
    state_set NAMESRV_PORT "$nsport"
    state_set NAMESRV_LOG "$dir/namesrv.log"
    if [[ -n $acl_file ]]; then
        admin_sk=$(py secret) || return 1
        state_set ACL_FILE "$acl_file"
        state_set ACL_ADMIN_ACCESS_KEY rocketmq-sync-admin
        state_set ACL_ADMIN_SECRET_KEY "$admin_sk"
        mkdir -p "$dir/namesrv"
        cp -f "$acl_file" "$dir/namesrv/plain_acl.yml"
        auth_toml "$dir/namesrv" "$dir/namesrv/plain_acl.yml" rocketmq-sync-admin "$admin_sk" \
            >"$dir/namesrv/namesrv.toml"
    fi
    for i in "${!procs[@]}"; do
        name=${procs[$i]}
        key=$(broker_key "$name")
        base=${ports[$((i + 1))]}
        master="" master_ha=""
        if [[ $name == *-slave ]]; then
            master=${name%-slave}
            master_ha="127.0.0.1:$(state_get "$(broker_key "$master")_HA_PORT")"
            state_set "${key}_OF" "$master"
        fi
        store=$dir/$name/store
        [[ -z $START_STORE_ROOT ]] || store=$START_STORE_ROOT/$name
        mkdir -p "$dir/$name/conf" "$store"
        if [[ -n $acl_file ]]; then
            cp -f "$acl_file" "$dir/$name/conf/plain_acl.yml"
            auth=$(auth_toml "$dir/$name" "$dir/$name/conf/plain_acl.yml" \
                rocketmq-sync-admin "$admin_sk")
            # The broker signs its registrations with the name server as the super user.
            auth+=$'\n'"innerClientAuthenticationCredentials = '{\"accessKey\":\"rocketmq-sync-admin\",\"secretKey\":\"$admin_sk\"}'"
        fi
        write_broker_toml "$dir/$name/conf/broker.toml" "${master:-$name}" "$nsaddr" "$((base + 2))" \
            "$((base + 3))" "$store" "$auto_create" "$auth" "$master_ha"
        state_set "${key}_STORE" "$store"
        state_set "${key}_ADDR" "127.0.0.1:$((base + 2))"
        state_set "${key}_PORT" "$((base + 2))"
        state_set "${key}_FAST_PORT" "$base"
        state_set "${key}_HA_PORT" "$((base + 3))"
        state_set "${key}_LOG" "$dir/$name.log"
        state_set "${key}_CONF" "$dir/$name/conf/broker.toml"
    done

    log "starting name server on $nsaddr${acl_file:+ (ACL from $acl_file)}"
    spawn_namesrv "$dir" "$nsport"
    state_set NAMESRV_PID "$SPAWNED_PID"
    state_write "$dir"
    for name in "${procs[@]}"; do
        key=$(broker_key "$name")
        log "starting $name on $(state_get "${key}_ADDR") (auto-create topics: $auto_create${acl_file:+, ACL from $acl_file})"
        spawn_broker "$dir" "$name" "$nsaddr"
        state_set "${key}_PID" "$SPAWNED_PID"
        state_write "$dir"
    done
    wait_ready "$dir" $((SECONDS + timeout)) "${procs[@]}"
}

# ---------------------------------------------------------------------------------------------
# stop / kill / restart / status

# stop_pids SIGNAL_GRACE PID... — SIGTERM, wait up to 5 s, then SIGKILL.
stop_pids() {
    local pid pids=() deadline
    for pid in "$@"; do
        if [[ -n $pid && $pid != "$$" ]] && alive "$pid"; then
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        local left=0
        for pid in "${pids[@]}"; do
            if alive "$pid"; then left=1; fi
        done
        [[ $left -eq 1 ]] || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if alive "$pid"; then
            log "pid $pid did not exit within 5 s of SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

cmd_stop() {
    local dir=${1:?usage: broker.sh stop DIR [--rm-store|--rm]} mode=${2:-}
    case $mode in "" | --rm-store | --rm) ;; *) die "stop: unknown option '$mode'" ;; esac
    if ! state_load "$dir"; then
        log "no cluster.env in $dir; nothing to stop"
    else
        local key pids=()
        # The watchdog first (unless that is us), then the brokers, the name server last.
        for key in "${STATE_KEYS[@]}"; do
            [[ $key == WATCHDOG_PID ]] && pids+=("${STATE[$key]}")
        done
        stop_pids "${pids[@]}"
        pids=()
        for key in "${STATE_KEYS[@]}"; do
            [[ $key == BROKER_*_PID ]] && pids+=("${STATE[$key]}")
        done
        stop_pids "${pids[@]}"
        stop_pids "$(state_get NAMESRV_PID)"
        log "stopped the cluster in $dir"
    fi
    case $mode in
        --rm-store)
            local d
            for d in "$dir"/*/store; do
                [[ -d $d ]] && rm -rf "$d"
            done
            remove_store_root "$(state_get STORE_ROOT)"
            ;;
        --rm)
            remove_store_root "$(state_get STORE_ROOT)"
            rm -rf "$dir"
            ;;
    esac
}

broker_name_check() {
    local dir=$1 name=$2
    state_load "$dir" || die "no cluster.env in $dir"
    [[ -n $(state_get "$(broker_key "$name")_ADDR") ]] || die "no broker named '$name' in $dir"
}

# sigkill WHAT PID — SIGKILL PID and wait (up to 5 s) until it is gone.
sigkill() {
    local what=$1 pid=$2 deadline
    if alive "$pid"; then
        kill -KILL "$pid"
        deadline=$((SECONDS + 5))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
        alive "$pid" && die "$what (pid $pid) still alive after SIGKILL"
        log "killed $what (pid $pid) with SIGKILL"
    else
        log "$what (pid $pid) is not running"
    fi
}

cmd_kill_broker() {
    local dir=${1:?usage: broker.sh kill-broker DIR NAME} name=${2:?usage: broker.sh kill-broker DIR NAME}
    broker_name_check "$dir" "$name"
    sigkill "$name" "$(state_get "$(broker_key "$name")_PID")"
}

cmd_kill_namesrv() {
    local dir=${1:?usage: broker.sh kill-namesrv DIR}
    state_load "$dir" || die "no cluster.env in $dir"
    sigkill "the name server" "$(state_get NAMESRV_PID)"
}

# The name server starts again on its port with its kvConfig, and knows no broker until they
# register again (every 30 s); this returns once it answers GET_BROKER_CLUSTER_INFO.
cmd_restart_namesrv() {
    local dir=${1:?usage: broker.sh restart-namesrv DIR}
    state_load "$dir" || die "no cluster.env in $dir"
    dir=$(cd "$dir" && pwd)
    local pid nsaddr pending="" signer=() deadline=$((SECONDS + ${ROCKETMQ_SYNC_START_TIMEOUT:-60}))
    pid=$(state_get NAMESRV_PID)
    nsaddr=$(state_get NAMESRV_ADDR)
    if alive "$pid"; then
        log "the name server (pid $pid) is running; stopping it first"
        stop_pids "$pid"
    fi
    if [[ -n $(state_get ACL_ADMIN_ACCESS_KEY) ]]; then
        signer=(--signer "$(state_get ACL_ADMIN_ACCESS_KEY)" "$(state_get ACL_ADMIN_SECRET_KEY)")
    fi
    ensure_installed
    log "restarting the name server on $nsaddr"
    printf '\n===== restart at %s =====\n' "$(date -u +%FT%TZ)" >>"$dir/namesrv.log"
    spawn_namesrv "$dir" "$(state_get NAMESRV_PORT)"
    state_set NAMESRV_PID "$SPAWNED_PID"
    state_write "$dir"
    until pending=$(py registered "$nsaddr" "${signer[@]}" 2>&1); do
        if ! alive "$SPAWNED_PID" || ((SECONDS >= deadline)); then
            print_log_tails "$dir"
            die "could not restart the name server (last check: $pending; files kept in $dir)"
        fi
        sleep 0.25
    done
    log "the name server is back (pid $SPAWNED_PID)"
    cat "$dir/cluster.env"
}

cmd_restart_broker() {
    local dir=${1:?usage: broker.sh restart-broker DIR NAME} name=${2:?usage: broker.sh restart-broker DIR NAME}
    broker_name_check "$dir" "$name"
    dir=$(cd "$dir" && pwd)
    local key pid timeout="${ROCKETMQ_SYNC_START_TIMEOUT:-60}"
    key=$(broker_key "$name")
    pid=$(state_get "${key}_PID")
    if alive "$pid"; then
        log "$name (pid $pid) is running; stopping it first"
        stop_pids "$pid"
    fi
    ensure_installed "$(state_get BROKER_BIN)"
    log "restarting $name on $(state_get "${key}_ADDR")"
    printf '\n===== restart at %s =====\n' "$(date -u +%FT%TZ)" >>"$dir/$name.log"
    spawn_broker "$dir" "$name" "$(state_get NAMESRV_ADDR)"
    state_set "${key}_PID" "$SPAWNED_PID"
    state_write "$dir"
    if ! wait_ready "$dir" $((SECONDS + timeout)) "$name"; then
        print_log_tails "$dir"
        die "could not restart $name (files kept in $dir)"
    fi
    log "$name is back (pid $SPAWNED_PID)"
    cat "$dir/cluster.env"
}

cmd_status() {
    local dir=${1:?usage: broker.sh status DIR} key
    state_load "$dir" || die "no cluster.env in $dir"
    cat "$dir/cluster.env"
    for key in "${STATE_KEYS[@]}"; do
        if [[ $key == *_PID ]]; then
            if alive "${STATE[$key]}"; then
                log "$key=${STATE[$key]} alive"
            else
                log "$key=${STATE[$key]} not running"
            fi
        fi
    done
}

main() {
    local cmd=${1:-}
    [[ $# -eq 0 ]] || shift
    case $cmd in
        install) cmd_install "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        kill-broker) cmd_kill_broker "$@" ;;
        restart-broker) cmd_restart_broker "$@" ;;
        kill-namesrv) cmd_kill_namesrv "$@" ;;
        restart-namesrv) cmd_restart_namesrv "$@" ;;
        status) cmd_status "$@" ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d' | sed 's/^# \{0,1\}//' ;;
        *) die "usage: broker.sh install|start|stop|kill-broker|restart-broker|kill-namesrv|restart-namesrv|status (see --help)" ;;
    esac
}

main "$@"
