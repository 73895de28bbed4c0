//! The MCP server's read buffer: messages received for this client, numbered in arrival order, so
//! that `read_messages` can return "everything since the last read" and a cursor to continue from.
//!
//! The cursor is this buffer's own counter, not the broker's `seq`: messages arrive by priority and
//! room messages have their own seq, while a model needs one number that only grows. The buffer keeps
//! the newest [`CAPACITY`] messages and says how many older ones it had to drop.
//!
//! The pusher ([`super::push`]) reads it too, with a cursor of its own: a push into the model's
//! context (a `claude/channel` notification) marks the message read, so that a default
//! `read_messages` does not return it again; a logging notification does not (see `push`).

use std::collections::VecDeque;
use std::time::Duration;

use agent_bridge_protocol::Message;
use tokio::sync::watch;

/// Messages kept for reading.
pub const CAPACITY: usize = 1000;

/// One page of `read_messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// (cursor, message), oldest first.
    pub messages: Vec<(u64, Message)>,
    /// Pass this back to continue after the last message returned.
    pub cursor: u64,
    /// More messages wait after this page.
    pub more: bool,
    /// Messages after the requested cursor that were dropped before being read (buffer full).
    pub missed: u64,
}

/// The buffer.
#[derive(Debug)]
pub struct Inbox {
    entries: parking_lot::Mutex<Entries>,
    /// The cursor of the newest message; readers wait on it.
    newest: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Entries {
    list: VecDeque<(u64, Message)>,
    /// Cursor of the last message handed out by a read that used the default cursor.
    read: u64,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox { entries: parking_lot::Mutex::new(Entries::default()), newest: watch::channel(0).0 }
    }
}

impl Inbox {
    /// Adds a received message.
    pub fn push(&self, msg: Message) {
        let mut e = self.entries.lock();
        let cursor = *self.newest.borrow() + 1;
        e.list.push_back((cursor, msg));
        if e.list.len() > CAPACITY {
            e.list.pop_front();
        }
        self.newest.send_replace(cursor);
    }

