//! `Rooms` (the registry) and its handle alone: the registry started on the test's arbiter, rooms
//! reached through the table of calls, probe sessions joined to them.

use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_actors::auth::{ClientPattern, Identity, IdentityKind, Permission, Permissions};
use agent_bridge_actors::room::{RoomError, RoomsConfig};
use agent_bridge_actors::rooms::{Rooms, RoomsHandle};
use agent_bridge_actors::store::Store;
use agent_bridge_actors::supervisor::Tree;
use agent_bridge_protocol::Payload;
use serde_json::{json, Value};

use super::fixture::{child, store, tree, RoomMember};

/// A registry over `store`, its rooms on the test's arbiter.
fn registry(store: &Store) -> (RoomsHandle, Arc<Tree>) {
    let (tree, _root) = tree();
    let child = child(&tree, Rooms::NAME, Rooms::NAME, 3);
    let handle = Rooms::start(child, Arc::clone(&tree), store.clone(), RoomsConfig::default(), &Arbiter::current());
    (handle, tree)
}

async fn call(rooms: &RoomsHandle, caller: &str, method: &str, params: Value) -> Result<Value, RoomError> {
    rooms.call(caller, None, method, &Payload::from_serialize(&params), None).await
}

/// Credentials that may act only as `client`, with read and write.
fn identity(client: &str) -> Arc<Identity> {
    Arc::new(Identity {
        subject: format!("key:{client}"),
        kind: IdentityKind::ApiKey,
        clients: vec![ClientPattern::Exact(client.into())],
        permissions: Permissions::of(&[Permission::Read, Permission::Write]),
        rooms: Vec::new(),
        expires_at_ms: None,
        key: None,
    })
}

async fn listed(rooms: &RoomsHandle, caller: &str) -> Vec<String> {
    let page = rooms.list(Some(caller.into()), Some(identity(caller)), None, None).await.expect("listed");
    page["rooms"].as_array().expect("rooms").iter().map(|r| r["name"].as_str().unwrap_or_default().to_owned()).collect()
}

#[actix::test]
async fn room_create_answers_the_room_and_a_second_create_already_exists() {
    let (rooms, tree) = registry(&store());
    let created = call(&rooms, "alice", "room.create", json!({ "name": "lab", "topic": "experiments" })).await.expect("created");
    assert_eq!((created["name"].as_str(), created["members"].as_u64(), created["created_by"].as_str()), (Some("lab"), Some(1), Some("alice")));
    assert!(tree.node("room:lab").is_some(), "the room is a child in the tree");
    let again = call(&rooms, "bob", "room.create", json!({ "name": "lab" })).await.expect_err("exists");
    assert_eq!(again.code(), "already_exists");
    let unknown = call(&rooms, "bob", "room.members", json!({ "room": "nope" })).await.expect_err("no such room");
    assert_eq!(unknown.code(), "unknown_room");
}

#[actix::test]
async fn a_private_room_is_hidden_from_whom_it_does_not_admit() {
    let (rooms, _tree) = registry(&store());
    call(&rooms, "alice", "room.create", json!({ "name": "open" })).await.expect("created");
    call(&rooms, "alice", "room.create", json!({ "name": "secret", "private": true, "allow": ["carol"] })).await.expect("created");
    assert_eq!(listed(&rooms, "alice").await, ["open", "secret"]);
    assert_eq!(listed(&rooms, "carol").await, ["open", "secret"], "carol is on the allow-list");
    assert_eq!(listed(&rooms, "bob").await, ["open"], "bob sees neither the room nor its name");
    let params = Payload::from_serialize(&json!({ "room": "secret" }));
    let refused = rooms.call("bob", Some(identity("bob")), "room.join", &params, None).await.expect_err("not admitted");
    assert_eq!(refused.code(), "forbidden");
}

