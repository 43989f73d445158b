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

#include "epilogue_avx512.h"

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

/* The popcounts of output channels [o, o + 8 * nv) of an interior pixel with C <= 64 (one word per tap):
 * the hot case, as in conv_avx2.c, taps unrolled, left in nv registers of 8 int64 lanes. */
static inline __attribute__((always_inline)) void interior_totals(const ConvArgs *a, int h, int w, int o, int nv,
                                                                  __m512i *total)
{
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
}

static inline __attribute__((always_inline)) void count_interior_one_word(const ConvArgs *a, int h, int w, int o,
                                                                          int nv, int32_t *count)
{
    __m512i total[8];
    interior_totals(a, h, w, o, nv, total);
    for (int j = 0; j < nv; j++)
        _mm256_storeu_si256((__m256i *)(count + o + LANES * j), _mm512_cvtepi64_epi32(total[j]));
}

/* 8 copies of the word at p, straight from memory: a load, no vector ALU slot (set1 of a loaded
 * value often goes through a general register and a shuffle instead). */
static inline __attribute__((always_inline)) __m512i broadcast_word(const uint64_t *p)
{
    __m512i v;
    __asm__("vpbroadcastq %1, %0" : "=v"(v) : "m"(*p));
    return v;
}

/* One 16-channel step of finish_block from the popcount registers: dot = full - 2 count as one fnmadd
 * (every value is an integer below 2^24, so nothing rounds, the same bits as the portable path's
 * integer arithmetic), then the shared float steps. */
static inline __attribute__((always_inline)) uint64_t finish_half(const Finish *f, Placement at_block,
                                                                  const __m512i *total, int half, int shape)
{
    /* The low dwords of two registers of int64 counts (each count < 2^31): one vpermt2d. */
    const __m512i even_dwords = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i count = _mm512_permutex2var_epi32(total[2 * half], even_dwords, total[2 * half + 1]);
    if (shape & RAW) {
        const __m512i dot = _mm512_sub_epi32(f->full, _mm512_slli_epi32(count, 1));
        _mm512_storeu_si512((void *)(f->raw + at_block.pixel * (size_t)at_block.n + at_block.first + 16 * half), dot);
        return 0;
    }
    const __m512 dot = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), _mm512_cvtepi32_ps(count), f->full_float);
    return finish_dots(f, at_block, dot, half, shape);
}

/* finish_pixel (epilogue.h) for 64 output channels of one interior pixel, straight from the popcount
 * registers: 16 channels per step, never through the count and values scratch. Every float
 * operation is the one epilogue_values / add_into / pack_signs do, in the same order, so the results
 * are identical bit for bit (tested against the portable path). */
static inline __attribute__((always_inline)) void finish_block(const Finish *f, Placement at_block,
                                                               const __m512i *total, int shape)
{
    uint64_t bits = 0;
    for (int half = 0; half < 4; half++)
        bits |= finish_half(f, at_block, total, half, shape);
    store_next_bits(f, at_block, bits, shape);
}

/* Layers whose interior pixels take the register path: C <= 64 and whole blocks of 64 output channels
 * in every sub-pixel (what every 64-channel BBCU layer and upsampler is). */
static int registers_path(const ConvArgs *a) { return a->channel_words == 1 && whole_blocks(a); }

/* The popcounts of output channels [o, o + 64) of the pixels (h, w) and (h, w + 1); o_lanes is the
 * lane weights' row length (the layer's output channels). Each weight register is loaded once for
 * both pixels (an empty asm keeps it in a register, or GCC folds the load into both XORs), and the 9
 * taps of the pair are addressed from one pointer, so the loop is almost nothing but its XOR,
 * popcount and add (benchmarks/kernels_session6.md). */
