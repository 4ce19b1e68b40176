"""py-spy profiles of one target under load, and the code snapshot every run measures. Stdlib.

scripts/bench --profile spendgate-aiohttp:json-c8     (needs .venv/bin/py-spy)
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from load import Scenario, wrk
from procs import free_port
from targets import LOAD_CPU, Target

if TYPE_CHECKING:
    from bench import Bench


def profile(env: Bench, target: Target, sc: Scenario) -> None:
    """py-spy record of one target under one scenario: raw stacks + a self/inclusive top list."""
    pyspy = env.python.parent / "py-spy"
    if not pyspy.exists():
        sys.exit(f"{pyspy} not found: .venv/bin/pip install py-spy")
    workdir = env.workdir / f"profile-{sc.name}-{target.name}"
    workdir.mkdir(parents=True)
    run = target.start(env, workdir, free_port())
    try:
        assert run.proc is not None
        pid = run.proc.pid  # type: ignore[attr-defined]
        wrk(env, run.url, sc, env.args.warmup, target, workdir / "warmup.log")
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
                str(pid),
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
        wrk(env, run.url, sc, env.args.duration, target, workdir / "wrk.log")
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
        return r.stdout.rstrip()  # not strip(): porcelain lines start with a space

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
