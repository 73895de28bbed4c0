//! `/metrics` on the real binary: it parses as Prometheus text (a strict line grammar, below), the
//! key series move when traffic flows (connect, send, deliver, ack, HTTP requests by route
//! pattern), a fault-injected restart shows in `bridge_actor_restarts_total` and in the JSON log
//! line, and every query of the Grafana dashboard and of the alert rules in the Helm chart names a
//! series the broker exports.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::{Server, Ws};
use serde_json::{json, Value};

/// One scrape: sample (`name{sorted labels}`) → value, and family name → type.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
    fn has(&self, key: &str) -> bool {
        self.samples.contains_key(key)
    }
    /// Names of every sample (`bridge_delivery_latency_seconds_bucket` included).
    fn names(&self) -> BTreeSet<String> {
        self.samples.keys().map(|k| k.split('{').next().unwrap_or(k).to_owned()).collect()
    }
}

fn is_name(s: &str, label: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Parses the text exposition format 0.0.4 strictly: `# HELP name text`, `# TYPE name type`
/// before the family's samples, then `name{label="value",...} value`; label values escaped with
/// `\\`, `\"`, `\n`. Panics with the offending line.
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(is_name(name, false), "bad family name: {line}");
            match kind {
                Some("HELP") => {}
                Some("TYPE") => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "bad type: {line}");
                    assert!(scrape.types.insert(name.to_owned(), tail.to_owned()).is_none(), "family declared twice: {line}");
                }
                _ => panic!("bad comment: {line}"),
            }
            continue;
        }
        let (name, rest) = line.split_at(line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}")));
        assert!(is_name(name, false), "bad metric name: {line}");
        let mut labels = Vec::new();
        let rest = if let Some(mut r) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    break after;
                }
                let eq = r.find('=').unwrap_or_else(|| panic!("label without '=': {line}"));
                let label = &r[..eq];
                assert!(is_name(label, true), "bad label name {label:?}: {line}");
                let mut value = String::new();
                let mut chars = r[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value: {line}")).char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => panic!("bad escape: {line}"),
                        },
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value: {line}"),
                    }
                };
                labels.push(format!("{label}={value:?}"));
                r = &r[eq + 2 + end + 1..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
        } else {
            rest
        };
        let mut fields = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line}")).split(' ');
        let value = fields.next().unwrap_or_default();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp: {line}"));
        }
        assert!(fields.next().is_none(), "trailing fields: {line}");
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| scrape.types.get(*f).is_some_and(|t| t == "histogram"));
        assert!(scrape.types.contains_key(family.unwrap_or(name)), "sample before its # TYPE: {line}");
        labels.sort();
        let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", labels.join(",")) };
        assert!(scrape.samples.insert(key, value).is_none(), "duplicate sample: {line}");
    }
    scrape
}

async fn scrape(server: &Server) -> Scrape {
    let resp = reqwest::get(server.http("/metrics")).await.expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&resp.text().await.expect("text"))
}

