from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import edgepack


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Issue targets are per core: edgepack and torch both at 1 thread."""
    old, old_t = edgepack.get_num_threads(), torch.get_num_threads()
    edgepack.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    edgepack.set_num_threads(old)
    torch.set_num_threads(old_t)
