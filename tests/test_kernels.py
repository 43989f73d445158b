"""The compiled XNOR-popcount kernels against independent references, on every ISA this CPU runs.

The integer dot products are checked against a numpy +-1 convolution (einsum over zero-padded taps) and
a closed form, the fused float epilogue against PyTorch's float64 conv2d and a float32 numpy evaluation
in the same order, the bit packing against ``numpy.packbits``; the paths against each other bit for
bit. The AVX-512 source is also checked where AVX-512 is missing, through plain-C stand-ins for its
intrinsics (last test).
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.engine import kernels

ISAS = kernels.available_isas()
ALL_ISA_NAMES = ("portable", "avx2", "avx512")

# (H, W, C, O): 1x1 images, widths that are not a multiple of 8, C around word boundaries, O that is
# not a multiple of the SIMD blocks, and C = 260 (45 words per output: the byte counters must flush).
SHAPES = [
    (1, 1, 1, 1),
    (1, 1, 64, 5),
    (1, 7, 3, 64),
    (5, 1, 63, 5),
    (4, 9, 64, 64),
    (6, 13, 65, 5),
    (3, 11, 130, 64),
    (7, 5, 130, 1),
    (6, 10, 33, 37),
    (3, 4, 260, 6),
]


@pytest.fixture(autouse=True)
def restore_settings() -> Iterator[None]:
    """Tests force ISAs and thread counts; put the defaults back after each one."""
    threads = kernels.get_num_threads()
    yield
    kernels.set_isa("auto")
    kernels.set_num_threads(threads)


def signs(v: np.ndarray) -> np.ndarray:
    """+1 where v >= 0 else -1 (the engine's sign(0) = +1), as int64."""
    return np.where(v >= 0, 1, -1).astype(np.int64)


def numpy_binary_conv(x: np.ndarray, shift: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact dot products of sign(x + shift) with sign(w), zero padding, one einsum per tap."""
    height, width, _ = x.shape
    padded = np.zeros((height + 2, width + 2, x.shape[2]), np.int64)
    padded[1:-1, 1:-1] = signs(x + shift)
    w_signs = signs(w)
    dot = np.zeros((height, width, w.shape[0]), np.int64)
    for ky in range(3):
        for kx in range(3):
            dot += np.einsum("hwc,oc->hwo", padded[ky : ky + height, kx : kx + width], w_signs[:, :, ky, kx])
    return dot


def in_image_offsets(n: int) -> np.ndarray:
    """How many of the offsets -1, 0, +1 stay inside an axis of length n, for each position."""
    position = np.arange(n)
    return 1 + (position > 0) + (position < n - 1)


def numpy_pack(bits: np.ndarray) -> np.ndarray:
    """Packs a boolean (..., N) array little-endian into uint64 words (bit i of word j = channel 64j+i)."""
    words = -(-bits.shape[-1] // 64)
    padded = np.zeros((*bits.shape[:-1], words * 64), np.uint8)
    padded[..., : bits.shape[-1]] = bits
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def random_layer(rng: np.random.Generator, height: int, width: int, c: int, o: int) -> dict[str, np.ndarray]:
    """A binary layer's float inputs with BBCU-like magnitudes (features in the k=130 range)."""
    return {
        "x": (rng.standard_normal((height, width, c)) * 50).astype(np.float32),
        "shift": (rng.standard_normal(c) * 5).astype(np.float32),
        "w": (rng.standard_normal((o, c, 3, 3)) * 0.05).astype(np.float32),
        "scale": rng.uniform(0.01, 0.1, o).astype(np.float32),
        "bias": rng.standard_normal(o).astype(np.float32),
        "gamma": rng.standard_normal(o).astype(np.float32),
        "beta": rng.uniform(0.1, 0.4, o).astype(np.float32),
        "zeta": rng.standard_normal(o).astype(np.float32),
        "residual": (rng.standard_normal((height, width, o)) * 50).astype(np.float32),
        "next_shift": (rng.standard_normal(o) * 5).astype(np.float32),
    }


def run_fused(layer: dict[str, np.ndarray], **overrides: object) -> tuple[np.ndarray, np.ndarray | None]:
    """The full epilogue (bias, RPReLU, residual, next packing) on one layer."""
    c = layer["x"].shape[2]
    xp = kernels.pack_activations(layer["x"], layer["shift"])
    wp = kernels.pack_weights(layer["w"])
    options = {
        "scale": layer["scale"],
        "bias": layer["bias"],
        "rprelu": (layer["gamma"], layer["beta"], layer["zeta"]),
        "residual": layer["residual"],
        "next_shift": layer["next_shift"],
    }
    options.update(overrides)
    return kernels.binary_conv3x3(xp, wp, c, **options)


def test_channel_words() -> None:
    assert [kernels.channel_words(c) for c in (1, 63, 64, 65, 128, 130)] == [1, 1, 1, 2, 2, 3]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("height", "width", "c", "o"), SHAPES)
def test_raw_dot_products_equal_numpy(isa: str, height: int, width: int, c: int, o: int) -> None:
    rng = np.random.default_rng(height * 1000 + width * 100 + c + o)
    layer = random_layer(rng, height, width, c, o)
    kernels.set_isa(isa)
    xp = kernels.pack_activations(layer["x"], layer["shift"])
    dot = kernels.binary_conv3x3_raw(xp, kernels.pack_weights(layer["w"]), c)
    assert dot.dtype == np.int32 and dot.shape == (height, width, o)
    np.testing.assert_array_equal(dot, numpy_binary_conv(layer["x"], layer["shift"], layer["w"]))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", [64, 260, 2000])
def test_all_bits_differing_gives_the_closed_form(isa: str, c: int) -> None:
    """x = +1 and w = -1 everywhere: every bit counts (the worst case for the byte counters), and
    dot = -C * (number of in-image taps), i.e. -9C inside, -6C on edges, -4C in corners."""
    kernels.set_isa(isa)
    xp = kernels.pack_activations(np.ones((4, 5, c), np.float32), np.zeros(c, np.float32))
    wp = kernels.pack_weights(-np.ones((3, c, 3, 3), np.float32))
    valid = np.outer(in_image_offsets(4), in_image_offsets(5))
    expected = np.repeat((-c * valid)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(kernels.binary_conv3x3_raw(xp, wp, c), expected)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("height", "width", "c", "o"), [(1, 1, 3, 5), (6, 13, 65, 5), (5, 9, 64, 64)])
def test_fused_epilogue_equals_torch_float64(isa: str, height: int, width: int, c: int, o: int) -> None:
    rng = np.random.default_rng(7)
    layer = random_layer(rng, height, width, c, o)
    kernels.set_isa(isa)
    y, next_bits = run_fused(layer)

    as64 = {k: torch.from_numpy(v.astype(np.float64)) for k, v in layer.items()}
    u = torch.where(as64["x"] + as64["shift"] >= 0, 1.0, -1.0).permute(2, 0, 1)[None]
    w = torch.where(as64["w"] >= 0, 1.0, -1.0)
    dot = torch.nn.functional.conv2d(u, w, padding=1)[0].permute(1, 2, 0)
    t = as64["scale"] * dot + as64["bias"] + as64["gamma"]
    ref = torch.where(t >= 0, t, as64["beta"] * t) + as64["zeta"] + as64["residual"]

    # float32 rounding of alpha*dot (up to ~50) and of the residual (~150) dominates the error.
    magnitude = (as64["scale"] * dot).abs() + as64["residual"].abs() + 1
    np.testing.assert_array_less(np.abs(y - ref.numpy()), 1e-6 * magnitude.numpy())
    # Where y + next_shift is clear of 0 by more than rounding, the packed sign must follow it.
    decided = np.abs(ref.numpy() + layer["next_shift"]) > 1e-5 * magnitude.numpy()
    assert decided.mean() > 0.99
    unpacked = np.unpackbits(next_bits.view(np.uint8), axis=-1, bitorder="little")[..., :o].astype(bool)
    np.testing.assert_array_equal(unpacked[decided], (ref.numpy() + layer["next_shift"] >= 0)[decided])


@pytest.mark.parametrize("isa", ISAS)
def test_fused_epilogue_is_exactly_float32_in_documented_order(isa: str) -> None:
    """Same float32 operations in the same order (no FMA) as numpy: equal bit for bit, next bits too."""
    rng = np.random.default_rng(11)
    layer = random_layer(rng, 6, 7, 70, 67)
    kernels.set_isa(isa)
    y, next_bits = run_fused(layer)
    dot = numpy_binary_conv(layer["x"], layer["shift"], layer["w"]).astype(np.float32)
    t = layer["scale"] * dot + layer["bias"] + layer["gamma"]
    ref = np.where(t >= 0, t, layer["beta"] * t) + layer["zeta"] + layer["residual"]
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(next_bits, numpy_pack(ref + layer["next_shift"] >= 0))


@pytest.mark.parametrize("isa", ISAS)
def test_epilogue_options_are_independent(isa: str) -> None:
    """Scale alone, and scale + bias (a DnCNN-3 conv), without RPReLU, residual or next packing."""
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 4, 5, 64, 9)
    kernels.set_isa(isa)
    dot = numpy_binary_conv(layer["x"], layer["shift"], layer["w"]).astype(np.float32)
    y, next_bits = run_fused(layer, bias=None, rprelu=None, residual=None, next_shift=None)
    assert next_bits is None
    np.testing.assert_array_equal(y, layer["scale"] * dot)
    y, _ = run_fused(layer, rprelu=None, residual=None, next_shift=None)
    np.testing.assert_array_equal(y, layer["scale"] * dot + layer["bias"])


