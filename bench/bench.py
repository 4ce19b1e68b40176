"""spendgate's benchmark driver: fake upstream, targets, wrk, interleaved rounds. Stdlib only.

One run = for each round, for each scenario, every target once (the target order rotates by
one each round). Each proxy measurement gets a freshly started process: start, validate its
JSON and SSE answers against the fixture, warm up at the same concurrency, wait for quiet,
measure, read RSS, stop, then check the ledger got a row for every request. The fake upstream
(nginx, canned answers) runs throughout on CPU 0 with wrk; the proxy runs alone on CPU 1.

    python bench/bench.py --help
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures

HZ = os.sysconf("SC_CLK_TCK")

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "wrk" / "post.lua"

UPSTREAM_PORT = 18100
TARGET_PORT = 18101
LOAD_CPU, PROXY_CPU = "0", "1"
PROXY_KEY = "sk-bench"  # what the upstream expects
CLIENT_KEY = "sk-client-bench"  # what clients of a proxy send (spendgate runs open on loopback)


# --------------------------------------------------------------------------- processes


class Procs:
    """Every process the bench starts, recorded with its PID and stopped by PID."""

    def __init__(self, pidfile: Path) -> None:
        self.pidfile = pidfile
        self.live: dict[int, tuple[str, subprocess.Popen]] = {}

    def start(self, name: str, argv: list[str], log: Path, **kw) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.live[p.pid] = (name, p)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\t{name}\t{' '.join(argv)}\n")
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> float:
        """SIGTERM (graceful: spendgate flushes its ledger), SIGKILL after ``timeout``."""
        t0 = time.monotonic()
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.live.pop(p.pid, None)
        return time.monotonic() - t0

    def stop_all(self) -> list[str]:
        """Stop every recorded process; returns those still alive afterwards (should be none)."""
        procs = list(self.live.items())
        for _, (_, p) in procs:
            self.stop(p, timeout=10)
        return [f"{pid} {name}" for pid, (name, _) in procs if Path(f"/proc/{pid}").exists()]


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cores() -> dict[str, tuple[int, int, int]]:
    """Per-CPU (busy, total, steal) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + v[4]
                out[m.group(1)] = (sum(v[:8]) - idle, sum(v[:8]), v[7])
    return out


def busy_ticks(snap: dict) -> int:
    return sum(v[0] for v in snap.values())


def wait_machine_idle(max_wait: float, threshold_pct: float = 10.0) -> float:
    """Other people's work (test suites) shares this machine: wait until it is quiet.

    Returns the busy share of the last second, in % of one core. Called when none of our
    processes is busy (the upstream idles between measurements).
    """
    t0 = time.monotonic()
    while True:
        a = cores()
        time.sleep(1.0)
        pct = 100 * (busy_ticks(cores()) - busy_ticks(a)) / HZ
        if pct < threshold_pct or time.monotonic() - t0 > max_wait:
            return round(pct, 1)


def children_cpu_ticks() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * HZ


def core_busy(before: dict, after: dict) -> dict[str, float]:
    res = {}
    for cpu in before:
        busy = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        steal = after[cpu][2] - before[cpu][2]
        res[f"cpu{cpu}_busy_pct"] = round(100 * busy / total, 1) if total else 0.0
        res[f"cpu{cpu}_steal_pct"] = round(100 * steal / total, 2) if total else 0.0
    return res


