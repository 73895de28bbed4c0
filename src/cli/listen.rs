//! `agent-bridge listen`: stream the inbox (and joined rooms) to stdout, one line per message.
//!
//! With `--json` each line is the message object of PROTOCOL.md section 1. The client library
//! reconnects and resumes by itself; `--cursor-file` makes a restarted listener resume where the
//! last one stopped: the file holds the inbox watermark (every seq up to it was printed) and the ids
//! printed above it, so a restart neither loses a message nor prints one twice.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_bridge_protocol::Message;
use clap::Args;

use super::common::{human_message, print_line, run_async, ClientArgs, Failure, Resolved};
use crate::client::{Client, Cursor};

/// Flags of `agent-bridge listen`.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only these message types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Resume the inbox after this seq (replays everything stored after it).
    #[arg(long)]
    pub since: Option<u64>,
    /// Acknowledge each message that asks for it, after printing it.
    #[arg(long)]
    pub auto_ack: bool,
    /// Keep the resume point in this file: read at start, updated after every printed message.
    #[arg(long)]
    pub cursor_file: Option<PathBuf>,
    /// Join this room first (repeatable).
    #[arg(long = "room")]
    pub rooms: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A room to join before listening.
#[derive(Debug, Clone)]
pub struct RoomJoin {
    pub room: String,
    pub role: Option<String>,
    pub since: Option<u64>,
}

/// What the listen loop needs besides the connection settings.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    pub types: Vec<String>,
    pub since: Option<u64>,
    pub auto_ack: bool,
    pub cursor_file: Option<PathBuf>,
    pub rooms: Vec<RoomJoin>,
    pub count: Option<u64>,
}

/// Runs `agent-bridge listen`.
pub fn listen(args: &ListenArgs) -> ExitCode {
    let opts = ListenOptions {
        types: args.types.clone(),
        since: args.since,
        auto_ack: args.auto_ack,
        cursor_file: args.cursor_file.clone(),
        rooms: args.rooms.iter().map(|r| RoomJoin { room: r.clone(), role: None, since: None }).collect(),
        count: args.count,
    };
    run_async(async move {
        let who = args.client.resolve_bound("cli").await?;
        listen_loop(&who, opts).await
    })
}

/// Connects, joins the rooms and prints messages until Ctrl-C, SIGTERM, `count`, or a closed stdout.
pub async fn listen_loop(who: &Resolved, opts: ListenOptions) -> Result<(), Failure> {
    let mut cursor_file = match &opts.cursor_file {
        Some(path) => Some(CursorFile::load(path, opts.since)?),
        None => None,
    };
    let since = opts.since.or_else(|| cursor_file.as_ref().and_then(|c| c.cursor.resume_point()));
    let config = who.config()?.since(since).types(opts.types.clone());
    let client = Client::connect(config).await.map_err(|e| Failure::client(&e, &who.url, "connecting"))?;
    for join in &opts.rooms {
        if let Err(e) = client.join_room(&join.room, join.role.as_deref(), join.since).await {
            client.close().await;
            return Err(Failure::client(&e, &who.url, &format!("joining room {}", join.room)));
        }
    }
    if !who.json {
        let resume = since.map(|s| format!(", resuming after seq {s}")).unwrap_or_default();
        let generated = if who.generated_id { " (generated: pass --client-id to keep it)" } else { "" };
        eprintln!("listening as {}{generated} on {}{resume}; Ctrl-C to stop", who.client_id, who.url);
    }
    let outcome = pump(&client, who.json, &opts, cursor_file.as_mut()).await;
    client.close().await;
    if !who.json {
        if let Some(s) = cursor_file.as_ref().and_then(|c| c.cursor.resume_point()).or(client.inbox_cursor()) {
            eprintln!("stopped; resume with --since {s}");
        }
    }
    outcome
}

