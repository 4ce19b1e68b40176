"""Medians and spread per (scenario, target), the markdown tables, and the plot.

    python bench/summarize.py bench/results/<run>   # rewrite table.md + plot.png (soak.md + .png)

``bench.py`` calls the same functions at the end of every run. The plot needs matplotlib
(the ``bench`` extra); without it the table is still written and the run says so.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

_KEYS = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "cpu_us_per_req",
    "upstream_cpu_us_per_req",
    "services_cpu_us_per_req",
    "rss_start_mib",
    "rss_end_mib",
    "cpu0_busy_pct",
    "cpu1_busy_pct",
    "startup_s",
    "foreign_pct",
    # mix-100k
    "p99_mixed_ms",
    "p99_delta_ms",
    "p50_delta_ms",
    # sse-ttfb
    "ttfe_us",
    "ttfb_us",
    "delay_us_median",
    "delay_us_max",
    "gap_err_us_max",
)


def _median_spread(vals: list[float]) -> tuple[float, float]:
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / 2 / abs(med) * 100 if med else 0.0
    return med, spread


def ok(r: dict) -> bool:
    return "requests" in r and "skipped" not in r


def summarise(records: list[dict], targets: list[str], scenarios: list[str]) -> dict:
    out: dict = {}
    for sc in scenarios:
        direct = [r for r in records if r["scenario"] == sc and r["target"] == "direct" and ok(r)]
        base = (
            {
                k: statistics.median([r[k] for r in direct if r.get(k) is not None] or [0])
                for k in ("p50_ms", "p99_ms", "ttfe_us", "delay_us_median")
            }
            if direct
            else None
        )
        for t in targets:
            rs = [r for r in records if r["scenario"] == sc and r["target"] == t and ok(r)]
            if not rs:
                continue
            s: dict = {"runs": len(rs)}
            for k in _KEYS:
                vals = [r[k] for r in rs if r.get(k) is not None]
                if vals:
                    med, spread = _median_spread(vals)
                    s[k] = round(med, 3)
                    s[k + "_spread_pct"] = round(spread, 1)
            s["errors"] = sum(r.get("errors", 0) for r in rs)
            s["requests"] = sum(r["requests"] for r in rs)
            for k in ("events_sent", "events_received", "coalesced_reads"):
                if any(k in r for r in rs):
                    s[k] = sum(r.get(k, 0) for r in rs)
            if any("ledger_rows" in r for r in rs):
                s["ledger_rows"] = sum(r.get("ledger_rows", 0) for r in rs)
                s["ledger_lost"] = sum(r.get("ledger_lost", 0) for r in rs)
            if base is not None and t != "direct":
                for k in ("p50_ms", "p99_ms", "ttfe_us", "delay_us_median"):
                    if k in s:
                        s[f"overhead_{k}"] = round(s[k] - base[k], 3)
            out.setdefault(sc, {})[t] = s
    return out


def _fmt(v: float | None, spread: float | None = None, digits: int = 0) -> str:
    if v is None:
        return "-"
    text = f"{v:,.{digits}f}"
    return f"{text} (±{spread:.0f}%)" if spread is not None else text


def _ledger(s: dict) -> str:
    if "ledger_rows" not in s:
        return "-"
    lost = f" (**{s['ledger_lost']} lost**)" if s.get("ledger_lost") else ""
    return f"{s['ledger_rows']:,} / {s['requests']:,}{lost}"


def _rss(s: dict) -> str:
    return f"{s['rss_start_mib']:.0f}→{s['rss_end_mib']:.0f}" if "rss_end_mib" in s else "-"


def load_table(summary: dict, kinds: dict[str, str]) -> list[str]:
    lines = [
        "| scenario | target | req/s | p50 ms | p99 ms | overhead p50 / p99 ms | CPU µs/req "
        "| services CPU µs/req | RSS MiB start→end | ledger rows / requests | errors "
        "| core0/core1 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for sc, per in summary.items():
        if kinds.get(sc, "wrk") != "wrk":
            continue
        for t, s in per.items():
            over = (
                f"{s['overhead_p50_ms']:.3f} / {s['overhead_p99_ms']:.2f}"
                if "overhead_p50_ms" in s
                else "-"
            )
            lines.append(
                f"| {sc} | {t} | {_fmt(s['rps'], s['rps_spread_pct'])} "
                f"| {_fmt(s['p50_ms'], s['p50_ms_spread_pct'], 3)} "
                f"| {_fmt(s['p99_ms'], s['p99_ms_spread_pct'], 2)} | {over} "
                f"| {_fmt(s.get('cpu_us_per_req'), s.get('cpu_us_per_req_spread_pct'))} "
                f"| {_fmt(s.get('services_cpu_us_per_req'))} "
                f"| {_rss(s)} | {_ledger(s)} | {s['errors']} "
                f"| {s.get('cpu0_busy_pct', 0):.0f}/{s.get('cpu1_busy_pct', 0):.0f} |"
            )
    return lines


def mix_table(summary: dict, kinds: dict[str, str]) -> list[str]:
    lines = [
        "| target | small req/s alone | small p50 ms alone → mixed | small p99 ms alone → mixed "
        "| **p99 raised by ms** | 100k prompts/s | 100k p50 ms | CPU µs/req | ledger rows / "
        "requests | errors | core1 % |",
        "|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for sc, per in summary.items():
        if kinds.get(sc) != "mix":
            continue
        for t, s in per.items():
            p50_mixed = s["p50_ms"] + s.get("p50_delta_ms", 0)
            lines.append(
                f"| {t} | {_fmt(s['rps'])} | {s['p50_ms']:.2f} → {p50_mixed:.2f} "
                f"| {s['p99_ms']:.2f} → {s['p99_mixed_ms']:.2f} "
                f"| **{_fmt(s['p99_delta_ms'], s['p99_delta_ms_spread_pct'], 2)}** "
                f"| {_fmt(s.get('big_rps'), None, 1)} | {_fmt(s.get('big_p50_ms'), None, 1)} "
                f"| {_fmt(s.get('cpu_us_per_req'))} | {_ledger(s)} | {s['errors']} "
                f"| {s.get('cpu1_busy_pct', 0):.0f} |"
            )
    return lines


def trickle_table(summary: dict, kinds: dict[str, str]) -> list[str]:
    lines = [
        "| target | time to first event ms | **added ms** | per-event delay µs median / max "
        "| **delay added µs** | gap error µs max | events received / sent | coalesced reads "
        "| errors |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for sc, per in summary.items():
        if kinds.get(sc) != "trickle":
            continue
        for t, s in per.items():
            added = s.get("overhead_ttfe_us")
            lines.append(
                f"| {t} | {s['ttfe_us'] / 1000:.3f} "
                f"| **{'-' if added is None else f'{added / 1000:.3f}'}** "
                f"| {_fmt(s.get('delay_us_median'))} / {_fmt(s.get('delay_us_max'))} "
                f"| **{_fmt(s.get('overhead_delay_us_median'))}** "
                f"| {_fmt(s.get('gap_err_us_max'))} "
                f"| {s.get('events_received', 0):,} / {s.get('events_sent', 0):,} "
                f"| {s.get('coalesced_reads', 0)} | {s['errors']} |"
            )
    return lines


def _mix_extras(summary: dict, records: list[dict]) -> None:
    """Medians of the 100k-prompt phase into the mix summaries (not in _KEYS: nested)."""
    for sc, per in summary.items():
        for t, s in per.items():
            bigs = [
                r["big"]
                for r in records
                if r["scenario"] == sc and r["target"] == t and ok(r) and "big" in r
            ]
            if bigs:
                s["big_rps"] = statistics.median(b["rps"] for b in bigs)
                s["big_p50_ms"] = statistics.median(b["p50_ms"] for b in bigs)


def markdown(results: dict) -> str:
    meta, summary, records = results["meta"], results["summary"], results["records"]
    kinds = meta.get("scenario_kinds", {})
    _mix_extras(summary, records)
    out = [
        f"# bench run {meta['started']}",
        "",
        f"`{meta['command']}`: {meta['rounds']} rounds, {meta['duration_s']} s measured, "
        f"{meta['warmup_s']} s warm-up; medians, (±x%) = half the min-max range. "
        f"Wall {meta['wall_s'] / 60:.0f} min.",
        "",
    ]
    if any(kinds.get(sc, "wrk") == "wrk" for sc in summary):
        out += ["## Closed-loop load (wrk)", "", *load_table(summary, kinds), ""]
    if any(kinds.get(sc) == "mix" for sc in summary):
        m = meta.get("mix", {})
        out += [
            "## A ~100k-token prompt among small requests (mix-100k)",
            "",
            f"Small JSON requests on {m.get('connections', 8)} connections, each pausing "
            f"{m.get('delay_ms')} ms between calls; in the mixed phase "
            f"{m.get('big_connections')} more connection(s) post a {m.get('big_bytes', 0):,}-byte "
            f"prompt, pausing {m.get('big_delay_ms')} ms. Target: p99 raised by <= 2 ms.",
            "",
            *mix_table(summary, kinds),
            "",
        ]
    if any(kinds.get(sc) == "trickle" for sc in summary):
        t = meta.get("trickle", {})
        out += [
            "## Streaming: time to first byte and chunk timing (sse-ttfb)",
            "",
            f"{t.get('streams')} streams one after another, each {t.get('events')} events "
            f"{t.get('interval_ms')} ms apart plus the first at once. Time to first event = "
            "request sent to the first event's last byte read (its first byte, as events are "
            "small). Targets: TTFB added <= 1 ms; every event received, none coalesced, none "
            "delayed.",
            "",
            *trickle_table(summary, kinds),
            "",
        ]
    notes = [f"- `{t}` skipped: {why}" for t, why in meta.get("skipped", {}).items()]
    for r in records:
        if not ok(r) and "skipped" not in r:
            why = r.get("validation") or r.get("failure")
            notes.append(f"- `{r['target']}` {r['scenario']} round {r['round']} failed: {why}")
    if notes:
        out += ["## Not measured", "", *notes, ""]
    return "\n".join(out)


def plot(results: dict, path: Path) -> str | None:
    """Throughput and CPU per request per scenario and target (log scales). None, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    summary, kinds = results["summary"], results["meta"].get("scenario_kinds", {})
    scenarios = [sc for sc in summary if kinds.get(sc, "wrk") == "wrk"]
    if not scenarios:
        return "no wrk scenario to plot"
    targets = list(dict.fromkeys(t for sc in scenarios for t in summary[sc]))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(scenarios) * 1.2), 8))
    width = 0.8 / len(targets)
    for ax, key, label in (
        (axes[0], "rps", "requests/s (log)"),
        (axes[1], "cpu_us_per_req", "proxy CPU µs per request (log)"),
    ):
        for i, t in enumerate(targets):
            xs = [j + i * width for j in range(len(scenarios))]
            ys = [summary[sc].get(t, {}).get(key) or 0 for sc in scenarios]
            bars = ax.bar(xs, ys, width, label=t)
            ax.bar_label(bars, fmt="%.0f", fontsize=6, rotation=90, padding=2)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(scenarios))], scenarios)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3)
    fig.suptitle(f"spendgate bench {results['meta']['started']} (proxy on one core)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(resdir: Path, results: dict) -> str:
    md = markdown(results)
    (resdir / "table.md").write_text(md + "\n")
    why = plot(results, resdir / "plot.png")
    if why:
        print(f"bench: {why}")
    return md


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    resdir = Path(sys.argv[1])
    found = False
    if (resdir / "results.json").exists():
        results = json.loads((resdir / "results.json").read_text())
        meta = results["meta"]
        results["summary"] = summarise(results["records"], meta["targets"], meta["scenarios"])
        (resdir / "results.json").write_text(json.dumps(results, indent=1))
        print(write(resdir, results))
        found = True
    if (resdir / "soak.json").exists():
        import soak

        print(soak.write(resdir, json.loads((resdir / "soak.json").read_text())))
        found = True
    if not found:
        print(f"{resdir}: neither results.json nor soak.json")
    return 0 if found else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
