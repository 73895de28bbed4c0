//! [`Spec`], one row of the table of calls, and [`Access`], what a call needs from the
//! credentials. A leaf of `rooms`.

use serde_json::Value;

use crate::auth::Permission;

/// One call of the table.
#[derive(Debug)]
pub struct Spec {
    /// `noun.verb`.
    pub name: &'static str,
    pub access: Access,
    /// Whether the call also works on a sub-channel (`room/channel`); the others belong to the room.
    pub on_channels: bool,
    /// The MCP tool that makes this call.
    pub tool: &'static str,
    /// The tool's title.
    pub title: &'static str,
    /// What the call does and answers (the MCP description, the OpenAPI and CLI summary).
    pub doc: &'static str,
    /// The JSON Schema of the params, derived from their type.
    pub schema: fn() -> Value,
}

impl Spec {
    /// Whether the call only reads (so it may be made with `GET /api/call`).
    pub fn changes_nothing(&self) -> bool {
        self.access == Access::Read
    }

    /// The params' JSON Schema, an object schema even for calls without params.
    pub fn params_schema(&self) -> Value {
        (self.schema)()
    }
}

/// What a call needs from the credentials, and whether it changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes nothing: needs `read`, and may be made with `GET /api/call`.
    Read,
    /// Changes only the caller's own membership (`room.join`, `room.leave`): needs `read` (a
    /// private room's allow-list is checked by the room), but not over `GET`.
    Membership,
    /// Changes state: needs `write`.
    Write,
    /// Starts or stops processes on the broker's host (`agent.spawn`, `agent.stop`): needs `admin`.
    Admin,
}

impl Access {
    /// The permission the credentials must hold.
    pub fn permission(self) -> Permission {
        match self {
            Access::Read | Access::Membership => Permission::Read,
            Access::Write => Permission::Write,
            Access::Admin => Permission::Admin,
        }
    }

    /// `read`, `read (membership)` or `write`, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Membership => "read (membership)",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}
