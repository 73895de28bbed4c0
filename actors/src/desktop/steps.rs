//! The steps of one prompt, run on the controller's worker thread (they block on the X server):
//! find and focus the window, save the clipboard, put the prompt in, submit, copy the answer until
//! it is stable, restore the clipboard. Every wait is bounded by the prompt's deadline.

use std::time::{Duration, Instant};

use arboard::Clipboard;
use enigo::{Direction, Enigo, Key, Keyboard, Settings};

use super::window::Display;
use crate::messages::{DesktopConfig, DesktopError, InputMode};

/// The longest the window may take to report the focus.
const FOCUS_WAIT: Duration = Duration::from_millis(500);
/// Lets the application take in the pasted or typed prompt before Enter.
const SETTLE: Duration = Duration::from_millis(150);

fn input_err(e: impl std::fmt::Display) -> DesktopError {
    DesktopError::Input(e.to_string())
}

/// One prompt's devices: the X connection, the keyboard and the clipboard.
pub(super) struct Desk {
    display: Display,
    keys: Enigo,
    clipboard: Clipboard,
}

impl Desk {
    /// Connects all three to `$DISPLAY`: `no_display` when any of them cannot.
    pub(super) fn open() -> Result<Self, DesktopError> {
        let display = Display::connect(None)?;
        let keys = Enigo::new(&Settings::default()).map_err(|e| DesktopError::NoDisplay(e.to_string()))?;
        let clipboard = Clipboard::new().map_err(|e| DesktopError::NoDisplay(e.to_string()))?;
        Ok(Desk { display, keys, clipboard })
    }

    /// The whole prompt: the clipboard is restored whatever happens once it was saved.
    pub(super) fn prompt(&mut self, config: &DesktopConfig, text: &str, title: &str, deadline: Instant) -> Result<String, DesktopError> {
        let window = self.display.find(title)?;
        self.display.focus(window, FOCUS_WAIT)?;
        let saved = self.clipboard.get_text().ok();
        let answer = self.exchange(config, text, deadline);
        let restored = match saved {
            Some(previous) => self.clipboard.set_text(previous),
            None => self.clipboard.clear(),
        };
        if let Err(e) = restored {
            tracing::warn!(actor = "desktop", error = %e, "restoring the clipboard");
        }
        answer
    }

    /// Puts the prompt in, submits it and waits for the answer.
    fn exchange(&mut self, config: &DesktopConfig, text: &str, deadline: Instant) -> Result<String, DesktopError> {
        match config.input {
            InputMode::Type => self.keys.text(text).map_err(input_err)?,
            InputMode::Paste => {
                self.clipboard.set_text(text).map_err(input_err)?;
                self.chord('v')?;
            }
        }
        std::thread::sleep(SETTLE);
        self.keys.key(Key::Return, Direction::Click).map_err(input_err)?;
        self.wait_stable(config, text, deadline)
    }

    /// Ctrl + `c`.
    fn chord(&mut self, c: char) -> Result<(), DesktopError> {
        self.keys.key(Key::Control, Direction::Press).map_err(input_err)?;
        let typed = self.keys.key(Key::Unicode(c), Direction::Click).map_err(input_err);
        self.keys.key(Key::Control, Direction::Release).map_err(input_err)?;
        typed
    }

    /// Selects all and copies until the copied text is neither empty, nor the prompt, nor the
    /// marker put on the clipboard before each copy, and has stayed the same for `stable_for`.
    fn wait_stable(&mut self, config: &DesktopConfig, prompt: &str, deadline: Instant) -> Result<String, DesktopError> {
        let marker = format!("agent-bridge:waiting:{}", uuid::Uuid::now_v7().simple());
        let mut last: Option<(String, Instant)> = None;
        while Instant::now() < deadline {
            self.clipboard.set_text(marker.as_str()).map_err(input_err)?;
            self.chord('a')?;
            self.chord('c')?;
            std::thread::sleep(config.poll.min(deadline.saturating_duration_since(Instant::now())));
            let Ok(copied) = self.clipboard.get_text() else { continue };
            let copied = copied.trim().to_owned();
            if copied.is_empty() || copied == marker || copied == prompt.trim() {
                last = None;
                continue;
            }
            match &last {
                Some((seen, since)) if *seen == copied => {
                    if since.elapsed() >= config.stable_for {
                        return Ok(copied);
                    }
                }
                _ => last = Some((copied, Instant::now())),
            }
        }
        Err(DesktopError::Timeout(config.timeout))
    }
}
