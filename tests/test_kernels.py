"""The compiled XNOR-popcount kernels against independent references, on every ISA.

The integer dot products are checked against a numpy +-1 convolution (einsum over zero-padded taps) and
a closed form, the fused float epilogue against PyTorch's float64 conv2d and a float32 numpy evaluation
in the same order, the bit packing against ``numpy.packbits``; the paths against each other bit for
bit. Tests taking the ``isa`` fixture run once per path and are reported as skipped, with the reason,
for a path this CPU lacks. The SIMD sources (AVX2 and AVX-512) are also checked where their instructions
are missing, through plain-C stand-ins for their intrinsics (``standin_intrinsics.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.engine import kernels
from conftest import ISA_REQUIREMENTS
from standin_intrinsics import run_with_standins

ISAS = kernels.available_isas()

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


@pytest.mark.parametrize(("height", "width", "c", "o"), SHAPES)
def test_raw_dot_products_equal_numpy(isa: str, height: int, width: int, c: int, o: int) -> None:
    rng = np.random.default_rng(height * 1000 + width * 100 + c + o)
    layer = random_layer(rng, height, width, c, o)
    xp = kernels.pack_activations(layer["x"], layer["shift"])
    dot = kernels.binary_conv3x3_raw(xp, kernels.pack_weights(layer["w"]), c)
    assert dot.dtype == np.int32 and dot.shape == (height, width, o)
    np.testing.assert_array_equal(dot, numpy_binary_conv(layer["x"], layer["shift"], layer["w"]))


@pytest.mark.parametrize("c", [64, 260, 2000])
def test_all_bits_differing_gives_the_closed_form(isa: str, c: int) -> None:
    """x = +1 and w = -1 everywhere: every bit counts (the worst case for the byte counters), and
    dot = -C * (number of in-image taps), i.e. -9C inside, -6C on edges, -4C in corners."""
    xp = kernels.pack_activations(np.ones((4, 5, c), np.float32), np.zeros(c, np.float32))
    wp = kernels.pack_weights(-np.ones((3, c, 3, 3), np.float32))
    valid = np.outer(in_image_offsets(4), in_image_offsets(5))
    expected = np.repeat((-c * valid)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(kernels.binary_conv3x3_raw(xp, wp, c), expected)


@pytest.mark.parametrize(("height", "width", "c", "o"), [(1, 1, 3, 5), (6, 13, 65, 5), (5, 9, 64, 64)])
def test_fused_epilogue_equals_torch_float64(isa: str, height: int, width: int, c: int, o: int) -> None:
    rng = np.random.default_rng(7)
    layer = random_layer(rng, height, width, c, o)
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


def test_fused_epilogue_is_exactly_float32_in_documented_order(isa: str) -> None:
    """Same float32 operations in the same order (no FMA) as numpy: equal bit for bit, next bits too."""
    rng = np.random.default_rng(11)
    layer = random_layer(rng, 6, 7, 70, 67)
    y, next_bits = run_fused(layer)
    dot = numpy_binary_conv(layer["x"], layer["shift"], layer["w"]).astype(np.float32)
    t = layer["scale"] * dot + layer["bias"] + layer["gamma"]
    ref = np.where(t >= 0, t, layer["beta"] * t) + layer["zeta"] + layer["residual"]
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(next_bits, numpy_pack(ref + layer["next_shift"] >= 0))


def test_epilogue_options_are_independent(isa: str) -> None:
    """Scale alone, and scale + bias (a DnCNN-3 conv), without RPReLU, residual or next packing."""
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 4, 5, 64, 9)
    dot = numpy_binary_conv(layer["x"], layer["shift"], layer["w"]).astype(np.float32)
    y, next_bits = run_fused(layer, bias=None, rprelu=None, residual=None, next_shift=None)
    assert next_bits is None
    np.testing.assert_array_equal(y, layer["scale"] * dot)
    y, _ = run_fused(layer, rprelu=None, residual=None, next_shift=None)
    np.testing.assert_array_equal(y, layer["scale"] * dot + layer["bias"])


def test_out_may_be_the_residual(isa: str) -> None:
    rng = np.random.default_rng(5)
    layer = random_layer(rng, 5, 6, 64, 64)
    expected, _ = run_fused(layer)
    in_place = layer["residual"].copy()
    y, _ = run_fused(layer, residual=in_place, out=in_place)
    assert y is in_place
    np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize(
    ("height", "width", "c", "o", "s"), [(5, 7, 64, 256, 2), (4, 6, 33, 18, 3), (1, 1, 64, 128, 2)]
)
def test_fused_shuffle_equals_conv_then_pixel_shuffle(
    isa: str, height: int, width: int, c: int, o: int, s: int
) -> None:
    """shuffle=s gives what the unshuffled conv followed by PyTorch's PixelShuffle and a
    nearest-neighbour residual gives, bit for bit, next bits included (64-channel groups take the
    AVX-512 register path, the others the shared one)."""
    rng = np.random.default_rng(8)
    layer = random_layer(rng, height, width, c, o)
    group = o // (s * s)
    skip = layer["residual"][..., :group].copy()
    plain, _ = run_fused(layer, residual=None, next_shift=None)
    tiled_shift = np.tile(layer["next_shift"][:group], s * s)
    y, next_bits = run_fused(layer, residual=skip, next_shift=tiled_shift, shuffle=s)

    # PixelShuffle reads channel c*s^2 + r for sub-pixel r; the kernel reads r*group + c: reorder.
    by_subpixel = torch.from_numpy(plain).reshape(height, width, s * s, group).permute(0, 1, 3, 2)
    shuffled = torch.nn.functional.pixel_shuffle(by_subpixel.reshape(height, width, o).permute(2, 0, 1), s)
    expected = shuffled.permute(1, 2, 0).numpy() + np.repeat(np.repeat(skip, s, axis=0), s, axis=1)
    assert y.shape == (s * height, s * width, group)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(next_bits, numpy_pack(expected + layer["next_shift"][:group] >= 0))


@pytest.mark.parametrize(
    ("height", "width", "c", "o"),
    [
        (7, 13, 64, 3),
        (6, 11, 32, 1),
        (5, 4, 20, 1),
        (1, 1, 64, 3),
        (4, 9, 48, 5),
        (5, 21, 64, 3),
        (4, 19, 32, 1),
        (1, 30, 64, 3),
        (3, 12, 16, 2),
    ],
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_float_conv_equals_torch_and_is_the_same_on_every_isa(
    isa: str, height: int, width: int, c: int, o: int, with_bias: bool
) -> None:
    """The few-output float conv: PyTorch's conv to float rounding, and (fixed order of the sums)
    the portable path's result bit for bit, whatever blocking the ISA path uses. The widths give
    whole blocks plus an overlapping last one (8 pixels on AVX-512, 6 on AVX2, 4 portable), the
    single row has its taps above and below out of the image, and 2 outputs get no blocks."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((height, width, c)).astype(np.float32)
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32) if with_bias else None
    y = kernels.float_conv3x3(x, kernels.float_conv_weight(w), bias)
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(x).permute(2, 0, 1)[None],
        torch.from_numpy(w),
        None if bias is None else torch.from_numpy(bias),
        padding=1,
    )[0].permute(1, 2, 0)
    np.testing.assert_allclose(y, reference.numpy(), rtol=0, atol=2e-5 * np.sqrt(9 * c))
    kernels.set_isa("portable")
    np.testing.assert_array_equal(y, kernels.float_conv3x3(x, kernels.float_conv_weight(w), bias))


