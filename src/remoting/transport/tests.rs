//! `Transport` and TLS `RemotingClient` connections against an in-process rustls server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use super::Transport;
use crate::error::Error;
use crate::remoting::protocol::{FrameDecoder, RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::{RemotingClient, RemotingClientConfig, TlsConfig};

use crate::remoting::test_pki::TestPki;

const WAIT: Duration = Duration::from_secs(10);

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name("tls-test-peer".into())
        .spawn(f)
        .unwrap()
}

/// A generated PKI whose files are deleted with it.
struct TempPki {
    pki: TestPki,
    dir: PathBuf,
}

impl std::ops::Deref for TempPki {
    type Target = TestPki;

    fn deref(&self) -> &TestPki {
        &self.pki
    }
}

impl Drop for TempPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki(name: &str) -> TempPki {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rocketmq-sync-tls-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    TempPki {
        pki: TestPki::generate(&dir, name),
        dir,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration with `pki`'s server certificate; with `client_ca`, client
/// certificates signed by it are required.
fn server_config(pki: &TestPki, client_ca: Option<&Path>) -> Arc<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(certs, key).unwrap())
}

/// Accepts one connection and finishes the server side of the handshake (blocking).
fn accept_tls(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
) -> std::io::Result<(ServerConnection, StdTcpStream)> {
    let (mut sock, _) = listener.accept()?;
    sock.set_read_timeout(Some(WAIT))?;
    let mut conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock)?;
    }
    Ok((conn, sock))
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A raw client `Transport` connected over TLS to a server thread; returns both ends.
fn transport_pair(pki: &TestPki) -> (Transport, ServerConnection, StdTcpStream) {
    let (listener, addr) = listener();
    let config = server_config(pki, None);
    let server = spawn(move || accept_tls(&listener, config).unwrap());
    let connector = TlsConfig::new()
        .trust_cert_path(&pki.ca)
        .connector()
        .unwrap();
    let sock = StdTcpStream::connect(addr).unwrap();
    let t = Transport::establish(
        sock,
        &addr.to_string(),
        Instant::now() + WAIT,
        Some(&connector),
    )
    .unwrap();
    let (conn, sock) = server.join().unwrap();
    (t, conn, sock)
}

