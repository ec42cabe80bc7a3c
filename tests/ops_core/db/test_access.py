"""API keys and tenants' quotas in the store, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ops_core.db.access import AccessStore
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.errors import KeyNotFound
from ops_core.keys import PREFIX, Scope, hash_secret, key_id_of, secret_matches
from ops_core.tenancy import EVERY_TENANT


@pytest.fixture
def access(store: TaskStore) -> AccessStore:
    return AccessStore(store.engine)


async def test_a_key_is_stored_as_a_hash_and_shown_once(access: AccessStore) -> None:
    key, secret = await access.create_key(tenant="a", scopes=[Scope.TASKS_READ], name="ci")

    assert secret.startswith(PREFIX) and key_id_of(secret) == key.id
    assert len(secret) > 60
    stored = await access.stored_key(key.id)
    assert stored is not None
    assert stored.secret_hash == hash_secret(secret) and secret not in stored.secret_hash
    assert secret_matches(secret, stored.secret_hash)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored.secret_hash)
    assert (key.tenant, key.name, key.scopes) == ("a", "ci", ["tasks:read"])
    assert "secret" not in repr(await access.list_keys(tenant="a")).lower().replace("secret_hash", "")


async def test_keys_are_listed_per_tenant_and_revoked_once(access: AccessStore) -> None:
    a, _ = await access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    b, _ = await access.create_key(tenant="b", scopes=[Scope.ADMIN])

    assert [k.id for k in await access.list_keys(tenant="a")] == [a.id]
    assert {k.id for k in await access.list_keys(tenant=EVERY_TENANT)} == {a.id, b.id}
    with pytest.raises(KeyNotFound):
        await access.revoke_key(b.id, tenant="a")

    revoked = await access.revoke_key(a.id, tenant=EVERY_TENANT)
    again = await access.revoke_key(a.id, tenant=EVERY_TENANT)
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    assert not revoked.usable(utcnow())
    with pytest.raises(KeyNotFound):
        await access.revoke_key("0" * 16, tenant=EVERY_TENANT)


async def test_an_expired_key_is_not_usable(access: AccessStore) -> None:
    key, _ = await access.create_key(tenant="a", scopes=[Scope.TASKS_READ], expires_at=utcnow() + timedelta(days=1))
    assert key.usable(utcnow())
    assert not key.usable(utcnow() + timedelta(days=2))


async def test_last_use_is_recorded_to_the_minute(access: AccessStore) -> None:
    key, _ = await access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    first = utcnow()
    await access.touch(key.id, first)
    await access.touch(key.id, first + timedelta(seconds=10))
    stored = await access.stored_key(key.id)
    assert stored is not None and stored.key.last_used_at == first
    await access.touch(key.id, first + timedelta(minutes=2))
    stored = await access.stored_key(key.id)
    assert stored is not None and stored.key.last_used_at == first + timedelta(minutes=2)


async def test_quotas_are_set_field_by_field(access: AccessStore) -> None:
    assert (await access.quotas("a")).max_running is None
    await access.set_quotas("a", {"max_running": 3, "daily_token_budget": 1000})
    await access.set_quotas("a", {"max_running": None, "submissions_per_second": 2.5})

    quotas = await access.quotas("a")
    assert (quotas.max_running, quotas.daily_token_budget, quotas.submissions_per_second) == (None, 1000, 2.5)
    assert [q.tenant for q in await access.list_tenants()] == ["a"]
    with pytest.raises(ValueError, match="not quotas"):
        await access.set_quotas("a", {"tat": None})


async def test_the_submission_rate_allows_a_burst_then_spaces_submissions(access: AccessStore) -> None:
    now = utcnow()
    assert [await access.take_submission("a", 2.0, burst=2, now=now) for _ in range(2)] == [0.0, 0.0]
    wait = await access.take_submission("a", 2.0, burst=2, now=now)
    assert 0 < wait <= 0.5
    assert await access.take_submission("a", 2.0, burst=2, now=now + timedelta(seconds=wait)) == 0.0
    # Another tenant has its own allowance.
    assert await access.take_submission("b", 2.0, burst=2, now=now) == 0.0