/// Scrapes until `check` holds (gauges set at scrape, counters kept by actors a moment later).
async fn scrape_until(server: &Server, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    common::eventually(what, || async {
        let s = scrape(server).await;
        check(&s).then_some(s)
    })
    .await
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A\n# TYPE a_total counter\na_total{x=\"1\\\"q\",y=\"2\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let s = parse(ok);
    assert_eq!(s.get("a_total{x=\"1\\\"q\",y=\"2\"}"), 3.0);
    assert_eq!(s.get("h_count"), 1.0);
    for bad in ["a_total 1\n", "# TYPE a counter\na{x=1} 1\n", "# TYPE a counter\na 1 2 3\n", "# TYPE a counter\na{x=\"1} 1\n", "# TYPE 1a counter\n"] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn key_series_move_when_traffic_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let server = Server::start(&[&data]);
    let before = scrape(&server).await;
    for family in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds"] {
        assert!(before.get(family) > 0.0, "{family} is measured: {:?}", before.samples.get(family));
    }

    let [mut alice, mut bob] = Ws::connect_each(&server, ["alice", "bob"]).await;
    let s = scrape_until(&server, "two websocket connections", |s| s.get("bridge_connections{transport=\"websocket\"}") == 2.0).await;
    assert_eq!(s.get("bridge_acks_pending"), 0.0);

    let r = "m1";
    alice.send(json!({"type": "send", "to": "bob", "msg_type": "task", "payload": {"n": 1}, "priority": "high", "require_ack": true, "ref": r})).await;
    let sent = alice.recv_type("sent").await;
    assert_eq!(sent["ref"], r, "{sent}");
    let msg = bob.recv_msg().await;
    let inc = |key: &str, s: &Scrape| s.get(key) - before.get(key);
    let s = scrape_until(&server, "the message counted in, out, in latency and pending", |s| {
        inc("bridge_messages_in_total{priority=\"high\",transport=\"websocket\"}", s) == 1.0
            && inc("bridge_messages_out_total{priority=\"high\",transport=\"websocket\"}", s) == 1.0
            && s.get("bridge_acks_pending") == 1.0
    })
    .await;
    assert_eq!(inc("bridge_delivery_latency_seconds_count{transport=\"websocket\"}", &s), 1.0);
    let latency = inc("bridge_delivery_latency_seconds_sum{transport=\"websocket\"}", &s);
    assert!(latency > 0.0 && latency < 5.0, "latency {latency}s");
    assert_eq!(s.get("bridge_delivery_latency_seconds_bucket{le=\"+Inf\",transport=\"websocket\"}"), s.get("bridge_delivery_latency_seconds_count{transport=\"websocket\"}"));
    assert!(inc("bridge_store_flush_seconds_count", &s) >= 1.0, "a durable send flushed the store");
    assert!(s.get("bridge_store_size_bytes") > 0.0, "the store's size is measured");

    bob.send(json!({"type": "ack", "message_id": msg["id"]})).await;
    scrape_until(&server, "the ack", |s| inc("bridge_acks_total", s) == 1.0 && s.get("bridge_acks_pending") == 0.0).await;

    // Queued for an offline client.
    alice.send_msg("carol", "note", json!({})).await;
    scrape_until(&server, "carol's queue", |s| s.get("bridge_queue_depth_messages") == 1.0).await;

    // HTTP requests by route pattern and status, never by raw path.
    assert_eq!(server.get("/api/status").await.0, 200);
    assert_eq!(server.get("/api/rooms/secret-room-name/history?from=alice").await.0 / 100, 4);
    assert_eq!(server.get("/no/such/path-xyzzy").await.0, 404);
    let s = scrape_until(&server, "the HTTP requests", |s| inc("bridge_http_requests_total{route=\"/api/status\",status=\"200\"}", s) == 1.0).await;
    assert!(s.samples.keys().any(|k| k.starts_with("bridge_http_requests_total{route=\"/api/rooms/{room}/history\"")), "{:#?}", s.samples);
    assert_eq!(s.get("bridge_http_requests_total{route=\"unmatched\",status=\"404\"}"), 1.0);
    assert!(s.get("bridge_http_requests_total{route=\"/ws/{client_id}\",status=\"101\"}") >= 2.0, "{:#?}", s.samples);
    let leaked: Vec<&String> = s.samples.keys().filter(|k| k.contains("secret-room-name") || k.contains("xyzzy") || k.contains("alice")).collect();
    assert!(leaked.is_empty(), "raw paths or ids became labels: {leaked:?}");

    drop((alice, bob));
    scrape_until(&server, "the connections closed", |s| s.get("bridge_connections{transport=\"websocket\"}") == 0.0).await;
}

