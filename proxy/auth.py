"""Who is calling: virtual keys to identities.

Only SHA-256 digests of keys are held; the presented secret is hashed and looked up, so a
memory dump or a log line never holds a usable key. A request carries its key the way its
SDK sends it: ``Authorization: Bearer``, ``x-api-key`` (Anthropic) or ``x-goog-api-key``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from proxy.config import KeyConfig, hash_key
from proxy.errors import ModelNotAllowed, Unauthorized

__all__ = ["Identity", "KeyRing", "check_model", "extract_key"]

log = logging.getLogger("spendgate.auth")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller a request is attributed to."""

    team: str
    key_id: str | None
    project: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    expires_at: float | None = None  # epoch seconds; checked on every request
    models: tuple[str, ...] | None = None  # allowed model globs; None allows every model


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


def check_model(identity: Identity, model: str | None) -> None:
    """Refuse (403) a model outside the key's allow-list (or no model, when there is one)."""
    if identity.models is not None and not any(
        fnmatchcase(model or "", p) for p in identity.models
    ):
        raise ModelNotAllowed(f"This API key is not allowed to use model '{model}'.", param="model")


class KeyRing:
    """Resolves a presented key to an ``Identity``.

    Keys come from the config (fixed) and from the control-plane database (swapped in whole
    by ``set_db_keys`` whenever the key cache reloads, so a lookup never touches the DB).
    With no keys at all, ``open_access`` decides: on a loopback bind the proxy runs open
    (every call is team ``default``) so a first run needs no setup; on any other bind a key
    is required and every call is refused.
    """

    def __init__(self, keys: Iterable[KeyConfig], *, open_access: bool) -> None:
        self._by_hash = {
            k.key_hash: Identity(team=k.team, key_id=k.key_id, project=k.project, tags=k.tags)
            for k in keys
        }
        self._db: Mapping[str, Identity] = {}
        self._managed = False
        self._open = open_access

    @property
    def open_access(self) -> bool:
        return self._open and not self._by_hash and not self._db and not self._managed

    def set_db_keys(self, by_hash: Mapping[str, Identity], *, managed: bool = False) -> None:
        """Replace the database keys (hash -> identity) in one step.

        ``managed``: the database has (or had) keys, so open access stays off even when none
        is valid now; revoking the last key must not open the proxy to everyone.
        """
        self._db = by_hash
        self._managed = managed or bool(by_hash)

    def __len__(self) -> int:
        return len(self._by_hash) + len(self._db)

    def identities(self) -> list[Identity]:
        """Every identity a key resolves to (config and database), e.g. to enumerate teams."""
        return [*self._by_hash.values(), *self._db.values()]

    def identify(self, presented: str | None) -> Identity:
        if self.open_access:
            return ANONYMOUS
        if not self._by_hash and not self._db and not self._managed:
            raise Unauthorized(
                "No virtual keys are configured and spendgate is not bound to loopback, so "
                "every call is refused. Add keys to the config (keys: [...])."
            )
        if not presented:
            raise Unauthorized(
                "Missing API key. Pass your spendgate virtual key as the API key "
                "(Authorization: Bearer <key>)."
            )
        digest = hash_key(presented)
        identity = self._by_hash.get(digest) or self._db.get(digest)
        if identity is None:
            raise Unauthorized("Incorrect API key provided. Use a spendgate virtual key.")
        if identity.expires_at is not None and time.time() >= identity.expires_at:
            raise Unauthorized("This API key has expired.", code="expired_api_key")
        return identity
