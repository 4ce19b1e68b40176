from __future__ import annotations

from proxy.config import ProviderConfig
from proxy.routing import ModelRouter


def provider(name: str, *models: str) -> ProviderConfig:
    return ProviderConfig(name=name, kind="openai", base_url="http://x", models=models)


def test_exact_beats_glob_and_specific_beats_catch_all():
    router = ModelRouter(
        [
            provider("openai", "*"),
            provider("local", "llama-3.1-*", "qwen"),
            provider("mock", "mock-*"),
            provider("special", "llama-3.1-70b"),
        ]
    )
    assert router.route("gpt-4o").name == "openai"
    assert router.route("llama-3.1-8b").name == "local"
    assert router.route("llama-3.1-70b").name == "special"
    assert router.route("qwen").name == "local"
    assert router.route("mock-gpt-4o").name == "mock"


def test_no_match_is_none():
    router = ModelRouter([provider("mock", "mock-*")])
    assert router.route("gpt-4o") is None
    assert router.route("gpt-4o") is None  # memoised miss
