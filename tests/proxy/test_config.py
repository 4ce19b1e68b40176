from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import hash_key, load_config, parse_config
from proxy.errors import ConfigError


def test_embedded_defaults():
    config = parse_config({}, env={"OPENAI_API_KEY": "sk-x"})
    assert config.server.host == "127.0.0.1" and config.server.port == 8787
    assert config.storage.database_url == "sqlite:///spendgate.db"
    assert config.storage.redis_url is None
    assert [(p.name, p.kind, p.models) for p in config.providers] == [
        ("openai", "openai", ("*",)),
        ("mock", "mock", ("mock-*",)),
    ]
    assert config.providers[0].api_key == "sk-x"
    assert config.pricing.unknown_model == "record"


def test_env_interpolation_with_defaults():
    raw = {
        "storage": {"database_url": "${DB:-sqlite:///x.db}", "redis_url": "redis://${HOST}:6379/0"},
        "keys": [{"key": "${SEARCH_KEY}", "team": "search"}],
    }
    config = parse_config(raw, env={"HOST": "cache", "SEARCH_KEY": "sg-abcdefgh"})
    assert config.storage.database_url == "sqlite:///x.db"
    assert config.storage.redis_url == "redis://cache:6379/0"
    assert config.keys[0].key_hash == hash_key("sg-abcdefgh")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"keys": [{"key": "${NOPE}", "team": "t"}]}, "keys[0].key: environment variable NOPE"),
        ({"server": {"prot": 1}}, "server.prot: unknown key"),
        ({"sever": {}}, "sever: unknown key"),
        ({"server": {"port": "eighty"}}, "server.port: must be an integer"),
        ({"storage": {"database_url": "mysql://x"}}, "storage.database_url: must be a URL"),
        ({"providers": {"openai": {"base_url": "api.openai.com"}}}, "providers.openai.base_url"),
        ({"providers": {"x": {"kind": "bard"}}}, "providers.x.kind: must be one of"),
        ({"keys": [{"key": "sg-abcdefgh"}]}, "keys[0].team: required"),
        ({"keys": [{"key": "short", "team": "t"}]}, "keys[0].key: must be at least 8"),
        ({"keys": [{"team": "t"}]}, "keys[0].key: give exactly one of key or key_sha256"),
        (
            {"keys": [{"key": "sg-abcdefgh", "team": "a"}, {"key": "sg-abcdefgh", "team": "b"}]},
            "keys[1].key: the same key is declared twice",
        ),
        ({"pricing": {"unknown_model": "ignore"}}, "pricing.unknown_model: must be one of"),
        ({"server": {"upstream_client": "requests"}}, "server.upstream_client"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    assert message in str(info.value)


def test_keys_are_held_hashed():
    config = parse_config({"keys": [{"key": "sg-secret-123", "team": "t", "name": "ci"}]}, env={})
    (key,) = config.keys
    assert "sg-secret-123" not in repr(config)
    assert key.key_hash == hash_key("sg-secret-123") and key.key_id == "ci"
    digest = parse_config({"keys": [{"key_sha256": hash_key("sg-x-12345"), "team": "t"}]}, env={})
    assert digest.keys[0].key_hash == hash_key("sg-x-12345")


def test_load_config_file_and_errors(tmp_path: Path, monkeypatch):
    good = tmp_path / "spendgate.yaml"
    good.write_text("server: {port: 9999}\nproviders:\n  mock: {kind: mock, models: ['mock-*']}\n")
    assert load_config(good).server.port == 9999
    monkeypatch.chdir(tmp_path)
    assert load_config(None).source == "spendgate.yaml"  # picked up from the working directory
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_loopback_detection():
    assert parse_config({"server": {"host": "127.0.0.1"}}, env={}).server.is_loopback
    assert parse_config({"server": {"host": "localhost"}}, env={}).server.is_loopback
    assert parse_config({"server": {"host": "::1"}}, env={}).server.is_loopback
    assert not parse_config({"server": {"host": "0.0.0.0"}}, env={}).server.is_loopback


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ({"v1": {"kind": "openai"}}, "providers.v1: 'v1' is taken by spendgate's own /v1/ routes"),
        ({"admin": {"kind": "mock"}}, "providers.admin: 'admin' is taken"),
        ({"metrics": {}}, "providers.metrics: 'metrics' is taken"),
        (
            {"anthropic": {"kind": "openai", "base_url": "http://x"}},
            "providers.anthropic: /anthropic/ is spendgate's built-in Anthropic route, so a "
            "provider named 'anthropic' must be of kind anthropic",
        ),
        ({"gemini": {"kind": "mock"}}, "must be of kind gemini"),
        ({"openai": {"kind": "anthropic"}}, "must be of kind openai or azure"),
        ({"az": {"kind": "azure"}}, "providers.az.base_url: required for kind azure"),
        ({"x": {"deployments": {"d": "gpt-4o"}}}, "providers.x.deployments: only for kind azure"),
        ({"x": {"api_version": "v1"}}, "providers.x.api_version: only for kind azure"),
        (
            {"az": {"kind": "azure", "base_url": "https://a", "deployments": {"a/b": "m"}}},
            "providers.az.deployments.a/b: a deployment name",
        ),
    ],
)
def test_provider_names_and_azure_settings(providers, message):
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": providers}, env={})
    assert message in str(info.value)


def test_provider_kinds_and_defaults():
    providers = {
        "anthropic": {"kind": "anthropic"},  # a built-in prefix, with its own kind: fine
        "openai": {"kind": "openai"},
        "groq": {"base_url": "https://api.groq.com/openai/", "api_key": "gsk"},
        "ollama": {"base_url": "http://localhost:11434"},
        "azure": {
            "base_url": "https://res.openai.azure.com/openai/",
            "api_key": "k",
            "deployments": {
                "prod-4o": "gpt-4o",
                "eu-4o": "gpt-4o",
                "emb": "text-embedding-3-small",
            },
        },
    }
    by_name = {p.name: p for p in parse_config({"providers": providers}, env={}).providers}
    groq, azure = by_name["groq"], by_name["azure"]
    assert (groq.kind, groq.base_url) == ("openai", "https://api.groq.com/openai")
    assert (azure.kind, azure.base_url, azure.api_version) == (
        "azure",
        "https://res.openai.azure.com",
        "2024-10-21",
    )
    assert azure.models == ("gpt-4o", "text-embedding-3-small")  # routed by what it serves
    # a key is required, except by a server of one's own
    assert [n for n, p in by_name.items() if p.needs_key] == ["anthropic", "openai", "azure"]
