"""Shared set-up for the native-format end-to-end tests (Anthropic, Gemini, Responses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

KEY = "sg-test-key-native-0123456789"


def config(upstream_url: str, tmp_path: Path) -> dict[str, Any]:
    """Each provider kind pointed at the fake upstream, plus the mock, one virtual key."""
    up = upstream_url
    return {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "providers": {
            "openai": {"kind": "openai", "base_url": up, "api_key": "sk-up", "models": ["gpt-*"]},
            "anthropic": {
                "kind": "anthropic",
                "base_url": up,
                "api_key": "sk-ant-upstream-secret",
                "models": ["claude-*"],
                "read_timeout": 2,
            },
            "gemini": {
                "kind": "gemini",
                "base_url": up,
                "api_key": "AIza-upstream-secret",
                "models": ["gemini-*"],
            },
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": KEY, "team": "native", "project": "sdk"}],
    }
