//! Backpressure and bounded memory on the hot path (issues 9 and 10): a fast sender is slowed by
//! TCP instead of refused, `persist: false` losses are reported, a slow reader holds a bounded
//! number of bytes in the broker, and the WebSocket glue refuses bad frames by the RFC's codes.
//!
//! Black-box over loopback against the real binary (debug build, small counts). Some tests speak
//! raw WebSocket over a `TcpStream` so that they can write what a well-behaved client library
//! would not (a 2^40-byte frame header, invalid UTF-8) and see the TCP connection itself.

mod common;

use std::time::Duration;

use common::{Server, Ws, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The broker's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

/// A WebSocket client on a raw TCP connection: the upgrade is done, frames are written by hand.
async fn raw_ws(server: &Server, client: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    let req = format!(
        "GET /ws/{client} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.port
    );
    tcp.write_all(req.as_bytes()).await.expect("write upgrade");
    // Read the 101 response byte by byte so that no frame after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(WAIT, tcp.read_u8()).await.expect("upgrade answer timed out").expect("read upgrade");
        head.push(b);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    tcp.into_split()
}

/// A masked client frame (zero mask key, so the payload goes as is).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// What the server wrote until it closed the TCP connection (or `within` passed): its frames as
/// (opcode, payload), and whether the connection reached EOF.
async fn server_frames(mut rd: OwnedReadHalf, within: Duration) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = vec![0u8; 64 * 1024];
    let eof = loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 2 {
        let (op, len7) = (buf[at] & 0x0F, usize::from(buf[at + 1] & 0x7F));
        let (len, head) = match len7 {
            126 if buf.len() >= at + 4 => (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])), 4),
            127 if buf.len() >= at + 10 => (u64::from_be_bytes(buf[at + 2..at + 10].try_into().expect("8 bytes")) as usize, 10),
            126 | 127 => break,
            n => (n, 2),
        };
        if buf.len() < at + head + len {
            break;
        }
        frames.push((op, buf[at + head..at + head + len].to_vec()));
        at += head + len;
    }
    (frames, eof)
}

/// The close code of the server's close frame, if it sent one.
fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames.iter().find(|(op, _)| *op == 0x8).and_then(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
}

// ---------------------------------------------------------------------------------------------
// Backpressure, not refusal
// ---------------------------------------------------------------------------------------------

