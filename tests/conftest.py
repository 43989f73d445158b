"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from bbcu.engine import kernels
from bbcu.engine.runtime import set_num_threads

ISA_REQUIREMENTS = {
    "portable": "nothing",
    "avx2": "AVX2",
    "avx512": "AVX-512 VPOPCNTDQ",
    "amx": "AMX-INT8 (granted by the OS) with AVX-512 BW and VPOPCNTDQ",
    "neon": "ARM NEON (on x86 the NEON kernels run under qemu-aarch64 in tests/test_runtime_c.py)",
}
"""Every kernel path the extension knows, with what the CPU needs to run it."""


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what the tests cache (the packed engine's per-machine path choices, ``bbcu.engine.onednn``)
    out of the user's ``~/.cache``, subprocesses included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


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


@pytest.fixture(params=list(ISA_REQUIREMENTS))
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each kernel path in turn, forced for the test and back to ``"auto"`` after it.

    A path this CPU cannot run is skipped with a reason that says so, rather than left out of the
    parametrisation, so a run on an AVX2-only machine reports the AVX-512 cases it did not check.
    """
    name = request.param
    if name not in kernels.available_isas():
        pytest.skip(f"CPU lacks {ISA_REQUIREMENTS[name]}")
    kernels.set_isa(name)
    yield name
    kernels.set_isa("auto")
