"""Signatures are the Standard Webhooks ones: the package's own verifier accepts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from standardwebhooks.webhooks import Webhook

from ops_core import signing

BODY = '{"id": "t1", "status": "completed"}'


def test_the_packages_verifier_accepts_our_signature() -> None:
    secret = signing.new_secret()
    headers = signing.sign([secret], "msg_1", datetime.now(UTC), BODY)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {"id": "t1", "status": "completed"}
    assert signing.verify(secret, BODY.encode(), headers)


def test_a_timestamp_in_another_zone_is_the_same_instant() -> None:
    secret = signing.new_secret()
    now = datetime.now(UTC)
    headers = signing.sign([secret], "msg_1", now.astimezone(timezone(timedelta(hours=5))), BODY)
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert signing.verify(secret, BODY, headers)


def test_tampering_and_other_secrets_fail() -> None:
    secret, other = signing.new_secret(), signing.new_secret()
    headers = signing.sign([secret], "msg_1", datetime.now(UTC), BODY)
    assert not signing.verify(other, BODY, headers)
    assert not signing.verify(secret, BODY.replace("completed", "failed"), headers)
    assert not signing.verify(secret, BODY, {**headers, "webhook-id": "msg_2"})


def test_an_old_timestamp_is_refused_as_a_replay() -> None:
    secret = signing.new_secret()
    headers = signing.sign([secret], "msg_1", datetime.now(UTC) - timedelta(minutes=10), BODY)
    assert not signing.verify(secret, BODY, headers)


def test_while_a_rotation_overlaps_both_secrets_verify() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.sign([new, old], "msg_1", datetime.now(UTC), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers) and Webhook(new).verify(BODY, headers)
