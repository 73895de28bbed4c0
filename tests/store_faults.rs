//! The store under faults, on the real binary over a small loopback filesystem: a size-limited
//! tmpfs mounted by the test (root is needed to mount; CI runs as root). Disk full during a
//! `require_ack` stream, space freed again, a read-only data dir at start-up and at run time, and a
//! damaged data dir (a torn or overwritten tail, a corrupted value) at start-up.
//!
//! What holds, each time: a send answered `sent` is stored and reaches its receiver; a send the
//! store cannot take is answered `unavailable` (never `sent`, never a 500); readiness answers 503
//! at once meanwhile and 200 again after the store reopens itself; a stop is bounded in time; a
//! damaged data dir starts with what is intact or is refused with the path and the problem.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, Ws};
use serde_json::json;

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "these tests need root to mount a small tmpfs (CI runs them as root): mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's data dir on it.
    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Remounts read-only (`true`) or read-write.
    fn remount(&self, read_only: bool) {
        let opt = if read_only { "remount,ro" } else { "remount,rw" };
        let status = Command::new("mount").args(["-o", opt]).arg(self.path()).status().expect("mount -o remount");
        assert!(status.success(), "mount -o {opt}");
    }

    /// Fills what is left with a file, `filler`, until the filesystem says it is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        // The last partial block.
        while f.write_all(&block[..4096]).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn data_arg(dir: &Path) -> String {
    format!("--data-dir={}", dir.display())
}

/// A broker on `data` and the sender's WebSocket.
async fn serving(data: &Path) -> (Server, Ws) {
    let server = Server::start(&[&data_arg(data)]);
    let sender = Ws::connect(&server, "sender").await;
    (server, sender)
}

