/*
 * Full-precision 3x3 convolutions with few output channels: a network's last conv (64 -> 3 colour
 * channels, or 1 for grey), which runs on the largest feature map of the network (BBCU-M x4: 64
 * channels at 1280x720) and which oneDNN computes far from the FMA peak because it vectorises over
 * output channels. Here each output value is one dot product over the 9 taps x C input channels,
 * vectorised over input channels instead.
 *
 * The order of the sums is fixed, so every ISA gives the same result bit for bit: 16 lane sums, lane
 * l taking channels l, l + 16, l + 32, ... of each in-image tap in turn with one fused multiply-add
 * each (fmaf: one rounding, on every CPU), then a halving tree (lane l += lane l + 8, then + 4, + 2,
 * + 1), then the bias. The generic body is written once and compiled for each ISA by target
 * attributes; the compiler turns each 16-lane loop into one AVX-512 FMA, two AVX2 FMAs or four NEON
 * FMAs.
 *
 * For 3 or 1 outputs and C a multiple of 16, all columns but the first and the last go through
 * "blocks" of a few pixels x all outputs (border rows included: their out-of-image taps are skipped,
 * as above): the same sums in the same order, with many independent FMA chains in flight to hide the
 * FMA latency. The AVX-512 block (8 pixels x 3 outputs: 24 zmm accumulators) and the AVX2 one (6
 * output values, each 16-lane sum as two ymm, lanes 0-7 and 8-15: 12 accumulators) keep every
 * operand that several FMAs share in a register, and run the halving tree on all their sums at once:
 * shuffles set the two halves of a level side by side so that one add does that level for two sums
 * (then four, eight, sixteen), each add pairing exactly the lanes the scalar tree pairs; the sums end
 * in output (HWC) order, and one vector add of the bias and one masked store finish the block. Blocks
 * run in strips of columns, all rows of a strip before the next, so that the input rows they read
 * stay in L2, and read the weights from a 64-byte aligned copy.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bitops.h"

#if defined(BBCU_X86)
#include <immintrin.h>
#endif

#define SUM_LANES 16
#define BIAS_LANES 32 /* a block's biases, one per output value (24 at most), as two AVX-512 registers */

/* The taps of output row h that lie in the image: the rows above (taps 0-2) and below (6-8) are
 * padding on the first and the last row. */
static inline int first_tap(int h) { return h == 0 ? 3 : 0; }
static inline int end_tap(const FloatConvArgs *a, int h) { return h == a->height - 1 ? 6 : 9; }

/* The input pixel that tap `tap` of output pixel (h, w) reads: (h + tap / 3 - 1, w + tap % 3 - 1). */
static inline const float *tap_input(const FloatConvArgs *a, int h, int w, int tap)
{
    return a->x + ((size_t)(h + tap / 3 - 1) * a->width + (w + tap % 3 - 1)) * a->channels;
}

/* One output value's 16 lane sums over the in-image taps of pixel (h, w), channels in order. */
static inline __attribute__((always_inline)) void lane_sums(const FloatConvArgs *a, int h, int w, int o,
                                                           float *restrict acc)
{
    const int c = a->channels, whole = c / SUM_LANES * SUM_LANES;
    for (int tap = first_tap(h); tap < end_tap(a, h); tap++) {
        const int xx = w + tap % 3 - 1;
        if (xx < 0 || xx >= a->width)
            continue;
        const float *restrict x = tap_input(a, h, w, tap);
        const float *restrict k = a->weight + ((size_t)o * 9 + tap) * c;
        for (int base = 0; base < whole; base += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++)
                acc[l] = fmaf(x[base + l], k[base + l], acc[l]);
        for (int l = 0; whole + l < c; l++)
            acc[l] = fmaf(x[whole + l], k[whole + l], acc[l]);
    }
}

/* The halving tree and the bias: the one way lane sums become an output. */
static inline __attribute__((always_inline)) float finish(float *restrict acc, float bias)
{
    for (int half = SUM_LANES / 2; half > 0; half /= 2)
        for (int l = 0; l < half; l++)
            acc[l] += acc[l + half];
    return acc[0] + bias;
}

/* Output o's bias; -0 when there is none (-0 + s == s for every s, -0 included). */
static inline float bias_of(const FloatConvArgs *a, int o) { return a->bias ? a->bias[o] : -0.0f; }

