//! `agent_bridge::run` in-process (tests/common `InProcess`): it serves on the listener it is given
//! and stops cleanly when its `shutdown` future resolves.

mod common;

use std::time::{Duration, Instant};

use common::{InProcess, Ws, WAIT};
use futures_util::StreamExt;

#[tokio::test]
async fn run_stops_cleanly_when_shutdown_resolves() {
    let broker = InProcess::with_args(&[]);
    let port = broker.port;
    let mut ws = Ws::connect(&broker, "watcher").await;
    let sse = reqwest::get(broker.http("/stream/events?client_id=reader")).await.expect("GET /stream/events");
    assert_eq!(sse.status(), 200);
    let mut events = sse.bytes_stream();
    let (status, _) = broker.get("/health/live").await;
    assert_eq!(status, 200);

    let asked = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || broker.stop());
    let close = ws.recv_close().await;
    // Reading on lets tungstenite answer the close and end the connection, as clients do.
    let drained = tokio::spawn(async move { while let Some(Ok(_)) = ws.stream.next().await {} });
    assert_eq!((u16::from(close.code), close.reason.as_ref()), (1001, "server shutting down"));
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = events.next().await {
            chunk.expect("the event stream ends cleanly, not cut");
        }
    })
    .await
    .expect("the event stream ends");
    stopping.await.expect("the stopping task").expect("run returns Ok");
    drained.await.expect("the WebSocket reader");
    // The connections were closed, not waited out: the shutdown timeout (5 s) never ran down.
    let took = asked.elapsed();
    eprintln!("run stopped {took:?} after its shutdown resolved (a WebSocket and an SSE stream open)");
    assert!(took < Duration::from_secs(4), "stopping took {took:?}");

    // The listener is closed: nothing accepts on the port, and it can be bound again.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "still accepting on {port}");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[tokio::test]
async fn run_refuses_a_configuration_it_cannot_serve_with_an_error() {
    // Two brokers on one data dir: sled's lock makes the second start fail, and `run` says so.
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = format!("--data-dir={}", dir.path().display());
    let first = InProcess::with_args(&[&data_dir]);
    let (status, _) = first.get("/health/ready").await;
    assert_eq!(status, 200);
    let second = InProcess::with_args(&[&data_dir]);
    let err = tokio::task::spawn_blocking(move || second.stop()).await.expect("task").expect_err("a second broker on a locked store");
    assert!(err.contains("opening the store"), "{err}");
    drop(first);
}