/// Reads everything `t` has until `WouldBlock`, into `out`. `Err` on EOF or a read error.
fn drain(t: &mut Transport, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match t.read(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn partial_records_yield_nothing_until_complete_and_edges_are_not_lost() {
    let pki = pki("partial");
    let (mut t, mut server, mut ssock) = transport_pair(&pki);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut t, Token(1), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);

    // Several records' worth of plaintext, encrypted on the server side by hand.
    let plaintext = pattern(100_000);
    server.set_buffer_limit(None);
    server.writer().write_all(&plaintext).unwrap();
    let mut records = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut records).unwrap();
    }
    assert!(records.len() > plaintext.len());

    // The first 10 bytes: a record header and a few bytes of its payload.
    ssock.write_all(&records[..10]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    poll.poll(&mut events, Some(WAIT)).unwrap();
    assert!(!events.is_empty(), "no readable edge for the first bytes");
    drain(&mut t, &mut got).unwrap();
    assert!(got.is_empty(), "plaintext from an incomplete record");

    // The rest in small pieces from another thread; the reader waits only for edges.
    let rest = records[10..].to_vec();
    let writer = spawn(move || {
        ssock.set_nodelay(true).unwrap();
        for piece in rest.chunks(777) {
            ssock.write_all(piece).unwrap();
        }
        ssock
    });
    while got.len() < plaintext.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {} bytes after {WAIT:?}: an edge was lost",
            got.len(),
            plaintext.len()
        );
        poll.poll(&mut events, Some(left)).unwrap();
        drain(&mut t, &mut got).unwrap();
    }
    assert_eq!(got, plaintext);
    let ssock = writer.join().unwrap();

    // A clean close_notify reads as EOF.
    server.send_close_notify();
    let mut tail = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut tail).unwrap();
    }
    (&ssock).write_all(&tail).unwrap();
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + WAIT;
    loop {
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("{n} unexpected bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                poll.poll(&mut events, Some(deadline - Instant::now()))
                    .unwrap();
                assert!(Instant::now() < deadline, "no EOF after close_notify");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn large_writes_under_backpressure_arrive_whole() {
    let pki = pki("large");
    let (mut t, server, ssock) = transport_pair(&pki);
    let total = 8 * 1024 * 1024;
    let data = pattern(total);
    // The server reads in small bites, so the client's socket buffer fills up.
    let reader = spawn(move || {
        let mut stream = StreamOwned::new(server, ssock);
        let mut got = Vec::with_capacity(total);
        let mut buf = [0u8; 1500];
        while got.len() < total {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "EOF after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut t, Token(1), Interest::WRITABLE)
        .unwrap();
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + WAIT * 3;
    let mut off = 0;
    let mut blocked = 0;
    let wait = |poll: &mut Poll, events: &mut Events| {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "writing stalled: a writable edge was lost");
        poll.poll(events, Some(left)).unwrap();
    };
    while off < total {
        // Three slices per call, as the loop's writev does with queued frames.
        let a = (off + 100_000).min(total);
        let b = (a + 7).min(total);
        let c = (b + 300_000).min(total);
        let slices = [
            std::io::IoSlice::new(&data[off..a]),
            std::io::IoSlice::new(&data[a..b]),
            std::io::IoSlice::new(&data[b..c]),
        ];
        match t.write_vectored(&slices) {
            Ok(n) => {
                assert!(n > 0);
                off += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked += 1;
                wait(&mut poll, &mut events);
            }
            Err(e) => panic!("{e}"),
        }
    }
    loop {
        match t.flush() {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(t.wants_write());
                wait(&mut poll, &mut events);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!t.wants_write());
    let got = reader.join().unwrap();
    assert!(got == data, "the server received other bytes");
    eprintln!("blocked {blocked} times");
}

/// A TLS "broker": answers every request with SUCCESS and the request's body, on every
/// connection it accepts, until the test ends. Counts handshakes that failed. A slow sink
/// instead reads at a bounded rate and answers without a body.
struct EchoServer {
    addr: String,
    failed_handshakes: Arc<AtomicUsize>,
    _thread: JoinHandle<()>,
}

impl EchoServer {
    fn start(config: Arc<ServerConfig>) -> EchoServer {
        Self::start_with(config, false)
    }

    fn start_with(config: Arc<ServerConfig>, slow_sink: bool) -> EchoServer {
        let (listener, addr) = listener();
        let failed = Arc::new(AtomicUsize::new(0));
        let failed2 = Arc::clone(&failed);
        let thread = spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                let config = Arc::clone(&config);
                let failed = Arc::clone(&failed2);
                spawn(move || {
                    let mut conn = ServerConnection::new(config).unwrap();
                    let mut sock = sock;
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut sock).is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    let _ = echo_frames(StreamOwned::new(conn, sock), slow_sink);
                });
            }
        });
        EchoServer {
            addr: addr.to_string(),
            failed_handshakes: failed,
            _thread: thread,
        }
    }
}

fn echo_frames(
    mut s: StreamOwned<ServerConnection, StdTcpStream>,
    slow_sink: bool,
) -> std::io::Result<()> {
    let mut decoder = FrameDecoder::new(usize::MAX);
    let mut buf = BytesMut::new();
    // Small reads: the client outruns the server, so its writes block often, also at the end of
    // a frame (records left in rustls once the frame is taken: `wants_write`).
    let mut chunk = vec![0u8; 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if slow_sink && buf.len() % (256 * 1024) < n {
            // Load shaping, not synchronisation: about 100 MiB/s at most, so the client's
            // socket stays full while it sends.
            std::thread::sleep(Duration::from_millis(2));
        }
        while let Some(req) = decoder.decode(&mut buf).map_err(std::io::Error::other)? {
            let mut resp = RemotingCommand::response_to(&req, ResponseCode::SUCCESS, None);
            if let Some(body) = req.body().filter(|_| !slow_sink) {
                resp.set_body(body.clone());
            }
            s.write_all(&resp.encode_to_bytes().map_err(std::io::Error::other)?)?;
            s.flush()?;
        }
    }
}

fn tls_client(tls: TlsConfig) -> RemotingClient {
    RemotingClient::start(RemotingClientConfig {
        connect_timeout: Duration::from_secs(5),
        tls: Some(tls),
        ..RemotingClientConfig::default()
    })
    .unwrap()
}

fn echo(client: &RemotingClient, addr: &str, body: Bytes) -> crate::Result<RemotingCommand> {
    let req = RemotingCommand::request(RequestCode(1)).with_body(body);
    client.invoke_sync(addr, req, WAIT)
}

#[test]
fn remoting_client_over_tls_large_and_concurrent_frames() {
    let pki = pki("echo");
    let server = EchoServer::start(server_config(&pki, None));
    let client = tls_client(TlsConfig::new().trust_cert_path(&pki.ca));

    // 6 MiB: hundreds of TLS records, many writes that block.
    let big = Bytes::from(pattern(6 * 1024 * 1024));
    let resp = echo(&client, &server.addr, big.clone()).unwrap();
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
    assert!(
        resp.body() == Some(&big),
        "the 6 MiB body came back changed"
    );

    // Many calls in flight at once, of assorted sizes.
    let (tx, rx) = crossbeam_channel::unbounded();
    let n = 300;
    for i in 0..n {
        let body = Bytes::from(vec![(i % 256) as u8; (i * 997) % 70_000]);
        let tx = tx.clone();
        let expect = body.clone();
        let req = RemotingCommand::request(RequestCode(1)).with_body(body);
        client
            .invoke_async(&server.addr, req, WAIT, move |r| {
                let ok = r.is_ok_and(|r| r.body().map_or(expect.is_empty(), |b| *b == expect));
                tx.send(ok).unwrap();
            })
            .unwrap();
    }
    for _ in 0..n {
        assert!(
            rx.recv_timeout(WAIT).unwrap(),
            "a response was lost or changed"
        );
    }
    assert_eq!(client.connection_count(), 1);
    client.shutdown();
}

#[test]
fn a_frame_larger_than_the_socket_buffers_is_sent_whole() {
    // More than the loopback socket buffers take while the server reads slowly, so the client's
    // writes block again and again within one frame, and TLS records wait in rustls between
    // writable edges.
    let pki = pki("huge");
    let server = EchoServer::start_with(server_config(&pki, None), true);
    let client = tls_client(TlsConfig::new().trust_cert_path(&pki.ca));
    let body = Bytes::from(vec![7u8; 40 * 1024 * 1024]);
    let req = RemotingCommand::request(RequestCode(1)).with_body(body);
    let resp = client
        .invoke_sync(&server.addr, req, WAIT * 6)
        .expect("the whole frame reaches the server");
    assert_eq!(resp.response_code(), ResponseCode::SUCCESS);
}

/// Asserts a handshake failure: `Error::Connect` well before the call's timeout, whose message
/// names the TLS handshake and contains `needle`.
fn assert_handshake_error(result: crate::Result<RemotingCommand>, started: Instant, needle: &str) {
    let err = result.expect_err("the handshake must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(msg.contains(needle), "{msg} should mention {needle}");
    assert!(started.elapsed() < WAIT / 2, "took {:?}", started.elapsed());
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let ours = pki("trusted");
    let theirs = pki("stranger");
    let server = EchoServer::start(server_config(&theirs, None));
    let client = tls_client(TlsConfig::new().trust_cert_path(&ours.ca));
    let started = Instant::now();
    let result = echo(&client, &server.addr, Bytes::from_static(b"x"));
    assert_handshake_error(result, started, "UnknownIssuer");
    assert!(!client.is_connected(&server.addr));

    // The same server with its certificate's CA trusted, or with verification off, works.
    let trusting = tls_client(TlsConfig::new().trust_cert_path(&theirs.ca));
    assert!(echo(&trusting, &server.addr, Bytes::from_static(b"y")).is_ok());
    let blind = tls_client(TlsConfig::new().verify_server(false));
    assert!(echo(&blind, &server.addr, Bytes::from_static(b"z")).is_ok());
    // Mozilla's roots (no CA bundle) do not know the test CA either.
    let default_roots = tls_client(TlsConfig::new());
    let started = Instant::now();
    let result = echo(&default_roots, &server.addr, Bytes::from_static(b"x"));
    assert_handshake_error(result, started, "UnknownIssuer");
}

#[test]
fn the_certificate_must_name_the_server() {
    let pki = pki("names");
    let server = EchoServer::start(server_config(&pki, None));
    // The certificate names localhost and 127.0.0.1.
    let by_name = tls_client(TlsConfig::new().trust_cert_path(&pki.ca));
    let localhost = server.addr.replace("127.0.0.1", "localhost");
    assert!(echo(&by_name, &localhost, Bytes::from_static(b"a")).is_ok());
    let overridden = tls_client(
        TlsConfig::new()
            .trust_cert_path(&pki.ca)
            .server_name("broker.other.example"),
    );
    let started = Instant::now();
    let result = echo(&overridden, &server.addr, Bytes::from_static(b"b"));
    assert_handshake_error(result, started, "not valid for name");
}

#[test]
fn client_certificates_for_servers_that_require_them() {
    let pki = pki("mtls");
    let server = EchoServer::start(server_config(&pki, Some(&pki.ca)));
    let with_cert = tls_client(
        TlsConfig::new()
            .trust_cert_path(&pki.ca)
            .client_cert(&pki.client_cert, &pki.client_key),
    );
    assert!(echo(&with_cert, &server.addr, Bytes::from_static(b"a")).is_ok());

    // Without one, TLS 1.3 lets the client finish its side first: the server's refusal arrives
    // as an alert on the connection, and the call fails with it at once.
    let without = tls_client(TlsConfig::new().trust_cert_path(&pki.ca));
    let started = Instant::now();
    let err = echo(&without, &server.addr, Bytes::from_static(b"b")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("CertificateRequired") || msg.contains("HandshakeFailure"),
        "{msg}"
    );
    assert!(started.elapsed() < WAIT / 2, "took {:?}", started.elapsed());
    assert!(server.failed_handshakes.load(Ordering::SeqCst) >= 1);
}

#[test]
fn a_plaintext_server_is_a_clear_handshake_error() {
    // A plaintext RocketMQ peer takes the ClientHello for a frame header (0x16030... is a
    // huge length) and closes, or answers in plaintext; both must fail the handshake at once.
    for answer in [None, Some(b"\x00\x00\x00\x10plaintext-answer".to_vec())] {
        let (listener, addr) = listener();
        let peer = spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 5];
            s.read_exact(&mut hello).unwrap();
            if let Some(a) = answer {
                s.write_all(&a).unwrap();
            }
            hello
        });
        let client = tls_client(TlsConfig::new().verify_server(false));
        let started = Instant::now();
        let result = echo(&client, &addr.to_string(), Bytes::from_static(b"x"));
        let hello = peer.join().unwrap();
        assert_eq!(
            hello[0], 0x16,
            "the client starts with a TLS handshake record"
        );
        assert_handshake_error(result, started, "TLS handshake failed");
    }
}