def test_float_conv_refuses_a_weight_of_another_width() -> None:
    x = np.zeros((4, 5, 64), np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(O, 9, C\)"):
        kernels.float_conv3x3(x, np.zeros((3, 9, 32), np.float32))


def test_fused_leaky_relu_is_applied_last_and_packed(isa: str) -> None:
    """``leaky=slope``: PyTorch's LeakyReLU on the unit's output (after the residual), bit for bit, and
    the next signs are those of the activated values."""
    rng = np.random.default_rng(6)
    layer = random_layer(rng, 5, 9, 64, 64)
    plain, _ = run_fused(layer, next_shift=None)
    y, next_bits = run_fused(layer, leaky=0.2)
    expected = torch.nn.functional.leaky_relu(torch.from_numpy(plain), 0.2).numpy()
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(next_bits, numpy_pack(expected + layer["next_shift"] >= 0))


def test_packing_follows_the_sign_convention(isa: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 130)).astype(np.float32)
    shift = rng.standard_normal(130).astype(np.float32)
    x[0, 0, :10] = -shift[:10]  # exactly 0 after the shift: sign(0) = +1
    x[0, 1, :10] = np.nextafter(-shift[:10], np.float32(-np.inf))  # just below 0
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


def test_isas_agree_bit_for_bit(isa: str) -> None:
    layer = random_layer(np.random.default_rng(9), 17, 23, 130, 70)

    def outputs() -> tuple[np.ndarray, ...]:
        xp = kernels.pack_activations(layer["x"], layer["shift"])
        return xp, kernels.binary_conv3x3_raw(xp, kernels.pack_weights(layer["w"]), 130), *run_fused(layer)

    got = outputs()
    kernels.set_isa("portable")
    for got_array, want in zip(got, outputs(), strict=True):
        np.testing.assert_array_equal(got_array, want)


