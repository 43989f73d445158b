/*
 * libbbcu's private declarations: the loaded network (model.c builds it, engine.c runs it) and the
 * full-precision operations (ops.c).
 */
#ifndef BBCU_RUNTIME_INTERNAL_H
#define BBCU_RUNTIME_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bbcu.h"
#include "bitops.h"

typedef enum OpKind {
    OP_INPUT_SCALE,
    OP_CONV,
    OP_LEAKY_RELU,
    OP_RELU,
    OP_PIXEL_SHUFFLE,
    OP_BBCU_UNIT,
    OP_BBCU_UPSAMPLE,
    OP_ADD_BILINEAR_SKIP,
    OP_SUBTRACT_FROM_SKIP,
    OP_OUTPUT_SCALE,
} OpKind;

/* One graph operation with its tensors, laid out for the runtime. */
typedef struct Op {
    OpKind kind;
    int in_channels, out_channels; /* features before and after */
    int scale;                     /* pixel_shuffle, bbcu_upsample, add_bilinear_skip */
    float slope;                   /* leaky_relu */
    /* conv: weight as (ceil(out_channels / BBCU_CONV_BLOCK), 3, 3, in_channels, BBCU_CONV_BLOCK), the
     * last block's missing outputs zero, or (out_channels, 9, in_channels) where bbcu_few_outputs; bias
     * (out_channels,) or NULL. */
    float *weight, *bias;
    /* Binary ops, C = in_channels, one "part" per sub-pixel (1 for bbcu_unit, scale^2 for
     * bbcu_upsample, part r holding the stored output channels c * scale^2 + r): bits
     * (parts, C, 3, 3, Cw), and alpha, bias (NULL when absent), gamma, beta, zeta (parts, C). */
    float *shift;
    uint64_t *bits;
    float *alpha, *binary_bias, *gamma, *beta, *zeta;
    int parts;
    double work; /* its multiply-adds per input pixel of the network (BBCU_BINARY_MAC_WORK each if binary) */
} Op;

struct bbcu_model {
    char architecture[16];
    int scale, in_channels, out_channels;
    int floats_per_pixel; /* floats per input pixel of the largest feature map (for automatic tiles) */
    double work;          /* the ops' work per input pixel (Op.work), for progress */
    float k;
    int radius;
    int op_count;
    Op *ops;
};

/* Sets error (when not NULL) and returns status. */
bbcu_status bbcu_fail(bbcu_error *error, bbcu_status status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Output channels whose conv weights lie together (Op.weight): ops.c's plain conv computes them side by
 * side, each input channel's weights of a block one 64-byte line. */
#define BBCU_CONV_BLOCK 16

/* Whether a conv runs on the kernels' few-output float conv (conv_float.c), a network's last conv: the
 * Python engine's rule (runtime.py's _float_conv), so both sum its outputs in the same order. */
static inline int bbcu_few_outputs(int in_channels, int out_channels)
{
    return out_channels <= 4 && in_channels % 16 == 0;
}

/* How many ops from op i on make a high-resolution tail that engine.c runs band by band (0: none), as
 * the Python engine's _BandedTail does with BBCU-M's last upsampler: their maps then never exist whole
 * (model.c's tile budget counts on it). Two kinds, both from the network's first upsampler on and both
 * ending in a leaky_relu and a conv with few outputs (conv_hr's LeakyReLU and conv_last): BBCU-M's, up
 * to BBCU_MAX_TAIL_STAGES bbcu_upsamples, then the bbcu_unit conv_hr; BBCU-L's, up to
 * BBCU_MAX_TAIL_STAGES - 1 upsamplers (conv, pixel_shuffle, leaky_relu each), then the full-precision
 * conv_hr. */
#define BBCU_MAX_TAIL_STAGES 8
int bbcu_banded_tail(const bbcu_model *model, int i);

/* ------------------------------------------------------------------ ops.c: full-precision layers */

/* a->y (H, W, O) = conv3x3(a->x (H, W, C)) with zero padding, a->weight in blocks of outputs (Op.weight),
 * a->bias (O,) or NULL; only output rows [rows_from, rows_to) when they are set, reading the rows
 * around them as real neighbours (FloatConvArgs, as the kernels' few-output conv). Vectorised by hand
 * for x86 kernels other than the portable ones, which run the generic code: the same sums in the same
 * order either way. */
void bbcu_conv3x3_float(const FloatConvArgs *a, const IsaKernels *isa, int threads);
/* y (sH, sW, C) = PixelShuffle(s) of x (H, W, s^2 C), PyTorch's channel order. */
void bbcu_pixel_shuffle(const float *x, int height, int width, int channels, int scale, float *y);

#endif