/* Any pixel, one output at a time. */
static inline __attribute__((always_inline)) void any_pixel(const FloatConvArgs *a, int h, int w)
{
    float *y = a->y + ((size_t)h * a->width + w) * a->out_channels;
    for (int o = 0; o < a->out_channels; o++) {
        float acc[SUM_LANES] = {0};
        lane_sums(a, h, w, o, acc);
        y[o] = finish(acc, bias_of(a, o));
    }
}

/* GENERIC_PIXELS pixels (w .. w + 3, none in the first or last column) x `outputs` (1 or 3, a
 * constant, so that the sums can stay in registers) output channels, with C a multiple of 16:
 * any_pixel's sums in any_pixel's order. */
#define GENERIC_PIXELS 4
static inline __attribute__((always_inline)) void generic_values(const FloatConvArgs *a, const float *bias, int h,
                                                                 int w, int outputs)
{
    const int c = a->channels;
    float acc[GENERIC_PIXELS][3][SUM_LANES] = {{{0}}};
    for (int tap = first_tap(h); tap < end_tap(a, h); tap++) {
        const float *x = tap_input(a, h, w, tap);
        for (int base = 0; base < c; base += SUM_LANES)
#pragma GCC unroll 3
            for (int o = 0; o < outputs; o++) {
                const float *k = a->weight + ((size_t)o * 9 + tap) * c + base;
#pragma GCC unroll 4
                for (int p = 0; p < GENERIC_PIXELS; p++)
#pragma GCC unroll 16
                    for (int l = 0; l < SUM_LANES; l++)
                        acc[p][o][l] = fmaf(x[(size_t)p * c + base + l], k[l], acc[p][o][l]);
            }
    }
    for (int p = 0; p < GENERIC_PIXELS; p++)
        for (int o = 0; o < outputs; o++)
            a->y[((size_t)h * a->width + w + p) * outputs + o] = finish(acc[p][o], bias[o]);
}

/* Computes the block of output values starting at pixel (h, w); bias[j] is the bias of its j-th value
 * (pixel j / O, output j % O). */
typedef void (*BlockFn)(const FloatConvArgs *a, const float *bias, int h, int w);

/* Whether blocks of `pixels` pixels cover columns 1 .. W - 2: for the networks' tails (3 or 1
 * outputs, C a multiple of 16) when one fits; any_pixel computes every pixel of any other conv. */
static inline int blocked(const FloatConvArgs *a, int pixels)
{
    return (a->out_channels == 3 || a->out_channels == 1) && a->channels % SUM_LANES == 0 && a->width - 2 >= pixels;
}

/* Block j of a row starts at column 1 + j * pixels, the last one at W - 1 - pixels: it overlaps the one
 * before when W - 2 is no multiple of `pixels` (the same sums, so the same bits, written twice). */
static inline int block_start(const FloatConvArgs *a, int j, int pixels)
{
    return 1 + j * pixels < a->width - 1 - pixels ? 1 + j * pixels : a->width - 1 - pixels;
}

/* Asks for the input pixels that the block at (h + 1, w) reads and the block at (h, w) does not (row
 * h + 2, columns w - 1 .. w + pixels), one output row ahead: a map larger than L2 streams them from L3
 * or memory, and on an Intel Xeon (session 7) the hardware prefetcher alone left the 64 -> 3 conv of
 * 1280x720 at 34-35 G FMA/s, with this 42-43 (three alternating runs, benchmarks/kernels_session7.md). */
static inline void prefetch_next_input_row(const FloatConvArgs *a, int h, int w, int pixels)
{
    if (h + 2 >= a->height)
        return;
    const char *next = (const char *)tap_input(a, h + 3, w, 0);
    const size_t bytes = (size_t)(pixels + 2) * a->channels * sizeof(float);
    for (size_t offset = 0; offset < bytes; offset += 64)
        __builtin_prefetch(next + offset);
}

/* The blocks of rows [row_begin, row_end), in strips of STRIP_PIXELS columns, all rows of a strip
 * before the next one: the 3 input rows a strip reads (192 KiB at 64 channels) stay in L2 from one
 * output row to the next, where 3 whole rows of 1280 pixels (960 KiB) do not. */