    /// Messages after `after` (default: after the last read), at most `limit`, waiting up to `wait`
    /// for the first one when there is none.
    pub async fn read(&self, after: Option<u64>, limit: usize, wait: Duration) -> Page {
        let asked = after;
        let after = after.unwrap_or_else(|| self.entries.lock().read);
        if !wait.is_zero() {
            let mut rx = self.newest.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|n| *n > after)).await;
        }
        let mut e = self.entries.lock();
        // A default read continues after what was read (or pushed) meanwhile, not before it.
        let after = asked.unwrap_or(e.read.max(after));
        let first = e.list.front().map_or(*self.newest.borrow() + 1, |(c, _)| *c);
        let missed = first.saturating_sub(after + 1);
        let messages: Vec<(u64, Message)> = e.list.iter().filter(|(c, _)| *c > after).take(limit.max(1)).cloned().collect();
        let cursor = messages.last().map_or(after.max(first.saturating_sub(1)), |(c, _)| *c);
        let more = *self.newest.borrow() > cursor;
        e.read = e.read.max(cursor);
        Page { messages, cursor, more, missed }
    }

    /// For the pusher: the messages after `pushed` and the cursor to continue from. With
    /// `mark_read` they also count as read, and those a read returned already are left out, so
    /// that a message reaches the model once.
    pub fn take(&self, pushed: u64, mark_read: bool) -> (Vec<(u64, Message)>, u64) {
        let mut e = self.entries.lock();
        let after = if mark_read { pushed.max(e.read) } else { pushed };
        let messages: Vec<(u64, Message)> = e.list.iter().filter(|(c, _)| *c > after).cloned().collect();
        let newest = *self.newest.borrow();
        if mark_read {
            e.read = e.read.max(newest);
        }
        (messages, newest.max(pushed))
    }

    /// Wakes on every new message (its value is the newest cursor).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// The newest message whose `correlation_id` is `correlation` (a late reply to an `ask`),
    /// waiting up to `wait` for it; read or not.
    pub async fn reply(&self, correlation: &str, wait: Duration) -> Option<Message> {
        let find = || self.entries.lock().list.iter().rev().find(|(_, m)| m.correlation_id.as_deref() == Some(correlation)).map(|(_, m)| m.clone());
        let mut rx = self.newest.subscribe();
        let waiting = async {
            loop {
                if let Some(m) = find() {
                    return m;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(wait, waiting).await.ok()
    }

    /// A message still in the buffer, by id (for replies).
    pub fn find(&self, id: &str) -> Option<Message> {
        self.entries.lock().list.iter().rev().find(|(_, m)| m.id == id).map(|(_, m)| m.clone())
    }

    /// Messages not read yet with the default cursor.
    pub fn unread(&self) -> u64 {
        let e = self.entries.lock();
        e.list.iter().filter(|(c, _)| *c > e.read).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> Message {
        crate::client::sample_message(1, id)
    }

    fn ids(p: &Page) -> Vec<&str> {
        p.messages.iter().map(|(_, m)| m.id.as_str()).collect()
    }

    #[tokio::test]
    async fn reads_continue_after_the_last_read() {
        let inbox = Inbox::default();
        inbox.push(msg("a"));
        inbox.push(msg("b"));
        inbox.push(msg("c"));
        let p = inbox.read(None, 2, Duration::ZERO).await;
        assert_eq!((ids(&p), p.cursor, p.more, p.missed), (vec!["a", "b"], 2, true, 0));
        assert_eq!(inbox.unread(), 1);
        let p = inbox.read(None, 10, Duration::ZERO).await;
        assert_eq!((ids(&p), p.cursor, p.more), (vec!["c"], 3, false));
        let p = inbox.read(None, 10, Duration::ZERO).await;
        assert!(p.messages.is_empty());
        assert_eq!(p.cursor, 3, "an empty read keeps the cursor");
        let again = inbox.read(Some(1), 10, Duration::ZERO).await;
        assert_eq!(ids(&again), vec!["b", "c"], "an explicit cursor re-reads");
        assert_eq!(inbox.find("b").map(|m| m.id), Some("b".to_owned()));
    }

    #[tokio::test]
    async fn a_read_waits_for_the_next_message() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let reader = {
            let inbox = std::sync::Arc::clone(&inbox);
            tokio::spawn(async move { inbox.read(None, 10, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        inbox.push(msg("late"));
        let p = tokio::time::timeout(Duration::from_secs(5), reader).await.expect("woke").expect("task");
        assert_eq!(ids(&p), vec!["late"]);
    }

    #[tokio::test]
    async fn pushed_messages_count_as_read_once() {
        let inbox = Inbox::default();
        inbox.push(msg("a"));
        assert_eq!(ids(&inbox.read(None, 10, Duration::ZERO).await), vec!["a"]);
        inbox.push(msg("b"));
        let (logged, cursor) = inbox.take(0, false);
        assert_eq!((logged.len(), cursor), (2, 2), "a logging push leaves the read state alone");
        assert_eq!(inbox.unread(), 1);
        let (pushed, cursor) = inbox.take(0, true);
        assert_eq!(pushed.iter().map(|(_, m)| m.id.as_str()).collect::<Vec<_>>(), vec!["b"], "a was read already");
        assert_eq!((cursor, inbox.unread()), (2, 0));
        assert!(inbox.read(None, 10, Duration::ZERO).await.messages.is_empty());
        assert!(inbox.take(cursor, true).0.is_empty());
    }

    #[tokio::test]
    async fn a_late_reply_is_found_by_correlation_id() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let waiter = {
            let inbox = std::sync::Arc::clone(&inbox);
            tokio::spawn(async move { inbox.reply("req-1", Duration::from_secs(10)).await })
        };
        inbox.push(msg("other"));
        let mut answer = msg("answer");
        answer.correlation_id = Some("req-1".into());
        inbox.push(answer);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woke").expect("task");
        assert_eq!(got.map(|m| m.id), Some("answer".to_owned()));
        assert!(inbox.reply("req-2", Duration::from_millis(10)).await.is_none());
    }

    #[tokio::test]
    async fn overflow_reports_what_was_missed() {
        let inbox = Inbox::default();
        for i in 0..(CAPACITY + 5) {
            inbox.push(msg(&format!("m{i}")));
        }
        let p = inbox.read(None, 1, Duration::ZERO).await;
        assert_eq!(p.missed, 5);
        assert_eq!(ids(&p), vec!["m5"]);
        assert_eq!(p.cursor, 6);
    }
}
