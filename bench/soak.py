"""Memory soak: N requests through one spendgate process, RSS sampled every X requests.

    scripts/bench --soak 1000000                      # ≈ 10-15 min at ~1.5k req/s
    scripts/bench --soak 50000 --soak-every 5000      # a quick look, ≈ 1 min

wrk runs in segments of about X requests (each segment's duration comes from the previous
one's rate) against the same process; between segments the process's RSS (and CPU) is read.
``soak.json`` holds the series, ``soak.md`` the verdict and ``soak.png`` the curve. "Flat"
means: from the sample after the first 10 % of requests (allocator pools, caches and
connection pools warmed up) to the end, RSS never rises more than 10 % above that sample.
Stdlib only (the plot: matplotlib, if installed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from load import Scenario, finish_wrk, start_wrk, validate
from procs import HZ, cpu_ticks, free_port, rss_mib

if TYPE_CHECKING:
    from targets import Target

    from bench import Bench


def run_soak(env: Bench, target: Target, sc: Scenario) -> dict:
    a = env.args
    every = a.soak_every or max(a.soak // 50, 1000)
    workdir = env.workdir / "soak"
    workdir.mkdir()
    port = free_port()
    run = target.start(env, workdir, port)
    pid = run.proc.pid  # type: ignore[union-attr]
    out: dict = {
        "target": target.name,
        "scenario": sc.name,
        "requests_asked": a.soak,
        "every": every,
        "samples": [],
    }
    try:
        problems = validate(run, target.client_key, env.bodies, target.lenient)
        if problems:
            out["validation"] = problems
            return out
        rows0 = env.ledger_rows(run)
        out["rss_idle_mib"] = round(rss_mib(pid), 1)
        done, errors, t0, c0 = 0, 0, time.monotonic(), cpu_ticks(pid)
        print(f"soak: {a.soak:,} requests, RSS every {every:,}; {workdir}", flush=True)
        rate = 0.0
        while done < a.soak:
            # wrk runs for a duration, not a count: size each segment from the last one's rate
            n = min(every, a.soak - done)
            secs = min(max(round(n / rate), 1), 600) if rate else 2  # whole seconds
            log = workdir / "wrk.log"
            log.write_text("")
            p = start_wrk(env, run.url, sc.connections, secs, target,
                          env.bodies[sc.stream], log, stream=sc.stream)  # fmt: skip
            res = finish_wrk(env, p, log, secs + 2 * target.wrk_timeout_s + 30)
            rate = res["rps"]
            done += res["requests"]
            errors += res["errors"]
            sample = {
                "requests": done,
                "rss_mib": round(rss_mib(pid), 1),
                "t_s": round(time.monotonic() - t0, 1),
                "rps": res["rps"],
                "cpu_us_per_req": round((cpu_ticks(pid) - c0) / HZ * 1e6 / max(done, 1), 1),
            }
            out["samples"].append(sample)
            print(
                f"  {done:>10,} requests  RSS {sample['rss_mib']:7.1f} MiB  "
                f"{res['rps']:7.0f} req/s  errors {errors}",
                flush=True,
            )
        out["errors"] = errors
        out["wall_s"] = round(time.monotonic() - t0, 1)
        target.stop(env, run)
        run.proc = None
        rows1 = env.ledger_rows(run)
        if rows1 is not None:
            out["ledger_rows"] = sum(rows1.values()) - sum((rows0 or {}).values())
    finally:
        target.stop(env, run)
    out.update(verdict(out))
    return out


def verdict(out: dict) -> dict:
    s = out["samples"]
    if not s:
        return {}
    total = s[-1]["requests"]
    warm = next((x for x in s if x["requests"] >= total * 0.1), s[0])
    after = [x for x in s if x["requests"] >= warm["requests"]]
    peak = max(after, key=lambda x: x["rss_mib"])
    rise = (peak["rss_mib"] - warm["rss_mib"]) / warm["rss_mib"] * 100
    return {
        "rss_warm_mib": warm["rss_mib"],
        "rss_warm_at": warm["requests"],
        "rss_peak_mib": peak["rss_mib"],
        "rss_end_mib": s[-1]["rss_mib"],
        "rise_pct": round(rise, 1),
        "flat_within_10pct": rise <= 10,
    }


def write(resdir: Path, out: dict) -> str:
    (resdir / "soak.json").write_text(json.dumps(out, indent=1))
    s = out.get("samples") or []
    lines = [f"# memory soak: {out['target']}, {out['scenario']}", ""]
    if out.get("validation"):
        lines.append(f"Not measured: {out['validation']}")
    elif s:
        lines += [
            f"{s[-1]['requests']:,} requests in {out['wall_s'] / 60:.1f} min "
            f"({s[-1]['requests'] / out['wall_s']:,.0f} req/s), {out['errors']} errors, "
            f"ledger rows {out.get('ledger_rows', '-'):,}."
            if isinstance(out.get("ledger_rows"), int)
            else f"{s[-1]['requests']:,} requests, {out['errors']} errors.",
            "",
            "| RSS MiB | idle | after 10 % (warm) | peak after warm | end | rise | flat (≤ 10 %) |",
            "|---|---:|---:|---:|---:|---:|---|",
            f"| {out['target']} | {out['rss_idle_mib']} | {out['rss_warm_mib']} "
            f"| {out['rss_peak_mib']} | {out['rss_end_mib']} | {out['rise_pct']:+.1f} % "
            f"| {'yes' if out['flat_within_10pct'] else '**no**'} |",
        ]
        _plot(out, resdir / "soak.png")
    md = "\n".join(lines)
    (resdir / "soak.md").write_text(md + "\n")
    return md


def _plot(out: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    s = out["samples"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([x["requests"] for x in s], [x["rss_mib"] for x in s], marker=".")
    ax.axhline(out["rss_warm_mib"] * 1.1, color="red", linestyle="--", label="warm + 10 %")
    ax.set_xlabel("requests")
    ax.set_ylabel("RSS MiB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{out['target']} {out['scenario']}: RSS over {s[-1]['requests']:,} requests")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
