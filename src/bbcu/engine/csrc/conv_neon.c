/*
 * The ARM NEON path (AArch64 Advanced SIMD, part of every AArch64 CPU).
 *
 * As on x86, output channels sit in the SIMD lanes: one activation word is broadcast and XORed with the
 * words of 2 output channels (one 128-bit register), `vcnt` counts the bits of each byte, and
 * `vpadal` adds neighbouring byte counts pairwise into 16-bit counters, so each 64-bit half of a
 * register accumulates one output channel and no horizontal sum is needed until the pixel is done.
 * A block of 8 registers (16 output channels) reuses each loaded activation word 16 times.
 *
 * This file could not be timed where it was written (x86 only); it is proven right under qemu-aarch64
 * against the portable path, bit for bit (runtime/Makefile's `test-arm`).
 */
#include "bitops.h"

#ifdef BBCU_ARM64
#include <arm_neon.h>

#include "epilogue.h"

#define LANES 2 /* output channels per register */
#define BLOCK 8 /* registers per output block */
/* A 16-bit counter gains at most 16 per tap word (two bytes of 8 bits), so it is widened after this
 * many words, far below 65535 / 16. */
#define WORDS_PER_FLUSH 2048

/* Adds the 16-bit counters of nv registers into 32-bit totals and clears them. */
static inline __attribute__((always_inline)) void flush_counts(uint16x8_t *partial, uint32x4_t *total, int nv)
{
    for (int j = 0; j < nv; j++) {
        total[j] = vpadalq_u16(total[j], partial[j]);
        partial[j] = vdupq_n_u16(0);
    }
}

/* Popcounts of output channels [o, o + 2 * nv) at pixel (h, w), written as int32 to count[o...].
 * Always inlined with a constant nv so the counters live in registers. */
static inline __attribute__((always_inline)) void count_block(const ConvArgs *a, int h, int w, int o, int nv,
                                                              int32_t *count)
{
    const int cw = a->channel_words;
    uint16x8_t partial[BLOCK];
    uint32x4_t total[BLOCK];
    for (int j = 0; j < nv; j++) {
        partial[j] = vdupq_n_u16(0);
        total[j] = vdupq_n_u32(0);
    }
    int y_first, y_last, x_first, x_last, pending = 0;
    tap_range(h, a->height, &y_first, &y_last);
    tap_range(w, a->width, &x_first, &x_last);
    for (int dy = y_first; dy <= y_last; dy++)
        for (int dx = x_first; dx <= x_last; dx++) {
            const uint64_t *xw = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * cw;
            const uint64_t *ww = a->wl + (size_t)((dy + 1) * 3 + (dx + 1)) * cw * a->o_lanes + o; /* P = 1 */
            for (int k = 0; k < cw; k++, ww += a->o_lanes) {
                const uint8x16_t xb = vreinterpretq_u8_u64(vdupq_n_u64(xw[k]));
                for (int j = 0; j < nv; j++) {
                    const uint8x16_t wv = vreinterpretq_u8_u64(vld1q_u64(ww + LANES * j));
                    partial[j] = vpadalq_u8(partial[j], vcntq_u8(veorq_u8(xb, wv)));
                }
                if (++pending == WORDS_PER_FLUSH) {
                    flush_counts(partial, total, nv);
                    pending = 0;
                }
            }
        }
    flush_counts(partial, total, nv);
    for (int j = 0; j < nv; j++) {
        const uint64x2_t lanes = vpaddlq_u32(total[j]); /* each 64-bit lane: one output channel */
        count[o + LANES * j] = (int32_t)vgetq_lane_u64(lanes, 0);
        count[o + LANES * j + 1] = (int32_t)vgetq_lane_u64(lanes, 1);
    }
}

static void begin_row_neon(const ConvArgs *a, int h, const RowScratch *s)
{
    (void)a, (void)h, (void)s;
}

static void count_pixel_neon(const ConvArgs *a, int h, int w, const RowScratch *s, int32_t *count)
{
    const int full_blocks = a->o_lanes / (BLOCK * LANES) * (BLOCK * LANES);
    (void)s;
    for (int o = 0; o < full_blocks; o += BLOCK * LANES)
        count_block(a, h, w, o, BLOCK, count);
    for (int o = full_blocks; o < a->o_lanes; o += LANES)
        count_block(a, h, w, o, 1, count);
}

void bbcu_conv_rows_neon(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch)
{
    conv_rows(a, row_begin, row_end, scratch, begin_row_neon, count_pixel_neon, bbcu_pack_signs_portable);
}

#endif