/// `GET /health/ready` with a short timeout: the status, or 0 when it did not answer in time.
async fn ready(server: &Server) -> u16 {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    match client.get(server.http("/health/ready")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until readiness answers `status`, each probe answered within its 2 s.
async fn wait_ready(server: &Server, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = ready(server).await;
        assert_ne!(got, 0, "/health/ready did not answer within 2 s");
        if got == status {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "/health/ready still {got}, not {status}, after {within:?}; logs:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outcome of one numbered send.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Sent(String),
    Error(String),
}

/// Sends `ns` as `require_ack` messages to `receiver` over `ws`, at most 50 unanswered, and returns
/// each one's outcome (its message id, or the error code).
async fn stream(ws: &mut Ws, ns: impl IntoIterator<Item = u64>) -> BTreeMap<u64, Outcome> {
    let ns: Vec<u64> = ns.into_iter().collect();
    let mut out = BTreeMap::new();
    let mut next = 0;
    while out.len() < ns.len() {
        while next < ns.len() && next - out.len() < 50 {
            let n = ns[next];
            ws.send(json!({"type": "send", "to": "receiver", "msg_type": "work", "payload": {"n": n}, "require_ack": true, "ref": n.to_string()}))
                .await;
            next += 1;
        }
        let f = ws.recv().await;
        let Some(n) = f["ref"].as_str().and_then(|r| r.parse::<u64>().ok()) else { continue };
        let outcome = match f["type"].as_str() {
            Some("sent") => Outcome::Sent(f["message_id"].as_str().expect("id").to_owned()),
            Some("error") => Outcome::Error(f["code"].as_str().expect("code").to_owned()),
            _ => continue,
        };
        out.insert(n, outcome);
    }
    out
}

fn sent(outcomes: &BTreeMap<u64, Outcome>) -> BTreeSet<u64> {
    outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Sent(_))).map(|(n, _)| *n).collect()
}

/// Every error is `unavailable`: never a 500-like `storage_error` or `internal`.
fn only_unavailable(outcomes: &BTreeMap<u64, Outcome>) -> usize {
    let errors: Vec<&Outcome> = outcomes.values().filter(|o| matches!(o, Outcome::Error(_))).collect();
    for e in &errors {
        assert_eq!(**e, Outcome::Error("unavailable".into()), "a send the store cannot take answers unavailable: {outcomes:?}");
    }
    errors.len()
}

/// Connects `receiver`, reads every message (acking each) until `expect` are all there, and
/// returns the numbers received.
async fn receive_all(server: &Server, expect: &BTreeSet<u64>) -> BTreeSet<u64> {
    let mut receiver = Ws::connect(server, "receiver").await;
    let mut got = BTreeSet::new();
    while !expect.is_subset(&got) {
        let Some(f) = receiver.try_recv(Duration::from_secs(15)).await else {
            panic!("the receiver stopped getting messages; missing {:?}", expect.difference(&got).collect::<Vec<_>>());
        };
        if f["type"] != "message" {
            continue;
        }
        let m = &f["message"];
        got.insert(m["payload"]["n"].as_u64().expect("n"));
        receiver.send(json!({"type": "ack", "message_id": m["id"]})).await;
    }
    got
}

/// SIGTERM, and the process is gone within `within`; returns its exit code.
fn terminate(server: &mut Server, within: Duration) -> Option<i32> {
    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = server.wait_exit(within).unwrap_or_else(|| panic!("SIGTERM did not stop the broker within {within:?}; logs:\n{}", server.logs()));
    exit.code()
}

#[tokio::test]
async fn disk_full_answers_unavailable_and_the_broker_recovers_by_itself_when_space_returns() {
    let fs = Tmpfs::mount("8m");
    let mut server = Server::start(&[&data_arg(&fs.data())]);
    let mut sender = Ws::connect(&server, "sender").await;
    assert_eq!(ready(&server).await, 200);

    // Before: everything is stored.
    let before = stream(&mut sender, 1..=50).await;
    assert_eq!(sent(&before).len(), 50, "{before:?}");

    // The disk fills up mid-stream.
    let filler = fs.fill();
    let during = stream(&mut sender, 51..=400).await;
    let refused = only_unavailable(&during);
    assert!(refused > 0, "with the disk full some sends must be refused: {during:?}");
    eprintln!("disk full: {} sent, {refused} unavailable", sent(&during).len());
    // Readiness says so at once, without hanging.
    let took = wait_ready(&server, 503, Duration::from_secs(10)).await;
    eprintln!("readiness 503 after {took:?}");
    let still = stream(&mut sender, 401..=420).await;
    assert_eq!(only_unavailable(&still), 20, "while the disk stays full nothing is sent: {still:?}");

    // Space returns: the broker reopens its store by itself, no restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    let took = wait_ready(&server, 200, Duration::from_secs(20)).await;
    eprintln!("readiness 200 again {took:?} after the filler was removed");
    let after = stream(&mut sender, 421..=470).await;
    assert_eq!(sent(&after).len(), 50, "after recovery every send is stored: {after:?}");
    let logs = server.logs();
    assert!(!logs.contains("router is down"), "no escalation: {logs}");
    assert!(!logs.contains("actor restarting"), "a full disk is not a crash: {logs}");
    assert!(server.alive(), "the same process");

    // Everything answered `sent`, before, during and after, reaches the receiver.
    let mut expect = sent(&before);
    expect.extend(sent(&during));
    expect.extend(sent(&still));
    expect.extend(sent(&after));
    let got = receive_all(&server, &expect).await;
    assert!(expect.is_subset(&got));
    assert_eq!(terminate(&mut server, Duration::from_secs(15)), Some(0));

    // And after a restart on the same data, nothing acked comes back, nothing sent is missing.
    let server = Server::start(&[&data_arg(&fs.data())]);
    let mut receiver = Ws::connect(&server, "receiver").await;
    if let Some(f) = receiver.try_recv(Duration::from_millis(500)).await {
        assert_ne!(f["type"], "message", "every message was acked before the restart: {f}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_broker_in_bounded_time_while_the_disk_is_full() {
    let fs = Tmpfs::mount("8m");
    let mut server = Server::start(&[&data_arg(&fs.data())]);
    let mut sender = Ws::connect(&server, "sender").await;
    let _filler = fs.fill();
    let during = stream(&mut sender, 1..=200).await;
    assert!(only_unavailable(&during) > 0);
    wait_ready(&server, 503, Duration::from_secs(10)).await;
    let started = Instant::now();
    let code = terminate(&mut server, Duration::from_secs(15));
    eprintln!("stopped in {:?} with {code:?}", started.elapsed());
}

#[tokio::test]
async fn a_read_only_data_dir_is_refused_at_start_with_the_path_and_the_problem() {
    let fs = Tmpfs::mount("16m");
    let data = fs.data();
    stored(&data, 5).await;
    // No file is open now, so the tmpfs may become read-only.
    fs.remount(true);
    let out = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["serve", "--bind", "127.0.0.1:0", &data_arg(&data)])
        .output()
        .expect("running agent-bridge");
    fs.remount(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read-only"), "names the problem: {stderr}");
    assert!(stderr.contains(&data.join("db").display().to_string()), "names the path: {stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
}

/// A small ext4 filesystem in a file, on a loop device, that turns read-only on its first error:
/// Linux refuses to remount a filesystem read-only while files are open for writing (the broker's
/// are), but ext4 does it by itself after an error, which `trigger_fs_error` raises on demand.
struct Ext4 {
    dir: tempfile::TempDir,
}

impl Ext4 {
    fn mount() -> Ext4 {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("image");
        std::fs::File::create(&image).expect("image").set_len(32 << 20).expect("size");
        let ok = |cmd: &mut Command, what: &str| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e} (this test needs root, mkfs.ext4 and loop devices)"));
            assert!(out.status.success(), "{what}: {} (this test needs root, mkfs.ext4 and loop devices)", String::from_utf8_lossy(&out.stderr));
        };
        ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image), "mkfs.ext4");
        std::fs::create_dir(dir.path().join("mnt")).expect("mnt");
        let ext4 = Ext4 { dir };
        ok(Command::new("mount").args(["-o", "loop,errors=remount-ro"]).arg(&image).arg(ext4.mnt()), "mount -o loop");
        ext4
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Raises an ext4 error: the filesystem is read-only from now on, open files included.
    fn turn_read_only(&self) {
        let out = Command::new("findmnt").args(["-n", "-o", "SOURCE"]).arg(self.mnt()).output().expect("findmnt");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let device = source.rsplit('/').next().expect("device");
        std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").expect("trigger_fs_error");
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt()).status();
    }
}

