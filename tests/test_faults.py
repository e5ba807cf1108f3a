"""An unreachable store: callers get StoreUnavailable after a clear, bounded wait."""

from __future__ import annotations

import socket

import pytest

from durapod import Client, DurableAgent, StoreUnavailable
from durapod.stores.redis import RedisStore

pytestmark = pytest.mark.redis


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


async def agent(text: str) -> str:
    return text


async def test_status_and_start_raise_store_unavailable_after_store_timeout() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{closed_port()}/0")
    durable = DurableAgent(agent, store, store_timeout=0.3)
    with pytest.raises(StoreUnavailable) as info:  # after store_timeout, not never (the test timeout says so)
        await durable.status("job")
    assert "127.0.0.1" in str(info.value)
    with pytest.raises(StoreUnavailable):
        async with durable:  # a worker cannot start without its store
            pass
    await store.close()


async def test_a_client_on_an_unreachable_store_raises_store_unavailable() -> None:
    async with Client(RedisStore.from_url(f"redis://127.0.0.1:{closed_port()}/0")) as client:
        with pytest.raises(StoreUnavailable):
            await client.status("job")