/// A sender that writes 30,000 sends without waiting for any reply: the broker stops reading its
/// socket whenever 500 await their `sent`, so every one is answered and delivered, none refused.
#[tokio::test]
async fn flat_out_sender_is_slowed_not_refused() {
    const N: usize = 30_000;
    let server = Server::start(&["--max-in-flight", "500"]);
    let mut receiver = Ws::connect(&server, "sink").await;
    let sender = Ws::connect(&server, "fast").await;
    let counting = tokio::spawn(async move {
        let mut got = 0;
        while got < N {
            match receiver.try_recv(Duration::from_secs(30)).await {
                Some(f) if f["type"] == "message" => {
                    assert_eq!(f["message"]["payload"]["n"], got, "messages arrive in order");
                    got += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        got
    });
    let (mut sink, mut stream) = sender.stream.split();
    let replies = tokio::spawn(async move {
        let (mut sent, mut errors) = (0, Vec::new());
        while sent + errors.len() < N {
            let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
            let Ok(Some(Ok(WsMessage::Text(t)))) = next else { break };
            let f: Value = serde_json::from_str(&t).expect("JSON");
            match f["type"].as_str() {
                Some("sent") => sent += 1,
                Some("error") => errors.push(f),
                _ => {}
            }
        }
        (sent, errors)
    });
    let writer = tokio::spawn(async move {
        for n in 0..N {
            let frame = json!({"type": "send", "to": "sink", "msg_type": "t", "payload": {"n": n}, "ref": n.to_string()});
            sink.feed(WsMessage::Text(frame.to_string())).await.expect("write");
        }
        sink.flush().await.expect("flush");
        sink
    });
    let _sink = tokio::time::timeout(Duration::from_secs(120), writer).await.expect("writer finished").expect("writer");
    let (sent, errors) = tokio::time::timeout(Duration::from_secs(120), replies).await.expect("replies").expect("replies task");
    assert!(errors.is_empty(), "{} errors, first: {}", errors.len(), errors[0]);
    assert_eq!(sent, N, "every send answered `sent`");
    let got = tokio::time::timeout(Duration::from_secs(120), counting).await.expect("receiver").expect("receiver task");
    assert_eq!(got, N, "every message delivered");
}

// ---------------------------------------------------------------------------------------------
// No silent loss for persist: false
// ---------------------------------------------------------------------------------------------

/// A `persist: false` burst to a receiver that stops reading: the sender is told `delivered` only
/// for what the receiver's session took, `dropped` (recipients 0) for the rest, and the receiver,
/// once it reads again, gets exactly the delivered ones plus `dropped` frames counting the rest.
#[tokio::test]
async fn persist_false_burst_to_a_stalled_reader_is_never_silently_lost() {
    const N: usize = 6_000;
    let server = Server::start(&["--session-queue-bytes", "1048576", "--client-queue-bytes", "1048576"]);
    let mut receiver = Ws::connect(&server, "stalled").await;
    let mut sender = Ws::connect(&server, "burst").await;
    let payload = "x".repeat(4000);
    let (mut delivered, mut dropped) = (0u64, 0u64);
    // The receiver reads nothing meanwhile: its socket buffers fill, then its byte budget.
    for n in 0..N {
        let frame = json!({"type": "send", "to": "stalled", "msg_type": "t", "payload": {"n": n, "pad": payload}, "persist": false, "ref": n.to_string()});
        sender.send(frame).await;
    }
    let mut answered = 0;
    while answered < N {
        let f = sender.recv().await;
        match (f["type"].as_str(), f["status"].as_str()) {
            (Some("sent"), Some("delivered")) => {
                assert_eq!(f["recipients"], 1, "{f}");
                delivered += 1;
            }
            (Some("sent"), Some("dropped")) => {
                assert_eq!(f["recipients"], 0, "{f}");
                dropped += 1;
            }
            _ => panic!("unexpected answer: {f}"),
        }
        answered += 1;
    }
    eprintln!("persist:false burst: {delivered} delivered, {dropped} dropped");
    assert!(dropped > 0, "the burst ({N} × 4 KB) must overflow a 1 MiB budget plus socket buffers");
    // Now read: every `delivered` message arrives, and `dropped` frames account for the rest.
    let (mut got, mut told) = (0u64, 0u64);
    while got < delivered || told < dropped {
        let f = receiver.try_recv(WAIT).await.unwrap_or_else(|| panic!("stalled after {got}/{delivered} messages, {told}/{dropped} dropped told"));
        match f["type"].as_str() {
            Some("message") => got += 1,
            Some("dropped") => {
                assert_eq!(f["reason"], "slow_consumer", "{f}");
                assert!(f["since"].is_string(), "{f}");
                told += f["count"].as_u64().expect("count");
            }
            _ => {}
        }
    }
    assert_eq!((got, told), (delivered, dropped));
    assert!(receiver.try_recv(Duration::from_millis(300)).await.is_none(), "nothing more");
}

// ---------------------------------------------------------------------------------------------
// Memory bounded in bytes
// ---------------------------------------------------------------------------------------------

/// 100 messages of 800 KB to a WebSocket session that never reads: the broker holds about its
/// byte budget (4 MiB here), not the 80 MB; the persisted rest is fed from the store once the
/// session reads again, so nothing is lost.
#[tokio::test]
async fn slow_websocket_reader_holds_a_bounded_number_of_bytes() {
    const N: usize = 100;
    let server = Server::start(&["--session-queue-bytes", "4194304", "--client-queue-bytes", "4194304"]);
    let mut reader = Ws::connect(&server, "slow").await;
    let mut sender = Ws::connect(&server, "big").await;
    let big = "y".repeat(800_000);
    let before = rss_kib(server.pid());
    let mut delivered = 0;
    for n in 0..N {
        sender.send(json!({"type": "send", "to": "slow", "msg_type": "t", "payload": {"n": n, "pad": big}, "persist": false, "ref": n.to_string()})).await;
        let f = sender.recv_type("sent").await;
        if f["status"] == "delivered" {
            delivered += 1;
        }
    }
    let grown_mib = rss_kib(server.pid()).saturating_sub(before) / 1024;
    eprintln!("slow WebSocket reader: {delivered}/{N} delivered, RSS +{grown_mib} MiB");
    assert!(delivered < 30, "{delivered} of {N} handed to a session that reads nothing");
    assert!(grown_mib < 48, "RSS grew by {grown_mib} MiB for a 4 MiB budget (80 MB sent)");
    // Persisted messages past the budget wait in the store and arrive once the reader reads.
    for n in 0..20 {
        sender.send(json!({"type": "send", "to": "slow", "msg_type": "kept", "payload": {"n": n, "pad": big}, "ref": format!("k{n}")})).await;
        let f = sender.recv_type("sent").await;
        assert!(f["status"] == "delivered" || f["status"] == "queued", "{f}");
    }
    let mut kept = 0;
    while kept < 20 {
        let m = reader.try_recv(WAIT).await.expect("the persisted messages arrive");
        if m["type"] == "message" && m["message"]["type"] == "kept" {
            assert_eq!(m["message"]["payload"]["n"], kept, "in order");
            kept += 1;
        }
    }
}

/// The same for an SSE reader that reads nothing: only about its budget is handed over (and so
/// counted delivered); the rest stays queued and arrives when it reads.
#[tokio::test]
async fn slow_sse_reader_gets_only_its_budget_handed_over() {
    const N: usize = 60;
    let server = Server::start(&["--session-queue-bytes", "4194304", "--client-queue-bytes", "4194304"]);
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    tcp.write_all(format!("GET /stream/events?client_id=sse HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", server.port).as_bytes()).await.expect("GET");
    let mut confirmed = Vec::new();
    while !String::from_utf8_lossy(&confirmed).contains("connection_confirmed") {
        let mut b = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut b)).await.expect("SSE answer").expect("read");
        assert!(n > 0, "SSE stream closed");
        confirmed.extend_from_slice(&b[..n]);
    }
    let mut sender = Ws::connect(&server, "big").await;
    let big = "z".repeat(800_000);
    let before = rss_kib(server.pid());
    let mut delivered = 0;
    for n in 0..N {
        let f = sender.send_msg("sse", "t", json!({"n": n, "pad": big})).await;
        if f["status"] == "delivered" {
            delivered += 1;
        }
    }
    let grown_mib = rss_kib(server.pid()).saturating_sub(before) / 1024;
    eprintln!("slow SSE reader: {delivered}/{N} delivered, RSS +{grown_mib} MiB");
    assert!(delivered < 25, "{delivered} of {N} counted delivered to a stream that read nothing");
    // The messages are in the in-memory store (48 MB, which sled's log and cache hold about twice);
    // the queue in front of the reader is not. `delivered` above is the exact check; this one is
    // a gross bound, as RSS moves with the allocator and the tests running beside this one.
    assert!(grown_mib < 160, "RSS grew by {grown_mib} MiB");
    // Reading now brings every message, the queued ones fed from the store.
    let mut buf = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen < N {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await.expect("all messages within 60 s").expect("read");
        assert!(n > 0, "stream closed after {seen} messages");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            if String::from_utf8_lossy(&block).contains("event: message") {
                seen += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The WebSocket glue
// ---------------------------------------------------------------------------------------------

/// A frame header declaring 2^40 bytes, followed by 64 MiB: refused by the declared length with
/// 1009, without the broker buffering what follows.
#[tokio::test]
async fn huge_frame_header_is_refused_by_its_declared_length() {
    let server = Server::start(&[]);
    let (rd, mut wr) = raw_ws(&server, "huge").await;
    let reading = tokio::spawn(server_frames(rd, Duration::from_secs(20)));
    let before = rss_kib(server.pid());
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    wr.write_all(&header).await.expect("header");
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    for _ in 0..64 {
        // The broker stops reading and closes: writes then block or fail, both are fine.
        match tokio::time::timeout(Duration::from_secs(3), wr.write_all(&zeros)).await {
            Ok(Ok(())) => written += 1,
            _ => break,
        }
    }
    let grown_kib = rss_kib(server.pid()).saturating_sub(before);
    let (frames, eof) = reading.await.expect("reader");
    eprintln!("2^40 header: {written} MiB written, RSS +{grown_kib} KiB");
    assert_eq!(close_code(&frames), Some(1009), "close frame; {written} MiB written; frames {:?}", frames.iter().map(|f| f.0).collect::<Vec<_>>());
    assert!(eof, "the connection is closed");
    // Before the fix the whole 64 MiB was buffered (+118 MB); allocator arenas and the other tests
    // of this binary running beside it make a few MiB of noise.
    assert!(grown_kib < 16 * 1024, "RSS grew by {grown_kib} KiB while {written} MiB were written");
}

/// A text frame that is not UTF-8 closes with 1007 (RFC 6455 §7.4.1), not 1002.
#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let server = Server::start(&[]);
    let (rd, mut wr) = raw_ws(&server, "utf").await;
    wr.write_all(&client_frame(0x1, b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}")).await.expect("write");
    let (frames, _) = server_frames(rd, Duration::from_secs(5)).await;
    assert_eq!(close_code(&frames), Some(1007), "frames {:?}", frames.iter().map(|f| f.0).collect::<Vec<_>>());

    // The same split over fragments (the session reassembles those itself).
    let (rd, mut wr) = raw_ws(&server, "utf2").await;
    let mut first = client_frame(0x1, b"{\"type\":\"ping\",\"x\":\"\xff");
    first[0] &= 0x7F; // not FIN
    wr.write_all(&first).await.expect("write");
    wr.write_all(&client_frame(0x0, b"\"}")).await.expect("write");
    // (Whether the TCP connection ends after this close: see the ignored test below.)
    let (frames, _) = server_frames(rd, Duration::from_secs(5)).await;
    assert_eq!(close_code(&frames), Some(1007), "fragmented: frames {:?}", frames.iter().map(|f| f.0).collect::<Vec<_>>());
}

/// After the client's close frame is echoed, the server closes the TCP connection itself.
#[tokio::test]
async fn clean_close_handshake_closes_the_tcp_connection() {
    let server = Server::start(&[]);
    let (rd, mut wr) = raw_ws(&server, "bye").await;
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"done");
    wr.write_all(&client_frame(0x8, &close)).await.expect("write close");
    let (frames, eof) = server_frames(rd, Duration::from_secs(5)).await;
    assert_eq!(close_code(&frames), Some(1000), "the close is echoed");
    assert!(eof, "the TCP connection is closed within 5 s of the close handshake");
}

/// The same with a client library's close (tungstenite, masked with a random key, after traffic):
/// once the handshake is done the server ends the TCP connection; tungstenite as a client waits
/// for that.
#[tokio::test]
async fn library_close_handshake_closes_the_tcp_connection() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "lib-bye").await;
    let sent = ws.send_msg("lib-bye", "t", json!(1)).await;
    assert_eq!(sent["status"], "delivered", "{sent}");
    ws.stream.close(None).await.expect("close");
    // Drain until tungstenite has seen the echo.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, ws.stream.next()).await {}
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.stream.get_mut() else { panic!("plain TCP") };
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the TCP connection is closed within 5 s: {n:?}");
}

/// A client that half-closes its side after its close frame (shutdown(SHUT_WR)) still sees the
/// server end the connection, rather than it waiting as a keep-alive HTTP connection.
#[tokio::test]
async fn close_then_half_close_ends_the_tcp_connection() {
    let server = Server::start(&[]);
    let (rd, mut wr) = raw_ws(&server, "half").await;
    wr.write_all(&client_frame(0x8, &1000u16.to_be_bytes())).await.expect("write close");
    wr.shutdown().await.expect("shutdown write half");
    let (frames, eof) = server_frames(rd, Duration::from_secs(5)).await;
    assert_eq!(close_code(&frames), Some(1000), "the close is echoed");
    assert!(eof, "the TCP connection is closed within 5 s");
}

/// After the broker itself closes a session (here 1007), the TCP connection ends too. actix-http's
/// HTTP/1 dispatcher can keep the socket after a server-started close (the session stops and its
/// close frame is written, yet the connection stays), so the WebSocket route shuts the socket down
/// through the edge's connection handle a second after the session stopped (`CLOSE_GRACE`).
#[tokio::test]
async fn server_initiated_close_ends_the_tcp_connection() {
    let server = Server::start(&[]);
    for n in 0..4 {
        let (rd, mut wr) = raw_ws(&server, &format!("srv-close-{n}")).await;
        wr.write_all(&client_frame(0x1, b"\xff")).await.expect("write");
        let (frames, eof) = server_frames(rd, Duration::from_secs(3)).await;
        assert_eq!(close_code(&frames), Some(1007));
        assert!(eof, "connection {n}: the TCP connection is still open 3 s after the server's close");
    }
}

/// `bridge_deliveries_total{transport="websocket"}`: frames handed to WebSocket sessions.
async fn ws_deliveries(server: &Server) -> u64 {
    let text = reqwest::get(server.http("/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("bridge_deliveries_total{transport=\"websocket\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A room member that reads nothing is handed only its byte budget of room messages (the rest
/// waits in the room's stream), and gets every one, in order, once it reads.
#[tokio::test]
async fn slow_room_member_is_handed_only_its_byte_budget() {
    const N: u64 = 60;
    let server = Server::start(&["--session-queue-bytes", "4194304"]);
    let mut slow = Ws::connect(&server, "slow-member").await;
    let mut talker = Ws::connect(&server, "talker").await;
    talker.send(json!({"type": "call", "ref": "c", "method": "room.create", "params": {"name": "big"}})).await;
    assert_eq!(talker.recv_type("result").await["ok"], true);
    for ws in [&mut slow, &mut talker] {
        ws.send(json!({"type": "join", "room": "big"})).await;
        loop {
            let f = ws.recv().await;
            assert_ne!(f["type"], "error", "{f}");
            if f["type"] == "event" && f["event"] == "joined" {
                break;
            }
        }
    }
    let before = ws_deliveries(&server).await;
    let big = "z".repeat(800_000);
    for n in 0..N {
        talker.send(json!({"type": "send", "room": "big", "msg_type": "t", "payload": {"n": n, "pad": big}, "ref": n.to_string()})).await;
        let f = talker.recv_type("sent").await;
        assert_ne!(f["status"], "dropped", "{f}");
    }
    let handed = ws_deliveries(&server).await - before;
    assert!(handed < 15, "{handed} of {N} 800 KB room messages handed to a member that reads nothing (4 MiB budget)");
    let mut got = 0;
    while got < N {
        let f = slow.try_recv(WAIT).await.expect("the room messages arrive once the member reads");
        if f["type"] == "message" {
            assert_eq!(f["message"]["payload"]["n"], got, "in order");
            got += 1;
        }
    }
}

/// `persist: false` in a room is never silently lost: a member over its byte budget is told with a
/// `dropped` frame naming the room, and a message nobody took answers `dropped`.
#[tokio::test]
async fn persist_false_room_messages_are_dropped_truthfully() {
    const N: u64 = 40;
    let server = Server::start(&["--session-queue-bytes", "1048576"]);
    let mut talker = Ws::connect(&server, "talker").await;
    talker.send(json!({"type": "call", "ref": "c", "method": "room.create", "params": {"name": "live"}})).await;
    assert_eq!(talker.recv_type("result").await["ok"], true);
    // Nobody else is present: the message reached nobody.
    talker.send(json!({"type": "send", "room": "live", "msg_type": "t", "payload": 0, "persist": false, "ref": "alone"})).await;
    let f = talker.recv_type("sent").await;
    assert_eq!((f["status"].as_str(), f["recipients"].as_u64()), (Some("dropped"), Some(0)), "{f}");

    let mut slow = Ws::connect(&server, "stalled").await;
    slow.send(json!({"type": "join", "room": "live"})).await;
    loop {
        let f = slow.recv().await;
        if f["type"] == "event" && f["event"] == "joined" {
            break;
        }
    }
    let pad = "p".repeat(200_000);
    let mut delivered = 0u64;
    for n in 0..N {
        talker.send(json!({"type": "send", "room": "live", "msg_type": "t", "payload": {"n": n, "pad": pad}, "persist": false, "ref": n.to_string()})).await;
        let f = loop {
            let f = talker.recv().await;
            if f["type"] == "sent" {
                break f;
            }
        };
        match f["status"].as_str() {
            Some("delivered") => delivered += 1,
            Some("dropped") => {}
            other => panic!("a persist:false room send answers delivered or dropped, got {other:?}: {f}"),
        }
    }
    assert!(delivered < N, "a 1 MiB budget cannot take {N} × 200 KB");
    let (mut got, mut dropped) = (0u64, 0u64);
    while got + dropped < N {
        let f = slow.try_recv(WAIT).await.unwrap_or_else(|| panic!("got {got} and {dropped} dropped of {N}"));
        match f["type"].as_str() {
            Some("message") => got += 1,
            Some("dropped") => {
                assert_eq!(f["room"], "live", "{f}");
                dropped += f["count"].as_u64().expect("count");
            }
            _ => {}
        }
    }
    assert_eq!(got + dropped, N, "every message is either received or counted as dropped");
    assert!(dropped > 0);
}