def test_threads_equal_single_thread(isa: str) -> None:
    rng = np.random.default_rng(4)
    layer = random_layer(rng, 37, 41, 64, 64)  # enough work that the rows are split
    kernels.set_num_threads(1)
    single = run_fused(layer)
    kernels.set_num_threads(3)
    assert kernels.get_num_threads() == 3
    for got, want in zip(run_fused(layer), single, strict=True):
        np.testing.assert_array_equal(got, want)


def test_set_isa_accepts_exactly_the_available_paths() -> None:
    assert "portable" in ISAS
    for name in ISA_REQUIREMENTS:
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
            r"residual must have shape \(H, W, O / shuffle\^2\)",
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
            "out must be the residual array itself .without shuffle. or not overlap it",
        ),
        ("shuffle 0", lambda: kernels.binary_conv3x3(xp, wp, 64, scale=scale, shuffle=0), "between 1 and 8"),
        (
            "shuffle vs channels",
            lambda: kernels.binary_conv3x3(xp, wp, 64, scale=scale, shuffle=3),
            "divisible by 9, got 8",
        ),
    ]


@pytest.mark.parametrize(("case", "call", "message"), bad_call_cases(), ids=[c[0] for c in bad_call_cases()])
def test_bad_inputs_raise_clear_value_errors(case: str, call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# Runs one SIMD path's row kernel and sign packing (built against the stand-ins) and the portable ones on
# random layers, the worst case for the byte counters (every bit differs) among them, and counts the
# layers whose outputs differ ("conv"); then packs values at and beside 0 (v + shift = +0, -0, and the
# floats just below and above 0) at every length up to 150 and counts the lengths whose bits are not
# "v + shift >= 0" ("ties"). The path is chosen with -DSTANDIN_ISA=<name> and its weight layout (isa.c:
# lanes, weight planes, activation planes, its own weight layout) with
# -DSTANDIN_LANES/PLANES/ACTIVATION_PLANES/PREPARE.
STANDIN_CHECK = r"""
static atomic_int out_of_memory; /* what a path says when its own working memory cannot be had */
static void run(int lanes, int planes, int activation_planes, ConvRowsFn rows, ConvArgs a) {
    const int words = 9 * a.channel_words;
    a.o_lanes = (a.out_channels + lanes - 1) / lanes * lanes;
    uint64_t *wl = calloc((size_t)words * (planes ? planes : 1) * a.o_lanes, 8);
    for (int o = 0; o < a.out_channels; o++)
        for (int t = 0; t < words; t++)
            for (int p = 0; p < planes; p++) /* isa.c's lane weights (P = 1: whole words) */
                wl[((size_t)t * planes + p) * a.o_lanes + o] = a.w[(size_t)o * words + t];
#ifdef STANDIN_PREPARE /* a path with its own weight layout (isa.c's prepare_weights) */
    if (rows != bbcu_conv_rows_portable) {
        free(wl);
        wl = STANDIN_PREPARE(a.w, a.out_channels, a.channel_words);
    }
#endif
    a.wl = wl;
    const size_t plane_words = (size_t)3 * a.width * a.channel_words * activation_planes;
    RowScratch s = {malloc(4 * (size_t)COUNT_SPAN * a.o_lanes), malloc(4 * a.out_channels),
                    malloc(8 * plane_words + 8), &out_of_memory};
    rows(&a, 0, a.height, &s);
    free(s.count); free(s.values); free(s.x_planes); free(wl);
}
static int conv_mismatches(void) {
    int mismatches = 0;
    for (int trial = 0; trial < 200; trial++) {
        /* Every fifth layer has the shape of a BBCU layer (C <= 64, whole blocks of 64 outputs), which
         * the AVX-512 path computes in registers; with 256 outputs it is an upsampler (shuffle 2, the
         * same element counts: 64 channels at 4x the pixels). */
        const int bbcu_shape = trial % 5 == 4;
        const int h = 1 + next() % 7, w = 1 + next() % 9;
        const int c = bbcu_shape ? 1 + next() % 64 : 1 + next() % 300;
        const int o = bbcu_shape ? 64 << (next() % 3) : 1 + next() % 150;
        const int shuffle = o == 256 ? 2 : 1;
        const int cw = (c + 63) / 64, ow = (o + 63) / 64, worst = trial % 10 == 0;
        const size_t n = (size_t)h * w * o;
        uint64_t *x = calloc((size_t)h * w * cw, 8), *wt = calloc((size_t)o * 9 * cw, 8);
        for (int i = 0; i < h * w; i++)
            for (int k = 0; k < c; k++) x[i * cw + k / 64] |= (worst | (next() & 1)) << (k % 64);
        for (int i = 0; i < o * 9; i++)
            for (int k = 0; k < c; k++) wt[i * cw + k / 64] |= (!worst & next() & 1) << (k % 64);
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
        uint64_t *bits[2] = {calloc((size_t)h * w * ow, 8), calloc((size_t)h * w * ow, 8)};
        for (int path = 0; path < 2; path++) {
            ConvRowsFn rows = path ? PATH(bbcu_conv_rows_, STANDIN_ISA) : bbcu_conv_rows_portable;
            const int lanes = path ? STANDIN_LANES : 1, planes = path ? STANDIN_PLANES : 0;
            const int activation_planes = path ? STANDIN_ACTIVATION_PLANES : 0;
            ConvArgs r = a, f = a;
            r.raw = raw[path];
            run(lanes, planes, activation_planes, rows, r);
            f.scale = p[0]; f.bias = trial & 1 ? p[1] : NULL; f.residual = trial & 4 ? p[6] : NULL;
            if (trial & 2) { f.gamma = p[2]; f.beta = p[3]; f.zeta = p[4]; }
            f.next_shift = trial & 16 ? NULL : p[5]; /* none, with gamma, residual, leaky: a tail unit */
            f.y = y[path]; f.next_bits = bits[path]; f.shuffle = shuffle;
            f.leaky = trial & 8 ? 1 : 0; f.leaky_slope = 0.2f;
            run(lanes, planes, activation_planes, rows, f);
        }
        uint64_t packed[2][5];
        bbcu_pack_signs_portable(p[6], p[5], o, packed[0]);
        PATH(bbcu_pack_signs_, STANDIN_ISA)(p[6], p[5], o, packed[1]);
        mismatches += memcmp(raw[0], raw[1], 4 * n) != 0 || memcmp(y[0], y[1], 4 * n) != 0
                      || memcmp(bits[0], bits[1], 8 * (size_t)h * w * ow) != 0
                      || memcmp(packed[0], packed[1], 8 * (size_t)ow) != 0;
        for (int k = 0; k < 7; k++) free(p[k]);
        for (int k = 0; k < 2; k++) { free(raw[k]); free(y[k]); free(bits[k]); }
        free(x); free(wt);
    }
    return mismatches;
}
static int tie_mismatches(void) {
    enum { N = 150 };
    float v[N], shift[N];
    int mismatches = 0;
    for (int i = 0; i < N; i++) {
        shift[i] = i % 4 == 1 ? -0.0f : 100 * uniform();
        const float zero = -shift[i]; /* zero + shift[i] == +0 exactly */
        v[i] = i % 4 == 0 ? zero : i % 4 == 1 ? -0.0f : nextafterf(zero, i % 4 == 2 ? -INFINITY : INFINITY);
    }
    for (int n = 1; n <= N; n++) {
        uint64_t want[3] = {0}, got[3] = {0};
        for (int i = 0; i < n; i++) want[i / 64] |= (uint64_t)(v[i] + shift[i] >= 0.0f) << (i % 64);
        PATH(bbcu_pack_signs_, STANDIN_ISA)(v, shift, n, got);
        mismatches += memcmp(want, got, sizeof want) != 0;
    }
    return mismatches;
}
int main(void) {
    printf("conv %d ties %d\n", conv_mismatches(), tie_mismatches());
    return 0;
}
"""

# What isa.c declares for each SIMD path: output channels per register, weight planes, activation planes,
# and the function making its own weight layout, if it has one.
STANDIN_LAYOUTS = {
    "avx2": (4, 0, 2, "bbcu_nibble_blocks_avx2"),
    "avx512": (8, 1, 0, None),
    "amx": (16, 0, 0, "bbcu_weight_tiles_amx"),
}

# The AMX path packs signs with the AVX-512 path's function, and the check packs with bbcu_pack_signs_amx:
# built alone on the stand-ins, both are the portable one (conv_avx512.c's has its own check above). Its
# weights come in its own layout, made by bbcu_weight_tiles_amx as isa.c makes them.
AMX_GLUE = r"""
void bbcu_pack_signs_avx512(const float *v, const float *shift, int n, uint64_t *out) {
    bbcu_pack_signs_portable(v, shift, n, out);
}
#define bbcu_pack_signs_amx bbcu_pack_signs_portable
"""


def run_standin_check(
    simd: str,
    folder: Path,
    edit: Callable[[str], str] = lambda source: source,
    check_edit: Callable[[str], str] = lambda check: check,
) -> str:
    """STANDIN_CHECK's output (after ``check_edit``) for ``conv_<simd>.c`` (after ``edit``) built on the
    stand-ins."""
    lanes, planes, activation_planes, prepare = STANDIN_LAYOUTS[simd]
    defines = {
        "STANDIN_ISA": simd,
        "STANDIN_LANES": lanes,
        "STANDIN_PLANES": planes,
        "STANDIN_ACTIVATION_PLANES": activation_planes,
        **({"STANDIN_PREPARE": prepare} if prepare else {}),
    }
    check = check_edit((AMX_GLUE if simd == "amx" else "") + STANDIN_CHECK)
    return run_with_standins(
        folder, f"conv_{simd}.c", check, defines=defines, plain_sources=["conv_portable.c"], edit=edit
    )


@pytest.mark.parametrize("simd", list(STANDIN_LAYOUTS))
def test_simd_source_with_standin_intrinsics_equals_portable(simd: str, tmp_path: Path) -> None:
    """Where the CPU cannot run a SIMD path, its source still runs: compiled against plain-C stand-ins
    for its intrinsics, it must equal the portable path bit for bit (raw, fused, packing) on 200 random
    layers, and pack exact zeros as +1. This covers indexing, blocking, masks, flushes and the epilogue,
    not the real instructions or their speed."""
    assert run_standin_check(simd, tmp_path) == "conv 0 ties 0"


@pytest.mark.slow
@pytest.mark.parametrize("simd", ["avx2", "avx512"])  # the AMX path packs with conv_avx512.c's function
def test_standin_check_catches_a_ge_to_gt_slip(simd: str, tmp_path: Path) -> None:
    """The stand-ins honour the comparison predicate, so a source packing ``v + s > 0`` instead of
    ``>= 0`` (sign(0) = -1) fails the check above."""

    def slip(source: str) -> str:
        assert "_CMP_GE_OQ" in source, "the sign comparison this test mutates is gone"
        return source.replace("_CMP_GE_OQ", "_CMP_GT_OQ")

    ties = int(run_standin_check(simd, tmp_path, slip).split()[-1])
    assert ties > 0


@pytest.mark.slow
def test_standin_check_catches_swapped_sign_bytes_in_the_amx_path(tmp_path: Path) -> None:
    """The AMX stand-ins compute real dot products: a source expanding bit 1 to -1 and bit 0 to +1
    (every dot product negated) fails the conv check on every layer."""

    expansion = "words[(size_t)x * cw + k], minus, plus)"

    def swap(source: str) -> str:
        assert expansion in source, "the expansion this test mutates is gone"
        return source.replace(expansion, expansion.replace("minus, plus", "plus, minus"))

    assert int(run_standin_check("amx", tmp_path, swap).split()[1]) == 200


@pytest.mark.slow
def test_the_amx_path_reports_when_its_byte_rows_cannot_be_allocated(tmp_path: Path) -> None:
    """Without memory for its byte rows the AMX path sets the call's out-of-memory flag (which the
    module raises as MemoryError), as the other paths' working memory does; with it, the flag stays
    clear. Until session 9 such rows were left unwritten without a word."""
    allocation = "s->zeros = calloc(4, row_bytes);"
    report = 'printf("conv %d ties %d\\n", conv_mismatches(), tie_mismatches());'

    def no_memory(source: str) -> str:
        assert allocation in source, "the allocation this test fails is gone"
        return source.replace(allocation, "s->zeros = NULL;")

    def flag(check: str) -> str:
        assert report in check, "the report this test extends is gone"
        flag_report = 'conv_mismatches(); printf("out of memory %d\\n", atomic_load(&out_of_memory));'
        return check.replace(report, flag_report)

    (tmp_path / "fails").mkdir(), (tmp_path / "works").mkdir()
    assert run_standin_check("amx", tmp_path / "fails", no_memory, flag) == "out of memory 1"
    assert run_standin_check("amx", tmp_path / "works", check_edit=flag) == "out of memory 0"


# Runs the few-output float conv of each SIMD path (conv_float.c built against the stand-ins) and the
# portable one on random data, with and without bias, and counts the calls whose bytes differ: the
# outputs, the rows a band leaves alone and 16 floats past the end (a stray masked store shows). The
# blocks cover columns 1 .. W - 2 in 8 pixels (AVX-512) or 6 (AVX2), for 3 or 1 outputs and C % 16 == 0.
FLOAT_STANDIN_CHECK = r"""
static const int cases[][6] = { /* H, W, C, O, first row, end row */
    {5, 26, 32, 3, 0, 5},  /* 24 columns: whole blocks only (3 x 8, 4 x 6), border rows */
    {4, 21, 16, 3, 0, 4},  /* 19 columns: the last block overlaps the one before */
    {1, 13, 48, 1, 0, 1},  /* one row, its taps above and below out of the image; 1 output */
    {6, 19, 64, 1, 2, 5},  /* a band of inner rows; rows 0, 1 and 5 stay untouched */
    {3, 300, 16, 3, 0, 3}, /* 298 columns: a strip boundary (256 columns, 252 on AVX2) */
    {2, 10, 128, 3, 0, 2}, /* one block of 8; weights too large for the aligned copy */
    {3, 8, 16, 1, 0, 3},   /* one block of 6; too narrow for a block of 8 */
    {3, 9, 20, 3, 0, 3},   /* C no multiple of 16: no blocks */
    {3, 9, 16, 2, 0, 3},   /* 2 outputs: no blocks */
};
static float *random_floats(size_t n) {
    float *v = malloc(4 * n);
    for (size_t i = 0; i < n; i++) v[i] = uniform();
    return v;
}
static int differs(FloatConvRowsFn path, const int *shape, int with_bias) {
    const int h = shape[0], w = shape[1], c = shape[2], o = shape[3];
    const size_t n = (size_t)h * w * o + 16;
    float *x = random_floats((size_t)h * w * c), *k = random_floats((size_t)o * 9 * c), *b = random_floats(o);
    FloatConvArgs a = {.x = x, .weight = k, .bias = with_bias ? b : NULL, .height = h, .width = w,
                       .channels = c, .out_channels = o};
    float *y[2] = {malloc(4 * n), malloc(4 * n)};
    for (int p = 0; p < 2; p++) {
        memset(y[p], 0xa5, 4 * n);
        a.y = y[p];
        (p ? path : bbcu_float_conv_portable)(&a, shape[4], shape[5]);
    }
    const int different = memcmp(y[0], y[1], 4 * n) != 0;
    free(x); free(k); free(b); free(y[0]); free(y[1]);
    return different;
}
int main(void) {
    const int count = sizeof cases / sizeof cases[0];
    int avx2 = 0, avx512 = 0;
    for (int i = 0; i < count; i++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            avx2 += differs(bbcu_float_conv_avx2, cases[i], with_bias);
            avx512 += differs(bbcu_float_conv_avx512, cases[i], with_bias);
        }
    printf("avx2 %d avx512 %d of %d\n", avx2, avx512, 2 * count);
    return 0;
}
"""


def float_standin_mismatches(
    folder: Path, edit: Callable[[str], str] = lambda source: source
) -> dict[str, int]:
    """FLOAT_STANDIN_CHECK on ``conv_float.c`` (after ``edit``): the calls differing per path, of how many."""
    words = run_with_standins(folder, "conv_float.c", FLOAT_STANDIN_CHECK, edit=edit).split()
    return {"avx2": int(words[1]), "avx512": int(words[3]), "calls": int(words[5])}


def test_float_conv_source_with_standin_intrinsics_equals_portable(tmp_path: Path) -> None:
    """The float conv's AVX2 and AVX-512 paths, compiled against the stand-ins, equal the portable path
    bit for bit on every CPU: whole and overlapping blocks, border rows, a band, a strip boundary, 3 and
    1 outputs, with and without bias, and the shapes that take no blocks. This covers the blocking, the
    lane pairings of the shuffle-based halving tree, the final permutes and the masked stores."""
    assert float_standin_mismatches(tmp_path) == {"avx2": 0, "avx512": 0, "calls": 18}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("simd", "intrinsic"), [("avx2", "_mm256_shuffle_ps"), ("avx512", "_mm512_shuffle_ps")]
)
def test_float_standin_check_catches_a_lane_pairing_slip(simd: str, intrinsic: str, tmp_path: Path) -> None:
    """The check sees the halving tree's pairings, not only its sums: with one shuffle immediate of
    level 3 changed so that it adds lanes (1, 2) and (0, 3) instead of (0, 2) and (1, 3) (the same four
    lanes, added in another order), that path differs from the portable one, and only that path."""
    shuffle = f"{intrinsic}(a, b, _MM_SHUFFLE(1, 0, 1, 0))"

    def slip(source: str) -> str:
        assert source.count(shuffle) == 1, "the level-3 shuffle this test mutates is gone"
        return source.replace(shuffle, shuffle.replace("(1, 0, 1, 0)", "(0, 1, 0, 1)"))

    mismatches = float_standin_mismatches(tmp_path, slip)
    assert mismatches[simd] > 0
    assert mismatches["avx512" if simd == "avx2" else "avx2"] == 0


