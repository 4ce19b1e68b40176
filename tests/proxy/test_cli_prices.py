from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["prices", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_builtin_passes(capsys):
    rc, out, _ = run(capsys, "check")
    assert rc == 0 and "0 error(s)" in out


NEGATIVE = """
version: "t1"
models:
  my-model:
    provider: openai
    source: "test"
    prices:
      - {effective_from: 2026-01-01, input: -1, output: 2}
"""

OVERLAP = """
version: "t2"
models:
  my-model:
    provider: openai
    source: "test"
    prices:
      - {effective_from: 2026-01-01, input: 1, output: 2}
      - {effective_from: 2026-01-01, input: 2, output: 3}
"""


@pytest.mark.parametrize(("text", "needle"), [(NEGATIVE, "my-model"), (OVERLAP, "my-model")])
def test_check_fails_with_a_readable_report(capsys, tmp_path: Path, text: str, needle: str):
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    rc, out, _ = run(capsys, "check", str(path))
    assert rc == 1
    assert needle in out and "error" in out


def test_quote_matches_hand_computation(capsys):
    # gpt-4o: (1000 - 200) x 2.5/M + 200 x 1.25/M + 500 x 10/M = 0.002 + 0.00025 + 0.005
    rc, out, _ = run(
        capsys,
        "quote",
        "gpt-4o-2024-08-06",
        "--input",
        "1000",
        "--cached",
        "200",
        "--output",
        "500",
    )
    assert rc == 0
    assert "gpt-4o@2024-08-06" in out and "$0.00725" in out and "$0.00025" in out


def test_quote_with_a_team_rate_card(capsys, tmp_path: Path):
    config = tmp_path / "spendgate.yaml"
    config.write_text("teams:\n  search: {rate_card: {discount_pct: 10}}\n")
    rc, out, _ = run(
        capsys,
        "quote",
        "gpt-4o-mini",
        "--input",
        "1000000",
        "--output",
        "0",
        "--team",
        "search",
        "--config",
        str(config),
    )
    # 1M x 0.15/M = $0.15 list, 10% off = $0.135
    assert rc == 0 and "$0.15" in out and "$0.135" in out


def test_show_and_unknown(capsys):
    rc, out, _ = run(capsys, "show", "gpt-4o-2024-08-06")
    assert rc == 0 and "gpt-4o" in out and "price_version" in out
    rc, _, err = run(capsys, "show", "no-such-model")
    assert rc == 1 and "no price" in err


def test_import_litellm(capsys, tmp_path: Path):
    src = tmp_path / "prices.json"
    src.write_text(
        json.dumps(
            {
                "my-llm": {
                    "litellm_provider": "openai",
                    "input_cost_per_token": 1.5e-07,
                    "output_cost_per_token": 6e-07,
                    "mode": "chat",
                }
            }
        )
    )
    out_path = tmp_path / "catalog.yaml"
    rc, _, _ = run(
        capsys, "import-litellm", str(src), "-o", str(out_path), "--effective-from", "2026-01-01"
    )
    assert rc == 0
    rc, out, _ = run(
        capsys,
        "quote",
        "my-llm",
        "--input",
        "1000000",
        "--output",
        "1000000",
        "--catalog",
        str(out_path),
    )
    # 1M x 0.15/M + 1M x 0.60/M
    assert rc == 0 and "$0.75" in out
