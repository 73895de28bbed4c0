//! Finding and focusing the target window with x11rb (the X protocol in pure Rust).
//!
//! With a window manager, `_NET_CLIENT_LIST` names the managed windows and `_NET_ACTIVE_WINDOW`
//! asks it to focus one. Without one (Xvfb in tests, kiosk setups) the top-level windows are the
//! root's children (and their children, for toolkits that wrap their frame), focused with
//! `SetInputFocus`. Both are tried, so one code path serves both.

use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConfigureWindowAux, ConnectionExt as _, EventMask, InputFocus, MapState, StackMode, Window,
};
use x11rb::rust_connection::RustConnection;
use x11rb::CURRENT_TIME;

use crate::messages::DesktopError;

/// A connection to the display and the atoms it needs.
pub(super) struct Display {
    conn: RustConnection,
    root: Window,
    net_wm_name: Atom,
    utf8_string: Atom,
    net_active_window: Atom,
    net_client_list: Atom,
}

fn x_err(e: impl std::fmt::Display) -> DesktopError {
    DesktopError::Input(format!("X11: {e}"))
}

impl Display {
    /// Connects to `display` (`None`: `$DISPLAY`): `no_display` when it is unset or unreachable.
    pub(super) fn connect(display: Option<&str>) -> Result<Self, DesktopError> {
        if display.is_none() && std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
            return Err(DesktopError::NoDisplay("DISPLAY is not set".into()));
        }
        let (conn, screen) = x11rb::connect(display).map_err(|e| DesktopError::NoDisplay(e.to_string()))?;
        let root = conn.setup().roots.get(screen).map(|s| s.root).ok_or_else(|| DesktopError::NoDisplay("no screen".into()))?;
        let atom = |name: &str| -> Result<Atom, DesktopError> {
            Ok(conn.intern_atom(false, name.as_bytes()).map_err(x_err)?.reply().map_err(x_err)?.atom)
        };
        let (net_wm_name, utf8_string) = (atom("_NET_WM_NAME")?, atom("UTF8_STRING")?);
        let (net_active_window, net_client_list) = (atom("_NET_ACTIVE_WINDOW")?, atom("_NET_CLIENT_LIST")?);
        Ok(Display { conn, root, net_wm_name, utf8_string, net_active_window, net_client_list })
    }

    /// The window's title: `_NET_WM_NAME` (UTF-8), else `WM_NAME`.
    fn title(&self, w: Window) -> Option<String> {
        let read = |prop: Atom, ty: Atom| {
            let reply = self.conn.get_property(false, w, prop, ty, 0, 1024).ok()?.reply().ok()?;
            (!reply.value.is_empty()).then(|| String::from_utf8_lossy(&reply.value).into_owned())
        };
        read(self.net_wm_name, self.utf8_string).or_else(|| read(AtomEnum::WM_NAME.into(), AtomEnum::ANY.into()))
    }

    fn viewable(&self, w: Window) -> bool {
        let attrs = self.conn.get_window_attributes(w).ok().and_then(|c| c.reply().ok());
        attrs.is_some_and(|a| a.map_state == MapState::VIEWABLE)
    }

    /// Candidate top-level windows: the window manager's list, then the root's children and
    /// grandchildren (unmanaged toolkits put the title on a wrapper or its child).
    fn candidates(&self) -> Vec<Window> {
        let mut out = Vec::new();
        if let Some(reply) = self.conn.get_property(false, self.root, self.net_client_list, AtomEnum::WINDOW, 0, 4096).ok().and_then(|c| c.reply().ok()) {
            out.extend(reply.value32().into_iter().flatten());
        }
        let children = |w: Window| self.conn.query_tree(w).ok().and_then(|c| c.reply().ok()).map(|t| t.children).unwrap_or_default();
        for top in children(self.root) {
            out.push(top);
            out.extend(children(top));
        }
        out
    }

    /// The first viewable window whose title contains `title` (case-insensitive).
    pub(super) fn find(&self, title: &str) -> Result<Window, DesktopError> {
        let wanted = title.to_lowercase();
        self.candidates()
            .into_iter()
            .find(|&w| self.title(w).is_some_and(|t| t.to_lowercase().contains(&wanted)) && self.viewable(w))
            .ok_or_else(|| DesktopError::NoWindow(title.to_owned()))
    }

    /// Raises and focuses `w`, then waits (at most `within`) until the server reports the focus
    /// there or on one of its descendants.
    pub(super) fn focus(&self, w: Window, within: Duration) -> Result<(), DesktopError> {
        let active = ClientMessageEvent::new(32, w, self.net_active_window, [1u32, CURRENT_TIME, 0, 0, 0]);
        let mask = EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY;
        self.conn.send_event(false, self.root, mask, active).map_err(x_err)?;
        self.conn.configure_window(w, &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE)).map_err(x_err)?;
        self.conn.set_input_focus(InputFocus::PARENT, w, CURRENT_TIME).map_err(x_err)?;
        self.conn.flush().map_err(x_err)?;
        let until = std::time::Instant::now() + within;
        loop {
            let focus = self.conn.get_input_focus().map_err(x_err)?.reply().map_err(x_err)?.focus;
            if focus == w || self.is_inside(focus, w) || std::time::Instant::now() >= until {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `inner` is `outer` or one of its descendants.
    fn is_inside(&self, mut inner: Window, outer: Window) -> bool {
        for _ in 0..16 {
            if inner == outer {
                return true;
            }
            match self.conn.query_tree(inner).ok().and_then(|c| c.reply().ok()) {
                Some(t) if t.parent != 0 && t.parent != self.root => inner = t.parent,
                _ => return false,
            }
        }
        false
    }
}
