/*
 * The AVX-512 path: VPOPCNTDQ counts the bits of 8 words per instruction, so one tap word costs an
 * XOR, a popcount and an add for 8 output channels (one per 64-bit lane, no horizontal sums).
 * A block of 8 registers covers 64 output channels.
 *
 * The machines this project was written on have AVX2 only: this file is compiled everywhere on x86-64
 * but its kernels only run (and are only tested) where the CPU reports AVX-512F and VPOPCNTDQ.
 */
#include "bitops.h"

#ifdef BBCU_X86
#include <immintrin.h>

#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512vpopcntdq,popcnt")
#endif

#include "epilogue.h"

#define LANES 8

/* Popcounts of output channels [o, o + 8 * nv) at pixel (h, w), written as int32 to count[o...].
 * Always inlined with a constant nv so the accumulators live in registers. */
static inline __attribute__((always_inline)) void count_block(const ConvArgs *a, int h, int w, int o, int nv,
                                                              int32_t *count)
{
    const int cw = a->channel_words;
    __m512i total[8];
    for (int j = 0; j < nv; j++)
        total[j] = _mm512_setzero_si512();
    int y_first, y_last, x_first, x_last;
    tap_range(h, a->height, &y_first, &y_last);
    tap_range(w, a->width, &x_first, &x_last);
    for (int dy = y_first; dy <= y_last; dy++)
        for (int dx = x_first; dx <= x_last; dx++) {
            const uint64_t *xw = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * cw;
            const uint64_t *ww = a->wl + (size_t)((dy + 1) * 3 + (dx + 1)) * cw * a->o_lanes + o; /* P = 1 */
            for (int k = 0; k < cw; k++, ww += a->o_lanes) {
                const __m512i xb = _mm512_set1_epi64((long long)xw[k]);
                for (int j = 0; j < nv; j++) {
                    const __m512i wv = _mm512_loadu_si512((const void *)(ww + LANES * j));
                    total[j] = _mm512_add_epi64(total[j], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wv)));
                    __asm__("" : "+v"(total[j])); /* no reassociation over taps (see conv_avx2.c) */
                }
            }
        }
    for (int j = 0; j < nv; j++)
        _mm256_storeu_si256((__m256i *)(count + o + LANES * j), _mm512_cvtepi64_epi32(total[j]));
}

/* The hot case, as in conv_avx2.c: an interior pixel with C <= 64 (one word per tap), taps unrolled. */
static inline __attribute__((always_inline)) void count_interior_one_word(const ConvArgs *a, int h, int w, int o,
                                                                          int nv, int32_t *count)
{
    __m512i total[8];
    for (int j = 0; j < nv; j++)
        total[j] = _mm512_setzero_si512();
#pragma GCC unroll 9
    for (int tap = 0; tap < 9; tap++) {
        const size_t pixel = (size_t)(h + tap / 3 - 1) * a->width + (w + tap % 3 - 1);
        const __m512i xb = _mm512_set1_epi64((long long)a->x[pixel]);
        const uint64_t *ww = a->wl + (size_t)tap * a->o_lanes + o;
        for (int j = 0; j < nv; j++) {
            const __m512i wv = _mm512_loadu_si512((const void *)(ww + LANES * j));
            total[j] = _mm512_add_epi64(total[j], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wv)));
            __asm__("" : "+v"(total[j]));
        }
    }
    for (int j = 0; j < nv; j++)
        _mm256_storeu_si256((__m256i *)(count + o + LANES * j), _mm512_cvtepi64_epi32(total[j]));
}

static void begin_row_avx512(const ConvArgs *a, int h, const RowScratch *s)
{
    (void)a, (void)h, (void)s;
}

static void count_pixel_avx512(const ConvArgs *a, int h, int w, const RowScratch *s, int32_t *count)
{
    const int full_blocks = a->o_lanes / (8 * LANES) * (8 * LANES);
    (void)s;
    if (a->channel_words == 1 && h > 0 && h < a->height - 1 && w > 0 && w < a->width - 1) {
        for (int o = 0; o < full_blocks; o += 8 * LANES)
            count_interior_one_word(a, h, w, o, 8, count);
        for (int o = full_blocks; o < a->o_lanes; o += LANES)
            count_interior_one_word(a, h, w, o, 1, count);
    } else {
        for (int o = 0; o < full_blocks; o += 8 * LANES)
            count_block(a, h, w, o, 8, count);
        for (int o = full_blocks; o < a->o_lanes; o += LANES)
            count_block(a, h, w, o, 1, count);
    }
}

void bbcu_pack_signs_avx512(const float *v, const float *shift, int n, uint64_t *out)
{
    const __m512 zero = _mm512_setzero_ps();
    for (int word = 0; word < (n + 63) / 64; word++) {
        const int begin = word * 64, end = begin + 64 < n ? begin + 64 : n;
        uint64_t bits = 0;
        for (int i = begin; i < end; i += 16) {
            const __mmask16 live = end - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (end - i)) - 1);
            const __m512 u =
                _mm512_add_ps(_mm512_maskz_loadu_ps(live, v + i), _mm512_maskz_loadu_ps(live, shift + i));
            bits |= (uint64_t)(_mm512_cmp_ps_mask(u, zero, _CMP_GE_OQ) & live) << (i - begin);
        }
        out[word] = bits;
    }
}

void bbcu_conv_rows_avx512(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch)
{
    conv_rows(a, row_begin, row_end, scratch, begin_row_avx512, count_pixel_avx512, bbcu_pack_signs_avx512);
}

#ifdef __clang__
#pragma clang attribute pop
#endif

#endif
