//! Compression (PROTOCOL.md section 7, "Compression"): HTTP answers gzip- or zstd-encoded when
//! asked, event streams left uncompressed and still live, request bodies sent with
//! `Content-Encoding` decoded under the size limits (a gzip bomb is refused with 413 after at most
//! the limit was decoded), other encodings refused with 415; and a WebSocket client that offers
//! `permessage-deflate` (Python `websockets`, by default) negotiates no extension and round-trips.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::{InProcess, WAIT};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A client that decodes nothing by itself (reqwest without its decompression features), so the
/// test sees the bytes the broker sent.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().expect("client")
}

#[tokio::test]
async fn request_bodies_are_decoded_under_the_limits_and_answers_compressed_when_asked() {
    let server = InProcess::with_args(&["--max-frame-bytes", "65536"]);
    let send = json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": "squeezed"}}).to_string();

    let (status, answer) = server.post_with("/api/send", &[("content-encoding", "gzip")], gzip(send.as_bytes())).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")), "{answer}");
    let zstd = zstd::encode_all(send.as_bytes(), 3).expect("zstd");
    let (status, answer) = server.post_with("/api/send", &[("content-encoding", "zstd")], zstd).await;
    assert_eq!(status, 200, "{answer}");
    let entries = vec![serde_json::from_str::<Value>(&send).expect("json"); 50];
    let batch = json!({ "messages": entries }).to_string();
    let (status, answer) = server.post_with("/api/send_batch", &[("content-encoding", "gzip")], gzip(batch.as_bytes())).await;
    assert_eq!((status, answer["results"].as_array().map(Vec::len)), (200, Some(50)), "{answer}");

    // A bomb: 64 MiB of spaces inside a JSON string, a few dozen KiB gzipped; the route's limit is
    // 64 KiB, and the batch route's 1 MiB.
    let mut bomb = br#"{"from":"alice","to":"bob","type":"note","payload":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    bomb.extend_from_slice(br#""}"#);
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 256 * 1024, "{} bytes compressed", bomb.len());
    for path in ["/api/send", "/api/send_batch", "/api/call"] {
        let (status, answer) = server.post_with(path, &[("content-encoding", "gzip")], bomb.clone()).await;
        assert_eq!(status, 413, "{path}: {answer}");
        assert!(matches!(answer["code"].as_str(), Some("too_large" | "batch_too_large")), "{path}: {answer}");
    }
    let (status, answer) = server.post_with("/api/send", &[("content-encoding", "gzip")], b"not gzip at all".to_vec()).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("bad_request")), "{answer}");
    let (status, answer) = server.post_with("/api/send", &[("content-encoding", "br")], send.clone().into_bytes()).await;
    assert_eq!((status, answer["code"].as_str()), (415, Some("unsupported_encoding")), "{answer}");
    let (status, answer) = server.post_with("/api/send", &[("content-encoding", "identity")], send.clone().into_bytes()).await;
    assert_eq!(status, 200, "{answer}");

    // Answers: compressed as asked, plain without Accept-Encoding.
    for _ in 0..30 {
        let (status, _) = server.post("/api/send", &serde_json::from_str(&send).expect("json")).await;
        assert_eq!(status, 200);
    }
    let url = server.http("/api/messages?to=bob&since=0&limit=100");
    for (accept, encoding) in [("gzip", Some("gzip")), ("zstd", Some("zstd")), ("", None)] {
        let mut req = raw_client().get(&url);
        if !accept.is_empty() {
            req = req.header("accept-encoding", accept);
        }
        let r = req.send().await.expect("GET");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().get("content-encoding").and_then(|v| v.to_str().ok()), encoding, "Accept-Encoding {accept:?}");
        let bytes = r.bytes().await.expect("body");
        let plain = match encoding {
            Some("gzip") => {
                let mut d = flate2::read::GzDecoder::new(&bytes[..]);
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut d, &mut out).expect("gunzip");
                out
            }
            Some(_) => zstd::decode_all(&bytes[..]).expect("unzstd"),
            None => bytes.to_vec(),
        };
        let page: Value = serde_json::from_slice(&plain).expect("JSON after decoding");
        assert!(page["count"].as_u64().is_some_and(|n| n >= 30), "{page}");
        if encoding.is_some() {
            assert!(bytes.len() * 3 < plain.len(), "compressed: {} of {} bytes", bytes.len(), plain.len());
        }
    }
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn an_event_stream_is_not_compressed_and_each_event_arrives_as_it_is_sent() {
    let server = InProcess::with_args(&[]);
    let r = raw_client()
        .get(server.http("/stream/events?client_id=watcher"))
        .header("accept-encoding", "gzip, zstd")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("identity"));
    let mut body = r.bytes_stream();
    for i in 0..3 {
        let (status, _) = server.post("/api/send", &json!({"from": "a", "to": "watcher", "type": "t", "payload": {"n": i}})).await;
        assert_eq!(status, 200);
        // Each event comes before the next is sent: nothing waits in an encoder.
        let mut seen = String::new();
        while !seen.contains(&format!("\"n\":{i}")) {
            let chunk = tokio::time::timeout(WAIT, body.next()).await.expect("the event in time").expect("open").expect("bytes");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    drop(body);
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn a_websocket_client_offering_permessage_deflate_gets_no_extension_and_round_trips() {
    let python = common::python::with("websockets-venv", &[("websockets", "websockets>=12")]);
    let server = InProcess::with_args(&[]);
    let script = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url):
    # compression="deflate" is the default: the client offers permessage-deflate.
    async with connect(url + "/ws/py-a", compression="deflate") as a, connect(url + "/ws/py-b") as b:
        assert a.request.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate"), a.request.headers
        assert a.response.headers.get("Sec-WebSocket-Extensions") is None, a.response.headers
        assert json.loads(await a.recv())["type"] == "connection_confirmed"
        assert json.loads(await b.recv())["type"] == "connection_confirmed"
        text = "x" * 10000
        await a.send(json.dumps({"type": "send", "to": "py-b", "msg_type": "t", "payload": {"text": text}}))
        while True:
            f = json.loads(await b.recv())
            if f["type"] == "message":
                assert f["message"]["payload"]["text"] == text
                break
        while True:
            f = json.loads(await a.recv())
            if f["type"] == "sent":
                break
        print("ok", a.response.headers.get("Sec-WebSocket-Extensions"))

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 10))
"#;
    let out = Command::new(&python).args(["-c", script, &format!("ws://127.0.0.1:{}", server.port)]).output().expect("python");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok None");
    server.stop().expect("clean stop");
}
