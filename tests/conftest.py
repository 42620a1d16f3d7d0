"""Shared pytest fixtures. ``tests/`` is on sys.path (rootdir import mode, no __init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakeserver import FakeServer, Reply, Responder


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Factory: ``server = fake_server(responder, latency=0.0)``; stopped at teardown."""
    servers: list[FakeServer] = []

    def start(
        responder: Responder | str | Reply, latency: float = 0.0, **kwargs: Any
    ) -> FakeServer:
        server = FakeServer(responder, latency=latency, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()