#[tokio::test]
async fn a_data_dir_turning_read_only_at_run_time_answers_unavailable_and_loses_nothing_sent() {
    let fs = Ext4::mount();
    let data = fs.mnt().join("data");
    let (mut server, mut sender) = serving(&data).await;
    let before = stream(&mut sender, 1..=20).await;
    assert_eq!(sent(&before).len(), 20);

    fs.turn_read_only();
    let during = stream(&mut sender, 21..=40).await;
    let refused = only_unavailable(&during);
    eprintln!("read-only: {} sent, {refused} unavailable", sent(&during).len());
    let took = wait_ready(&server, 503, Duration::from_secs(10)).await;
    eprintln!("read-only: readiness 503 after {took:?}");
    let still = stream(&mut sender, 41..=60).await;
    assert_eq!(only_unavailable(&still), 20, "{still:?}");
    let (status, body) = server.post("/api/send", &json!({"from": "sender", "to": "receiver", "msg_type": "work", "payload": {"n": 0}})).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(!server.logs().contains("actor restarting"), "{}", server.logs());
    let started = Instant::now();
    let code = terminate(&mut server, Duration::from_secs(15));
    eprintln!("read-only: stopped in {:?} with {code:?}", started.elapsed());

    // The operator repairs the filesystem; everything answered `sent` is there.
    let image = fs.dir.path().join("image");
    assert!(Command::new("umount").arg(fs.mnt()).status().expect("umount").success());
    let _ = Command::new("e2fsck").args(["-f", "-y"]).arg(&image).output();
    assert!(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(fs.mnt()).status().expect("mount").success());
    let server = Server::start(&[&data_arg(&data)]);
    let mut expect = sent(&before);
    expect.extend(sent(&during));
    receive_all(&server, &expect).await;
}

/// Stores `n` messages for `receiver` (not acked) and stops the broker cleanly.
async fn stored(data: &Path, n: u64) {
    let mut server = Server::start(&[&data_arg(data)]);
    let mut sender = Ws::connect(&server, "sender").await;
    let outcomes = stream(&mut sender, 1..=n).await;
    assert_eq!(sent(&outcomes).len() as u64, n);
    assert_eq!(terminate(&mut server, Duration::from_secs(15)), Some(0));
}

/// The largest file under `dir` (sled's log).
fn largest_file(dir: &Path) -> PathBuf {
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                files.push((meta.len(), e.path()));
            }
        }
    }
    files.into_iter().max().expect("a file").1
}

