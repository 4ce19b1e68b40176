from __future__ import annotations

# Shared fixtures live in plugin modules so that each area owns its own file:
# tests/services/postgres.py (postgres_url), tests/services/redis.py (redis_url),
# tests/fakeupstream (fake_upstream: a real server speaking the providers' wire formats).
pytest_plugins: list[str] = [
    "tests.services.postgres",
    "tests.fakeupstream.plugin",
    "tests.services.redis",
]