#[tokio::test]
async fn a_restart_shows_in_the_counter_and_in_the_json_log_line() {
    let server = Server::start(&["--enable-fault-injection", "--log-format", "json"]);
    let (status, body) = server.post("/admin/fault", &json!({ "actor": "ack_tracker" })).await;
    assert_eq!(status, 202, "{body}");
    let s = scrape_until(&server, "the restart counted", |s| s.get("bridge_actor_restarts_total{actor=\"ack_tracker\"}") == 1.0).await;
    assert_eq!(s.types["bridge_actor_restarts_total"], "counter");
    let logs = server.wait_log("\"actor restarting\"").await;
    let line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "actor restarting")
        .unwrap_or_else(|| panic!("no JSON restart line in\n{logs}"));
    let f = &line["fields"];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(f["actor"], "ack_tracker", "{line}");
    assert_eq!(f["restarts"], 1, "{line}");
    assert!(f["parent"].as_str().is_some_and(|p| !p.is_empty()), "{line}");
    assert!(f["reason"].as_str().is_some_and(|r| r.contains("fault")), "{line}");
    // Every line is JSON (the format is by configuration, not per line).
    for l in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
}

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers,
/// ranges and grouping clauses, that are neither functions nor keywords.
fn series_in(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan",
        // Aggregations, which may take `by (...)` before their parentheses.
        "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"];
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            while i < chars.len() && chars[i] != close {
                if chars[i] == '"' {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                i += 1;
            }
            i += 1;
        } else if c == '(' && ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&last_word.as_str()) {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            i += 1;
            last_word.clear();
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':' || chars[i] == '$') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let function = chars.get(j) == Some(&'(') && !KEYWORDS.contains(&word.as_str());
            if !function && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) && !word.starts_with('$') {
                names.insert(word.clone());
            }
            last_word = word;
        } else {
            if !c.is_whitespace() {
                last_word.clear();
            }
            i += 1;
        }
    }
    names
}

fn exprs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    // A templating variable: `label_values(series, label)` reads `series`.
                    ("definition", Value::String(s)) => {
                        let inner = s.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(series, _)| series);
                        out.push(inner.unwrap_or_else(|| panic!("unexpected variable query {s}")).to_owned());
                    }
                    _ => exprs_in(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs_in(v, out)),
        _ => {}
    }
}

#[test]
fn promql_names_are_extracted() {
    let names = series_in(r#"sum by (le) (rate(bridge_x_bucket{a="b{c}"}[$__rate_interval])) / on (pod) group_left() up == 1 and absent(y)"#);
    assert_eq!(names, ["bridge_x_bucket", "up", "y"].into_iter().map(String::from).collect());
}

#[tokio::test]
async fn every_dashboard_and_alert_query_names_an_exported_series() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/agent-bridge");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(format!("{root}/dashboards/agent-bridge.json")).expect("dashboard")).expect("dashboard JSON");
    let mut queries = Vec::new();
    exprs_in(&dashboard, &mut queries);
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for topic in ["Messages in", "latency", "Connections", "Queue depths", "restarts", "Dead letters"] {
        assert!(titles.iter().any(|t| t.contains(topic)), "a panel on {topic}: {titles:?}");
    }
    // The rule file keeps each expr on one line (`expr: ...`).
    let rules = std::fs::read_to_string(format!("{root}/alerts/agent-bridge.rules.yaml")).expect("rules");
    let alerts: Vec<String> = rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ").map(str::to_owned)).collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
    for alert in ["RestartStorm", "Escalation", "DeadLettersGrowing", "QueueDepth", "NotReady"] {
        assert!(rules.contains(&format!("alert: AgentBridge{alert}")), "{alert} alert");
    }
    queries.extend(alerts);

    // A broker with some traffic, a restart and an escalation, so that every labelled series exists.
    let server = Server::start(&["--enable-fault-injection", "--max-restarts", "1", "--restart-window-s", "60"]);
    let (mut alice, mut bob) = (Ws::connect(&server, "alice").await, Ws::connect(&server, "bob").await);
    alice.send(json!({"type": "send", "to": "bob", "msg_type": "t", "payload": {}, "require_ack": true, "ref": "1"})).await;
    alice.recv_type("sent").await;
    bob.recv_msg().await;
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        assert_eq!(server.post("/admin/fault", &json!({ "actor": "room:lab" })).await.0, 202);
        scrape_until(&server, "the room restarted", |s| s.has("bridge_actor_restarts_total{actor=\"room\"}")).await;
    }
    let s = scrape_until(&server, "the escalation", |s| s.has("bridge_actor_escalations_total{actor=\"room\"}")).await;
    let exported = s.names();
    // Series from elsewhere: Prometheus itself and kube-state-metrics.
    const EXTERNAL: &[&str] = &["up", "kube_pod_status_ready"];
    let mut missing = Vec::new();
    for q in &queries {
        let names = series_in(q);
        assert!(!names.is_empty(), "no series in {q}");
        for name in names {
            if !exported.contains(&name) && !EXTERNAL.contains(&name.as_str()) {
                missing.push(format!("{name} (in {q})"));
            }
        }
    }
    assert!(missing.is_empty(), "queries name series the broker does not export:\n{}\nexported: {exported:#?}", missing.join("\n"));
}
