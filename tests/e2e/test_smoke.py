from __future__ import annotations

from tests.conftest import Running


async def test_binary_event_round_trips(server: Running) -> None:
    headers = {
        **server.admin,
        "ce-specversion": "1.0",
        "ce-id": "a-1",
        "ce-source": "/orders",
        "ce-type": "order.created",
        "content-type": "application/json",
    }
    response = await server.post("/events", data=b'{"total": 10}', headers=headers)
    assert response.status == 200
    (entry,) = await server.log()
    assert entry["offset"] == 1
    assert entry["event"]["data"] == {"total": 10}
    assert entry["event"]["source"] == "/orders"
