/*
 * The portable path: plain C that any compiler and CPU run. It is the reference the SIMD paths are
 * tested against, so it walks the definition directly (output channel by output channel).
 */
#include "bitops.h"
#include "epilogue.h"

static void begin_row_portable(const ConvArgs *a, int h, const RowScratch *s)
{
    (void)a, (void)h, (void)s;
}

static void count_pixel_portable(const ConvArgs *a, int h, int w, const RowScratch *s, int32_t *count)
{
    const int cw = a->channel_words;
    int y_first, y_last, x_first, x_last;
    (void)s;
    tap_range(h, a->height, &y_first, &y_last);
    tap_range(w, a->width, &x_first, &x_last);
    for (int o = 0; o < a->out_channels; o++) {
        int32_t sum = 0;
        for (int dy = y_first; dy <= y_last; dy++)
            for (int dx = x_first; dx <= x_last; dx++) {
                const uint64_t *xw = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * cw;
                const uint64_t *ww = a->w + ((size_t)o * 9 + (dy + 1) * 3 + (dx + 1)) * cw;
                for (int k = 0; k < cw; k++)
                    sum += __builtin_popcountll(xw[k] ^ ww[k]);
            }
        count[o] = sum;
    }
}

void bbcu_pack_signs_portable(const float *v, const float *shift, int n, uint64_t *out)
{
    for (int word = 0; word < (n + 63) / 64; word++) {
        uint64_t bits = 0;
        for (int b = 0; b < 64 && word * 64 + b < n; b++) {
            const int i = word * 64 + b;
            bits |= (uint64_t)(v[i] + shift[i] >= 0.0f) << b;
        }
        out[word] = bits;
    }
}

void bbcu_conv_rows_portable(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch)
{
    conv_rows(a, row_begin, row_end, scratch, begin_row_portable, count_pixel_portable, bbcu_pack_signs_portable);
}
