"""The official Python MCP SDK as a client of the broker's /mcp, for tests/mcp_http.rs.

`python client.py SCENARIO URL [ARGS...]` runs one scenario and prints one JSON line with what it
saw; the Rust test judges it. Keys come as arguments (`-` for none).
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def http(key, extra=None, hooks=None):
    headers = dict(extra or {})
    if key != "-":
        headers["Authorization"] = f"Bearer {key}"
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120), event_hooks=hooks or {})


def connect(url, key, mode="auto", extra=None, hooks=None, **kw):
    return Client(streamable_http_client(url, http_client=http(key, extra, hooks)), mode=mode, **kw)


def outcome(result):
    """A CallToolResult as JSON."""
    text = "".join(getattr(c, "text", "") for c in result.content)
    return {"is_error": bool(result.is_error), "text": text, "data": result.structured_content}


async def tools(c, name, **args):
    return outcome(await c.call_tool(name, args))


async def scenario_list(url, key):
    async with connect(url, key) as c:
        listed = await c.list_tools()
        status = await tools(c, "status")
        return {"protocol": c.protocol_version, "tools": [t.name for t in listed.tools], "status": status}


async def scenario_converse(url, key_a, key_b):
    async with connect(url, key_a) as a, connect(url, key_b) as b:
        sent = await tools(a, "send_message", to="bob", text="hello bob")
        got = await tools(b, "read_messages", wait_s=10)
        first = (got["data"] or {}).get("messages") or [{}]
        replied = await tools(b, "reply", message_id=first[0].get("id", "?"), text="hello alice")
        back = await tools(a, "read_messages", wait_s=10)
        return {"sent": sent, "got": got, "replied": replied, "back": back}


async def scenario_ask(url, key, to):
    async with connect(url, key) as c:
        return {"asked": await tools(c, "ask", to=to, text="what is 6*7?", timeout_s=20)}


async def scenario_readonly(url, key):
    async with connect(url, key) as c:
        listed = await c.list_tools()
        return {"tools": len(listed.tools), "send": await tools(c, "send_message", to="alice", text="no"),
                "read": await tools(c, "read_messages")}


async def refused(make):
    try:
        async with make() as c:
            await c.list_tools()
        return {"connected": True}
    except BaseException as e:  # the SDK raises an error group from its task group
        return {"connected": False, "error": repr(e)[:300]}


async def scenario_refusals(url, key):
    async with http("-") as h:
        anonymous = await h.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    async with http(key, {"Origin": "http://evil.example"}) as h:
        foreign = await h.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    return {
        "anonymous": {"status": anonymous.status_code, "body": anonymous.json()},
        "foreign": {"status": foreign.status_code, "body": foreign.json()},
        "sdk_anonymous": await refused(lambda: connect(url, "-")),
        "sdk_foreign": await refused(lambda: connect(url, key, extra={"Origin": "http://evil.example"})),
    }


async def scenario_session(url, key, sender_key):
    seen = {}
    pushed = asyncio.Queue()

    async def on_response(response):
        sid = response.headers.get("mcp-session-id")
        if sid:
            seen["session"] = sid

    async def on_log(params):
        await pushed.put(params.data)

    hooks = {"response": [on_response]}
    async with connect(url, key, mode="legacy", hooks=hooks, logging_callback=on_log) as c:
        listed = await c.list_tools()
        version = c.protocol_version
        await asyncio.sleep(1.0)  # the listening stream opens after `initialized`
        async with connect(url, sender_key) as sender:
            await tools(sender, "send_message", to="carol", text="pushed to you")
        note = await asyncio.wait_for(pushed.get(), 15)
    # Leaving the client sent DELETE: the session is gone.
    async with http(key, {"mcp-session-id": seen.get("session", "?"), "mcp-protocol-version": version}) as h:
        after = await h.post(url, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
    return {"protocol": version, "session": seen.get("session"), "tools": len(listed.tools), "pushed": note,
            "after_delete": after.status_code}


def main():
    name, url, *args = sys.argv[1:]
    result = asyncio.run(globals()[f"scenario_{name}"](url, *args))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
