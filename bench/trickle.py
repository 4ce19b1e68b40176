"""A trickling SSE upstream, and a client that times every event through a proxy. Stdlib only.

    python bench/trickle.py serve --port 18200 --events 20 --interval-ms 20
    python bench/trickle.py client --url http://127.0.0.1:8787 --key K --streams 10

The server answers every ``POST /v1/chat/completions`` (``Authorization: Bearer sk-bench``)
with an OpenAI chat stream sent one event at a time: the role event at once, then one content
event every ``--interval-ms``, then finish, usage and ``[DONE]``, each in its own chunk of a
chunked response. Each event's content is ``"<seq>:<monotonic ns when written> "``, so the
client, on the same machine and clock (CLOCK_MONOTONIC is system-wide), knows which event
arrived and how long it spent in flight, whatever the proxy re-serialises around it.

The client sends one stream at a time and reads the socket as bytes arrive. Per stream it
reports time to first event, per-event delay (arrival - send), gaps between arrivals against
gaps between sends, events received, and reads that completed more than one event (chunks
coalesced on the way).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import socket
import statistics
import sys
import time

KEY = "sk-bench"
_EVENT = re.compile(rb'"content":\s*"(\d+):(\d+) "')


def _event(seq: int, *, finish: str | None = None, usage: dict | None = None) -> bytes:
    delta = {} if finish or usage else {"content": f"{seq}:{time.monotonic_ns()} "}
    if seq == 0:
        delta["role"] = "assistant"
    obj = {
        "id": "chatcmpl-trickle",
        "object": "chat.completion.chunk",
        "created": 1764480000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": []
        if usage
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, events: int, interval: float
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
            }
            await reader.readexactly(int(headers.get("content-length") or 0))
            if headers.get("authorization") != f"Bearer {KEY}":
                writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n" + _event(0)
            )
            await writer.drain()
            for seq in range(1, events + 1):
                await asyncio.sleep(interval)
                writer.write(_event(seq))
                await writer.drain()
            usage = {
                "prompt_tokens": 212,
                "completion_tokens": events,
                "total_tokens": 212 + events,
            }
            writer.write(_event(0, finish="stop") + _event(0, usage=usage))
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, events: int, interval_ms: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, events, interval_ms / 1000), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


# --------------------------------------------------------------------------- client


class _Dechunker:
    """Incremental chunked-transfer decoder (pass-through when the body is not chunked)."""

    def __init__(self, chunked: bool) -> None:
        self.chunked, self.buf, self.left, self.crlf = chunked, b"", 0, False

    def feed(self, data: bytes) -> bytes:
        if not self.chunked:
            return data
        self.buf += data
        out = b""
        while True:
            if self.left:
                take = self.buf[: self.left]
                out += take
                self.buf, self.left = self.buf[len(take) :], self.left - len(take)
                if self.left:
                    return out
                self.crlf = True
            if self.crlf:  # the CRLF that ends a chunk's data
                if len(self.buf) < 2:
                    return out
                self.buf, self.crlf = self.buf[2:], False
            i = self.buf.find(b"\r\n")
            if i < 0:
                return out
            size = int(self.buf[:i].split(b";")[0] or b"0", 16)
            self.buf = self.buf[i + 2 :]
            if size == 0:
                return out
            self.left = size


def one_stream(host: str, port: int, key: str, model: str) -> dict:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Count slowly."}],
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    req = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"x-bench-trickle: 1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((host, port), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(30)
    t_send = time.monotonic_ns()
    sock.sendall(req)
    raw, dec, text = b"", None, b""
    arrivals: dict[int, tuple[int, int]] = {}  # seq -> (sent ns, received ns)
    reads_with_events, coalesced, first_byte = 0, 0, None
    status = 0
    while True:
        data = sock.recv(65536)
        now = time.monotonic_ns()
        if not data:
            break
        first_byte = first_byte or now
        if dec is None:
            raw += data
            if b"\r\n\r\n" not in raw:
                continue
            head, _, data = raw.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            dec = _Dechunker(b"transfer-encoding: chunked" in head.lower())
        before = text.rfind(b"\n\n")
        text += dec.feed(data)
        complete = text[: text.rfind(b"\n\n") + 2] if b"\n\n" in text else b""
        new = [
            m for m in _EVENT.finditer(complete, max(before, 0)) if int(m.group(1)) not in arrivals
        ]
        for m in new:
            arrivals[int(m.group(1))] = (int(m.group(2)), now)
        if new:
            reads_with_events += 1
            coalesced += len(new) > 1
        if complete.endswith(b"data: [DONE]\n\n") or status != 200:
            break
    sock.close()
    seqs = sorted(arrivals)
    delays = [(arrivals[s][1] - arrivals[s][0]) / 1e3 for s in seqs]
    gap_err = [
        abs((arrivals[b][1] - arrivals[a][1]) - (arrivals[b][0] - arrivals[a][0])) / 1e3
        for a, b in itertools.pairwise(seqs)
    ]
    return {
        "status": status,
        "events": len(seqs),
        "coalesced_reads": coalesced,
        "ttfb_us": (first_byte - t_send) / 1e3 if first_byte else None,
        "ttfe_us": (arrivals[0][1] - t_send) / 1e3 if 0 in arrivals else None,
        "delay_us_median": statistics.median(delays) if delays else None,
        "delay_us_max": max(delays) if delays else None,
        "gap_err_us_max": max(gap_err) if gap_err else None,
    }


def client(url: str, key: str, streams: int, model: str, events: int) -> dict:
    host, port = url.split("//")[1].split(":")
    runs = [one_stream(host, int(port), key, model) for _ in range(streams)]
    ok = [r for r in runs if r["status"] == 200]

    def med(k: str) -> float | None:
        vals = [r[k] for r in ok if r[k] is not None]
        return round(statistics.median(vals), 1) if vals else None

    def worst(k: str) -> float | None:
        vals = [r[k] for r in ok if r[k] is not None]
        return round(max(vals), 1) if vals else None

    return {
        "streams": streams,
        "ok": len(ok),
        "events_sent": (events + 1) * streams,
        "events_received": sum(r["events"] for r in ok),
        "coalesced_reads": sum(r["coalesced_reads"] for r in ok),
        "ttfb_us": med("ttfb_us"),
        "ttfe_us": med("ttfe_us"),
        "delay_us_median": med("delay_us_median"),
        "delay_us_max": worst("delay_us_max"),
        "gap_err_us_max": worst("gap_err_us_max"),
        "statuses": sorted({r["status"] for r in runs}),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["serve", "client"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--events", type=int, default=20, help="content events per stream")
    ap.add_argument("--interval-ms", type=float, default=20)
    ap.add_argument("--url")
    ap.add_argument("--key", default=KEY)
    ap.add_argument("--model", default="trickle-gpt-4o-mini")
    ap.add_argument("--streams", type=int, default=10)
    args = ap.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port, args.events, args.interval_ms))
    else:
        res = client(args.url, args.key, args.streams, args.model, args.events)
        print("TRICKLE_RESULT " + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
