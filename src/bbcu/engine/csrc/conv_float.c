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
 * + 1), then the bias. The body is written once and compiled for each ISA by target attributes; the
 * compiler turns each 16-lane loop into one AVX-512 FMA, two AVX2 FMAs or four NEON FMAs.
 */
#include <math.h>
#include <stddef.h>

#include "bitops.h"

#if defined(BBCU_X86)
#include <immintrin.h>
#endif

#define SUM_LANES 16

/* One output value's 16 lane sums over the in-image taps of pixel (h, w), channels in order. */
static inline __attribute__((always_inline)) void lane_sums(const FloatConvArgs *a, int h, int w, int o,
                                                           float *restrict acc)
{
    const int c = a->channels, whole = c / SUM_LANES * SUM_LANES;
    for (int tap = 0; tap < 9; tap++) {
        const int yy = h + tap / 3 - 1, xx = w + tap % 3 - 1;
        if (yy < 0 || yy >= a->height || xx < 0 || xx >= a->width)
            continue;
        const float *restrict x = a->x + ((size_t)yy * a->width + xx) * c;
        const float *restrict k = a->weight + ((size_t)o * 9 + tap) * c;
        for (int base = 0; base < whole; base += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++)
                acc[l] = fmaf(x[base + l], k[base + l], acc[l]);
        for (int l = 0; whole + l < c; l++)
            acc[l] = fmaf(x[whole + l], k[whole + l], acc[l]);
    }
}

/* The halving tree and the bias: the one way lane sums become an output. */
static inline __attribute__((always_inline)) float finish(const FloatConvArgs *a, int o, float *restrict acc)
{
    for (int half = SUM_LANES / 2; half > 0; half /= 2)
        for (int l = 0; l < half; l++)
            acc[l] += acc[l + half];
    return a->bias ? acc[0] + a->bias[o] : acc[0];
}

/* Any pixel, one output at a time. */
static inline __attribute__((always_inline)) void any_pixel(const FloatConvArgs *a, int h, int w)
{
    float *y = a->y + ((size_t)h * a->width + w) * a->out_channels;
    for (int o = 0; o < a->out_channels; o++) {
        float acc[SUM_LANES] = {0};
        lane_sums(a, h, w, o, acc);
        y[o] = finish(a, o, acc);
    }
}

/* BLOCK interior pixels (w .. w + BLOCK - 1 of an interior row) and `outputs` (a constant) output
 * channels at once, with C a multiple of 16: the same sums in the same order as any_pixel, but
 * BLOCK * outputs independent FMA chains in flight instead of one, which is what hides the FMA
 * latency. */
#define BLOCK 4
static inline __attribute__((always_inline)) void interior_block(const FloatConvArgs *a, int h, int w,
                                                                 int outputs)
{
    const int c = a->channels;
    float acc[BLOCK][4][SUM_LANES] = {{{0}}};
    for (int tap = 0; tap < 9; tap++) {
        const float *x = a->x + ((size_t)(h + tap / 3 - 1) * a->width + (w + tap % 3 - 1)) * c;
        for (int base = 0; base < c; base += SUM_LANES)
#pragma GCC unroll 4
            for (int o = 0; o < outputs; o++) {
                const float *k = a->weight + ((size_t)o * 9 + tap) * c + base;
#pragma GCC unroll 4
                for (int p = 0; p < BLOCK; p++)
#pragma GCC unroll 16
                    for (int l = 0; l < SUM_LANES; l++)
                        acc[p][o][l] = fmaf(x[(size_t)p * c + base + l], k[l], acc[p][o][l]);
            }
    }
    for (int p = 0; p < BLOCK; p++)
        for (int o = 0; o < outputs; o++)
            a->y[((size_t)h * a->width + w + p) * outputs + o] = finish(a, o, acc[p][o]);
}

typedef void (*BlockFn)(const FloatConvArgs *a, int h, int w, int outputs);

