"""Processes the bench starts, and what /proc says about them and about the machine. Stdlib.

Every process is recorded with its PID and stopped by PID. CPU and RSS are read for a whole
process tree: granian serves from a child process, and PostgreSQL forks a backend per
connection, so the PID we started is not the only one doing the work.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


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
        """SIGTERM (graceful: spendgate flushes its ledger), SIGKILL after ``timeout``.

        Children the process leaves behind (a granian worker) are killed by PID too.
        """
        t0 = time.monotonic()
        kids = tree_pids(p.pid)[1:] if p.poll() is None else []
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for kid in kids:
            if Path(f"/proc/{kid}").exists():
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.live.pop(p.pid, None)
        return time.monotonic() - t0

    def stop_all(self) -> list[str]:
        """Stop every recorded process; returns those still alive afterwards (should be none)."""
        procs = list(self.live.items())
        for _, (_, p) in procs:
            self.stop(p, timeout=10)
        time.sleep(0.2)
        return [f"{pid} {name}" for pid, (name, p) in procs if p.poll() is None]


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (``pid`` first)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(_stat(int(d))[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [pid], [pid]
    while todo:
        cur = todo.pop()
        kids = [c for c, pp in parent.items() if pp == cur]
        out += kids
        todo += kids
    return out


def cpu_ticks(pid: int, tree: bool = True) -> int:
    """utime + stime of a process (all threads; with ``tree``, all descendants), in ticks."""
    total = 0
    for p in tree_pids(pid) if tree else [pid]:
        try:
            fields = _stat(p)
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_mib(pid: int, tree: bool = True) -> float:
    """VmRSS of a process (with ``tree``, summed over it and its descendants), MiB."""
    total = 0
    for p in tree_pids(pid) if tree else [pid]:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def listener_pid(port: int) -> int | None:
    """The PID of the process listening on 127.0.0.1/0.0.0.0:``port`` (e.g. the machine's
    Redis), found through /proc/net/tcp socket inodes; None when not found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            pass
    if not inodes:
        return None
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                link = os.readlink(f"/proc/{d}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    found.append(int(d))
                    break
        except OSError:
            pass
    # the oldest (the parent, e.g. the postmaster) when several share the socket
    return min(found) if found else None


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


def core_busy(before: dict, after: dict) -> dict[str, float]:
    res = {}
    for cpu in before:
        busy = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        steal = after[cpu][2] - before[cpu][2]
        res[f"cpu{cpu}_busy_pct"] = round(100 * busy / total, 1) if total else 0.0
        res[f"cpu{cpu}_steal_pct"] = round(100 * steal / total, 2) if total else 0.0
    return res


def self_ticks() -> float:
    """CPU of this process (the driver: OTLP sink, trickle client bookkeeping), in ticks."""
    t = os.times()
    return (t.user + t.system) * HZ


def children_ticks() -> float:
    """CPU of this process's waited-for children (wrk, load clients), in ticks."""
    t = os.times()
    return (t.children_user + t.children_system) * HZ


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


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


def wait_quiet(pid: int, max_wait: float = 3.0) -> None:
    """Until the proxy spends < ~5% of a core over 200 ms (ledger flushes, GC), at least 0.5 s."""
    time.sleep(0.5)
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        a = cpu_ticks(pid)
        time.sleep(0.2)
        if (cpu_ticks(pid) - a) / HZ < 0.01:
            return
