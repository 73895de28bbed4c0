//! The driver: the one task that owns the WebSocket of a [`Client`](super::Client).
//!
//! It loops: open a session (resuming the inbox from its watermark), then write the outbox and read
//! frames until the connection ends, then wait out a backoff and open the next. Reading dispatches
//! each frame: `sent` / `result` / `error` to the operation waiting on its `ref`, messages through
//! duplicate detection to a request, a stream or the unclaimed queue.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use agent_bridge_protocol::frames::{Beat, ConnectionConfirmed};
use agent_bridge_protocol::{ClientFrame, Message, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::cursor::Seen;
use super::{join_params, ClientError, Connection, Notice, Outbound, Shared};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames may be as large as the broker allows; the broker enforces its own limit.
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Runs until the client closes. `first` gets the outcome of the first attempt; when present, a
/// failed first attempt ends the driver (that is [`Client::connect`](super::Client::connect)).
pub(super) async fn run(shared: Arc<Shared>, mut first: Option<oneshot::Sender<Result<(), ClientError>>>) {
    let mut closing = shared.closing.subscribe();
    let mut attempt: u32 = 0;
    let mut refused = false;
    loop {
        if *closing.borrow() {
            break;
        }
        let opened = tokio::select! {
            opened = open(&shared) => opened,
            _ = closing.wait_for(|c| *c) => break,
        };
        let error = match opened {
            Ok((socket, confirmed)) => {
                attempt = 0;
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                let ended = session(&shared, socket, confirmed).await;
                shared.state.lock().lost_connection();
                match ended {
                    Ended::Closing => break,
                    Ended::Dropped(why) => why,
                }
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    break;
                }
                if let ClientError::Rejected { status: status @ (401 | 403), body, .. } = &e {
                    // Retrying cannot fix refused credentials: stop, and let operations say why.
                    warn!(client_id = %shared.config.client_id, status, error = %body, "the broker refused the credentials; not retrying");
                    shared.connection.send_replace(Connection::Refused { status: *status, error: body.clone() });
                    refused = true;
                    break;
                }
                e.to_string()
            }
        };
        let delay = shared.config.backoff.delay(attempt, jitter(attempt));
        attempt = attempt.saturating_add(1);
        warn!(client_id = %shared.config.client_id, error = %error, retry_in_ms = delay.as_millis() as u64, "broker connection lost; reconnecting");
        shared.connection.send_replace(Connection::Reconnecting { attempt, error: error.clone() });
        let _ = shared.notices.send(Notice::Disconnected { error, retry_in: delay });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|c| *c) => break,
        }
    }
    if !refused {
        shared.connection.send_replace(Connection::Closed);
    }
    // Dropping the waiters' senders answers them with `Closed`.
    let mut st = shared.state.lock();
    st.sends.clear();
    st.calls.clear();
    st.requests.clear();
    st.routes.clear();
    st.outbox.clear();
}

/// A uniform number in 0..1 for backoff jitter.
fn jitter(attempt: u32) -> f64 {
    let h = std::collections::hash_map::RandomState::new().hash_one(attempt);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Opens a session: upgrade with the token and the resume point, then `connection_confirmed`.
async fn open(shared: &Shared) -> Result<(Socket, ConnectionConfirmed), ClientError> {
    let config = &shared.config;
    let url = config.url.display();
    let connect_err = |reason: String| ClientError::Connect { url: url.clone(), reason };
    let since = shared.state.lock().inbox.resume_point();
    let mut query = Vec::new();
    if let Some(s) = since {
        query.push(("since", s.to_string()));
    }
    if !config.types.is_empty() {
        query.push(("types", config.types.join(",")));
    }
    if let Some(t) = &config.token {
        query.push(("token", t.clone()));
    }
    let mut request = config
        .url
        .session(&config.client_id, &query)
        .into_client_request()
        .map_err(|e| ClientError::InvalidUrl { url: url.clone(), reason: e.to_string() })?;
    if let Some(t) = &config.token {
        let value = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| ClientError::Protocol("the token contains characters not allowed in an HTTP header".into()))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let deadline = Instant::now() + config.connect_timeout;
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        max_message_size: Some(MAX_FRAME),
        max_frame_size: Some(MAX_FRAME),
        ..Default::default()
    };
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    let (mut socket, _) = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => return Err(connect_err(format!("no answer within {:?}", config.connect_timeout))),
        Ok(Err(WsError::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let body = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            return Err(ClientError::Rejected { url, status, body });
        }
        Ok(Err(e)) => return Err(connect_err(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| connect_err("no connection_confirmed from the broker".into()))?;
        let text = match next {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(c))) => return Err(connect_err(format!("closed by the broker: {c:?}"))),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(connect_err(e.to_string())),
            None => return Err(connect_err("closed by the broker".into())),
        };
        return match ServerFrame::from_json(&text, MAX_FRAME) {
            Ok(ServerFrame::ConnectionConfirmed(c)) => Ok((socket, c)),
            Ok(ServerFrame::Error(e)) => Err(ClientError::server(e.code, e.error)),
            Ok(other) => Err(ClientError::Protocol(format!("expected connection_confirmed, got {}", other.frame_type()))),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        };
    }
}

