//! [`Access`]: what a call of the table needs from the credentials. A leaf of `rooms`.

use crate::auth::Permission;

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