#[actix::test]
async fn room_topic_from_the_table_of_calls_answers_its_typed_result_and_tells_the_members() {
    let (rooms, _tree) = registry(&store());
    call(&rooms, "alice", "room.create", json!({ "name": "lab", "topic": "experiments" })).await.expect("created");
    let mut bob = RoomMember::new("s-bob");
    let joined = rooms.call("bob", None, "room.join", &Payload::from_serialize(&json!({ "room": "lab" })), Some(bob.link())).await;
    assert_eq!(joined.expect("joined")["new_member"], json!(true));
    assert_eq!(bob.event().await.0, "joined");
    let read = call(&rooms, "bob", "room.topic", json!({ "room": "lab" })).await.expect("read");
    assert_eq!(read, json!({ "room": "lab", "topic": "experiments", "changed": false }));
    let set = call(&rooms, "alice", "room.topic", json!({ "room": "lab", "topic": "results" })).await.expect("set");
    assert_eq!(set, json!({ "room": "lab", "topic": "results", "changed": true }));
    let event = bob.event_named("topic_changed").await;
    assert_eq!(event, json!({ "room": "lab", "topic": "results", "by": "alice" }));
    let outsider = call(&rooms, "mallory", "room.topic", json!({ "room": "lab", "topic": "x" })).await.expect_err("no member");
    assert_eq!(outsider.code(), "not_member");
    let bad = call(&rooms, "alice", "room.topic", json!({ "room": "lab", "topic": "" })).await.expect_err("checked by the table");
    assert_eq!(bad.code(), "invalid_params");
}

#[actix::test]
async fn a_new_registry_over_the_same_store_restores_rooms_with_their_members_and_topic() {
    let store = store();
    {
        let (rooms, _tree) = registry(&store);
        call(&rooms, "alice", "room.create", json!({ "name": "lab" })).await.expect("created");
        call(&rooms, "bob", "room.join", json!({ "room": "lab", "role": "reviewer" })).await.expect("joined");
        call(&rooms, "alice", "room.topic", json!({ "room": "lab", "topic": "kept" })).await.expect("set");
    }
    // As after a restart of the process: nothing started, everything read from the store.
    let (rooms, tree) = registry(&store);
    assert!(tree.node("room:lab").is_none(), "rooms start lazily");
    let members = call(&rooms, "alice", "room.members", json!({ "room": "lab" })).await.expect("members");
    let roles: Vec<(&str, &str)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap_or_default(), m["role"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(roles, [("alice", "coordinator"), ("bob", "reviewer")]);
    let topic = call(&rooms, "bob", "room.topic", json!({ "room": "lab" })).await.expect("topic");
    assert_eq!(topic["topic"], json!("kept"));
    assert!(tree.node("room:lab").is_some(), "started by its first request");
}

#[actix::test]
async fn a_closed_session_leaves_its_rooms_and_the_others_hear_it_disconnected() {
    let (rooms, _tree) = registry(&store());
    call(&rooms, "alice", "room.create", json!({ "name": "lab" })).await.expect("created");
    let (mut alice, bob) = (RoomMember::new("s-alice"), RoomMember::new("s-bob"));
    let params = Payload::from_serialize(&json!({ "room": "lab" }));
    rooms.call("alice", None, "room.join", &params, Some(alice.link())).await.expect("joined");
    rooms.call("bob", None, "room.join", &params, Some(bob.link())).await.expect("joined");
    assert_eq!(alice.event_named("member_joined").await["client_id"], "bob");
    rooms.session_closed("s-bob");
    let left = alice.event_named("member_left").await;
    assert_eq!((left["client_id"].as_str(), left["reason"].as_str()), (Some("bob"), Some("disconnected")));
    let members = call(&rooms, "alice", "room.members", json!({ "room": "lab" })).await.expect("members");
    let bob_row = members["members"].as_array().and_then(|m| m.iter().find(|m| m["client_id"] == "bob").cloned());
    assert_eq!(bob_row.map(|m| m["online"].clone()), Some(json!(false)), "still a member, no longer present");
}

#[actix::test]
async fn a_fault_in_the_registry_restarts_it_and_its_started_rooms_keep_answering() {
    let (rooms, tree) = registry(&store());
    call(&rooms, "alice", "room.create", json!({ "name": "lab" })).await.expect("created");
    assert_eq!(tree.inject_fault(Rooms::NAME).as_deref(), Some(Rooms::NAME));
    call(&rooms, "alice", "room.create", json!({ "name": "lab2" })).await.expect("the restarted registry answers");
    assert_eq!(tree.node(Rooms::NAME).map(|n| n.restarts), Some(1));
    let members = call(&rooms, "alice", "room.members", json!({ "room": "lab" })).await.expect("members");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(tree.node("room:lab").map(|n| n.restarts), Some(0), "the room itself was not touched");
}