/// Starts the broker on a damaged data dir: either it serves (and then serves intact messages
/// only, every one of them whole) or it exits non-zero at once with the path and the problem.
async fn start_damaged(data: &Path, what: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let log = data.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), &data_arg(data)])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let endpoint = common::Endpoint { port };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let stderr = std::fs::read_to_string(&log).expect("log");
            eprintln!("{what}: refused with {status}: {stderr}");
            assert!(!status.success(), "a refusal exits non-zero");
            assert!(stderr.contains(&data.join("db").display().to_string()), "names the path: {stderr}");
            return;
        }
        if reqwest::get(endpoint.http("/health/live")).await.is_ok_and(|r| r.status().is_success()) {
            let mut receiver = Ws::connect(&endpoint, "receiver").await;
            let mut got = 0;
            while let Some(f) = receiver.try_recv(Duration::from_secs(2)).await {
                if f["type"] == "message" {
                    assert!(f["message"]["payload"]["n"].as_u64().is_some(), "an intact message: {f}");
                    got += 1;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("{what}: started on what was intact, {got} messages served; logs:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            return;
        }
        assert!(Instant::now() < deadline, "{what}: neither served nor refused within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_torn_or_overwritten_tail_starts_with_what_is_intact_or_is_refused_clearly() {
    for (what, damage) in [("torn tail", 0u8), ("overwritten tail", 1u8)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        stored(&data, 200).await;
        let log = largest_file(&data.join("db"));
        let len = std::fs::metadata(&log).expect("meta").len();
        let cut = (len / 10).clamp(64, 4096);
        if damage == 0 {
            std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(len - cut).expect("truncate");
        } else {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&log).expect("open");
            f.seek(SeekFrom::Start(len - cut)).expect("seek");
            f.write_all(&vec![0xA5; cut as usize]).expect("overwrite");
        }
        eprintln!("{what}: {} of {len} bytes of {}", cut, log.display());
        start_damaged(&data, what).await;
    }
}

#[tokio::test]
async fn a_corrupted_value_is_skipped_counted_and_the_rest_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    stored(&data, 20).await;
    {
        // Message 7 of the receiver's inbox: the envelope of version 1, then garbage.
        let db = sled::open(data.join("db")).expect("sled");
        let streams = db.open_tree("streams").expect("tree");
        let mut key = b"i:receiver\0".to_vec();
        key.extend_from_slice(&7u64.to_be_bytes());
        let old = streams.get(&key).expect("get").expect("message 7 is stored");
        assert_eq!(old[0], 0xFF);
        streams.insert(&key, &[0xFF, old[1], 0xFE, 0xFE, 0xFE][..]).expect("corrupt");
        db.flush().expect("flush");
    }
    let server = Server::start(&[&data_arg(&data)]);
    let mut receiver = Ws::connect(&server, "receiver").await;
    let mut got = BTreeSet::new();
    while let Some(f) = receiver.try_recv(Duration::from_secs(2)).await {
        if f["type"] == "message" {
            got.insert(f["message"]["payload"]["n"].as_u64().expect("n"));
        }
    }
    let expect: BTreeSet<u64> = (1..=20).filter(|n| *n != 7).collect();
    assert_eq!(got, expect, "every intact message is served, the corrupted one skipped");
    server.wait_log("skipping an undecodable stored record").await;
    let metrics = reqwest::get(server.http("/metrics")).await.expect("metrics").text().await.expect("text");
    let line = metrics.lines().find(|l| l.starts_with("bridge_store_corrupt_records_total")).expect("the counter");
    assert_ne!(line.split_whitespace().last(), Some("0"), "{line}");
}

/// A frozen filesystem (`fsfreeze`) is a disk that hangs: writes and flushes block until it thaws.
#[tokio::test]
async fn a_hanging_disk_answers_unavailable_within_the_bound_and_the_stop_has_a_deadline() {
    let fs = Ext4::mount();
    let data = fs.mnt().join("data");
    let (mut server, mut sender) = serving(&data).await;
    assert_eq!(sent(&stream(&mut sender, 1..=5).await).len(), 5);

    let freeze = |how: &str| {
        let status = Command::new("fsfreeze").arg(how).arg(fs.mnt()).status().expect("fsfreeze");
        assert!(status.success(), "fsfreeze {how}");
    };
    freeze("--freeze");
    // One send while the flush hangs: answered within the durability bound, not never. (A stream
    // of sends is not: sled's writers wait behind the hung log write, on the shard's thread; see
    // README, "The store under faults".)
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let body = json!({"from": "sender", "to": "receiver", "msg_type": "work", "payload": {"n": 6}});
    let r = client.post(server.http("/api/send")).json(&body).send().await.expect("answered within 15 s");
    let took = started.elapsed();
    let status = r.status().as_u16();
    let answer: serde_json::Value = r.json().await.expect("json");
    assert_eq!((status, answer["code"].as_str()), (503, Some("unavailable")), "{answer}");
    eprintln!("frozen: the send answered unavailable after {took:?}");
    let took = wait_ready(&server, 503, Duration::from_secs(10)).await;
    eprintln!("frozen: readiness 503 after {took:?}, every probe answered within 2 s");

    // SIGTERM: the watchdog ends the stop at its deadline although the last flush hangs.
    let pid = server.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let said = common::poll_until(Duration::from_secs(15), || async {
        server.logs().contains("stopping took longer than the shutdown deadline").then_some(())
    })
    .await;
    // The kernel keeps threads blocked on a frozen filesystem until it thaws, exit or not.
    freeze("--unfreeze");
    assert!(said.is_some(), "the deadline fired within 15 s; logs:\n{}", server.logs());
    let exit = server.wait_exit(Duration::from_secs(10)).expect("gone once the filesystem thaws");
    eprintln!("frozen: stopped by the deadline with {exit}");
    assert_eq!(exit.code(), Some(1));
}
