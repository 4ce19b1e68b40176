"""Who is calling: virtual keys to identities.

Only SHA-256 digests of keys are held; the presented secret is hashed and looked up, so a
memory dump or a log line never holds a usable key. A request carries its key the way its
SDK sends it: ``Authorization: Bearer``, ``x-api-key`` (Anthropic) or ``x-goog-api-key``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.config import KeyConfig, hash_key
from proxy.errors import Unauthorized

__all__ = ["Identity", "KeyRing", "extract_key"]

log = logging.getLogger("spendgate.auth")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller a request is attributed to."""

    team: str
    key_id: str | None
    project: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


ANONYMOUS = Identity(team="default", key_id=None)


def extract_key(headers: dict[bytes, bytes]) -> str | None:
    """The virtual key from the request headers (lower-cased names), if any."""
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in (b"x-api-key", b"x-goog-api-key", b"api-key"):
        value_b = headers.get(name)
        if value_b:
            return value_b.decode("latin-1").strip()
    return None


class KeyRing:
    """Resolves a presented key to an ``Identity``.

    With no keys configured, ``open_access`` decides: on a loopback bind the proxy runs
    open (every call is team ``default``) so a first run needs no setup; on any other bind a
    key is required and every call is refused.
    """

    def __init__(self, keys: Iterable[KeyConfig], *, open_access: bool) -> None:
        self._by_hash = {
            k.key_hash: Identity(team=k.team, key_id=k.key_id, project=k.project, tags=k.tags)
            for k in keys
        }
        self.open_access = open_access and not self._by_hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def identify(self, presented: str | None) -> Identity:
        if self.open_access:
            return ANONYMOUS
        if not self._by_hash:
            raise Unauthorized(
                "No virtual keys are configured and spendgate is not bound to loopback, so "
                "every call is refused. Add keys to the config (keys: [...])."
            )
        if not presented:
            raise Unauthorized(
                "Missing API key. Pass your spendgate virtual key as the API key "
                "(Authorization: Bearer <key>)."
            )
        identity = self._by_hash.get(hash_key(presented))
        if identity is None:
            raise Unauthorized("Incorrect API key provided. Use a spendgate virtual key.")
        return identity
