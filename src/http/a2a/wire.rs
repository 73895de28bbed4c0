//! The A2A 1.0 JSON shapes the gateway writes: agent cards, JSON-RPC answers and errors.
//!
//! Field names are the protocol buffer JSON names of a2a.proto (`supportedInterfaces`,
//! `protocolBinding`, `TASK_STATE_*`, `ROLE_*`), as the official SDK (a2a-sdk 1.x) reads them.

use serde_json::{json, Value};

/// The protocol version the gateway speaks (the `A2A-Version` header, `protocolVersion`).
pub const PROTOCOL_VERSION: &str = "1.0";

/// An A2A error, with the JSON-RPC code of the spec's error table.
#[derive(Debug, thiserror::Error)]
pub enum A2aError {
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("task {0} is finished and cannot be canceled")]
    NotCancelable(String),
    /// No client of that id is connected to the broker.
    #[error("agent {0:?} is not connected to the broker")]
    AgentNotFound(String),
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("method {0:?} not found")]
    MethodNotFound(String),
    #[error("parse error: {0}")]
    Parse(String),
    #[error("{0}")]
    Internal(String),
}

impl A2aError {
    /// The JSON-RPC error code (A2A spec section "Error codes"; the SDK maps these to its errors).
    pub fn code(&self) -> i64 {
        match self {
            // No agent means no task can exist there: the SDK raises TaskNotFoundError, and the
            // error's data says which it was (reason AGENT_NOT_FOUND).
            A2aError::TaskNotFound(_) | A2aError::AgentNotFound(_) => -32001,
            A2aError::NotCancelable(_) => -32002,
            A2aError::InvalidParams(_) => -32602,
            A2aError::InvalidRequest(_) => -32600,
            A2aError::MethodNotFound(_) => -32601,
            A2aError::Parse(_) => -32700,
            A2aError::Internal(_) => -32603,
        }
    }

    /// The machine-readable reason (google.rpc.ErrorInfo `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            A2aError::TaskNotFound(_) => "TASK_NOT_FOUND",
            A2aError::NotCancelable(_) => "TASK_NOT_CANCELABLE",
            A2aError::AgentNotFound(_) => "AGENT_NOT_FOUND",
            A2aError::InvalidParams(_) => "INVALID_PARAMS",
            A2aError::InvalidRequest(_) => "INVALID_REQUEST",
            A2aError::MethodNotFound(_) => "METHOD_NOT_FOUND",
            A2aError::Parse(_) => "PARSE_ERROR",
            A2aError::Internal(_) => "INTERNAL",
        }
    }

    /// The JSON-RPC `error` object.
    pub fn to_json(&self) -> Value {
        let mut metadata = json!({ "code": self.reason() });
        if let A2aError::AgentNotFound(a) = self {
            metadata["agent"] = a.clone().into();
        }
        json!({
            "code": self.code(),
            "message": self.to_string(),
            "data": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason(),
                       "domain": "agent-bridge", "metadata": metadata }],
        })
    }
}

/// A JSON-RPC 2.0 answer to request `id`.
pub fn rpc_result(id: &Value, result: Result<Value, A2aError>) -> Value {
    match result {
        Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
        Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }),
    }
}

/// Now, as the RFC 3339 time of `TaskStatus.timestamp`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What an agent card says about the broker's credentials: bearer API keys or JWTs.
fn security() -> (Value, Value) {
    let schemes = json!({ "bearer": { "httpAuthSecurityScheme": {
        "scheme": "Bearer", "bearerFormat": "agent-bridge API key or JWT",
        "description": "The same credentials as the HTTP API and WebSocket (Authorization: Bearer ...)" } } });
    (schemes, json!([{ "schemes": { "bearer": { "list": [] } } }]))
}

/// The card fields every card shares; `url` is where its JSON-RPC endpoint is.
fn card(name: &str, description: String, url: String, base: &str, skills: Vec<Value>) -> Value {
    let (schemes, requirements) = security();
    json!({
        "name": name,
        "description": description,
        "version": env!("CARGO_PKG_VERSION"),
        "provider": { "organization": "agent-bridge", "url": base },
        "supportedInterfaces": [{ "url": url, "protocolBinding": "JSONRPC", "protocolVersion": PROTOCOL_VERSION }],
        "capabilities": { "streaming": true, "pushNotifications": false, "extendedAgentCard": false },
        "securitySchemes": schemes,
        "securityRequirements": requirements,
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}

/// The card of broker client `agent`, served at `/a2a/{agent}/.well-known/agent-card.json`.
pub fn agent_card(base: &str, agent: &str) -> Value {
    let skill = json!({ "id": "message", "name": format!("message {agent}"), "tags": ["agent-bridge"],
        "description": format!("A message to broker client {agent}; its reply completes the task") });
    card(agent, format!("The agent-bridge client {agent}, through the broker's A2A gateway"), format!("{base}/a2a/{agent}"), base, vec![skill])
}

/// The broker's own card (`/.well-known/agent-card.json`): a directory whose skills are the
/// connected agents; a message to it names its agent in `metadata.agent`.
pub fn gateway_card(base: &str, agents: &[String]) -> Value {
    let skills = agents
        .iter()
        .map(|a| json!({ "id": a, "name": a, "tags": ["agent-bridge", "agent"],
            "description": format!("Broker client {a}: its own card is {base}/a2a/{a}/.well-known/agent-card.json") }))
        .collect();
    let description = "The agent-bridge broker's A2A gateway: every connected agent is an A2A agent under /a2a/{client_id}; \
                       a message sent here names its agent in metadata.agent"
        .to_owned();
    card("agent-bridge", description, format!("{base}/a2a"), base, skills)
}
