"""Load and what is read around it: wrk runs, the measured window, and the three scenario kinds.

- ``wrk``: one closed-loop wrk load (json-cN, sse-cN).
- ``mix``: small JSON requests, paced, with and without a ~400 KB (~100k-token) prompt being
  posted alongside by a second wrk; the two phases alternate order by round.
- ``trickle``: streams from the trickling upstream, one at a time, timed event by event.

Every load generator runs on CPU 0 with the upstream; the proxy has CPU 1 to itself. Stdlib.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import fixtures
from procs import HZ, busy_ticks, children_ticks, core_busy, cores, cpu_ticks, self_ticks
from targets import LOAD_CPU, Running, Target

if TYPE_CHECKING:
    from bench import Bench

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "wrk"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # wrk | mix | trickle
    stream: bool = False
    connections: int = 1


def post(url: str, body: bytes, key: str, stream: bool) -> tuple[int, dict, bytes]:
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    if stream:
        headers["x-bench-stream"] = "1"
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def validate(run: Running, key: str, bodies: dict, lenient: bool = False) -> list[str]:
    """The JSON answer and the reassembled SSE stream must carry the fixture exactly (with
    ``lenient``, a proxy that re-serialises may add keys to usage)."""
    problems = []
    for stream in (False, True):
        status, _, data = post(run.url, bodies[stream].read_bytes(), key, stream)
        kind = "SSE" if stream else "JSON"
        if status != 200:
            problems.append(f"{kind}: HTTP {status}: {data[:200]!r}")
            continue
        check = fixtures.check_sse if stream else fixtures.check_json
        why = check(data, lenient)
        if why:
            problems.append(f"{kind}: {why}")
    return problems


# --------------------------------------------------------------------------- wrk


def start_wrk(
    env: Bench,
    url: str,
    connections: int,
    seconds: float,
    target: Target,
    body: Path,
    log: Path,
    *,
    stream: bool = False,
    script: str = "post.lua",
    extra: dict[str, str] | None = None,
) -> subprocess.Popen:
    argv = ["taskset", "-c", LOAD_CPU, env.wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s"]
    argv += ["--timeout", f"{target.wrk_timeout_s}s", "-s", str(LUA / script)]
    e = dict(
        os.environ,
        BENCH_BODY=str(body),
        BENCH_AUTH=target.client_key,
        BENCH_STREAM="1" if stream else "0",
        BENCH_LUA_DIR=str(LUA),
        **(extra or {}),
    )
    return env.procs.start("wrk", [*argv, url + "/v1/chat/completions"], log, env=e)


def finish_wrk(env: Bench, p: subprocess.Popen, log: Path, timeout: float) -> dict:
    try:
        p.wait(timeout)  # wrk stops by itself after -d; this is a safety net
    finally:
        env.procs.stop(p)
    text = log.read_text()
    found = re.findall(r"BENCH_RESULT (\{.*\})", text)
    if not found:
        raise RuntimeError(f"wrk printed no result: {text[-500:]}")
    res = json.loads(found[-1])
    # wrk's summary.requests counts every completed response, whatever its status.
    res["errors"] = sum(res[k] for k in res if k.startswith("err_"))
    res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    return res


def wrk(env: Bench, url: str, sc: Scenario, seconds: float, target: Target, log: Path) -> dict:
    p = start_wrk(
        env, url, sc.connections, seconds, target, env.bodies[sc.stream], log, stream=sc.stream
    )
    return finish_wrk(env, p, log, seconds + 2 * target.wrk_timeout_s + 30)


def _latency(res: dict) -> dict:
    return {
        "rps": res["rps"],
        "p50_ms": res["p50_us"] / 1000,
        "p90_ms": res["p90_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "max_ms": res["max_us"] / 1000,
        "requests": res["requests"],
        "errors": res["errors"],
    }


# --------------------------------------------------------------------------- the window


class Window:
    """CPU of every process involved, read at the start and end of a measured window."""

    def __init__(self, env: Bench, run: Running) -> None:
        self.env, self.run = env, run
        self.pid = run.proc.pid if run.proc else None  # type: ignore[attr-defined]
        self.t0 = time.monotonic()
        self.snap0 = self._snap()

    def _snap(self) -> dict:
        env = self.env
        return {
            "proxy": cpu_ticks(self.pid) if self.pid else 0,
            "upstream": cpu_ticks(env.upstream.pid) + cpu_ticks(env.trickle.pid),
            "services": sum(cpu_ticks(p) for p in self.run.service_pids),
            "driver": self_ticks() + children_ticks(),  # OTLP sink, wrk, trickle client
            "cores": cores(),
        }

    def close(self, requests: int) -> dict:
        s0, s1 = self.snap0, self._snap()
        wall = time.monotonic() - self.t0
        n = max(requests, 1)
        d = {k: s1[k] - s0[k] for k in ("proxy", "upstream", "services", "driver")}
        ours = sum(d.values())
        rec = {
            "wall_s": round(wall, 2),
            "upstream_cpu_us_per_req": round(d["upstream"] / HZ * 1e6 / n, 1),
            # CPU on either core that is none of ours: someone else's.
            "foreign_pct": round(
                100 * (busy_ticks(s1["cores"]) - busy_ticks(s0["cores"]) - ours) / HZ / wall, 1
            ),
            **core_busy(s0["cores"], s1["cores"]),
        }
        if self.pid:
            rec["cpu_us_per_req"] = round(d["proxy"] / HZ * 1e6 / n, 1)
        if self.run.service_pids:
            rec["services_cpu_us_per_req"] = round(d["services"] / HZ * 1e6 / n, 1)
        return rec


def settle(env: Bench, run: Running) -> None:
    from procs import wait_quiet

    if run.proc:
        wait_quiet(run.proc.pid)  # type: ignore[attr-defined]
    else:
        time.sleep(0.5)


# --------------------------------------------------------------------------- scenario kinds


def run_wrk(env: Bench, target: Target, run: Running, sc: Scenario, rnd: int, wd: Path) -> dict:
    wrk(env, run.url, sc, env.args.warmup, target, wd / "warmup.log")
    settle(env, run)
    rows0 = env.ledger_rows(run)
    win = Window(env, run)
    res = wrk(env, run.url, sc, env.args.duration, target, wd / "wrk.log")
    rec = {**_latency(res), "wrk": res, **win.close(res["requests"])}
    rec["_rows0"] = rows0
    return rec


def run_mix(env: Bench, target: Target, run: Running, sc: Scenario, rnd: int, wd: Path) -> dict:
    a = env.args
    small = {"BENCH_DELAY_MS": str(a.mix_delay_ms)}
    big = {"BENCH_DELAY_MS": str(a.mix_big_delay_ms)}
    t_big = 2 * target.wrk_timeout_s + 30
    status, _, data = post(run.url, env.bodies["big"].read_bytes(), target.client_key, False)
    if status != 200 or fixtures.check_json(data, target.lenient):
        return {"validation": [f"100k prompt: HTTP {status}: {data[:200]!r}"]}
    p = start_wrk(
        env,
        run.url,
        sc.connections,
        a.warmup,
        target,
        env.bodies[False],
        wd / "warmup.log",
        script="paced.lua",
        extra=small,
    )
    finish_wrk(env, p, wd / "warmup.log", a.warmup + t_big)
    settle(env, run)
    rows0 = env.ledger_rows(run)
    win = Window(env, run)
    phases = ("alone", "mixed") if rnd % 2 == 0 else ("mixed", "alone")
    rec: dict = {"phase_order": list(phases)}
    total = 0
    for ph in phases:
        log = wd / f"wrk-{ph}.log"
        ps = start_wrk(
            env,
            run.url,
            sc.connections,
            a.duration,
            target,
            env.bodies[False],
            log,
            script="paced.lua",
            extra=small,
        )
        pb = None
        if ph == "mixed":
            pb = start_wrk(
                env,
                run.url,
                a.mix_big_connections,
                a.duration,
                target,
                env.bodies["big"],
                wd / "wrk-big.log",
                script="paced.lua",
                extra=big,
            )
        rs = finish_wrk(env, ps, log, a.duration + t_big)
        rec[ph] = _latency(rs)
        total += rs["requests"]
        if pb is not None:
            rb = finish_wrk(env, pb, wd / "wrk-big.log", a.duration + t_big)
            rec["big"] = _latency(rb)
            total += rb["requests"]
        if ph == phases[0]:
            settle(env, run)
    rec.update(win.close(total))
    alone, mixed = rec["alone"], rec["mixed"]
    rec.update(
        rps=alone["rps"],
        p50_ms=alone["p50_ms"],
        p99_ms=alone["p99_ms"],
        p99_mixed_ms=mixed["p99_ms"],
        p99_delta_ms=round(mixed["p99_ms"] - alone["p99_ms"], 3),
        p50_delta_ms=round(mixed["p50_ms"] - alone["p50_ms"], 3),
        requests=total,
        errors=alone["errors"] + mixed["errors"] + rec["big"]["errors"],
        _rows0=rows0,
    )
    return rec


def trickle_client(env: Bench, url: str, key: str, streams: int, log: Path) -> dict:
    argv = ["taskset", "-c", LOAD_CPU, env.client_python, str(BENCH / "trickle.py"), "client"]
    argv += ["--url", url, "--key", key, "--streams", str(streams)]
    argv += ["--events", str(env.args.trickle_events)]
    p = env.procs.start("trickle-client", argv, log)
    try:
        p.wait(60 + streams * env.args.trickle_events * env.args.trickle_interval_ms / 1000 * 3)
    finally:
        env.procs.stop(p)
    found = re.findall(r"TRICKLE_RESULT (\{.*\})", log.read_text())
    if not found:
        raise RuntimeError(f"trickle client printed no result: {log.read_text()[-500:]}")
    return json.loads(found[-1])


def run_trickle(env: Bench, target: Target, run: Running, sc: Scenario, rnd: int, wd: Path) -> dict:
    url = run.trickle_url or run.url
    trickle_client(env, url, target.client_key, 2, wd / "warmup.log")
    settle(env, run)
    rows0 = env.ledger_rows(run)
    win = Window(env, run)
    res = trickle_client(env, url, target.client_key, env.args.trickle_streams, wd / "client.log")
    rec = {**res, "trickle": res, **win.close(res["streams"])}
    rec.update(
        requests=res["streams"],
        errors=res["streams"] - res["ok"],
        _rows0=rows0,
    )
    return rec


KINDS = {"wrk": run_wrk, "mix": run_mix, "trickle": run_trickle}