@pytest.mark.parametrize("shuffle", [1, 2])
@pytest.mark.parametrize(("first", "last", "rows"), [(3, 10, (1, 6)), (0, 5, (0, 4)), (8, 12, (1, 4))])
def test_rows_of_a_band_equal_those_rows_of_the_whole_image(
    isa: str, shuffle: int, first: int, last: int, rows: tuple[int, int]
) -> None:
    """``rows=`` computes rows of a larger image from a slice of it, the slice's other rows read as
    real neighbours (zero padding only at the image's own edges): the same rows as the whole-image
    call, bit for bit (on 1 and 3 threads), and zeros in every row it did not compute."""
    rng = np.random.default_rng(9)
    layer = random_layer(rng, 12, 19, 64, 64 * shuffle**2)
    layer["residual"] = (rng.standard_normal((12, 19, 64)) * 50).astype(np.float32)
    whole = run_fused(layer, shuffle=shuffle)
    band_layer = {**layer, "x": layer["x"][first:last], "residual": layer["residual"][first:last]}
    s, (begin, end) = shuffle, rows
    for threads in (1, 3):
        kernels.set_num_threads(threads)
        band = run_fused(band_layer, shuffle=shuffle, rows=rows)
        for got, want in zip(band, whole, strict=True):
            np.testing.assert_array_equal(
                got[s * begin : s * end], want[s * (first + begin) : s * (first + end)]
            )
            assert not got[: s * begin].any() and not got[s * end :].any()