static inline __attribute__((always_inline)) void pair_totals(const ConvArgs *a, int h, int w, int o, int o_lanes,
                                                              __m512i (*total)[8])
{
    const size_t width = (size_t)a->width;
    const uint64_t *corner = a->x + (size_t)(h - 1) * width + (size_t)(w - 1);
    for (int p = 0; p < 2; p++)
        for (int j = 0; j < 8; j++)
            total[p][j] = _mm512_setzero_si512();
#pragma GCC unroll 9
    for (int tap = 0; tap < 9; tap++) {
        const uint64_t *x = corner + (size_t)(tap / 3) * width + (size_t)(tap % 3);
        const __m512i left = broadcast_word(x), right = broadcast_word(x + 1);
        const uint64_t *ww = a->wl + (size_t)tap * o_lanes + o;
        for (int j = 0; j < 8; j++) {
            __m512i wv = _mm512_loadu_si512((const void *)(ww + LANES * j));
            __asm__("" : "+v"(wv));
            total[0][j] = _mm512_add_epi64(total[0][j], _mm512_popcnt_epi64(_mm512_xor_si512(left, wv)));
            __asm__("" : "+v"(total[0][j]));
            total[1][j] = _mm512_add_epi64(total[1][j], _mm512_popcnt_epi64(_mm512_xor_si512(right, wv)));
            __asm__("" : "+v"(total[1][j]));
        }
    }
}

/* The interior pixels (1 .. W - 2) of interior row h, two at a time, for `blocks` blocks of 64 output
 * channels (`blocks` and `shape` constants where the caller is specialised). Sub-pixel r's channels
 * are [r * n, (r + 1) * n), walked without dividing. */
static inline __attribute__((always_inline)) void interior_row_blocks(const ConvArgs *a, const Finish *f, int h,
                                                                      int blocks, int shape)
{
    const int subpixels = subpixels_of(a), n = 64 * blocks / subpixels;
    int w = 1;
    for (; w + 1 < a->width - 1; w += 2)
        for (int r = 0; r < subpixels; r++)
            for (int first = 0; first < n; first += 64) {
                __m512i total[2][8];
                pair_totals(a, h, w, r * n + first, 64 * blocks, total);
                finish_block(f, block_placement(a, h, w, r, n, first), total[0], shape);
                finish_block(f, block_placement(a, h, w + 1, r, n, first), total[1], shape);
            }
    for (; w < a->width - 1; w++) /* the odd one left at the end of the row */
        for (int r = 0; r < subpixels; r++)
            for (int first = 0; first < n; first += 64) {
                __m512i total[8];
                interior_totals(a, h, w, r * n + first, 8, total);
                finish_block(f, block_placement(a, h, w, r, n, first), total, shape);
            }
}

/* Specialised for the layers networks are made of (a unit, the tail's last unit, the x2 upsampler):
 * constant channel offsets and no per-step tests. */
static void interior_row(const ConvArgs *a, const float *table, int h)
{
    const Finish f = finish_of(a, table);
    const int shape = shape_of(a), blocks = a->out_channels / 64;
    if (blocks == 1 && shape == UNIT_SHAPE)
        interior_row_blocks(a, &f, h, 1, UNIT_SHAPE);
    else if (blocks == 1 && shape == TAIL_SHAPE)
        interior_row_blocks(a, &f, h, 1, TAIL_SHAPE);
    else if (blocks == 1 && shape == (UNIT_SHAPE | BIAS))
        interior_row_blocks(a, &f, h, 1, UNIT_SHAPE | BIAS);
    else if (blocks == 4 && shape == UNIT_SHAPE) /* the x2 sub-pixel upsampler */
        interior_row_blocks(a, &f, h, 4, UNIT_SHAPE);
    else
        interior_row_blocks(a, &f, h, blocks, shape);
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

/* The row loop: interior pixels of interior rows through the register path when the layer allows it,
 * every other pixel through the shared conv_rows (epilogue.h). */
void bbcu_conv_rows_avx512(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch)
{
    if (!registers_path(a) || a->width < 3) {
        conv_rows(a, row_begin, row_end, scratch, begin_row_avx512, count_pixel_avx512, bbcu_pack_signs_avx512);
        return;
    }
    float table[PARAMS * MAX_TABLE_CHANNELS] __attribute__((aligned(64)));
    gather_params(a, table);
    for (int h = row_begin; h < row_end; h++) {
        if (h == 0 || h == a->height - 1) {
            conv_rows(a, h, h + 1, scratch, begin_row_avx512, count_pixel_avx512, bbcu_pack_signs_avx512);
            continue;
        }
        for (int w = 0; w < a->width; w += a->width - 1) { /* the two border columns */
            count_pixel_avx512(a, h, w, scratch, scratch->count);
            finish_pixel(a, h, w, scratch->count, scratch->values, bbcu_pack_signs_avx512);
        }
        interior_row(a, table, h);
    }
}

#ifdef __clang__
#pragma clang attribute pop
#endif

#endif