#[test]
fn a_plaintext_client_is_told_the_server_may_require_tls() {
    let pki = pki("plain");
    // A rustls server answers the plaintext frame with a TLS alert.
    let server = EchoServer::start(server_config(&pki, None));
    // A server that just drops plaintext connections, as rocketmq-rust brokers in enforcing
    // mode do after peeking at the first byte.
    let (listener, addr) = listener();
    let dropper = spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut first = [0u8; 1];
        s.peek(&mut first).unwrap();
        drop(s);
        first[0]
    });
    let client = RemotingClient::start(RemotingClientConfig::default()).unwrap();
    for (addr, needle) in [
        (server.addr.clone(), "the peer answered with a TLS record"),
        (addr.to_string(), "does it need use_tls"),
    ] {
        let started = Instant::now();
        let err = echo(&client, &addr, Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(err, Error::ConnectionClosed { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(started.elapsed() < WAIT / 2, "took {:?}", started.elapsed());
    }
    assert_ne!(dropper.join().unwrap(), 0x16, "the client spoke plaintext");
}

#[test]
fn a_silent_server_fails_the_handshake_at_the_connect_timeout() {
    let (listener, addr) = listener();
    let (release, held) = crossbeam_channel::bounded::<()>(0);
    let peer = spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let _ = held.recv();
        drop(s);
    });
    let client = RemotingClient::start(RemotingClientConfig {
        connect_timeout: Duration::from_millis(300),
        tls: Some(TlsConfig::new().verify_server(false)),
        ..RemotingClientConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let err = echo(&client, &addr.to_string(), Bytes::from_static(b"x")).unwrap_err();
    let elapsed = started.elapsed();
    drop(release);
    peer.join().unwrap();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("TLS handshake not finished"),
        "{err}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < WAIT / 2, "{elapsed:?}");
}

#[test]
fn bad_tls_files_fail_the_start() {
    let pki = pki("files");
    let not_pem = pki.ca.with_extension("txt");
    std::fs::write(&not_pem, "hello").unwrap();
    for tls in [
        TlsConfig::new().trust_cert_path(&not_pem),
        TlsConfig::new().trust_cert_path(pki.ca.with_extension("missing")),
        TlsConfig::new().client_cert(&pki.client_cert, &not_pem),
        // A key that does not belong to the certificate.
        TlsConfig::new().client_cert(&pki.client_cert, &pki.server_key),
    ] {
        let err = RemotingClient::start(RemotingClientConfig {
            tls: Some(tls.clone()),
            ..RemotingClientConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{tls:?}: {err:?}");
    }
}