/// How a session ended.
enum Ended {
    Closing,
    Dropped(String),
}

/// Runs one session until it ends.
async fn session(shared: &Shared, socket: Socket, confirmed: ConnectionConfirmed) -> Ended {
    let (mut sink, mut stream) = socket.split();
    shared.state.lock().reconnected();
    info!(client_id = %shared.config.client_id, session_id = %confirmed.session_id, resumed_from = ?confirmed.resumed_from, "connected to the broker");
    shared.connection.send_replace(Connection::Connected {
        session_id: confirmed.session_id.clone(),
        resumed_from: confirmed.resumed_from,
    });
    let _ = shared
        .notices
        .send(Notice::Connected { session_id: confirmed.session_id, resumed_from: confirmed.resumed_from });
    // The broker pings every `heartbeat_s`; this long without a frame means the connection is dead.
    let heartbeat = Duration::from_secs(confirmed.heartbeat_s.max(1));
    let silence_limit = heartbeat * 2 + Duration::from_secs(5);
    let mut tick = tokio::time::interval(heartbeat / 2);
    let mut last_heard = Instant::now();
    let mut closing = shared.closing.subscribe();
    loop {
        if let Err(e) = flush(shared, &mut sink).await {
            return Ended::Dropped(format!("writing to the broker: {e}"));
        }
        if *closing.borrow() {
            let _ = sink.send(WsMessage::Close(None)).await;
            return Ended::Closing;
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            _ = closing.changed() => {}
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(WsMessage::Text(text))) => on_text(shared, &text),
                    Some(Ok(WsMessage::Close(c))) => {
                        return Ended::Dropped(format!("closed by the broker: {}", c.map_or_else(String::new, |c| c.to_string())))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Dropped(e.to_string()),
                    None => return Ended::Dropped("connection closed".into()),
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > silence_limit {
                    return Ended::Dropped(format!("nothing heard from the broker for {} s", last_heard.elapsed().as_secs()));
                }
                if let Err(e) = sink.send(WsMessage::Ping(Vec::new())).await {
                    return Ended::Dropped(format!("writing to the broker: {e}"));
                }
            }
        }
    }
}

/// Writes the whole outbox.
async fn flush<S>(shared: &Shared, sink: &mut S) -> Result<(), WsError>
where
    S: futures_util::Sink<WsMessage, Error = WsError> + Unpin,
{
    let mut wrote = false;
    loop {
        let text = {
            let mut st = shared.state.lock();
            let Some(item) = st.outbox.pop_front() else { break };
            match item {
                Outbound::Send(key) => match st.sends.get(&key) {
                    Some(p) => p.frame.clone(),
                    None => continue, // given up by its caller
                },
                Outbound::Call(r#ref) => match st.calls.get_mut(&r#ref) {
                    Some(p) => {
                        p.written = true;
                        p.frame.clone()
                    }
                    None => continue,
                },
                Outbound::Frame(f) => f,
            }
        };
        sink.feed(WsMessage::Text(text)).await?;
        wrote = true;
    }
    if wrote {
        sink.flush().await?;
    }
    Ok(())
}

