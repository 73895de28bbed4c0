//! The desktop controller's messages, settings and error (PROTOCOL.md `desktop.prompt`). Compiled
//! with or without the `desktop` feature, so the table of calls and the HTTP layer name them either
//! way; only `crate::desktop` (behind the feature) drives a display.

use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;

use crate::supervisor::{Failure, Refusal};

/// How the prompt gets into the application window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputMode {
    /// Typed key by key (enigo text input): slower, but leaves the clipboard alone while typing.
    Type,
    /// Put on the clipboard and pasted with Ctrl+V: fast, and exact for any text.
    #[default]
    Paste,
}

impl InputMode {
    /// `type` or `paste` (the config values).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "type" => Some(InputMode::Type),
            "paste" => Some(InputMode::Paste),
            _ => None,
        }
    }
}

/// Settings of the desktop controller.
#[derive(Debug, Clone)]
pub struct DesktopConfig {
    /// The title (a substring, case-insensitive) of the window prompts go to by default.
    pub window: String,
    pub input: InputMode,
    /// A prompt's deadline when its call names none.
    pub timeout: Duration,
    /// The answer is taken once the copied text stays the same for this long.
    pub stable_for: Duration,
    /// How often the answer is copied while waiting.
    pub poll: Duration,
    /// Prompts waiting behind the one being answered before `busy`.
    pub queue: usize,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            window: "Claude".into(),
            input: InputMode::Paste,
            timeout: Duration::from_secs(120),
            stable_for: Duration::from_millis(1500),
            poll: Duration::from_millis(250),
            queue: 8,
        }
    }
}

/// Put `text` into the window titled `window` (default: the configured one), submit it and answer
/// the application's reply. Sent by `desktop.prompt` calls and the `desktop` agent.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<String, DesktopError>")]
pub struct Prompt {
    pub text: String,
    pub window: Option<String>,
    /// The whole prompt's deadline (default: the configured timeout).
    pub timeout: Option<Duration>,
}

/// Why a prompt got no answer; each has a stable code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DesktopError {
    #[error("no X display: {0}")]
    NoDisplay(String),
    #[error("no window whose title contains {0:?}")]
    NoWindow(String),
    #[error("no stable answer within {0:?}")]
    Timeout(Duration),
    #[error("the desktop controller has {0} prompts waiting; try again later")]
    Busy(usize),
    #[error("desktop input failed: {0}")]
    Input(String),
    #[error("the desktop controller is not enabled (built without the desktop feature, or no desktop_window configured)")]
    Disabled,
    #[error("the desktop controller failed while handling this prompt ({0}); it has been restarted")]
    Internal(String),
    #[error("the desktop controller is down after repeated failures")]
    Unavailable,
}

impl DesktopError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DesktopError::NoDisplay(_) => "no_display",
            DesktopError::NoWindow(_) => "no_window",
            DesktopError::Timeout(_) => "timeout",
            DesktopError::Busy(_) => "busy",
            DesktopError::Input(_) => "desktop_error",
            DesktopError::Disabled => "not_supported",
            DesktopError::Internal(_) => "internal",
            DesktopError::Unavailable => "unavailable",
        }
    }
}

impl From<MailboxError> for DesktopError {
    fn from(_: MailboxError) -> Self {
        DesktopError::Unavailable
    }
}

impl Refusal for DesktopError {
    fn internal(failure: &Failure) -> Self {
        DesktopError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        DesktopError::Unavailable
    }
}
