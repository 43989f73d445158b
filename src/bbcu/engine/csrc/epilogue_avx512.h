/*
 * The AVX-512 epilogue of 64-channel blocks, shared by the popcount path (conv_avx512.c) and the AMX
 * path (conv_amx.c): the per-channel parameter table, where a block's values go, and the float steps
 * from exact dot products to the output and the next layer's signs. Included after the file includes
 * <immintrin.h> and switches on AVX-512 (as epilogue.h is).
 */
#ifndef BBCU_EPILOGUE_AVX512_H
#define BBCU_EPILOGUE_AVX512_H

#include <stddef.h>

#include "epilogue.h"

/* Where channels [o, o + 64) of interior pixel (h, w) go. */
typedef struct Placement {
    size_t pixel, out; /* the input pixel (residual, raw), the output pixel (y, next_bits; shuffled) */
    int n, first;      /* channels per output pixel; the block's first channel within it */
    int o;             /* the block's first output channel, indexing the per-channel parameters */
} Placement;

/* Block `first` of sub-pixel r (output channels r * n + first ...), without a division. */
static inline __attribute__((always_inline)) Placement block_placement(const ConvArgs *a, int h, int w, int r, int n,
                                                                       int first)
{
    const size_t pixel = (size_t)h * a->width + w;
    return (Placement){pixel, a->shuffle > 1 ? output_pixel(a, h, w, r) : pixel, n, first, r * n + first};
}

/* The per-channel parameters of the epilogue, gathered once per call into one table of 16-channel
 * steps (PARAMS rows of 16 floats each, absent ones 0), so that the loop reaches all of them from one
 * register: with six separate pointers next to the loop's own, GCC runs out of general registers
 * and spills. The next layer's shift is stored negated (see finish_half). */
enum { SCALE, BIAS_ROW, GAMMA, BETA, ZETA, MINUS_SHIFT, PARAMS };
#define MAX_TABLE_CHANNELS 1024 /* 24 KiB of stack; wider layers take the shared row loop */

static void gather_params(const ConvArgs *a, float *table)
{
    const float *source[PARAMS] = {a->scale, a->bias, a->gamma, a->beta, a->zeta, a->next_shift};
    for (int c = 0; c < a->out_channels; c += 16)
        for (int k = 0; k < PARAMS; k++)
            for (int i = 0; i < 16; i++)
                table[(c * PARAMS) + 16 * k + i] =
                    !source[k] ? 0.0f : k == MINUS_SHIFT ? -source[k][c + i] : source[k][c + i];
}

/* What the epilogue of an interior row reads and writes, in locals (kept in registers: a store
 * through an intrinsic may alias any memory, so fields read through ConvArgs are loaded again
 * after each one). */
typedef struct Finish {
    const float *table; /* gather_params */
    const float *residual;
    float *y;
    int32_t *raw;
    uint64_t *next_bits;
    __m512i full; /* 9 C: the dot product's offset, dot = full - 2 popcount */
    __m512 full_float;
    __m512 slope; /* the LeakyReLU's */
} Finish;

static Finish finish_of(const ConvArgs *a, const float *table)
{
    return (Finish){table,
                    a->residual,
                    a->y,
                    a->raw,
                    a->next_bits,
                    _mm512_set1_epi32(9 * a->channels),
                    _mm512_set1_ps((float)(9 * a->channels)),
                    _mm512_set1_ps(a->leaky_slope)};
}

/* One 16-channel step of an output pixel's epilogue from its exact dot products as floats (channels
 * [o + 16 * half, + 16) of the block `at_block`): the float operations of epilogue_values / add_into /
 * pack_signs, in their order, so every path that ends here gives the same bits. Returns their next-layer
 * sign bits, placed at their position in the block's 64-bit word. Two steps take one instruction
 * where the portable code has two, with the same result: RPReLU's select as a masked multiply, and the
 * next sign as v >= -shift rather than v + shift >= 0 (a float sum is 0 exactly when the terms cancel
 * and never rounds a nonzero sum to 0, so both tests agree, -0 and NaN included). */
static inline __attribute__((always_inline)) uint64_t finish_dots(const Finish *f, Placement at_block, __m512 dot,
                                                                  int half, int shape)
{
    const __m512 zero = _mm512_setzero_ps();
    const size_t n = (size_t)at_block.n;
    const int at = at_block.first + 16 * half; /* the channel within the output pixel */
    const float *p = f->table + (size_t)(at_block.o + 16 * half) * PARAMS;
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(p + 16 * SCALE), dot);
    if (shape & BIAS)
        v = _mm512_add_ps(v, _mm512_loadu_ps(p + 16 * BIAS_ROW));
    if (shape & RPRELU) {
        const __m512 t = _mm512_add_ps(v, _mm512_loadu_ps(p + 16 * GAMMA));
        const __mmask16 negative = _mm512_cmp_ps_mask(t, zero, _CMP_NGE_UQ); /* not t >= 0, as the blend had */
        v = _mm512_add_ps(_mm512_mask_mul_ps(t, negative, _mm512_loadu_ps(p + 16 * BETA), t),
                          _mm512_loadu_ps(p + 16 * ZETA));
    }
    if (shape & RESIDUAL)
        v = _mm512_add_ps(v, _mm512_loadu_ps(f->residual + at_block.pixel * n + at));
    if (shape & LEAKY) {
        const __mmask16 positive = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        v = _mm512_mask_blend_ps(positive, _mm512_mul_ps(f->slope, v), v);
    }
    _mm512_storeu_ps(f->y + at_block.out * n + at, v);
    if (!(shape & NEXT))
        return 0;
    return (uint64_t)_mm512_cmp_ps_mask(v, _mm512_loadu_ps(p + 16 * MINUS_SHIFT), _CMP_GE_OQ) << (16 * half);
}

/* Stores the next layer's sign word of a block (when the layer has one). */
static inline __attribute__((always_inline)) void store_next_bits(const Finish *f, Placement at_block, uint64_t bits,
                                                                  int shape)
{
    if (shape & NEXT)
        f->next_bits[at_block.out * (size_t)(at_block.n / 64) + at_block.first / 64] = bits;
}

/* Layers whose pixels can take the block epilogue: whole blocks of 64 output channels in every
 * sub-pixel, and few enough channels for the parameter table. */
static int whole_blocks(const ConvArgs *a)
{
    return pixel_channels(a) % 64 == 0 && a->out_channels <= MAX_TABLE_CHANNELS;
}

#endif