@pytest.mark.parametrize("isa", ISAS)
def test_out_may_be_the_residual(isa: str) -> None:
    rng = np.random.default_rng(5)
    layer = random_layer(rng, 5, 6, 64, 64)
    kernels.set_isa(isa)
    expected, _ = run_fused(layer)
    in_place = layer["residual"].copy()
    y, _ = run_fused(layer, residual=in_place, out=in_place)
    assert y is in_place
    np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("isa", ISAS)
def test_packing_follows_the_sign_convention(isa: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 130)).astype(np.float32)
    shift = rng.standard_normal(130).astype(np.float32)
    x[0, 0, :10] = -shift[:10]  # exactly 0 after the shift: sign(0) = +1
    x[0, 1, :10] = np.nextafter(-shift[:10], np.float32(-np.inf))  # just below 0
    kernels.set_isa(isa)
    packed = kernels.pack_activations(x, shift)
    assert packed.dtype == np.uint64 and packed.shape == (3, 4, 3)
    np.testing.assert_array_equal(packed, numpy_pack(x + shift >= 0))
    assert (packed[0, 0, 0] & 0x3FF) == 0x3FF and (packed[0, 1, 0] & 0x3FF) == 0
    assert np.all(packed[..., 2] >> np.uint64(2) == 0), "bits past channel 130 must be 0"