static inline __attribute__((always_inline)) void generic_block(const FloatConvArgs *a, int h, int w, int outputs)
{
    switch (outputs) { /* constant output counts, so the accumulators stay in registers */
    case 1:
        interior_block(a, h, w, 1);
        break;
    case 3:
        interior_block(a, h, w, 3);
        break;
    default:
        interior_block(a, h, w, outputs);
    }
}

static inline __attribute__((always_inline)) void few_outputs_row(const FloatConvArgs *a, int h, BlockFn block)
{
    int w = 0;
    const int blocked = a->channels % SUM_LANES == 0 && a->out_channels <= 4 && h > 0 && h < a->height - 1;
    if (blocked) {
        any_pixel(a, h, 0);
        for (w = 1; w + BLOCK <= a->width - 1; w += BLOCK)
            block(a, h, w, a->out_channels);
    }
    for (; w < a->width; w++)
        any_pixel(a, h, w);
}

static void portable_block(const FloatConvArgs *a, int h, int w, int outputs) { generic_block(a, h, w, outputs); }

void bbcu_float_conv_portable(const FloatConvArgs *a, int row_begin, int row_end)
{
    for (int h = row_begin; h < row_end; h++)
        few_outputs_row(a, h, portable_block);
}

#ifdef BBCU_X86
__attribute__((target("avx2,fma"))) static void avx2_block(const FloatConvArgs *a, int h, int w, int outputs)
{
    generic_block(a, h, w, outputs);
}

__attribute__((target("avx2,fma"))) void bbcu_float_conv_avx2(const FloatConvArgs *a, int row_begin, int row_end)
{
    for (int h = row_begin; h < row_end; h++)
        few_outputs_row(a, h, avx2_block);
}

/* finish() on a register: the same halving tree (lanes + 8, + 4, + 2, + 1), so the same sums. */
__attribute__((target("avx512f"))) static inline float finish_avx512(const FloatConvArgs *a, int o, __m512 v)
{
    const __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    const float sum = _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1)));
    return a->bias ? sum + a->bias[o] : sum;
}

/* interior_block with the accumulators as named registers, so they never go through memory. */
__attribute__((target("avx512f"))) static void avx512_block(const FloatConvArgs *a, int h, int w, int outputs)
{
    if (outputs != 3 && outputs != 1) {
        generic_block(a, h, w, outputs);
        return;
    }
    const int c = a->channels;
    __m512 acc[BLOCK][3];
    for (int p = 0; p < BLOCK; p++)
        for (int o = 0; o < 3; o++)
            acc[p][o] = _mm512_setzero_ps();
    for (int tap = 0; tap < 9; tap++) {
        const float *x = a->x + ((size_t)(h + tap / 3 - 1) * a->width + (w + tap % 3 - 1)) * c;
        const float *k = a->weight + (size_t)tap * c;
        for (int base = 0; base < c; base += SUM_LANES) {
            __m512 xv[BLOCK];
#pragma GCC unroll 4
            for (int p = 0; p < BLOCK; p++)
                xv[p] = _mm512_loadu_ps(x + (size_t)p * c + base);
#pragma GCC unroll 3
            for (int o = 0; o < 3; o++) {
                if (o == outputs)
                    break;
                const __m512 kv = _mm512_loadu_ps(k + (size_t)o * 9 * c + base);
#pragma GCC unroll 4
                for (int p = 0; p < BLOCK; p++)
                    acc[p][o] = _mm512_fmadd_ps(xv[p], kv, acc[p][o]);
            }
        }
    }
    for (int p = 0; p < BLOCK; p++)
        for (int o = 0; o < outputs; o++)
            a->y[((size_t)h * a->width + w + p) * outputs + o] = finish_avx512(a, o, acc[p][o]);
}

__attribute__((target("avx512f"))) void bbcu_float_conv_avx512(const FloatConvArgs *a, int row_begin, int row_end)
{
    for (int h = row_begin; h < row_end; h++)
        few_outputs_row(a, h, avx512_block);
}
#endif

#ifdef BBCU_ARM64
void bbcu_float_conv_neon(const FloatConvArgs *a, int row_begin, int row_end)
{
    for (int h = row_begin; h < row_end; h++)
        few_outputs_row(a, h, portable_block);
}
#endif
