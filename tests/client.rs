//! The Rust client library against the real binary: request/reply, handlers by type, calls, and
//! reconnecting across a broker restart (SIGKILL, same `--data-dir`) without losing a message or
//! delivering one twice after its ack.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agent_bridge::client::{Backoff, Client, ClientConfig, ClientError, Connection, Notice, Outgoing};
use common::{Server, WAIT};
use serde_json::json;

fn config(port: u16, id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(&format!("ws://127.0.0.1:{port}"), id).expect("valid config");
    c.backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500), factor: 2.0 };
    c
}

#[tokio::test]
async fn send_request_reply_streams_and_calls() {
    let server = Server::start(&[]);
    let asker = Client::connect(config(server.port, "asker")).await.expect("connects");
    let answerer = Client::connect(config(server.port, "answerer")).await.expect("connects");

    // A handler by type answers questions; other types go to the unclaimed stream.
    let replier = answerer.clone();
    answerer.on("question", move |q| {
        let replier = replier.clone();
        async move {
            let n = q.payload.to_value()["n"].as_i64().unwrap_or(0);
            replier.reply(&q, "answer", json!({"double": n * 2})).await.expect("reply sent");
        }
    });
    let reply = asker.request(Outgoing::to("answerer", "question", json!({"n": 21})), WAIT).await.expect("a reply");
    assert_eq!(reply.from, "answerer");
    assert_eq!(reply.payload.to_value(), json!({"double": 42}));

    // A responder that answers with the request's message id instead of its correlation id.
    let by_id = answerer.clone();
    answerer.on("question-by-id", move |q| {
        let by_id = by_id.clone();
        async move {
            let answer = Outgoing::to(q.from.clone(), "answer", json!("by id")).correlation_id(q.id.clone());
            by_id.send(answer).await.expect("reply sent");
        }
    });
    let reply = asker.request(Outgoing::to("answerer", "question-by-id", json!(null)), WAIT).await.expect("a reply");
    assert_eq!(reply.payload.to_value(), json!("by id"));

    let sent = asker.send(Outgoing::to("answerer", "note", json!("fyi"))).await.expect("sent");
    assert!(sent.message_id.starts_with("msg-"));
    let note = tokio::time::timeout(WAIT, answerer.next_message()).await.expect("in time").expect("a message");
    assert_eq!((note.msg_type.as_str(), note.payload.to_value()), ("note", json!("fyi")));

    // No reply: a timeout that says what it waited for.
    let err = asker
        .request(Outgoing::to("nobody-home", "question", json!(1)), Duration::from_millis(300))
        .await
        .expect_err("nobody answers");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("correlation_id"), "{err}");

    // A method the broker does not have is reported with its code.
    match asker.call("no.such_method", json!({})).await {
        Err(e) => assert!(e.is_unsupported(), "{e}"),
        Ok(v) => panic!("an unknown method succeeded: {v}"),
    }
    let status = asker.status().await.expect("status over HTTP");
    assert_eq!(status["server"], "agent-bridge");
    asker.close().await;
    assert_eq!(asker.connection(), Connection::Closed);
    assert!(matches!(asker.send(Outgoing::to("x", "t", json!(1))).await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn connect_fails_clearly_when_no_broker_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let err = Client::connect(config(port, "lonely")).await.expect_err("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("ws://127.0.0.1:{port}")), "{err}");
}

/// Waits for the next message, at most `WAIT`.
async fn next(client: &Client) -> agent_bridge_protocol::Message {
    tokio::time::timeout(WAIT, client.next_message()).await.expect("a message in time").expect("client open")
}

#[tokio::test]
async fn broker_restart_under_a_connected_client_loses_nothing_and_repeats_nothing_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let mut server = Server::start(&["--data-dir", &data]);
    let port = server.port;
    let receiver = Client::connect(config(port, "receiver")).await.expect("receiver connects");
    let sender = Client::connect(config(port, "sender")).await.expect("sender connects");
    let mut notices = receiver.notices();

    // Phase 1: 20 messages that must be acked. The last five are acked only while the broker is
    // down, so the broker still has them queued when it comes back and redelivers them.
    let mut sent_ids = HashSet::new();
    for n in 0..20 {
        let msg = Outgoing::to("receiver", "work", json!({"n": n})).require_ack(true);
        sent_ids.insert(sender.send(msg).await.expect("sent").message_id);
    }
    let mut got: HashMap<String, u32> = HashMap::new();
    let mut ack_later = Vec::new();
    for i in 0..20 {
        let m = next(&receiver).await;
        *got.entry(m.id.clone()).or_default() += 1;
        if i < 15 {
            receiver.ack(&m.id).expect("ack queued");
        } else {
            ack_later.push(m.id);
        }
    }
    assert_eq!(receiver.inbox_cursor(), Some(20));

    server.kill();
    common::eventually("the receiver to notice", || async {
        matches!(receiver.connection(), Connection::Reconnecting { .. }).then_some(())
    })
    .await;
    for id in &ack_later {
        receiver.ack(id).expect("ack queued while disconnected");
    }
    // Phase 2: sends while the broker is down wait in the sender's outbox.
    let pending: Vec<_> = (20..30)
        .map(|n| {
            let sender = sender.clone();
            tokio::spawn(async move {
                sender.send(Outgoing::to("receiver", "work", json!({"n": n})).require_ack(true)).await
            })
        })
        .collect();

    let _server = Server::start_args(&["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir", &data]);
    for p in pending {
        let sent = p.await.expect("task").expect("sent after the reconnect");
        sent_ids.insert(sent.message_id);
    }
    while got.len() < 30 {
        let m = next(&receiver).await;
        *got.entry(m.id.clone()).or_default() += 1;
        receiver.ack(&m.id).expect("ack queued");
    }
    // Whatever the broker still had queued (acks it never stored) came back at the reconnect and was
    // acked again inside the client; a repeat reaching the application would show up here.
    let extra = tokio::time::timeout(Duration::from_millis(2500), receiver.next_message()).await;
    assert!(extra.is_err(), "nothing more may arrive, got {:?}", extra.ok().flatten().map(|m| m.id));

    assert_eq!(got.keys().cloned().collect::<HashSet<_>>(), sent_ids, "every sent message arrived");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(receiver.inbox_cursor(), Some(30));

    let mut reconnected = false;
    while let Ok(n) = notices.try_recv() {
        if let Notice::Connected { resumed_from, .. } = n {
            assert_eq!(resumed_from, Some(20), "the reconnect resumed after the watermark");
            reconnected = true;
        }
    }
    assert!(reconnected, "the receiver reconnected");
}
