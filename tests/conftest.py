"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from bbcu.engine import kernels
from bbcu.engine.runtime import set_num_threads


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module on one thread (PyTorch and the binary kernels), then restore the previous counts.

    Small forward passes finish sooner on one thread than on several fighting over the machine's few
    shared cores. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    torch_threads, kernel_threads = torch.get_num_threads(), kernels.get_num_threads()
    set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    kernels.set_num_threads(kernel_threads)