/// Dispatches one text frame from the broker.
fn on_text(shared: &Shared, text: &str) {
    let frame = match ServerFrame::from_json(text, MAX_FRAME) {
        Ok(f) => f,
        Err(e) => {
            warn!(client_id = %shared.config.client_id, error = %e, "undecodable frame from the broker");
            return;
        }
    };
    match frame {
        ServerFrame::Message(d) => on_message(shared, d.message),
        ServerFrame::Sent(sent) => {
            let mut st = shared.state.lock();
            let Some(p) = sent.r#ref.as_deref().and_then(send_key).and_then(|k| st.sends.remove(&k)) else { return };
            if let Some(correlation) = &p.request {
                if st.requests.contains_key(correlation) {
                    st.aliases.insert(sent.message_id.clone(), correlation.clone());
                }
            }
            let acks = st.release_early();
            drop(st);
            if acks {
                shared.wake.notify_one();
            }
            let _ = p.reply.send(Ok(sent));
        }
        ServerFrame::Result(r) => {
            let pending = shared.state.lock().calls.remove(&r.r#ref);
            match pending {
                Some(p) => {
                    let answer = match (r.ok, r.error) {
                        (true, _) => Ok(r.result.map_or(serde_json::Value::Null, |p| p.to_value())),
                        (false, Some(e)) => Err(ClientError::server(e.code, e.error)),
                        (false, None) => Err(ClientError::server("error", "the call failed without an error body")),
                    };
                    let _ = p.reply.send(answer);
                }
                None if !r.ok => {
                    let error = r.error.map(|e| format!("{}: {}", e.code, e.error)).unwrap_or_default();
                    warn!(client_id = %shared.config.client_id, r#ref = %r.r#ref, error = %error, "call failed");
                }
                None => debug!(r#ref = %r.r#ref, "result nobody waits for"),
            }
        }
        ServerFrame::Error(e) => {
            let mut st = shared.state.lock();
            let to_send = e.r#ref.as_deref().and_then(send_key).and_then(|k| st.sends.remove(&k));
            let to_call = e.r#ref.as_ref().and_then(|r| st.calls.remove(r));
            drop(st);
            let err = || ClientError::server(e.code.clone(), e.error.clone());
            if let Some(p) = to_send {
                let _ = p.reply.send(Err(err()));
            } else if let Some(p) = to_call {
                let _ = p.reply.send(Err(err()));
            } else {
                warn!(client_id = %shared.config.client_id, code = %e.code, error = %e.error, "error from the broker");
                let _ = shared.notices.send(Notice::Error(e));
            }
        }
        ServerFrame::Receipt(r) => {
            let _ = shared.notices.send(Notice::Receipt(r));
        }
        ServerFrame::Event(e) => {
            let _ = shared.notices.send(Notice::Event(e));
        }
        ServerFrame::Ping(_) => shared.push(Outbound::Frame(ClientFrame::Pong(Beat::default()).to_json())),
        ServerFrame::Dropped(d) => {
            warn!(client_id = %shared.config.client_id, count = d.count, since = %d.since.to_rfc3339(), "broker dropped persist:false messages: reading too slowly");
        }
        // This client sends no `send_batch` frames, so no `sent_batch` is ever owed to it.
        ServerFrame::Pong(_) | ServerFrame::ConnectionConfirmed(_) | ServerFrame::SentBatch(_) => {}
    }
}

/// The pending-send key of a `ref` this client wrote (`s-<n>`).
fn send_key(r#ref: &str) -> Option<u64> {
    r#ref.strip_prefix("s-")?.parse().ok()
}

/// Duplicate check, watermark, then hand-over: to a request, the type's streams, or the rest.
fn on_message(shared: &Shared, msg: Message) {
    let mut st = shared.state.lock();
    match st.seen.check(&msg.id) {
        Seen::Acked => {
            // Our ack was lost (or is in flight); the application has it already.
            debug!(msg_id = %msg.id, "re-acking a redelivered message");
            st.queue_ack(&msg.id);
            drop(st);
            shared.wake.notify_one();
            return;
        }
        Seen::Again if !msg.requires_ack => return,
        Seen::Again | Seen::New => {}
    }
    match &msg.room {
        Some(room) => {
            if let Some(r) = st.rooms.get_mut(room) {
                r.cursor.observe(msg.seq);
            }
        }
        None => {
            st.inbox.observe(msg.seq);
        }
    }
    let correlated = msg.correlation_id.is_some();
    if correlated && st.awaiting_sent() && !st.waiter_for(&msg) && st.early.len() < MAX_EARLY {
        st.early.push(msg);
        return;
    }
    let auto_ack = st.auto_ack;
    if st.deliver(msg, auto_ack) {
        drop(st);
        shared.wake.notify_one();
    }
}

/// Messages parked while requests wait for their `sent` (they are delivered a few milliseconds
/// late, after messages without a correlation id that came meanwhile).
const MAX_EARLY: usize = 256;

impl super::State {
    /// True while a request has not had its `sent` yet (its message id is not known).
    fn awaiting_sent(&self) -> bool {
        self.sends.values().any(|p| p.request.as_ref().is_some_and(|c| self.requests.contains_key(c)))
    }

    /// True if a request waits for this message.
    fn waiter_for(&self, msg: &Message) -> bool {
        msg.correlation_id.as_ref().is_some_and(|c| self.requests.contains_key(c) || self.aliases.contains_key(c))
    }

    /// Hands a message to the request waiting for it, the streams of its type, or the unclaimed
    /// queue; returns true when an ack was queued.
    fn deliver(&mut self, msg: Message, auto_ack: bool) -> bool {
        let mut ack = msg.requires_ack && auto_ack;
        let waiter = msg.correlation_id.as_ref().and_then(|c| {
            let key = if self.requests.contains_key(c) { Some(c.clone()) } else { self.aliases.get(c).cloned() };
            key.and_then(|k| self.requests.remove(&k))
        });
        let id = msg.id.clone();
        if let Some(tx) = waiter {
            // The request that receives it has consumed it.
            ack |= msg.requires_ack;
            let _ = tx.send(msg);
        } else {
            let mut msg = Some(msg);
            if let Some(streams) = msg.as_ref().and_then(|m| self.routes.get_mut(&m.msg_type)) {
                streams.retain(|s| !s.is_closed());
                for s in streams.iter() {
                    if let Some(m) = msg.clone() {
                        let _ = s.send(m);
                    }
                }
                if !streams.is_empty() {
                    msg = None;
                }
            }
            if let Some(m) = msg {
                let _ = self.unclaimed.send(m);
            }
        }
        if ack {
            self.queue_ack(&id);
        }
        ack
    }

    /// Delivers parked messages a request now claims, and all of them once no request waits for
    /// its `sent`; returns true when an ack was queued.
    pub(super) fn release_early(&mut self) -> bool {
        if self.early.is_empty() {
            return false;
        }
        let waiting = self.awaiting_sent();
        let auto_ack = self.auto_ack;
        let mut acks = false;
        for msg in std::mem::take(&mut self.early) {
            if !waiting || self.waiter_for(&msg) {
                acks |= self.deliver(msg, auto_ack);
            } else {
                self.early.push(msg);
            }
        }
        acks
    }

    /// After a drop: calls already written have an unknown outcome and fail; sends stay pending.
    fn lost_connection(&mut self) {
        let written: Vec<String> = self.calls.iter().filter(|(_, c)| c.written).map(|(r, _)| r.clone()).collect();
        for r in written {
            if let Some(c) = self.calls.remove(&r) {
                let _ = c.reply.send(Err(ClientError::Disconnected));
            }
        }
    }

    /// On a new session: re-join rooms, then every unanswered send in order, then the rest.
    fn reconnected(&mut self) {
        let mut outbox = std::collections::VecDeque::new();
        for (room, joined) in &self.rooms {
            let params = join_params(room, joined.role.as_deref(), joined.cursor.resume_point());
            let call = agent_bridge_protocol::frames::Call {
                r#ref: format!("rejoin-{room}"),
                method: "room.join".into(),
                params: agent_bridge_protocol::Payload::from(params),
            };
            outbox.push_back(Outbound::Frame(ClientFrame::Call(call).to_json()));
        }
        outbox.extend(self.sends.keys().map(|k| Outbound::Send(*k)));
        outbox.extend(self.outbox.drain(..).filter(|o| !matches!(o, Outbound::Send(_))));
        self.outbox = outbox;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_refs_round_trip() {
        assert_eq!(send_key("s-42"), Some(42));
        assert_eq!(send_key("c-42"), None);
        assert_eq!(send_key("s-x"), None);
    }

    fn message_frame(id: &str, correlation: Option<&str>) -> String {
        let mut m = crate::client::sample_message(1, id);
        m.correlation_id = correlation.map(str::to_owned);
        ServerFrame::Message(agent_bridge_protocol::frames::Delivery { message: m }).to_json()
    }

    #[tokio::test]
    async fn a_reply_by_message_id_that_overtakes_sent_reaches_its_request() {
        let shared = Shared::new(crate::client::ClientConfig::new("ws://127.0.0.1:1", "asker").expect("config"));
        let (req_tx, mut req_rx) = oneshot::channel();
        let (sent_tx, _sent_rx) = oneshot::channel();
        {
            let mut st = shared.state.lock();
            st.requests.insert("req-1".into(), req_tx);
            let pending = super::super::PendingSend { frame: String::new(), request: Some("req-1".into()), reply: sent_tx };
            st.sends.insert(1, pending);
        }
        // The reply names the request's message id, which the client learns only from `sent`.
        on_text(&shared, &message_frame("msg-reply", Some("msg-request")));
        on_text(&shared, &message_frame("msg-other", Some("someone-else")));
        assert!(req_rx.try_recv().is_err(), "not matched yet");
        let mut unclaimed = shared.unclaimed.lock().await;
        assert!(unclaimed.try_recv().is_err(), "parked, not handed out");
        let sent = r#"{"type":"sent","ref":"s-1","message_id":"msg-request","seq":1,"status":"delivered","recipients":1}"#;
        on_text(&shared, sent);
        assert_eq!(req_rx.try_recv().map(|m| m.id).ok().as_deref(), Some("msg-reply"));
        assert_eq!(unclaimed.try_recv().map(|m| m.id).ok().as_deref(), Some("msg-other"), "released once no request waits");
    }

    #[test]
    fn jitter_is_in_range() {
        for a in 0..100 {
            let j = jitter(a);
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
