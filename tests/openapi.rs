//! `/openapi.json`: it describes every route the server registers, and the property-based HTTP
//! fuzzer (schemathesis, fuzz/http.sh) finds no 5xx, undocumented status or hang against the real
//! broker. The fuzzer is ignored by a plain `cargo test` (it needs schemathesis from PyPI, installed
//! into a virtualenv on first run); the README's test command runs it with `--include-ignored`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::Server;

/// `(METHOD, path)` of every `.route("path", web::method()...)` in src/http/mod.rs.
fn registered_routes() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).expect("read routes");
    let mut out = BTreeSet::new();
    for part in src.split(".route(\"").skip(1) {
        let Some((path, rest)) = part.split_once('"') else { continue };
        let Some(method) = rest.split("web::").nth(1).and_then(|m| m.split("()").next()) else { continue };
        out.insert((method.to_uppercase(), path.to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_described() {
    let server = Server::start(&["--long-poll-max-s", "7"]);
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    let mut described = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys().filter(|k| *k != "parameters") {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routes = registered_routes();
    assert!(routes.len() > 20, "parsed the route table: {routes:?}");
    let missing: Vec<_> = routes.difference(&described).collect();
    assert!(missing.is_empty(), "routes missing from /openapi.json (describe them in src/http/openapi.rs): {missing:?}");
    let stale: Vec<_> = described.difference(&routes).collect();
    assert!(stale.is_empty(), "described routes that do not exist: {stale:?}");
    let wait = doc["paths"]["/api/messages"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "wait"))
        .expect("wait parameter");
    assert_eq!(wait["schema"]["maximum"], 7.0, "the long-poll limit is this server's");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["paths"]["/health/live"]["get"]["security"] == serde_json::json!([{}]), "probes are public");

    // The calls of /api/call come from the table of calls: every name, and each params schema.
    let schemas = &doc["components"]["schemas"];
    let methods = schemas["CallBody"]["properties"]["method"]["enum"].as_array().expect("the call names");
    assert!(methods.iter().any(|m| m == "room.topic") && methods.iter().any(|m| m == "file.upload"), "{methods:?}");
    assert_eq!(schemas["room.topic.params"]["required"], serde_json::json!(["room"]));
    assert!(schemas["room.topic.params"]["properties"]["topic"].is_object());
    let get_method = doc["paths"]["/api/call"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "method"))
        .expect("method parameter");
    let read_only = get_method["schema"]["enum"].as_array().expect("the read-only calls");
    assert!(read_only.iter().any(|m| m == "board.list"), "{read_only:?}");
    assert!(!read_only.iter().any(|m| m == "room.topic" || m == "room.join"), "GET offers only calls that change nothing: {read_only:?}");
    assert!(doc["paths"]["/api/call"]["post"]["description"].as_str().is_some_and(|d| d.contains("| `room.topic` | write |")));
}

#[test]
#[ignore = "needs schemathesis from PyPI (installed on first run) and takes a minute: cargo test -- --include-ignored"]
fn http_fuzzer_finds_no_server_errors() {
    let python = common::python::with("schemathesis-venv", &[("schemathesis", "schemathesis")]);
    let examples = std::env::var("HTTP_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/http.sh"))
        .arg(&examples)
        .env("AGENT_BRIDGE_BIN", env!("CARGO_BIN_EXE_agent-bridge"))
        .env("SCHEMATHESIS", format!("{python} -m schemathesis.cli"))
        .output()
        .expect("run fuzz/http.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("No issues found"), "{text}");
}
