"""spendgate's benchmark driver: fake upstreams, targets, load, interleaved rounds. Stdlib only.

One run = for each round, for each scenario, every target once (the target order rotates by
one each round). Each proxy measurement gets a freshly started process: start, validate its
JSON and SSE answers against the fixture, warm up, wait for quiet, measure, read RSS, stop,
then check the ledger got a row for every request. The fake upstreams (nginx with canned
answers, the trickling SSE server) run throughout on CPU 0 with the load generators; the
proxy runs alone on CPU 1. ``--soak N`` instead drives N requests through one process.

    python bench/bench.py --help          (scripts/bench installs what it needs first)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures
import summarize
from load import KINDS, Scenario, validate
from peers import LiteLLM
from procs import Procs, free_port, rss_mib, wait_machine_idle, wait_port
from profiling import profile, snapshot, source_info
from services import Services
from targets import LOAD_CPU, Direct, NginxProxy, Running, Target, spendgate_targets
from upstream import PROXY_KEY, upstream_conf

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

TARGETS: dict[str, Target] = {
    t.name: t for t in (Direct(), NginxProxy(), *spendgate_targets(), LiteLLM())
}
DEFAULT_TARGETS = "direct,nginx-proxy,spendgate-aiohttp,spendgate-full,spendgate-granian,litellm"

SCENARIOS = {
    **{
        f"{kind}-c{c}": Scenario(f"{kind}-c{c}", "wrk", kind == "sse", c)
        for kind in ("json", "sse")
        for c in (1, 8, 64)
    },
    "mix-100k": Scenario("mix-100k", "mix", False, 8),
    "sse-ttfb": Scenario("sse-ttfb", "trickle", True, 1),
}
DEFAULT_SCENARIOS = "json-c1,json-c8,json-c64,sse-c8,sse-c64,mix-100k,sse-ttfb"


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
    upstream_port: int = 0
    trickle_port: int = 0
    bodies: dict = field(default_factory=dict)
    upstream: subprocess.Popen | None = None
    trickle: subprocess.Popen | None = None
    services: Services = None  # type: ignore[assignment]
    versions: dict = field(default_factory=dict)
    client_python: str = sys.executable

    def ledger_rows(self, run: Running) -> dict[str, int] | None:
        """Ledger rows by outcome: SQLite read directly, PostgreSQL through the venv."""
        url = run.ledger
        if url is None:
            return None
        if url.startswith("sqlite:///"):
            import sqlite3

            path = Path(url[len("sqlite:///") :])
            if not path.exists():
                return None
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                q = "select outcome, count(*) from ledger_calls group by outcome"
                rows = db.execute(q).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                db.close()
            return {str(k): int(v) for k, v in rows}
        return self.services.count_rows(url)


def measure(env: Bench, target: Target, sc: Scenario, rnd: int, attempt: int = 0) -> dict:
    workdir = env.workdir / f"r{rnd}-{sc.name}-{target.name}" / f"a{attempt}"
    workdir.mkdir(parents=True)
    rec: dict = {"target": target.name, "scenario": sc.name, "round": rnd}
    if target.skipped:
        return {**rec, "skipped": target.skipped}
    rec["idle_before_pct"] = wait_machine_idle(env.args.idle_wait)
    run = target.start(env, workdir, free_port())
    try:
        rec["startup_s"] = run.startup_s and round(run.startup_s, 2)
        problems = validate(run, target.client_key, env.bodies, target.lenient)
        if problems:
            return {**rec, "validation": problems}
        pid = run.proc.pid if run.proc else None  # type: ignore[attr-defined]
        if pid:
            rec["rss_start_mib"] = round(rss_mib(pid), 1)
        rec.update(KINDS[sc.kind](env, target, run, sc, rnd, workdir))
        if pid:
            rec["rss_end_mib"] = round(rss_mib(pid), 1)
        rows0 = rec.pop("_rows0", None)
        if run.ledger is not None and "requests" in rec:
            rec["stop_s"] = round(target.stop(env, run), 2)
            run.proc = None
            rows1 = env.ledger_rows(run) or {}
            rec["ledger_rows"] = sum(rows1.values()) - sum((rows0 or {}).values())
            rec["ledger_outcomes"] = rows1
            # wrk ends with up to `connections` requests in flight; the proxy still records
            # them (outcome ok or client_cancelled), so rows may exceed requests by that much.
            rec["ledger_lost"] = max(0, rec["requests"] - rec["ledger_rows"])
    finally:
        target.stop(env, run)
    return rec


def environment(env: Bench) -> dict:
    names = (
        "spendgate",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "granian",
        "aiohttp",
        "httpx",
        "httpcore",
        "httpx-aiohttp",
        "sniffio",
        "anyio",
        "orjson",
        "sqlmodel",
        "aiosqlite",
        "asyncpg",
        "redis",
        "opentelemetry-sdk",
        "tiktoken",
    )
    code = (
        "import importlib.metadata as m, json, sys\n"
        f"out = {{'python': sys.version.split()[0]}}\nfor n in {names!r}:\n"
        "    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    py = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True)
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
    deb = Path("/etc/debian_version")
    mem = next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "ncpu": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "os": f"Debian {deb.read_text().strip()}" if deb.exists() else platform.platform(),
        "nginx": subprocess.run([env.nginx, "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": subprocess.run([env.wrk, "-v"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip(),
        "timeit_sum_range_1e6": timeit,
        "proxy_venv": json.loads(py.stdout) if py.returncode == 0 else py.stderr[-300:],
        **env.versions,
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma list of {', '.join(TARGETS)}\n(default: %(default)s)",
    )
    ap.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma list of {', '.join(SCENARIOS)}\n(default: %(default)s)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="measured seconds per run (per phase)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=20,
        help="redo a measurement when other processes used more than this %% of a "
        "core during it (default %(default)s)",
    )
    ap.add_argument("--retries", type=int, default=1, help="redos allowed per measurement")
    g = ap.add_argument_group("mix-100k")
    g.add_argument(
        "--mix-delay-ms",
        type=float,
        default=10,
        help="pause of each small-request connection between calls (default 10)",
    )
    g.add_argument("--mix-big-connections", type=int, default=1)
    g.add_argument(
        "--mix-big-delay-ms",
        type=float,
        default=100,
        help="pause of each 100k-prompt connection between calls (default 100)",
    )
    g = ap.add_argument_group("sse-ttfb (trickling upstream)")
    g.add_argument("--trickle-events", type=int, default=20)
    g.add_argument("--trickle-interval-ms", type=float, default=20)
    g.add_argument("--trickle-streams", type=int, default=10)
    g = ap.add_argument_group("memory soak (instead of rounds)")
    g.add_argument("--soak", type=int, metavar="N", help="drive N requests through one process")
    g.add_argument("--soak-every", type=int, metavar="X", help="RSS sample interval (N/50)")
    g.add_argument("--soak-target", default="spendgate-aiohttp")
    g.add_argument("--soak-scenario", default="json-c8")
    ap.add_argument(
        "--profile",
        metavar="TARGET:SCENARIO",
        help="instead of a run: py-spy record one target under one scenario",
    )
    ap.add_argument(
        "--no-install",
        action="store_true",
        help="never install LiteLLM's venv (skip the target if it is missing)",
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
    args.target_list = [t for t in args.targets.split(",") if t]
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    if args.soak:
        args.target_list, args.scenario_list = [args.soak_target], [args.soak_scenario]
    if args.profile:
        args.target_list, args.scenario_list = ([x] for x in args.profile.split(":", 1))
    for t in args.target_list:
        if t not in TARGETS:
            ap.error(f"unknown target {t!r}")
    for s in args.scenario_list:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    return args


def setup(args: argparse.Namespace, stamp: str) -> Bench:
    nginx, wrk_bin = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if not wrk_bin or not Path(nginx).exists():
        sys.exit("needs nginx and wrk: apt-get install nginx-light wrk (scripts/bench does it)")
    resdir = Path(args.out) / stamp
    workdir = Path("/tmp/spendgate-bench") / stamp
    resdir.mkdir(parents=True)
    workdir.mkdir(parents=True)
    procs = Procs(workdir / "pids.txt")
    src = snapshot(Path(args.src), workdir / "src")
    env = Bench(args, workdir, resdir, procs, nginx, wrk_bin, Path(args.python), src)
    env.services = Services(env)
    chk = subprocess.run(
        [args.python, "-c", "import proxy.app"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(src)),
        cwd=workdir,
    )
    if chk.returncode:
        sys.exit(f"the snapshot of {args.src} does not import:\n{chk.stderr[-1500:]}")
    for key, name, data in (
        (False, "request.json", fixtures.request_body(stream=False)),
        (True, "request-sse.json", fixtures.request_body(stream=True)),
        ("big", "request-100k.json", fixtures.big_request_body()),
    ):
        (workdir / name).write_bytes(data)
        env.bodies[key] = workdir / name
    return env


def start_upstreams(env: Bench) -> None:
    """nginx with the canned answers and the trickling SSE server, both on CPU 0."""
    env.upstream_port, env.trickle_port = free_port(), free_port()
    conf = env.workdir / "upstream.conf"
    conf.write_text(
        upstream_conf(env.workdir, env.upstream_port, fixtures.chat_sse(), fixtures.chat_json())
    )
    env.upstream = env.procs.start(
        "upstream-nginx",
        ["taskset", "-c", LOAD_CPU, env.nginx, "-c", str(conf), "-p", str(env.workdir)],
        env.workdir / "upstream.log",
    )
    wait_port(env.upstream_port, env.upstream)
    a = env.args
    argv = ["taskset", "-c", LOAD_CPU, env.client_python, str(BENCH / "trickle.py"), "serve"]
    argv += ["--port", str(env.trickle_port), "--events", str(a.trickle_events)]
    argv += ["--interval-ms", str(a.trickle_interval_ms)]
    env.trickle = env.procs.start("upstream-trickle", argv, env.workdir / "trickle.log")
    wait_port(env.trickle_port, env.trickle)
    probs = validate(TARGETS["direct"].start(env, env.workdir, 0), PROXY_KEY, env.bodies)
    if probs:
        sys.exit(f"the fake upstream does not serve the fixture: {probs}")


def run_rounds(env: Bench, records: list[dict]) -> None:
    args, targets = env.args, env.args.target_list
    for rnd in range(args.rounds):
        order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
        for sname in args.scenario_list:
            for tname in order:
                rec: dict = {}
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
                    if "foreign_pct" not in new or new["foreign_pct"] <= args.max_foreign:
                        break
                    if attempt < args.retries:
                        print(
                            f"  r{rnd} {sname:8} {tname:24} again: {new['foreign_pct']:.0f}% "
                            "of a core was used by other processes",
                            flush=True,
                        )
                records.append(rec)
                print(f"  r{rnd} {sname:8} {tname:24} {progress_line(rec)}", flush=True)
                (env.resdir / "records.json").write_text(json.dumps(records, indent=1))


def progress_line(rec: dict) -> str:
    if "skipped" in rec:
        return f"SKIPPED: {rec['skipped']}"
    if "requests" not in rec:
        return f"FAILED: {rec.get('validation') or rec.get('failure')}"
    if "ttfe_us" in rec:
        text = (
            f"first event {rec['ttfe_us'] / 1000:.3f} ms delay {rec['delay_us_median']:.0f} us "
            f"events {rec['events_received']}/{rec['events_sent']} "
            f"coalesced {rec['coalesced_reads']}"
        )
    else:
        text = f"{rec['rps']:>9.0f} req/s p50 {rec['p50_ms']:.3f} p99 {rec['p99_ms']:.2f} ms"
        if "p99_mixed_ms" in rec:
            text += f" -> mixed p99 {rec['p99_mixed_ms']:.2f} ({rec['p99_delta_ms']:+.2f})"
    text += f" err {rec['errors']}"
    if "cpu_us_per_req" in rec:
        text += f" cpu {rec['cpu_us_per_req']:.0f}us/req"
    if "ledger_rows" in rec:
        text += f" ledger {rec['ledger_rows']}/{rec['requests']}"
    return text + f" foreign {rec['foreign_pct']:.0f}%"


def main() -> int:
    args = parse_args()
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the driver (OTLP sink) stays off the proxy CPU
    stamp = time.strftime("%Y%m%d-%H%M%S") + (
        "-profile" if args.profile else "-soak" if args.soak else ""
    )
    env = setup(args, stamp)
    env_source = source_info(Path(args.src), env.src)
    t_start = time.monotonic()
    records: list[dict] = []
    left: list[str] = []
    soak_out: dict | None = None
    try:
        start_upstreams(env)
        for t in args.target_list:
            if isinstance(TARGETS[t], LiteLLM):
                TARGETS[t].install = not args.no_install  # type: ignore[attr-defined]
            TARGETS[t].prepare(env)
            if TARGETS[t].skipped:
                print(f"bench: target {t} skipped: {TARGETS[t].skipped}", flush=True)
        if args.profile:
            profile(env, TARGETS[args.target_list[0]], SCENARIOS[args.scenario_list[0]])
            return 0
        if args.soak:
            import soak

            soak_out = soak.run_soak(env, TARGETS[args.soak_target], SCENARIOS[args.soak_scenario])
        else:
            print(
                f"bench: {len(args.target_list)} targets x {len(args.scenario_list)} scenarios "
                f"x {args.rounds} rounds; results in {env.resdir}",
                flush=True,
            )
            run_rounds(env, records)
    finally:
        left = env.procs.stop_all()
        env.services.close()
    meta = {
        "command": " ".join(sys.argv),
        "started": stamp,
        "wall_s": round(time.monotonic() - t_start, 1),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "targets": args.target_list,
        "scenarios": args.scenario_list,
        "scenario_kinds": {s: SCENARIOS[s].kind for s in args.scenario_list},
        "skipped": {t: TARGETS[t].skipped for t in args.target_list if TARGETS[t].skipped},
        "pinning": {"load_and_upstream": LOAD_CPU, "proxy": "1"},
        "mix": {
            "connections": SCENARIOS["mix-100k"].connections,
            "delay_ms": args.mix_delay_ms,
            "big_connections": args.mix_big_connections,
            "big_delay_ms": args.mix_big_delay_ms,
            "big_bytes": env.bodies["big"].stat().st_size,
        },
        "trickle": {
            "streams": args.trickle_streams,
            "events": args.trickle_events,
            "interval_ms": args.trickle_interval_ms,
        },
        "services": env.services.notes,
        "environment": environment(env),
        "left_running_at_exit": left,
        "workdir": str(env.workdir),
        "source": env_source,
    }
    shutil.copy(env.workdir / "pids.txt", env.resdir / "pids.txt")
    if soak_out is not None:
        import soak

        soak_out["meta"] = meta
        print("\n" + soak.write(env.resdir, soak_out))
        return 0 if soak_out.get("samples") and not soak_out.get("errors") else 1
    results = {
        "meta": meta,
        "summary": summarize.summarise(records, args.target_list, args.scenario_list),
        "records": records,
    }
    (env.resdir / "results.json").write_text(json.dumps(results, indent=1))
    md = summarize.write(env.resdir, results)
    print(f"\n{md}\n{env.resdir}")
    failed = [r for r in records if "requests" not in r and "skipped" not in r]
    bad = [r for r in records if r.get("errors") or r.get("ledger_lost")]
    if failed or bad:
        print(f"\n{len(failed)} failed measurements, {len(bad)} with errors or lost ledger rows")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