#define STRIP_PIXELS 256
static inline __attribute__((always_inline)) void blocked_rows(const FloatConvArgs *a, int row_begin, int row_end,
                                                               BlockFn block, int pixels)
{
    float bias[BIAS_LANES];
    for (int j = 0; j < BIAS_LANES; j++)
        bias[j] = bias_of(a, j % a->out_channels);
    const int blocks = (a->width - 2 + pixels - 1) / pixels, strip = STRIP_PIXELS / pixels;
    for (int first = 0; first < blocks; first += strip)
        for (int h = row_begin; h < row_end; h++)
            for (int j = first; j < blocks && j < first + strip; j++)
            {
                const int w = block_start(a, j, pixels);
                prefetch_next_input_row(a, h, w, pixels);
                block(a, bias, h, w);
            }
}

/* a->weight, or its copy in `buffer` (64-byte aligned) when it fits: then no vector load of a weight
 * spans two cache lines (the same values, so the same bits). */
#define ALIGNED_WEIGHTS (3 * 9 * 64)
static inline const float *aligned_weights(const FloatConvArgs *a, float *buffer)
{
    const size_t count = (size_t)a->out_channels * 9 * a->channels;
    if (count > ALIGNED_WEIGHTS || (uintptr_t)a->weight % 64 == 0)
        return a->weight;
    return memcpy(buffer, a->weight, count * sizeof(float));
}

/* Rows [row_begin, row_end): any_pixel for the first and the last column (or all of them), blocks of
 * `pixels` pixels for the others. */
static inline __attribute__((always_inline)) void few_outputs_rows(const FloatConvArgs *a, int row_begin, int row_end,
                                                                   BlockFn block, int pixels)
{
    float buffer[ALIGNED_WEIGHTS] __attribute__((aligned(64)));
    FloatConvArgs aligned = *a;
    aligned.weight = aligned_weights(a, buffer);
    if (!blocked(a, pixels)) {
        for (int h = row_begin; h < row_end; h++)
            for (int w = 0; w < a->width; w++)
                any_pixel(&aligned, h, w);
        return;
    }
    for (int h = row_begin; h < row_end; h++) {
        any_pixel(&aligned, h, 0);
        any_pixel(&aligned, h, a->width - 1);
    }
    blocked_rows(&aligned, row_begin, row_end, block, pixels);
}

static void portable_block(const FloatConvArgs *a, const float *bias, int h, int w)
{
    if (a->out_channels == 3)
        generic_values(a, bias, h, w, 3);
    else
        generic_values(a, bias, h, w, 1);
}

void bbcu_float_conv_portable(const FloatConvArgs *a, int row_begin, int row_end)
{
    few_outputs_rows(a, row_begin, row_end, portable_block, GENERIC_PIXELS);
}

#ifdef BBCU_X86
/* Keeps v in a register: GCC would otherwise fold the load of an operand that several FMAs share into
 * each of them (a load per FMA instead of one for all). */
#define IN_REGISTER(v) __asm__("" : "+x"(v))

/* ------------------------------------------------------------------ AVX2: 6 output values per step */

#define AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
#define AVX2_VALUES 6 /* 2 pixels x 3 outputs or 6 pixels x 1: 12 ymm accumulators of the 16 */

/* The lane sums of 6 output values (`pixels` x `outputs`, constants), value j = p * outputs + o
 * as lanes 0-7 in lo[j] and lanes 8-15 in hi[j]. Registers: 12 sums, the pixels' inputs (2 when
 * outputs > 1; each feeds `outputs` FMAs) and one weight (it feeds `pixels` FMAs). */
AVX2 void lane_sums_avx2(const FloatConvArgs *a, int h, int w, int pixels, int outputs, __m256 *lo, __m256 *hi)
{
    const int c = a->channels;
    for (int j = 0; j < AVX2_VALUES; j++)
        lo[j] = hi[j] = _mm256_setzero_ps();
    for (int tap = first_tap(h); tap < end_tap(a, h); tap++) {
        const float *x = tap_input(a, h, w, tap), *k = a->weight + (size_t)tap * c;
#pragma GCC unroll 4
        for (int base = 0; base < c; base += SUM_LANES)
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __m256 *acc = half ? hi : lo, xv[AVX2_VALUES];
#pragma GCC unroll 6
                for (int p = 0; p < pixels; p++) {
                    xv[p] = _mm256_loadu_ps(x + (size_t)p * c + base + 8 * half);
                    if (outputs > 1)
                        IN_REGISTER(xv[p]);
                }
#pragma GCC unroll 3
                for (int o = 0; o < outputs; o++) {
                    __m256 kv = _mm256_loadu_ps(k + (size_t)o * 9 * c + base + 8 * half);
                    IN_REGISTER(kv);
#pragma GCC unroll 6
                    for (int p = 0; p < pixels; p++)
                        acc[p * outputs + o] = _mm256_fmadd_ps(xv[p], kv, acc[p * outputs + o]);
                }
            }
    }
}

