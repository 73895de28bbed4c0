//! The table of calls: every row parses, dispatches and documents itself.

use serde_json::json;

use super::*;

fn code(config: &RoomsConfig, method: &str, params: Value) -> &'static str {
    match parse_call(method, &Payload::from_serialize(&params), Cx { config, link: None, identity: None }) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn params_are_checked_before_any_room_sees_them() {
    let config = RoomsConfig { max_file_bytes: 10, ..RoomsConfig::default() };
    assert_eq!(code(&config, "room.create", json!({"name": "lab"})), "ok");
    assert_eq!(code(&config, "room.create", json!({"name": "lab/x"})), "invalid_params");
    assert_eq!(code(&config, "room.create", json!({"name": "bad name"})), "invalid_params");
    assert_eq!(code(&config, "room.list", Value::Null), "ok");
    assert_eq!(code(&config, "board.move", json!({"room": "lab", "card_id": "card-1", "column": "doing"})), "bad_column");
    assert_eq!(code(&config, "board.add", json!({"room": "lab", "title": ""})), "invalid_params");
    assert_eq!(code(&config, "proposal.create", json!({"room": "lab", "text": "t", "rule": "quorum", "quorum": 0})), "invalid_params");
    assert_eq!(code(&config, "proposal.create", json!({"room": "lab", "text": "t", "rule": "weighted", "weights": {"a": -1}})), "invalid_params");
    assert_eq!(code(&config, "proposal.create", json!({"room": "lab", "text": "t", "rule": "veto", "deadline_s": 0})), "invalid_params");
    assert_eq!(code(&config, "proposal.vote", json!({"room": "lab", "proposal_id": "p-1", "vote": "maybe"})), "invalid_params");
    assert_eq!(code(&config, "file.upload", json!({"room": "lab", "name": "a", "content_base64": "AAAAAAAAAAAAAAAA"})), "too_large");
    assert_eq!(code(&config, "file.upload", json!({"room": "lab", "name": "a", "content_base64": "!!"})), "invalid_params");
    assert_eq!(code(&config, "file.upload", json!({"room": "lab", "name": "../a", "content_base64": "AA=="})), "invalid_params");
    assert_eq!(code(&config, "file.upload", json!({"room": "lab", "name": "a.txt", "content_base64": "AA=="})), "ok");
    assert_eq!(code(&config, "channel.create", json!({"room": "lab/x", "name": "y"})), "invalid_params");
    assert_eq!(code(&config, "room.topic", json!({"room": "lab", "topic": "t"})), "ok");
    assert_eq!(code(&config, "room.topic", json!({"room": "lab"})), "ok");
    assert_eq!(code(&config, "room.topic", json!({"room": "lab", "topic": ""})), "invalid_params");
    assert_eq!(code(&config, "room.topic", json!({"room": "lab", "topic": "a\nb"})), "invalid_params");
    assert_eq!(code(&config, "desktop.prompt", json!({"text": "hi", "timeout_s": 0})), "invalid_params");
    assert_eq!(code(&config, "agent.spawn", json!({})), "invalid_params");
    assert_eq!(code(&config, "agent.spawn", json!({"name": "a b"})), "invalid_params");
    assert_eq!(code(&config, "agent.spawn", json!({"name": "a", "env": {"X=Y": "1"}})), "invalid_params");
    assert_eq!(code(&config, "agent.spawn", json!({"name": "a", "timeout_s": 0})), "invalid_params");
    assert_eq!(code(&config, "agent.spawn", json!({"name": "a", "cwd": "/tmp", "env": {"X": "1"}})), "ok");
    assert_eq!(code(&config, "agent.execute", json!({"name": "a", "prompt": "p"})), "ok");
    assert_eq!(code(&config, "code.run", json!({"language": "cobol", "code": "x"})), "invalid_params");
    assert_eq!(code(&config, "code.run", json!({"language": "bash", "code": "x", "timeout_s": -1})), "invalid_params");
    assert_eq!(code(&config, "code.run", json!({"language": "bash", "code": "echo"})), "ok");
}

#[test]
fn uploads_are_hashed_with_sha256() {
    let Ok(RoomOp::FileUpload { sha256, bytes, .. }) = upload_op(1 << 20, "a".into(), b"abc".to_vec()) else { panic!("upload op") };
    assert_eq!(sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(bytes, b"abc");
}

#[test]
fn every_call_is_declared_once_with_an_object_schema() {
    let mut names: Vec<&str> = CALLS.iter().map(|s| s.name).collect();
    let mut tools: Vec<&str> = CALLS.iter().map(|s| s.tool).collect();
    names.sort_unstable();
    names.dedup();
    tools.sort_unstable();
    tools.dedup();
    assert_eq!((names.len(), tools.len()), (CALLS.len(), CALLS.len()), "names and tools are unique");
    for s in CALLS {
        let schema = s.params_schema();
        assert_eq!(schema["type"], "object", "{}: {schema}", s.name);
        assert!(s.doc.len() > 20, "{}", s.name);
    }
    let topic = find("room.topic").expect("room.topic");
    assert_eq!((topic.access, topic.changes_nothing()), (Access::Write, false));
    assert!(topic.params_schema()["properties"]["topic"].is_object());
    assert_eq!(topic.params_schema()["required"], json!(["room"]));
    assert!(find("room.history").is_some_and(Spec::changes_nothing));
    assert!(!find("room.join").is_some_and(Spec::changes_nothing));
    assert_eq!(by_tool("join_room").map(|s| s.name), Some("room.join"));
}