def test_weight_packing_follows_the_sign_convention() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 65, 3, 3)).astype(np.float32)
    w[0, 0] = 0.0
    packed = kernels.pack_weights(w)
    assert packed.dtype == np.uint64 and packed.shape == (5, 3, 3, 2)
    np.testing.assert_array_equal(packed, numpy_pack(w.transpose(0, 2, 3, 1) >= 0))
    assert np.all(packed[0, :, :, 0] & np.uint64(1) == 1)
    assert np.all(packed[..., 1] >> np.uint64(1) == 0)


def test_isas_agree_bit_for_bit() -> None:
    rng = np.random.default_rng(9)
    layer = random_layer(rng, 17, 23, 130, 70)
    results = {}
    for isa in ISAS:
        kernels.set_isa(isa)
        xp = kernels.pack_activations(layer["x"], layer["shift"])
        raw = kernels.binary_conv3x3_raw(xp, kernels.pack_weights(layer["w"]), 130)
        results[isa] = (xp, raw, *run_fused(layer))
    for isa in ISAS:
        for got, want in zip(results[isa], results["portable"], strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa", ISAS)
def test_threads_equal_single_thread(isa: str) -> None:
    rng = np.random.default_rng(4)
    layer = random_layer(rng, 37, 41, 64, 64)  # enough work that the rows are split
    kernels.set_isa(isa)
    kernels.set_num_threads(1)
    single = run_fused(layer)
    kernels.set_num_threads(3)
    assert kernels.get_num_threads() == 3
    for got, want in zip(run_fused(layer), single, strict=True):
        np.testing.assert_array_equal(got, want)


def test_set_isa_accepts_exactly_the_available_paths() -> None:
    assert "portable" in ISAS
    for name in ALL_ISA_NAMES:
        if name in ISAS:
            kernels.set_isa(name)
            assert kernels.get_isa() == name
        else:
            with pytest.raises(RuntimeError, match=f"cannot run the '{name}' kernels"):
                kernels.set_isa(name)
    kernels.set_isa("auto")
    assert kernels.get_isa() == ISAS[-1]
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        kernels.set_isa("sse9")
    with pytest.raises(ValueError, match="at least 1 thread"):
        kernels.set_num_threads(0)


def bad_call_cases() -> list[tuple[str, object, str]]:
    """(id, call, message pattern) for inputs a caller can get wrong."""
    x = np.zeros((4, 5, 64), np.float32)
    shift = np.zeros(64, np.float32)
    xp = kernels.pack_activations(x, shift)
    wp = kernels.pack_weights(np.zeros((8, 64, 3, 3), np.float32))
    scale = np.ones(8, np.float32)
    full_word = np.full((4, 5, 1), np.uint64(2**63), np.uint64)
    read_only = np.zeros((4, 5, 8), np.float32)
    read_only.flags.writeable = False
    shifted = np.zeros(4 * 5 * 8 + 8, np.float32)
    overlapping = (shifted[8:].reshape(4, 5, 8), shifted[:-8].reshape(4, 5, 8))
    return [
        (
            "float64 x",
            lambda: kernels.pack_activations(x.astype(np.float64), shift),
            "x must have dtype float32",
        ),
        ("shift size", lambda: kernels.pack_activations(x, shift[:3]), r"shift must have shape \(C,\)"),
        (
            "weights not 3x3",
            lambda: kernels.pack_weights(np.zeros((8, 64, 5, 5), np.float32)),
            r"\(O, C, 3, 3\)",
        ),
        (
            "xp dtype",
            lambda: kernels.binary_conv3x3_raw(xp.view(np.int64), wp, 64),
            "xp must have dtype uint64",
        ),
        ("xp strided", lambda: kernels.binary_conv3x3_raw(xp[:, ::2], wp, 64), "xp must be C-contiguous"),
        (
            "not an array",
            lambda: kernels.binary_conv3x3_raw(xp.tolist(), wp, 64),
            "xp must be a numpy uint64",
        ),
        ("channels vs words", lambda: kernels.binary_conv3x3_raw(xp, wp, 65), "channels=65 needs 2 words"),
        ("padding bits", lambda: kernels.binary_conv3x3_raw(full_word, wp, 63), "bits set past channel 63"),
        ("no channels", lambda: kernels.binary_conv3x3_raw(xp, wp, 0), "channels must be at least 1"),
        (
            "scale shape",
            lambda: kernels.binary_conv3x3(xp, wp, 64, scale=scale[:4]),
            r"scale must have shape \(O,\)",
        ),
        (
            "residual shape",
            lambda: kernels.binary_conv3x3(xp, wp, 64, scale=scale, residual=np.zeros((4, 5, 9), np.float32)),
            r"residual must have shape \(H, W, O\)",
        ),
        (
            "read-only out",
            lambda: kernels.binary_conv3x3(xp, wp, 64, scale=scale, out=read_only),
            "out must be writeable",
        ),
        (
            "out overlaps residual",
            lambda: kernels.binary_conv3x3(
                xp, wp, 64, scale=scale, out=overlapping[0], residual=overlapping[1]
            ),
            "out must be the residual array itself or not overlap it",
        ),
    ]


@pytest.mark.parametrize(("case", "call", "message"), bad_call_cases(), ids=[c[0] for c in bad_call_cases()])
def test_bad_inputs_raise_clear_value_errors(case: str, call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


CSRC = Path(kernels.__file__).parent / "csrc"

# Plain-C stand-ins for the AVX-512 intrinsics conv_avx512.c uses, so that its logic (indexing, masks,
# blocking, epilogue) is checked on CPUs without AVX-512 too.
AVX512_STANDINS = r"""
#include <stdint.h>
#include <string.h>
typedef struct { uint64_t v[8]; } __m512i;
typedef struct { float v[16]; } __m512;
typedef struct { int32_t v[8]; } __m256i;
typedef uint16_t __mmask16;
#define _CMP_GE_OQ 13
#define LANES8(body) for (int i = 0; i < 8; i++) body
static inline __m512i _mm512_setzero_si512(void) { __m512i r = {{0}}; return r; }
static inline __m512i _mm512_set1_epi64(long long x) { __m512i r; LANES8(r.v[i] = (uint64_t)x;) return r; }
static inline __m512i _mm512_loadu_si512(const void *p) { __m512i r; memcpy(&r, p, 64); return r; }
static inline __m512i _mm512_add_epi64(__m512i a, __m512i b) { LANES8(a.v[i] += b.v[i];) return a; }
static inline __m512i _mm512_xor_si512(__m512i a, __m512i b) { LANES8(a.v[i] ^= b.v[i];) return a; }
static inline __m512i _mm512_popcnt_epi64(__m512i a) {
    LANES8(a.v[i] = __builtin_popcountll(a.v[i]);) return a; }
static inline __m256i _mm512_cvtepi64_epi32(__m512i a) {
    __m256i r; LANES8(r.v[i] = (int32_t)a.v[i];) return r; }
static inline void _mm256_storeu_si256(__m256i *p, __m256i a) { memcpy(p, &a, 32); }
static inline __m512 _mm512_setzero_ps(void) { __m512 r = {{0}}; return r; }
static inline __m512 _mm512_add_ps(__m512 a, __m512 b) {
    for (int i = 0; i < 16; i++) a.v[i] += b.v[i]; return a; }
static inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const float *p) {
    __m512 r; for (int i = 0; i < 16; i++) r.v[i] = (k >> i) & 1 ? p[i] : 0.0f; return r; }
static inline __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, int op) {
    __mmask16 m = 0; (void)op;
    for (int i = 0; i < 16; i++) m |= (__mmask16)((a.v[i] >= b.v[i]) << i); return m; }
"""

# Runs the AVX-512 and portable row kernels on random layers and counts differing outputs.
AVX512_CHECK = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bitops.h"
static uint64_t state = 88172645463325252ull;
static uint64_t next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
static float uniform(void) { return (float)((double)(next() >> 11) / 9007199254740992.0 * 2 - 1); }
static void run(int lanes, ConvRowsFn rows, ConvArgs a) {
    const int words = 9 * a.channel_words;
    a.o_lanes = (a.out_channels + lanes - 1) / lanes * lanes;
    uint64_t *wl = calloc((size_t)words * a.o_lanes, 8);
    for (int o = 0; o < a.out_channels; o++)
        for (int t = 0; t < words; t++) wl[(size_t)t * a.o_lanes + o] = a.w[(size_t)o * words + t];
    a.wl = wl;
    RowScratch s = {malloc(4 * (size_t)a.o_lanes), malloc(4 * a.out_channels), NULL};
    rows(&a, 0, a.height, &s);
    free(s.count); free(s.values); free(wl);
}
int main(void) {
    int mismatches = 0;
    for (int trial = 0; trial < 200; trial++) {
        const int h = 1 + next() % 7, w = 1 + next() % 9, c = 1 + next() % 300, o = 1 + next() % 150;
        const int cw = (c + 63) / 64, ow = (o + 63) / 64;
        const size_t n = (size_t)h * w * o;
        uint64_t *x = calloc((size_t)h * w * cw, 8), *wt = calloc((size_t)o * 9 * cw, 8);
        for (int i = 0; i < h * w; i++)
            for (int k = 0; k < c; k++) x[i * cw + k / 64] |= (next() & 1) << (k % 64);
        for (int i = 0; i < o * 9; i++)
            for (int k = 0; k < c; k++) wt[i * cw + k / 64] |= (next() & 1) << (k % 64);
        float *p[7];
        for (int k = 0; k < 7; k++) {
            p[k] = malloc(4 * n);
            for (size_t i = 0; i < n; i++) p[k][i] = 100 * uniform();
        }
        ConvArgs a = {0};
        a.x = x; a.w = wt; a.height = h; a.width = w;
        a.channels = c; a.channel_words = cw; a.out_channels = o;
        int32_t *raw[2] = {malloc(4 * n), malloc(4 * n)};
        float *y[2] = {malloc(4 * n), malloc(4 * n)};
        uint64_t *bits[2] = {malloc(8 * (size_t)h * w * ow), malloc(8 * (size_t)h * w * ow)};
        for (int path = 0; path < 2; path++) {
            ConvRowsFn rows = path ? bbcu_conv_rows_avx512 : bbcu_conv_rows_portable;
            ConvArgs r = a, f = a;
            r.raw = raw[path];
            run(path ? 8 : 1, rows, r);
            f.scale = p[0]; f.bias = trial & 1 ? p[1] : NULL; f.residual = trial & 4 ? p[6] : NULL;
            if (trial & 2) { f.gamma = p[2]; f.beta = p[3]; f.zeta = p[4]; }
            f.next_shift = p[5]; f.y = y[path]; f.next_bits = bits[path];
            run(path ? 8 : 1, rows, f);
        }
        uint64_t packed[2][5];
        bbcu_pack_signs_portable(p[6], p[5], o, packed[0]);
        bbcu_pack_signs_avx512(p[6], p[5], o, packed[1]);
        mismatches += memcmp(raw[0], raw[1], 4 * n) != 0;
        mismatches += memcmp(y[0], y[1], 4 * n) != 0;
        mismatches += memcmp(bits[0], bits[1], 8 * (size_t)h * w * ow) != 0;
        mismatches += memcmp(packed[0], packed[1], 8 * (size_t)ow) != 0;
    }
    printf("mismatches %d\n", mismatches);
    return 0;
}
"""


def test_avx512_logic_with_standin_intrinsics(tmp_path: Path) -> None:
    """The AVX-512 path cannot run on AVX2-only CPUs; compile its source against plain-C stand-ins
    for the intrinsics it uses and check it against the portable path, bit for bit (raw, fused, packing).
    The ``asm`` register barrier (no effect on results) and the target pragmas are left out, so the
    compiler cannot emit AVX-512 instructions of its own."""
    (tmp_path / "immintrin.h").write_text(AVX512_STANDINS)
    source = (CSRC / "conv_avx512.c").read_text()
    (tmp_path / "conv_avx512.c").write_text(
        re.sub(r".*(__asm__|#pragma GCC target|#pragma clang attribute).*\n", "", source)
    )
    (tmp_path / "check.c").write_text(AVX512_CHECK)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    build = [
        *compiler, "-O1", "-std=c11", "-ffp-contract=off", f"-I{tmp_path}", f"-I{CSRC}", "-o",
        str(tmp_path / "check"), str(tmp_path / "check.c"), str(tmp_path / "conv_avx512.c"),
        str(CSRC / "conv_portable.c"),
    ]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True)
    result = subprocess.run([str(tmp_path / "check")], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "mismatches 0"