/* Tree level 2 (lane l + lane l + 4) of two 8-lane sums: a's in lanes 0-3, b's in 4-7. */
AVX2 __m256 add_quads_avx2(__m256 a, __m256 b)
{
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* Tree level 3 (l + l + 2) of the 4-lane sums in each 128-bit half: per half, a's then b's 2 lanes. */
AVX2 __m256 add_pairs_avx2(__m256 a, __m256 b)
{
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* Tree level 4 (l + l + 1) of the 2-lane sums: per 128-bit half, a's then b's 2 sums. */
AVX2 __m256 add_neighbours_avx2(__m256 a, __m256 b)
{
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The halving tree of the 6 values: level 1 is lo + hi; after level 4, lane 4k + r holds value
 * 2r + k (r < 3), which one permute puts in order; then the bias, and 6 floats stored. */
AVX2 void finish_avx2(const __m256 *lo, const __m256 *hi, const float *bias, float *y)
{
    __m256 s[AVX2_VALUES];
    for (int j = 0; j < AVX2_VALUES; j++)
        s[j] = _mm256_add_ps(lo[j], hi[j]);
    const __m256 t0 = add_quads_avx2(s[0], s[1]), t1 = add_quads_avx2(s[2], s[3]), t2 = add_quads_avx2(s[4], s[5]);
    const __m256 sums = add_neighbours_avx2(add_pairs_avx2(t0, t1), add_pairs_avx2(t2, t2));
    const __m256 ordered = _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_maskstore_ps(y, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0), _mm256_add_ps(ordered, _mm256_loadu_ps(bias)));
}

AVX2 void values_avx2(const FloatConvArgs *a, const float *bias, int h, int w, int pixels, int outputs)
{
    __m256 lo[AVX2_VALUES], hi[AVX2_VALUES];
    lane_sums_avx2(a, h, w, pixels, outputs, lo, hi);
    finish_avx2(lo, hi, bias, a->y + ((size_t)h * a->width + w) * outputs);
}

/* 6 pixels: three steps of 2 pixels x 3 outputs, or one of 6 pixels x 1 output. */
__attribute__((target("avx2,fma"))) static void avx2_block(const FloatConvArgs *a, const float *bias, int h, int w)
{
    if (a->out_channels == 3)
        for (int p = 0; p < AVX2_VALUES; p += 2)
            values_avx2(a, bias, h, w + p, 2, 3);
    else
        values_avx2(a, bias, h, w, AVX2_VALUES, 1);
}

__attribute__((target("avx2,fma"))) void bbcu_float_conv_avx2(const FloatConvArgs *a, int row_begin, int row_end)
{
    few_outputs_rows(a, row_begin, row_end, avx2_block, AVX2_VALUES);
}

/* ------------------------------------------------------------------ AVX-512: 8 pixels per block */

#define AVX512 __attribute__((target("avx512f"), always_inline)) static inline
#define WIDE_PIXELS 8

/* The lane sums of 8 pixels x `outputs` (1 or 3, a constant) output values, value j = p * outputs + o
 * in acc[j]. Registers: 24 sums, 3 weights (each feeds 8 FMAs) and one input. */
AVX512 void lane_sums_avx512(const FloatConvArgs *a, int h, int w, int outputs, __m512 *acc)
{
    const int c = a->channels;
    for (int j = 0; j < WIDE_PIXELS * outputs; j++)
        acc[j] = _mm512_setzero_ps();
    for (int tap = first_tap(h); tap < end_tap(a, h); tap++) {
        const float *x = tap_input(a, h, w, tap), *k = a->weight + (size_t)tap * c;
#pragma GCC unroll 4
        for (int base = 0; base < c; base += SUM_LANES) {
            __m512 kv[3];
#pragma GCC unroll 3
            for (int o = 0; o < outputs; o++)
                kv[o] = _mm512_loadu_ps(k + (size_t)o * 9 * c + base);
#pragma GCC unroll 8
            for (int p = 0; p < WIDE_PIXELS; p++) {
                __m512 xv = _mm512_loadu_ps(x + (size_t)p * c + base);
                IN_REGISTER(xv);
#pragma GCC unroll 3
                for (int o = 0; o < outputs; o++)
                    acc[p * outputs + o] = _mm512_fmadd_ps(xv, kv[o], acc[p * outputs + o]);
            }
        }
    }
}

/* The four levels of the halving tree, each on two registers at once: a level adds the lane pairs
 * (l, l + n) inside groups of 2n lanes, and sets a's n-lane sums, then b's, side by side. */
AVX512 __m512 add_halves_avx512(__m512 a, __m512 b) /* n = 8: a's 8 sums, then b's */
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

AVX512 __m512 add_quads_avx512(__m512 a, __m512 b) /* n = 4: per 8-lane group, 4 sums; a's groups, then b's */
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

AVX512 __m512 add_pairs_avx512(__m512 a, __m512 b) /* n = 2: per 128 bits, a's 2 sums, then b's */
{
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

AVX512 __m512 add_neighbours_avx512(__m512 a, __m512 b) /* n = 1: per 128 bits, a's 2 sums, then b's */
{
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The halving tree of `values` (8 or 24) lane sums at once: value j ends in lane j % 16 of
 * sums[j / 16]. Pairing registers (0, 1), (2, 3), ... at each level (the last one with itself when
 * their number is odd) leaves value 16m + 4r + k in lane 4k + r of register m; one permute each puts
 * the values in order. */
AVX512 void finish_sums_avx512(int values, const __m512 *acc, __m512 *sums)
{
    __m512 v[12];
    for (int i = 0; i < values / 2; i++)
        v[i] = add_halves_avx512(acc[2 * i], acc[2 * i + 1]);
    for (int i = 0; i < values / 4; i++)
        v[i] = add_quads_avx512(v[2 * i], v[2 * i + 1]);
    const int pairs = values / 8;
    for (int i = 0; i < pairs; i++)
        v[i] = add_pairs_avx512(v[2 * i], v[2 * i + 1]);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int m = 0; m < (pairs + 1) / 2; m++)
        sums[m] = _mm512_permutexvar_ps(order, add_neighbours_avx512(v[2 * m], v[2 * m + 1 < pairs ? 2 * m + 1 : 2 * m]));
}

/* 8 pixels x `outputs` (1 or 3) outputs: their 8 * outputs values, biased, stored in HWC order. */
AVX512 void values_avx512(const FloatConvArgs *a, const float *bias, int h, int w, int outputs)
{
    const int values = WIDE_PIXELS * outputs;
    __m512 acc[WIDE_PIXELS * 3], sums[2];
    lane_sums_avx512(a, h, w, outputs, acc);
    finish_sums_avx512(values, acc, sums);
    float *y = a->y + ((size_t)h * a->width + w) * outputs;
    for (int m = 0; m * 16 < values; m++) {
        const __mmask16 stored = values - 16 * m >= 16 ? 0xffff : (1u << (values - 16 * m)) - 1;
        _mm512_mask_storeu_ps(y + 16 * m, stored, _mm512_add_ps(sums[m], _mm512_loadu_ps(bias + 16 * m)));
    }
}

__attribute__((target("avx512f"))) static void avx512_block(const FloatConvArgs *a, const float *bias, int h, int w)
{
    if (a->out_channels == 3)
        values_avx512(a, bias, h, w, 3);
    else
        values_avx512(a, bias, h, w, 1);
}

__attribute__((target("avx512f"))) void bbcu_float_conv_avx512(const FloatConvArgs *a, int row_begin, int row_end)
{
    few_outputs_rows(a, row_begin, row_end, avx512_block, WIDE_PIXELS);
}
#endif

#ifdef BBCU_ARM64
void bbcu_float_conv_neon(const FloatConvArgs *a, int row_begin, int row_end)
{
    few_outputs_rows(a, row_begin, row_end, portable_block, GENERIC_PIXELS);
}
#endif
