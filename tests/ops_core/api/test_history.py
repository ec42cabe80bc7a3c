"""A task's history stays bounded however often a client retries it by hand."""

from __future__ import annotations

import httpx

from ops_core.runtime import Runtime


async def test_manual_retries_stop_at_the_limit_with_a_409(client: httpx.AsyncClient, runtime: Runtime) -> None:
    # The finding: 300 retries of one task were all accepted, each adding an attempt to its history.
    task = (await client.post("/v1/tasks", json={"goal": "say hi"})).json()
    limit = runtime.settings.max_manual_retries
    answers = []
    for _ in range(limit + 5):
        await client.post(f"/v1/tasks/{task['id']}/cancel")
        answers.append(await client.post(f"/v1/tasks/{task['id']}/retry"))

    assert [a.status_code for a in answers[:limit]] == [202] * limit
    refused = answers[limit:]
    assert {a.status_code for a in refused} == {409}
    assert refused[0].json()["error"]["code"] == "retry_limit_reached"
    assert f"{limit} times" in refused[0].json()["error"]["message"]
    # The refused retries changed nothing: the task is still cancelled, with its history as it was.
    after = (await client.get(f"/v1/tasks/{task['id']}")).json()
    assert after["status"] == "cancelled"
