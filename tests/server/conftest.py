from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.live import ServeProcess


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One `vrcap serve` per test module, on its own root and port; stopped with SIGTERM at the end."""
    with ServeProcess(tmp_path_factory.mktemp("serve-root")) as server:
        yield server
