from __future__ import annotations

from collections.abc import Iterator

import pytest

import edgepack


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test at 1 and 2 pool threads; results must not depend on it."""
    old = edgepack.get_num_threads()
    edgepack.set_num_threads(request.param)
    yield request.param
    edgepack.set_num_threads(old)
