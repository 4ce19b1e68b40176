"""The Dockerfile, checked structurally: there is no Docker engine here to build it.

What a build would catch first is checked instead: the stages, that the final one runs as a
non-root user without compilers, the entry point and health check, and that every COPY
source exists and is let through by .dockerignore.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions():
        if word == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            current = stages.setdefault(parts[2], [])
        current.append((word, rest))
    return stages


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if pattern.startswith("**/"):  # at any depth
            candidates = ["/".join(parts[i:]) for i in range(len(parts))]
            pattern = pattern[3:]
        else:
            candidates = [path]
        if any(fnmatch.fnmatch(c, pattern) or c.startswith(pattern + "/") for c in candidates):
            ignored = not negate
    return ignored


def test_two_stages_on_a_slim_python_base():
    stages = _stages()
    assert list(stages) == ["build", "runtime"]
    for instructions in stages.values():
        base = instructions[0][1].split()[0]
        assert base.startswith("python:") and "-slim" in base


def test_final_stage_runs_unprivileged_without_compilers():
    runtime = _stages()["runtime"]
    (user,) = [rest for word, rest in runtime if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    for compiler in ("build-essential", "gcc", "apt-get install"):
        assert compiler not in runs
    build_runs = " ".join(rest for word, rest in _stages()["build"] if word == "RUN")
    assert "build-essential" in build_runs  # compilers stay in the build stage
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/spendgate /opt/spendgate"]


def test_entrypoint_and_healthcheck():
    runtime = dict(_stages()["runtime"])
    assert json.loads(runtime["ENTRYPOINT"]) == ["spendgate"]
    assert json.loads(runtime["CMD"])[0] == "serve"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["spendgate"] == "proxy.cli:main"
    options, _, command = runtime["HEALTHCHECK"].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")  # the probe's Python is at least valid
    env = " ".join(rest for word, rest in _stages()["runtime"] if word == "ENV")
    assert "SPENDGATE_HEALTHCHECK_URL=http://127.0.0.1:8787/healthz" in env
    assert "8787" in runtime["EXPOSE"]


def test_every_copy_source_exists_and_is_in_the_build_context():
    sources = []
    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            *srcs, _dest = shlex.split(rest)
            sources += srcs
    assert {"pyproject.toml", "README.md", "proxy", "pricing", "budgets"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert not _ignored(src), f"COPY {src}: excluded by .dockerignore"
    assert _ignored(".venv") and _ignored("tests") and _ignored(".git")
    assert _ignored("proxy/__pycache__")
