#!/usr/bin/env python3
"""Compatibility check: speaks to agent-bridge the way the original multi-agent bridge's Python
clients do, and exits non-zero with a clear message on any mismatch.

The WebSocket client of the original bridge connects to /ws/<id>, reads `connection_confirmed`, sends
`{"type": "send", "to", "msg_type", "payload", "require_ack"}` (no `ref`), receives
`{"type": "message", "message": {...}}`, answers `{"type": "ack", "message_id"}` and pings with
`{"type": "ping"}`. Its HTTP client posts `{from, to, type, payload}` to /api/send and polls
`GET /api/messages?to=<id>&since=<timestamp>`, passing the last message's `timestamp` as `since`.
Frames this server adds (`sent`, `receipt`, `event`) are skipped, as the original clients ignore
types they do not know; any `error` frame is a mismatch.

Usage: original_client.py PORT        (needs the `websockets` package: pip install websockets)
Exit status: 0 all checks passed, 1 mismatch, 2 timed out, 3 missing dependency or bad usage.
"""

import asyncio
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

try:
    import websockets
except ImportError:
    print("FAIL: the Python `websockets` package is missing: pip install websockets", file=sys.stderr)
    sys.exit(3)

OVERALL_TIMEOUT_S = 20
STEP_TIMEOUT_S = 5
# Frame types this server adds and the original clients ignore.
EXTENSIONS = {"sent", "receipt", "event"}


class Mismatch(Exception):
    """The server did not answer as the original clients expect."""


def expect(condition, what):
    if not condition:
        raise Mismatch(what)


def step(text):
    print(f"ok: {text}", flush=True)


def parse_time(ts):
    """An RFC 3339 timestamp as the server writes it ("...Z"); fails on anything else."""
    expect(isinstance(ts, str), f"timestamp {ts!r} is not a string")
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        raise Mismatch(f"timestamp {ts!r} is not RFC 3339") from None


class Agent:
    """One WebSocket agent, as the original client drives it."""

    def __init__(self, port, client_id):
        self.url = f"ws://127.0.0.1:{port}/ws/{client_id}"
        self.client_id = client_id
        self.ws = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, open_timeout=STEP_TIMEOUT_S, close_timeout=2)
        confirmed = await self.recv("connection_confirmed")
        expect(confirmed.get("client_id") == self.client_id, f"{self.client_id}: confirmed as {confirmed}")
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def recv(self, want):
        """The next frame of type `want`, skipping only the extension frames."""
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), STEP_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise Mismatch(f"{self.client_id}: no {want!r} frame within {STEP_TIMEOUT_S} s") from None
            expect(isinstance(raw, str), f"{self.client_id}: expected a JSON text frame, got binary {raw[:80]!r}")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise Mismatch(f"{self.client_id}: not JSON: {raw[:200]!r}") from None
            expect(isinstance(frame, dict), f"{self.client_id}: frame is not an object: {raw[:200]}")
            if frame.get("type") == want:
                return frame
            expect(frame.get("type") in EXTENSIONS, f"{self.client_id}: waiting for {want!r}, got {frame}")

    async def ping(self):
        await self.send({"type": "ping"})
        pong = await self.recv("pong")
        parse_time(pong.get("timestamp"))

    async def send_message(self, to, msg_type, payload, require_ack=False):
        """Sends as the original client does; waits for this server's `sent` so that polls see it."""
        await self.send({"type": "send", "to": to, "msg_type": msg_type, "payload": payload, "require_ack": require_ack})
        sent = await self.recv("sent")
        expect(sent.get("status") in ("queued", "delivered"), f"{self.client_id}: send to {to}: {sent}")
        return sent

    async def message(self):
        """The next delivered message object, checked for the fields the original clients read."""
        frame = await self.recv("message")
        msg = frame.get("message")
        expect(isinstance(msg, dict), f"{self.client_id}: `message` frame without a message object: {frame}")
        for field in ("id", "from", "to", "type", "payload", "timestamp"):
            expect(field in msg, f"{self.client_id}: message lacks {field!r}: {msg}")
        parse_time(msg["timestamp"])
        return msg


