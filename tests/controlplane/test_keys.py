"""Key secrets, rotation and the in-memory identities the proxy checks requests against."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from proxy.auth import KeyRing, check_model
from proxy.config import hash_key
from proxy.controlplane import keys
from proxy.controlplane.cache import identities
from proxy.controlplane.models import KeyRow
from proxy.errors import ModelNotAllowed, Unauthorized


def _row(secret: str, **kw: object) -> KeyRow:
    return KeyRow(
        id="key_0123456789ab",
        team="search",
        prefix=keys.display_prefix(secret),
        key_hash=hash_key(secret),
        tags={"env": "prod"},
        created_at=datetime.now(UTC),
        **kw,
    )


def test_secrets_are_sg_prefixed_256_bit_and_unique() -> None:
    made = {keys.generate_secret() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert secret.startswith("sg-")
        # 32 random bytes in unpadded base64url are 43 characters
        assert len(secret) == 3 + 43
        assert keys.display_prefix(secret) == secret[:11]


def test_rotation_keeps_the_old_secret_for_the_grace_period_only() -> None:
    old = keys.generate_secret()
    row = _row(old)
    now = datetime.now(UTC)
    new = keys.rotate(row, now, timedelta(seconds=60))
    assert new != old
    assert row.key_hash == hash_key(new) and row.previous_hash == hash_key(old)
    ids = identities([row])
    assert ids[hash_key(new)].expires_at is None
    assert ids[hash_key(old)].expires_at == pytest.approx((now + timedelta(seconds=60)).timestamp())
    # no grace: the old secret stops at once
    keys.rotate(row, now, timedelta(0))
    assert row.previous_hash is None and len(identities([row])) == 1


def test_grace_never_outlives_the_key_itself() -> None:
    old = keys.generate_secret()
    now = datetime.now(UTC)
    row = _row(old, expires_at=now + timedelta(seconds=10))
    keys.rotate(row, now, timedelta(hours=1))
    assert identities([row])[hash_key(old)].expires_at == pytest.approx(
        (now + timedelta(seconds=10)).timestamp()
    )


def test_keyring_refuses_expired_and_unknown_keys_and_checks_the_allow_list() -> None:
    live, dead = keys.generate_secret(), keys.generate_secret()
    ring = KeyRing((), open_access=True)
    assert ring.open_access  # no keys at all on loopback: open
    ring.set_db_keys(
        identities(
            [
                _row(live, allowed_models=["gpt-4o*", "mock-*"]),
                KeyRow(
                    id="key_ffffffffffff",
                    team="ads",
                    prefix="x",
                    key_hash=hash_key(dead),
                    tags={},
                    created_at=datetime.now(UTC),
                    expires_at=datetime.fromtimestamp(time.time() - 1, UTC),
                ),
            ]
        )
    )
    assert not ring.open_access  # a database key closes open access
    who = ring.identify(live)
    assert (who.team, who.key_id, who.tags) == ("search", "key_0123456789ab", (("env", "prod"),))
    check_model(who, "gpt-4o-mini")
    check_model(who, "mock-gpt-4o")
    with pytest.raises(ModelNotAllowed) as exc:
        check_model(who, "o1")
    assert exc.value.status == 403
    with pytest.raises(Unauthorized, match="expired"):
        ring.identify(dead)
    with pytest.raises(Unauthorized):
        ring.identify(keys.generate_secret())
    # every database key revoked: still closed, or revoking the last key would open the proxy
    ring.set_db_keys({}, managed=True)
    assert not ring.open_access
    with pytest.raises(Unauthorized):
        ring.identify(live)
    ring.set_db_keys({})  # a database that never had a key
    assert ring.open_access