/// The print loop.
async fn pump(client: &Client, json: bool, opts: &ListenOptions, mut cursor_file: Option<&mut CursorFile>) -> Result<(), Failure> {
    let mut left = opts.count;
    if left == Some(0) {
        return Ok(());
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            m = client.next_message() => m,
            () = &mut stop => return Ok(()),
        };
        let Some(msg) = msg else { return Err(Failure::failed("the connection to the broker was closed")) };
        let inbox = msg.room.is_none();
        let printed_before = inbox && cursor_file.as_ref().is_some_and(|c| c.printed(&msg.id));
        if !printed_before {
            print_line(&render(&msg, json))?;
            if let (true, Some(file)) = (inbox, cursor_file.as_deref_mut()) {
                file.record(&msg, opts.auto_ack && msg.requires_ack)?;
            }
        }
        if opts.auto_ack && msg.requires_ack {
            client.ack(&msg.id).map_err(|e| Failure::failed(format!("acknowledging {}: {e}", msg.id)))?;
        }
        if !printed_before {
            if let Some(n) = left.as_mut() {
                *n -= 1;
                if *n == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// One output line.
pub fn render(msg: &Message, json: bool) -> String {
    if json {
        serde_json::to_string(msg).unwrap_or_default()
    } else {
        human_message(msg)
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Acked ids a cursor file remembers: a listener killed between printing and acking gets the
/// message again from the broker's queue, and must ack it without printing it twice.
const ACKED_KEPT: usize = 256;

/// The `--cursor-file`: the inbox watermark of printed messages, the ids printed above it, and the
/// ids of the last messages printed and acked. Lines: the watermark, then `SEQ ID` or `acked ID`.
#[derive(Debug)]
struct CursorFile {
    path: PathBuf,
    cursor: Cursor,
    /// (seq, id) printed above the watermark.
    above: Vec<(u64, String)>,
    /// Printed and acknowledged (`--auto-ack`), newest last.
    acked: VecDeque<String>,
    ids: HashSet<String>,
}

impl CursorFile {
    /// Reads the file if it exists; an explicit `--since` replaces what it says.
    fn load(path: &Path, since: Option<u64>) -> Result<Self, Failure> {
        let mut file = CursorFile {
            path: path.to_owned(),
            cursor: Cursor::new(since),
            above: Vec::new(),
            acked: VecDeque::new(),
            ids: HashSet::new(),
        };
        if since.is_some() {
            return Ok(file);
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(file),
            Err(e) => return Err(Failure::usage(format!("reading the cursor file {}: {e}", path.display()))),
        };
        let bad = || Failure::usage(format!("the cursor file {} is not an agent-bridge listen cursor", path.display()));
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        if let Some(first) = lines.next() {
            file.cursor = Cursor::new(Some(first.parse().map_err(|_| bad())?));
        }
        for line in lines {
            match line.split_once(' ').ok_or_else(bad)? {
                ("acked", id) => file.acked.push_back(id.to_owned()),
                (seq, id) => {
                    let seq: u64 = seq.parse().map_err(|_| bad())?;
                    file.cursor.observe(seq);
                    file.above.push((seq, id.to_owned()));
                }
            }
        }
        file.ids = file.above.iter().map(|(_, id)| id.clone()).chain(file.acked.iter().cloned()).collect();
        Ok(file)
    }

    /// True if a previous run printed this message (it is being replayed or redelivered).
    fn printed(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Records a printed message (`acking`: it is about to be acked) and rewrites the file.
    fn record(&mut self, msg: &Message, acking: bool) -> Result<(), Failure> {
        self.cursor.observe(msg.seq);
        let floor = self.cursor.resume_point().unwrap_or(0);
        if msg.seq > floor {
            self.above.push((msg.seq, msg.id.clone()));
        }
        if acking {
            self.acked.push_back(msg.id.clone());
            if self.acked.len() > ACKED_KEPT {
                self.acked.pop_front();
            }
        }
        self.above.retain(|(seq, _)| *seq > floor);
        self.ids = self.above.iter().map(|(_, id)| id.clone()).chain(self.acked.iter().cloned()).collect();
        self.save(floor)
    }

    /// Writes a temporary file and renames it over the cursor file, so a crash leaves one or the other.
    fn save(&self, floor: u64) -> Result<(), Failure> {
        let mut text = format!("# agent-bridge listen cursor: every inbox seq up to the next line was printed\n{floor}\n");
        for (seq, id) in &self.above {
            text.push_str(&format!("{seq} {id}\n"));
        }
        for id in &self.acked {
            text.push_str(&format!("acked {id}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| Failure::failed(format!("writing the cursor file {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::sample_message as msg;

    #[test]
    fn cursor_file_survives_a_restart_with_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cursor");
        let mut f = CursorFile::load(&path, None).expect("no file yet");
        assert_eq!(f.cursor.resume_point(), None);
        f.record(&msg(1, "m1"), true).expect("saved");
        f.record(&msg(3, "m3"), false).expect("saved");
        let again = CursorFile::load(&path, None).expect("reloads");
        assert_eq!(again.cursor.resume_point(), Some(1));
        assert!(again.printed("m3") && !again.printed("m2"));
        let mut again = again;
        again.record(&msg(2, "m2"), false).expect("saved");
        let last = CursorFile::load(&path, None).expect("reloads");
        assert_eq!(last.cursor.resume_point(), Some(3));
        assert!(last.above.is_empty(), "the gap closed");
        assert!(last.printed("m1"), "an acked id is kept below the watermark");
        assert!(!last.printed("m2"));
        let overridden = CursorFile::load(&path, Some(0)).expect("loads");
        assert_eq!(overridden.cursor.resume_point(), Some(0));
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cursor");
        std::fs::write(&path, "not a number\n").expect("write");
        assert!(CursorFile::load(&path, None).is_err());
    }
}
