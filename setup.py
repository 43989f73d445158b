"""Build hook: compiles the packed 1-bit engine's XNOR-popcount kernels (``bbcu.engine._bitops``).

The kernels are built for the baseline of the machine's architecture (no ``-march=native``, so the wheel
runs on any CPU of it); each SIMD path is compiled for its own instruction set inside its source file and
picked at run time. Every source is listed on every architecture: the x86 files compile to nothing on
aarch64 and the NEON file to nothing on x86. The same sources build ``libbbcu`` (runtime/Makefile).
"""

from pathlib import Path

import numpy
from setuptools import Extension, setup

CSRC = Path("src/bbcu/engine/csrc")
KERNELS = ("isa.c", "threads.c", "ceiling.c", "bilinear.c", "conv_float.c", "conv_portable.c", "conv_avx2.c", "conv_avx512.c", "conv_amx.c", "conv_neon.c")

bitops = Extension(
    "bbcu.engine._bitops",
    sources=[str(CSRC / name) for name in ("module.c", *KERNELS)],
    depends=[str(CSRC / name) for name in ("bitops.h", "epilogue.h", "epilogue_avx512.h", "amx_tiles.h")],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # No FMA contraction: every ISA path must round the float epilogue identically. No trapping math:
    # lets the compiler turn RPReLU's select into vector blends (nothing here reads FP exception flags).
    # Strict overflow: Python's own CFLAGS bring -fwrapv, under which GCC compiles the kernels' int index
    # arithmetic differently and the few-output float conv ran 15-20 % slower (benchmarks/kernels_session12.md);
    # the kernels overflow no signed int (runtime/Makefile builds them without -fwrapv and tests them
    # under UBSan).
    extra_compile_args=["-O3", "-std=c11", "-ffp-contract=off", "-fno-trapping-math", "-fstrict-overflow", "-pthread"],
    extra_link_args=["-pthread"],
)

setup(ext_modules=[bitops])
