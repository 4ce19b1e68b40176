"""Admin API credentials: the global admin key and per-team admin keys.

The presented key is hashed and compared with every configured key's hash with
``hmac.compare_digest``, all of them each time, so neither the comparison nor the number of
keys compared tells an attacker how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac

from proxy.config import AdminConfig
from proxy.controlplane.store import GLOBAL_ADMIN, Principal

__all__ = ["AdminKeys"]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class AdminKeys:
    def __init__(self, config: AdminConfig) -> None:
        self._keys: list[tuple[bytes, Principal]] = []
        if config.key:
            self._keys.append((_digest(config.key), GLOBAL_ADMIN))
        for team, key in config.team_keys:
            self._keys.append((_digest(key), Principal(f"team-admin:{team}", team)))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def principal(self, presented: str | None) -> Principal | None:
        """Who ``presented`` belongs to, or None for no key or a wrong one."""
        if not presented:
            return None
        digest = _digest(presented)
        found: Principal | None = None
        for expected, who in self._keys:
            if hmac.compare_digest(digest, expected):
                found = who
        return found
