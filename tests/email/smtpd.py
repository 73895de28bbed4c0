"""A real SMTP server for tests/email.rs: aiosmtpd on 127.0.0.1 (a port of its own), printing
{"port": N} once it listens, then one JSON line per message received: the envelope, every header,
the top content type and each leaf part (type and decoded content). Stops when stdin closes (the
test ended or died) or after 300 s."""

import asyncio
import email
import json
import sys
from email import policy

from aiosmtpd.smtp import SMTP


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        parts = [{"type": p.get_content_type(), "content": p.get_content()} for p in msg.walk() if not p.is_multipart()]
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "content_type": msg.get_content_type(),
            "parts": parts,
        }), flush=True)
        return "250 Message accepted for delivery"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 300)
    except asyncio.TimeoutError:
        pass
    server.close()


asyncio.run(main())