def wait_port(port: int, p: subprocess.Popen | None, timeout: float = 60) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if p is not None and p.poll() is not None:
            raise RuntimeError(f"process exited with {p.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def wait_port_free(port: int, timeout: float = 10) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            time.sleep(0.1)
        except OSError:
            return


def wait_quiet(pid: int, max_wait: float = 3.0) -> None:
    """Until the proxy spends < ~5% of a core over 200 ms (ledger flushes, GC), at least 0.5 s."""
    time.sleep(0.5)
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        a = cpu_ticks(pid)
        time.sleep(0.2)
        if (cpu_ticks(pid) - a) / hz < 0.01:
            return


# --------------------------------------------------------------------------- upstream


def _nginx_str(name: str, data: bytes, piece: int = 1500) -> tuple[list[str], str]:
    """``set`` lines holding ``data`` in pieces (nginx caps one config token at ~4 KB)."""
    text = data.decode()
    if any(c in text for c in "'\\$"):
        raise ValueError("fixture text must not contain ' \\ or $ (nginx string syntax)")
    text = text.replace("\n", "\\n")  # nginx unescapes \n inside quoted strings
    sets, refs = [], []
    for i in range(0, len(text), piece):
        chunk = text[i : i + piece]
        if chunk.endswith("\\"):  # never split an escape
            chunk = text[i : i + piece + 1]
        sets.append(f"set ${name}{len(refs)} '{chunk}';")
        refs.append(f"${name}{len(refs)}")
    return sets, "".join(refs)


def _nginx_prelude(workdir: Path, name: str) -> str:
    """The settings both nginx instances (fake upstream, pass-through floor) share."""
    return f"""worker_processes 1;
master_process off;
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/tmp-body;
    proxy_temp_path {workdir}/tmp-proxy;
    fastcgi_temp_path {workdir}/tmp-fcgi;
    uwsgi_temp_path {workdir}/tmp-uwsgi;
    scgi_temp_path {workdir}/tmp-scgi;
    keepalive_requests 1000000;
"""


def nginx_upstream_conf(workdir: Path, port: int, sse: bytes, js: bytes) -> str:
    jsets, jref = _nginx_str("j", js)
    ssets, sref = _nginx_str("s", sse)
    return f"""# generated by bench/bench.py: the fake OpenAI upstream, canned answers
{_nginx_prelude(workdir, "upstream")}    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /v1/chat/completions {{
            if ($http_authorization != "Bearer {PROXY_KEY}") {{ return 401; }}
            if ($http_x_bench_stream) {{ rewrite ^ /_sse last; }}
            default_type application/json;
            {" ".join(jsets)}
            return 200 '{jref}';
        }}
        location = /_sse {{
            internal;
            default_type text/event-stream;
            {" ".join(ssets)}
            return 200 '{sref}';
        }}
        location / {{ return 404; }}
    }}
}}
"""


# --------------------------------------------------------------------------- targets


@dataclass
class Running:
    url: str  # base URL the load goes to
    proc: subprocess.Popen | None = None  # the process measured (None: nothing of ours)
    ledger: Path | None = None  # SQLite ledger to count rows in
    startup_s: float | None = None


class Target:
    """A thing to measure. Subclasses start a fresh process per measurement."""

    name = ""
    client_key = CLIENT_KEY

    def start(self, env: Bench, workdir: Path) -> Running:
        raise NotImplementedError

    def stop(self, env: Bench, run: Running) -> float:
        return env.procs.stop(run.proc) if run.proc else 0.0


class Direct(Target):
    name = "direct"
    client_key = PROXY_KEY

    def start(self, env: Bench, workdir: Path) -> Running:
        return Running(url=f"http://127.0.0.1:{env.upstream_port}")


class Spendgate(Target):
    """``spendgate serve`` with a generated config: one OpenAI provider, SQLite ledger."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.name = f"spendgate-{client}"

    def config(self, env: Bench, workdir: Path) -> str:
        return f"""# generated by bench/bench.py
server:
  host: 127.0.0.1
  port: {env.target_port}
  upstream_client: {self.client}
storage:
  database_url: sqlite:///{workdir}/ledger.db
providers:
  openai:
    kind: openai
    base_url: http://127.0.0.1:{env.upstream_port}
    api_key: {PROXY_KEY}
    models: ["*"]
"""

    def start(self, env: Bench, workdir: Path) -> Running:
        cfg = workdir / "spendgate.yaml"
        cfg.write_text(self.config(env, workdir))
        argv = [
            "taskset",
            "-c",
            PROXY_CPU,
            str(env.python),
            "-m",
            "proxy.cli",
            "serve",
            "--config",
            str(cfg),
            "--log-level",
            "warning",
        ]
        e = dict(os.environ, PYTHONPATH=str(env.src))
        t0 = time.monotonic()
        p = env.procs.start(self.name, argv, workdir / "proxy.log", cwd=workdir, env=e)
        wait_port(env.target_port, p)
        return Running(
            url=f"http://127.0.0.1:{env.target_port}",
            proc=p,
            ledger=workdir / "ledger.db",
            startup_s=time.monotonic() - t0,
        )


class SpendgateVariant(Spendgate):
    """spendgate on aiohttp with extra config: what budgets and telemetry cost per call.

    ``redis`` points the budget store at BENCH_REDIS_URL (default the machine's
    redis://127.0.0.1:6379/15); ``{otlp}`` in env values is the driver's OTLP sink.
    """

    def __init__(
        self, name: str, extra: str, env_vars: dict[str, str] | None = None, redis: bool = False
    ) -> None:
        super().__init__("aiohttp")
        self.name = name
        self.extra = extra
        self.env_vars = env_vars or {}
        self.redis = redis

    def config(self, env: Bench, workdir: Path) -> str:
        text = super().config(env, workdir) + self.extra
        if self.redis:
            url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
            line = f"  database_url: sqlite:///{workdir}/ledger.db\n"
            text = text.replace(line, line + f"  redis_url: {url}\n")
        return text

    def start(self, env: Bench, workdir: Path) -> Running:
        if self.env_vars:
            sink = otlp_sink()
            for k, v in self.env_vars.items():
                os.environ[k] = v.format(otlp=f"http://127.0.0.1:{sink}")
        try:
            return super().start(env, workdir)
        finally:
            for k in self.env_vars:
                os.environ.pop(k, None)


_SINK: list[int] = []


def otlp_sink() -> int:
    """A local OTLP/HTTP receiver that accepts and discards, started once per bench run."""
    if not _SINK:
        import http.server
        import threading

        class Sink(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _SINK.append(server.server_address[1])
    return _SINK[0]


_QUIET = """telemetry: {prometheus: false, access_log: false}
"""
_BUDGETS = """budgets:
  - {scope: team, match: default, period: month, limit_usd: 1000000, mode: hard}
  - {scope: global, period: day, limit_tokens: 100000000000, mode: soft}
rate_limits:
  - {scope: team, match: default, rpm: 100000000, tpm: 100000000000}
"""


class NginxProxy(Target):
    """nginx as a pure reverse proxy to the same upstream: the floor for any proxy."""

    name = "nginx-proxy"

    def start(self, env: Bench, workdir: Path) -> Running:
        conf = workdir / "nginx-proxy.conf"
        prelude = _nginx_prelude(workdir, "proxy")
        up = f"127.0.0.1:{env.upstream_port}"
        conf.write_text(f"""{prelude}    upstream up {{ server {up}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{env.target_port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {PROXY_KEY}";
            proxy_buffering off;
        }}
    }}
}}
""")
        argv = ["taskset", "-c", PROXY_CPU, env.nginx, "-c", str(conf), "-p", str(workdir)]
        t0 = time.monotonic()
        p = env.procs.start(self.name, argv, workdir / "proxy.log")
        wait_port(env.target_port, p)
        return Running(
            url=f"http://127.0.0.1:{env.target_port}", proc=p, startup_s=time.monotonic() - t0
        )


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Direct(),
        NginxProxy(),
        Spendgate("aiohttp"),
        Spendgate("httpx"),
        Spendgate("httpx-aiohttp"),
        # what each feature costs, against spendgate-quiet (no telemetry, no budgets):
        SpendgateVariant("spendgate-quiet", _QUIET),
        SpendgateVariant("spendgate-budgets-memory", _QUIET + _BUDGETS),
        SpendgateVariant("spendgate-budgets-redis", _QUIET + _BUDGETS, redis=True),
        SpendgateVariant(
            "spendgate-telemetry-otlp",
            "",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "{otlp}", "OTEL_METRIC_EXPORT_INTERVAL": "5000"},
        ),
    )
}
DEFAULT_TARGETS = "direct,spendgate-aiohttp,spendgate-httpx,spendgate-httpx-aiohttp"


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    connections: int


SCENARIOS = {
    f"{kind}-c{c}": Scenario(f"{kind}-c{c}", kind == "sse", c)
    for kind in ("json", "sse")
    for c in (1, 8, 64)
}
DEFAULT_SCENARIOS = "json-c1,json-c8,sse-c1,sse-c8"


# --------------------------------------------------------------------------- one measurement


def post(url: str, body: bytes, key: str, stream: bool) -> tuple[int, dict, bytes]:
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    if stream:
        headers["x-bench-stream"] = "1"
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def validate(run: Running, key: str, bodies: dict[bool, Path]) -> list[str]:
    problems = []
    for stream in (False, True):
        status, _, data = post(run.url, bodies[stream].read_bytes(), key, stream)
        kind = "SSE" if stream else "JSON"
        if status != 200:
            problems.append(f"{kind}: HTTP {status}: {data[:200]!r}")
            continue
        why = fixtures.check_sse(data) if stream else fixtures.check_json(data)
        if why:
            problems.append(f"{kind}: {why}")
    return problems


def wrk(env: Bench, url: str, sc: Scenario, seconds: float, key: str, log: Path) -> dict:
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        env.wrk,
        "-t1",
        f"-c{sc.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url + "/v1/chat/completions",
    ]
    e = dict(
        os.environ,
        BENCH_BODY=str(env.bodies[sc.stream]),
        BENCH_AUTH=key,
        BENCH_STREAM="1" if sc.stream else "0",
    )
    r0 = children_cpu_ticks()
    p = env.procs.start("wrk", argv, log, env=e)
    try:
        p.wait(seconds + 30)  # wrk stops by itself after -d; this is a safety net
    finally:
        env.procs.stop(p)
    text = log.read_text()
    found = re.findall(r"BENCH_RESULT (\{.*\})", text)
    if not found:
        raise RuntimeError(f"wrk printed no result: {text[-500:]}")
    res = json.loads(found[-1])
    # wrk's summary.requests counts every completed response, whatever its status.
    res["errors"] = sum(res[k] for k in res if k.startswith("err_"))
    res["wrk_cpu_ticks"] = children_cpu_ticks() - r0
    return res


def ledger_rows(path: Path | None) -> dict[str, int] | None:
    if path is None or not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("select outcome, count(*) from ledger_calls group by outcome").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        db.close()
    return {str(k): int(v) for k, v in rows}


def measure(env: Bench, target: Target, sc: Scenario, rnd: int, attempt: int = 0) -> dict:
    workdir = env.workdir / f"r{rnd}-{sc.name}-{target.name}" / f"a{attempt}"
    workdir.mkdir(parents=True)
    rec: dict = {"target": target.name, "scenario": sc.name, "round": rnd}
    rec["idle_before_pct"] = wait_machine_idle(env.args.idle_wait)
    run = target.start(env, workdir)
    hz = HZ
    try:
        rec["startup_s"] = run.startup_s and round(run.startup_s, 2)
        problems = validate(run, target.client_key, env.bodies)
        if problems:
            rec["validation"] = problems
            return rec
        pid = run.proc.pid if run.proc else None
        if pid:
            rec["rss_start_mib"] = round(rss_mib(pid), 1)
        wrk(env, run.url, sc, env.args.warmup, target.client_key, workdir / "warmup.log")
        if pid:
            wait_quiet(pid)
        else:
            time.sleep(0.5)
        rows0 = ledger_rows(run.ledger)
        c0, u0, k0 = (cpu_ticks(pid) if pid else 0), cpu_ticks(env.upstream.pid), cores()
        t0 = time.monotonic()
        res = wrk(env, run.url, sc, env.args.duration, target.client_key, workdir / "wrk.log")
        wall = time.monotonic() - t0
        c1, u1, k1 = (cpu_ticks(pid) if pid else 0), cpu_ticks(env.upstream.pid), cores()
        n = max(res["requests"], 1)
        rec.update(
            rps=round(res["requests"] / (res["duration_us"] / 1e6), 1),
            p50_ms=res["p50_us"] / 1000,
            p90_ms=res["p90_us"] / 1000,
            p99_ms=res["p99_us"] / 1000,
            max_ms=res["max_us"] / 1000,
            requests=res["requests"],
            errors=res["errors"],
            wrk=res,
            upstream_cpu_us_per_req=round((u1 - u0) / hz * 1e6 / n, 1),
            wall_s=round(wall, 2),
            **core_busy(k0, k1),
        )
        # CPU on either core that is neither the proxy, the upstream nor wrk: someone else's.
        ours = (c1 - c0) + (u1 - u0) + res["wrk_cpu_ticks"]
        rec["foreign_pct"] = round(100 * (busy_ticks(k1) - busy_ticks(k0) - ours) / hz / wall, 1)
        if pid:
            rec["cpu_us_per_req"] = round((c1 - c0) / hz * 1e6 / n, 1)
            rec["rss_end_mib"] = round(rss_mib(pid), 1)
        if run.ledger is not None:
            rec["stop_s"] = round(target.stop(env, run), 2)
            run.proc = None
            rows1 = ledger_rows(run.ledger) or {}
            before = sum((rows0 or {}).values())
            rec["ledger_rows"] = sum(rows1.values()) - before
            rec["ledger_outcomes"] = rows1
            # wrk ends with up to `connections` requests in flight; the proxy still records
            # them (outcome ok or client_cancelled), so rows may exceed requests by that much.
            rec["ledger_lost"] = max(0, res["requests"] - rec["ledger_rows"])
    finally:
        target.stop(env, run)
        wait_port_free(env.target_port)
    return rec


# --------------------------------------------------------------------------- the run


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    resdir: Path
    procs: Procs
    nginx: str
    wrk: str
    python: Path
    src: Path
    upstream_port: int = UPSTREAM_PORT
    target_port: int = TARGET_PORT
    bodies: dict = field(default_factory=dict)
    upstream: subprocess.Popen | None = None


def _median_spread(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return float("nan"), float("nan")
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / 2 / med * 100 if med else 0.0
    return med, spread


def summarise(records: list[dict], targets: list[str], scenarios: list[str]) -> dict:
    out: dict = {}
    for sc in scenarios:
        direct = [
            r for r in records if r["scenario"] == sc and r["target"] == "direct" and "rps" in r
        ]
        d50 = statistics.median([r["p50_ms"] for r in direct]) if direct else None
        for t in targets:
            rs = [r for r in records if r["scenario"] == sc and r["target"] == t and "rps" in r]
            if not rs:
                continue
            s: dict = {"runs": len(rs)}
            for k in (
                "rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "cpu_us_per_req",
                "upstream_cpu_us_per_req",
                "rss_start_mib",
                "rss_end_mib",
                "cpu0_busy_pct",
                "cpu1_busy_pct",
                "startup_s",
                "foreign_pct",
            ):
                vals = [r[k] for r in rs if r.get(k) is not None]
                if vals:
                    med, spread = _median_spread(vals)
                    s[k] = round(med, 3)
                    s[k + "_spread_pct"] = round(spread, 1)
            s["errors"] = sum(r["errors"] for r in rs)
            s["requests"] = sum(r["requests"] for r in rs)
            if any("ledger_rows" in r for r in rs):
                s["ledger_rows"] = sum(r.get("ledger_rows", 0) for r in rs)
                s["ledger_lost"] = sum(r.get("ledger_lost", 0) for r in rs)
            if d50 is not None and t != "direct":
                s["overhead_p50_ms"] = round(s["p50_ms"] - d50, 3)
            out.setdefault(sc, {})[t] = s
    return out


def _fmt(v: float | None, spread: float | None = None, digits: int = 0) -> str:
    if v is None:
        return "-"
    text = f"{v:,.{digits}f}"
    return f"{text} (±{spread:.0f}%)" if spread is not None else text


def table(summary: dict) -> str:
    lines = [
        "| scenario | target | req/s | p50 ms | p99 ms | overhead p50 ms | CPU µs/req "
        "| RSS MiB start→end | ledger rows / requests | errors | core0/core1 % |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for sc, per in summary.items():
        for t, s in per.items():
            ledger = (
                f"{s['ledger_rows']:,} / {s['requests']:,}"
                + (f" (**{s['ledger_lost']} lost**)" if s.get("ledger_lost") else "")
                if "ledger_rows" in s
                else "-"
            )
            rss = f"{s['rss_start_mib']:.0f}→{s['rss_end_mib']:.0f}" if "rss_end_mib" in s else "-"
            lines.append(
                f"| {sc} | {t} | {_fmt(s['rps'], s['rps_spread_pct'])} "
                f"| {_fmt(s['p50_ms'], s['p50_ms_spread_pct'], 3)} "
                f"| {_fmt(s['p99_ms'], s['p99_ms_spread_pct'], 2)} "
                f"| {_fmt(s.get('overhead_p50_ms'), None, 3)} "
                f"| {_fmt(s.get('cpu_us_per_req'), s.get('cpu_us_per_req_spread_pct'))} "
                f"| {rss} | {ledger} | {s['errors']} "
                f"| {s.get('cpu0_busy_pct', 0):.0f}/{s.get('cpu1_busy_pct', 0):.0f} |"
            )
    return "\n".join(lines)


def environment(env: Bench) -> dict:
    py = subprocess.run(
        [
            str(env.python),
            "-c",
            "import importlib.metadata as m, json, sys; print(json.dumps({'python': sys.version."
            "split()[0], **{n: m.version(n) for n in ('spendgate', 'starlette', 'uvicorn', "
            "'uvloop', 'httptools', 'aiohttp', 'httpx', 'httpcore', 'httpx-aiohttp', 'sniffio', "
            "'anyio', 'orjson', 'sqlmodel', 'aiosqlite')}}))",
        ],
        capture_output=True,
        text=True,
    )
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        "?",
    )
    timeit = subprocess.run(
        [sys.executable, "-m", "timeit", "sum(range(1000000))"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "ncpu": os.cpu_count(),
        "os": Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists()
        else platform.platform(),
        "nginx": subprocess.run([env.nginx, "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": subprocess.run([env.wrk, "-v"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip(),
        "timeit_sum_range_1e6": timeit,
        "proxy_venv": json.loads(py.stdout) if py.returncode == 0 else py.stderr[-300:],
    }


def profile(env: Bench, target: Target, sc: Scenario) -> None:
    """py-spy record of one target under one scenario: raw stacks + a self/inclusive top list."""
    pyspy = env.python.parent / "py-spy"
    if not pyspy.exists():
        sys.exit(f"{pyspy} not found: .venv/bin/pip install py-spy")
    workdir = env.workdir / f"profile-{sc.name}-{target.name}"
    workdir.mkdir(parents=True)
    run = target.start(env, workdir)
    try:
        assert run.proc is not None
        wrk(env, run.url, sc, env.args.warmup, target.client_key, workdir / "warmup.log")
        raw = env.resdir / f"profile-{target.name}-{sc.name}.txt"
        secs = max(int(env.args.duration) - 2, 3)
        spy = env.procs.start(
            "py-spy",
            [
                "taskset",
                "-c",
                LOAD_CPU,
                str(pyspy),
                "record",
                "-p",
                str(run.proc.pid),
                "-d",
                str(secs),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
            ],
            workdir / "py-spy.log",
        )
        wrk(env, run.url, sc, env.args.duration, target.client_key, workdir / "wrk.log")
        spy.wait(30)
        env.procs.stop(spy)
        top = stack_top(raw)
        (env.resdir / f"profile-{target.name}-{sc.name}-top.txt").write_text(top)
        print(top)
    finally:
        target.stop(env, run)


def stack_top(raw: Path, n: int = 35) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    by_pkg: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + c
        m = re.search(r"\(([^/)]+)[/)]", frames[-1])
        pkg = m.group(1) if m else "?"
        by_pkg[pkg] = by_pkg.get(pkg, 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    out = [f"samples: {total}", "", "self %  by the leaf frame's package (file's first folder)"]
    for pkg, c in sorted(by_pkg.items(), key=lambda x: -x[1])[:20]:
        out.append(f"{100 * c / total:5.1f}  {pkg}")
    out += ["", "self %  function (file)"]
    for f, c in sorted(self_c.items(), key=lambda x: -x[1])[:n]:
        out.append(f"{100 * c / total:5.1f}  {f}")
    out += ["", "inclusive %  function (file)"]
    for f, c in sorted(incl.items(), key=lambda x: -x[1])[:n]:
        out.append(f"{100 * c / total:5.1f}  {f}")
    return "\n".join(out) + "\n"


def snapshot(repo: Path, dest: Path) -> Path:
    """Copy the packages under test, so every measurement of a run sees the same code."""
    for pkg in ("proxy", "pricing", "budgets"):
        if (repo / pkg).is_dir():
            shutil.copytree(
                repo / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
    return dest


def source_info(repo: Path, snap: Path) -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True)
        return r.stdout.strip()

    digest = hashlib.sha256()
    for f in sorted(snap.rglob("*")):
        if f.is_file():
            digest.update(str(f.relative_to(snap)).encode() + f.read_bytes())
    dirty = [
        ln[3:]
        for ln in git("status", "--porcelain", "--", "proxy", "pricing", "budgets").splitlines()
    ]
    return {
        "git_head": git("rev-parse", "HEAD"),
        "dirty_paths": dirty,
        "snapshot_sha256": digest.hexdigest()[:16],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma list of {', '.join(TARGETS)} (default: %(default)s)",
    )
    ap.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma list of {', '.join(SCENARIOS)} (default: %(default)s)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=20,
        help="redo a measurement when other processes used more than this %% of a "
        "core during it (default %(default)s)",
    )
    ap.add_argument("--retries", type=int, default=1, help="redos allowed per measurement")
    ap.add_argument(
        "--profile",
        metavar="TARGET:SCENARIO",
        help="instead of a run: py-spy record one target under one scenario",
    )
    ap.add_argument(
        "--python",
        default=str(REPO / ".venv" / "bin" / "python"),
        help="interpreter of the venv spendgate's dependencies are installed in",
    )
    ap.add_argument(
        "--src",
        default=str(REPO),
        help="tree whose proxy/ pricing/ budgets/ are measured; copied at start so "
        "edits made during the run do not mix versions (default: this repo)",
    )
    ap.add_argument(
        "--idle-wait",
        type=float,
        default=10,
        help="before each measurement, wait up to this long for the machine to be "
        "idle (other work on it skews the numbers; each record notes foreign_pct)",
    )
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args()

    targets = [t for t in args.targets.split(",") if t]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for t in targets:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}")
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    nginx, wrk_bin = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if not wrk_bin or not Path(nginx).exists():
        sys.exit("needs nginx and wrk: apt-get install nginx-light wrk (scripts/bench does it)")

    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-profile" if args.profile else "")
    resdir = Path(args.out) / stamp
    workdir = Path("/tmp/spendgate-bench") / stamp
    resdir.mkdir(parents=True)
    workdir.mkdir(parents=True)
    procs = Procs(workdir / "pids.txt")
    src = snapshot(Path(args.src), workdir / "src")
    env = Bench(args, workdir, resdir, procs, nginx, wrk_bin, Path(args.python), src)
    chk = subprocess.run(
        [args.python, "-c", "import proxy.app"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(src)),
        cwd=workdir,
    )
    if chk.returncode:
        sys.exit(f"the snapshot of {args.src} does not import:\n{chk.stderr[-1500:]}")
    for stream in (False, True):
        path = workdir / ("request-sse.json" if stream else "request.json")
        path.write_bytes(fixtures.request_body(stream=stream))
        env.bodies[stream] = path

    env_source = source_info(Path(args.src), src)
    t_start = time.monotonic()
    records: list[dict] = []
    summary: dict = {}
    left: list[str] = []
    try:
        conf = workdir / "upstream.conf"
        conf.write_text(
            nginx_upstream_conf(
                workdir, env.upstream_port, fixtures.chat_sse(), fixtures.chat_json()
            )
        )
        env.upstream = procs.start(
            "upstream-nginx",
            ["taskset", "-c", LOAD_CPU, nginx, "-c", str(conf), "-p", str(workdir)],
            workdir / "upstream.log",
        )
        wait_port(env.upstream_port, env.upstream)
        probs = validate(TARGETS["direct"].start(env, workdir), PROXY_KEY, env.bodies)
        if probs:
            sys.exit(f"the fake upstream does not serve the fixture: {probs}")

        if args.profile:
            tname, sname = args.profile.split(":")
            profile(env, TARGETS[tname], SCENARIOS[sname])
            return 0

        print(
            f"bench: {len(targets)} targets x {len(scenarios)} scenarios x {args.rounds} "
            f"rounds; results in {resdir}",
            flush=True,
        )
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            for sname in scenarios:
                for tname in order:
                    rec = {}
                    for attempt in range(1 + args.retries):
                        try:
                            new = measure(env, TARGETS[tname], SCENARIOS[sname], rnd, attempt)
                        except Exception as exc:  # one failed target must not lose the run
                            new = {
                                "target": tname,
                                "scenario": sname,
                                "round": rnd,
                                "failure": f"{type(exc).__name__}: {exc}",
                            }
                        new["attempt"] = attempt
                        if not rec or new.get("foreign_pct", 1e9) < rec.get("foreign_pct", 1e9):
                            rec = new
                        if (
                            "rps" not in new
                            or new["foreign_pct"] <= args.max_foreign
                            or attempt == args.retries
                        ):
                            break
                        print(
                            f"  r{rnd} {sname:8} {tname:24} again: {new['foreign_pct']:.0f}% "
                            "of a core was used by other processes",
                            flush=True,
                        )
                    records.append(rec)
                    if "rps" in rec:
                        extra = (
                            f" cpu {rec['cpu_us_per_req']:.0f}us/req"
                            if "cpu_us_per_req" in rec
                            else ""
                        )
                        if "ledger_rows" in rec:
                            extra += f" ledger {rec['ledger_rows']}/{rec['requests']}"
                        print(
                            f"  r{rnd} {sname:8} {tname:24} {rec['rps']:>9.0f} req/s "
                            f"p50 {rec['p50_ms']:.3f} p99 {rec['p99_ms']:.2f} ms "
                            f"err {rec['errors']}{extra} foreign {rec['foreign_pct']:.0f}%",
                            flush=True,
                        )
                    else:
                        print(
                            f"  r{rnd} {sname:8} {tname:24} FAILED: "
                            f"{rec.get('validation') or rec.get('failure')}",
                            flush=True,
                        )
                    (resdir / "records.json").write_text(json.dumps(records, indent=1))
        summary = summarise(records, targets, scenarios)
    finally:
        left = procs.stop_all()
    meta = {
        "command": " ".join(sys.argv),
        "started": stamp,
        "wall_s": round(time.monotonic() - t_start, 1),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "targets": targets,
        "scenarios": scenarios,
        "pinning": {"load_and_upstream": LOAD_CPU, "proxy": PROXY_CPU},
        "environment": environment(env),
        "left_running_at_exit": left,
        "workdir": str(workdir),
        "source": env_source,
    }
    (resdir / "results.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "records": records}, indent=1)
    )
    md = table(summary)
    (resdir / "table.md").write_text(md + "\n")
    shutil.copy(workdir / "pids.txt", resdir / "pids.txt")
    print(
        f"\nmedians of {args.rounds} rounds, {args.duration:g} s each (±: half the min-max "
        f"range); wall {meta['wall_s']:.0f} s; {resdir}\n"
    )
    print(md)
    failed = [r for r in records if "rps" not in r]
    bad = [r for r in records if r.get("errors") or r.get("ledger_lost")]
    if failed or bad:
        print(f"\n{len(failed)} failed measurements, {len(bad)} with errors or lost ledger rows")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