def http(port, method, path, body=None):
    """One HTTP request with urllib, as the original clients make it: (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=STEP_TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        raise Mismatch(f"{method} {path}: answer {status} is not JSON: {raw[:200]!r}") from None


async def http_send(port, sender, to, msg_type, payload):
    status, body = await asyncio.to_thread(
        http, port, "POST", "/api/send", {"from": sender, "to": to, "type": msg_type, "payload": payload}
    )
    expect(status == 200, f"POST /api/send from {sender} to {to}: {status} {body}")
    expect(isinstance(body.get("message_id"), str), f"POST /api/send: no message_id in {body}")
    return body


async def poll(port, client_id, since=None):
    """`GET /api/messages?to=..&since=..` as the original polling client builds it."""
    params = {"to": client_id}
    if since is not None:
        params["since"] = since
    path = "/api/messages?" + urllib.parse.urlencode(params)
    status, body = await asyncio.to_thread(http, port, "GET", path)
    expect(status == 200, f"GET {path}: {status} {body}")
    messages = body.get("messages")
    expect(isinstance(messages, list), f"GET {path}: no messages list in {body}")
    return messages


def check_message(msg, sender, to, msg_type, payload):
    got = (msg.get("from"), msg.get("to"), msg.get("type"), msg.get("payload"))
    expect(got == (sender, to, msg_type, payload), f"message {got} != {(sender, to, msg_type, payload)}: {msg}")


async def main(port):
    # An RFC 3339 time as Python writes it ("+00:00", microseconds), a second before anything is sent.
    start = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()

    async with Agent(port, "code") as code, Agent(port, "browser") as browser:
        step("two WebSocket agents connected and got connection_confirmed")
        await code.ping()
        await browser.ping()
        step("ping -> pong")

        # Code -> browser with require_ack; the browser acks as the original client does.
        await code.send_message("browser", "command", {"action": "run_prompt", "text": "What is 2+2?"}, require_ack=True)
        cmd = await browser.message()
        check_message(cmd, "code", "browser", "command", {"action": "run_prompt", "text": "What is 2+2?"})
        expect(cmd.get("requires_ack") is True, f"requires_ack not set on {cmd}")
        await browser.send({"type": "ack", "message_id": cmd["id"]})
        await browser.ping()  # the ack was accepted: no `error` came before the pong
        step("code -> browser over WebSocket, acked")

        # Browser -> code.
        await browser.send_message("code", "claude_response", {"response": "4", "request_id": cmd["id"]})
        check_message(await code.message(), "browser", "code", "claude_response", {"response": "4", "request_id": cmd["id"]})
        step("browser -> code over WebSocket")

        # An HTTP agent sends to a WebSocket agent.
        await http_send(port, "http-agent", "code", "question", {"q": "status?"})
        check_message(await code.message(), "http-agent", "code", "question", {"q": "status?"})
        step("HTTP POST /api/send -> WebSocket agent")

        # A WebSocket agent sends to the HTTP agent, which polls by time.
        await code.send_message("http-agent", "answer", {"a": "green"})
        got = await poll(port, "http-agent", since=start)
        expect(len(got) == 1, f"poll since={start}: expected 1 message, got {got}")
        check_message(got[0], "code", "http-agent", "answer", {"a": "green"})
        last = got[-1]["timestamp"]
        parse_time(last)
        step("WebSocket agent -> HTTP agent, polled with an RFC 3339 `since`")

        again = await poll(port, "http-agent", since=last)
        expect(again == [], f"poll since the last timestamp returned old messages again: {again}")
        for n in (1, 2):
            await browser.send_message("http-agent", "update", {"n": n})
        got = await poll(port, "http-agent", since=last)
        expect([m.get("payload") for m in got] == [{"n": 1}, {"n": 2}], f"poll since={last}: {got}")
        for m in got:
            check_message(m, "browser", "http-agent", "update", m.get("payload"))
        last = got[-1]["timestamp"]
        step("polling by the last message's timestamp returns each message once, in order")

        # A brand-new HTTP agent's first poll has no `since`.
        await http_send(port, "http-agent", "http-fresh", "hello", {"first": True})
        got = await poll(port, "http-fresh")
        expect(len(got) == 1, f"first poll without since: {got}")
        check_message(got[0], "http-agent", "http-fresh", "hello", {"first": True})
        step("first poll without `since`")

        # Broadcast reaches WebSocket and (recently polling) HTTP agents, never the sender.
        await code.send_message("all", "announce", {"text": "hello all"})
        check_message(await browser.message(), "code", "all", "announce", {"text": "hello all"})
        got = await poll(port, "http-agent", since=last)
        expect(len(got) == 1, f"broadcast poll: {got}")
        check_message(got[0], "code", "all", "announce", {"text": "hello all"})
        await code.ping()  # nothing but extension frames (and no copy of the broadcast) before the pong
        step("broadcast to all")

    print("PASS: the original client's protocol works", flush=True)


def run():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(f"usage: {sys.argv[0]} PORT", file=sys.stderr)
        return 3
    port = int(sys.argv[1])
    try:
        asyncio.run(asyncio.wait_for(main(port), OVERALL_TIMEOUT_S))
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except asyncio.TimeoutError:
        print(f"FAIL: timed out after {OVERALL_TIMEOUT_S} s", file=sys.stderr)
        return 2
    except Exception as e:  # connection refused, closed sockets ...: still a failure, said plainly
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