def test_float_conv_rows_of_a_band_equal_those_rows_of_the_whole_image(isa: str) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((12, 19, 64)).astype(np.float32)
    weight = kernels.float_conv_weight(rng.standard_normal((3, 64, 3, 3)).astype(np.float32))
    bias = rng.standard_normal(3).astype(np.float32)
    whole = kernels.float_conv3x3(x, weight, bias)
    band = kernels.float_conv3x3(x[2:9], weight, bias, rows=(1, 6))
    np.testing.assert_array_equal(band[1:6], whole[3:8])
    assert not band[:1].any() and not band[6:].any()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((3, 3), r"rows \(3, 3\) must satisfy 0 <= begin < end <= H = 5"),
        ((0, 6), r"\(0, 6\)"),
        ((-1, 2), r"\(-1, 2\)"),
        ("ab", r"rows must be a \(begin, end\) pair of ints"),
        ((1,), "pair"),
    ],
)
def test_a_bad_row_range_is_refused(rows: object, message: str) -> None:
    x = np.zeros((5, 4, 64), np.float32)
    weight = np.zeros((3, 9, 64), np.float32)
    with pytest.raises(ValueError, match=message):
        kernels.float_conv3x3(x, weight, rows=rows)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        kernels.binary_conv3x3(
            kernels.pack_activations(x, np.zeros(64, np.float32)),
            kernels.pack_weights(np.ones((64, 64, 3, 3), np.float32)),
            64,
            scale=np.ones(64, np.float32),
            rows=rows,  # type: ignore[arg-type]
        )
