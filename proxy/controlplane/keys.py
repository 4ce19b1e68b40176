"""Virtual key secrets: generation, hashing, display prefixes, validity.

A secret is ``sg-`` plus 32 random bytes in URL-safe base64 (256 bits), so an unsalted
SHA-256 is enough: there is nothing to brute-force. Only the hash is stored, plus the first
eight characters after ``sg-`` for people to tell keys apart in listings.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from proxy.config import hash_key
from proxy.controlplane.models import KeyRow

__all__ = [
    "SECRET_PREFIX",
    "display_prefix",
    "generate_secret",
    "hash_key",
    "key_status",
    "new_id",
    "rotate",
]

SECRET_PREFIX = "sg-"


def generate_secret() -> str:
    """A new key secret: ``sg-`` + 43 characters of base64url (32 random bytes)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def display_prefix(secret: str) -> str:
    """``sg-`` and 8 more characters: enough to recognise a key, 48 of its 256 bits."""
    return secret[: len(SECRET_PREFIX) + 8]


def new_id(kind: str) -> str:
    """A random, non-secret id such as ``key_3f9a0c1d2e4b`` (the ledger's ``key_id``)."""
    return f"{kind}_{secrets.token_hex(6)}"


def key_status(row: KeyRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def rotate(row: KeyRow, now: datetime, grace: timedelta) -> str:
    """Give ``row`` a new secret; the current one stays valid for ``grace``. Returns the secret.

    Only one previous secret is kept: rotating again during a grace period ends the older
    secret's grace at once (it was already being replaced).
    """
    secret = generate_secret()
    if grace > timedelta(0):
        row.previous_hash = row.key_hash
        row.previous_valid_until = now + grace
    else:
        row.previous_hash = None
        row.previous_valid_until = None
    row.key_hash = hash_key(secret)
    row.prefix = display_prefix(secret)
    row.rotated_at = now
    return secret
