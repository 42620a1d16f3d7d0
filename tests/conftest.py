"""Shared pytest fixtures. ``tests/`` is on sys.path (rootdir import mode, no __init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakeserver import FakeServer, Reply, Responder


@pytest.fixture(autouse=True)
def isolated_validation_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test starts with no dataset recorded as validated (`mtmcs.data.validated`), and
    never writes to the user's cache; subprocesses get it through the env."""
    monkeypatch.setenv("MTMCS_VALIDATION_CACHE", str(tmp_path_factory.mktemp("validated")))


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
