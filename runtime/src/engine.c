/*
 * Running a loaded network: the graph top to bottom on one tile, and the tiling around it.
 *
 * This mirrors bbcu.engine.runtime (the Python engine): features are float32 (H, W, C), a bbcu_unit is
 * one call of the shared kernels (src/bbcu/engine/csrc) with its whole epilogue fused and, when the
 * next op is binary too, that op's input signs packed in the same pass; a bbcu_upsample is one such
 * call C -> s^2 C with the sub-pixel shuffle fused into its epilogue, the input its residual (the
 * nearest-neighbour skip); a conv with few outputs (a network's last) runs on the kernels' blocked
 * float conv, in the Python engine's order of sums.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitops.h"
#include "internal.h"

#define DEFAULT_TILE_BUDGET_MIB 128
#define MIN_AUTO_TILE 16

/* The features of one tile between operations. */
typedef struct Flow {
    float *x, *skip;
    uint64_t *packed; /* signs of x + shift of the next op, when the previous epilogue made them */
    int height, width, channels;
    int origin_row, origin_col; /* the tile's first input pixel in the image */
    double input_pixels;        /* the tile's, for progress (Op.work is per network input pixel) */
} Flow;

/* bbcu_options.progress's state: the work done of the whole run's. */
typedef struct Progress {
    void (*report)(void *context, double fraction);
    void *context;
    double total, done;
} Progress;

typedef struct Runner {
    const bbcu_model *model;
    const IsaKernels *isa;
    int threads;
    Progress *progress;
} Runner;

/* Counts `work` more as done and reports the fraction (nothing for ops that do no multiply-adds). */
static void advance(const Runner *r, double work)
{
    Progress *p = r->progress;
    p->done += work;
    if (p->report && work > 0.0)
        p->report(p->context, p->done < p->total ? p->done / p->total : 1.0);
}

/* The work of ops [first, first + count) on an input of `pixels` pixels. */
static double ops_work(const Op *ops, int count, double pixels)
{
    double work = 0.0;
    for (int i = 0; i < count; i++)
        work += ops[i].work;
    return work * pixels;
}

static float *new_floats(size_t count) { return malloc((count ? count : 1) * sizeof(float)); }

static uint64_t *pack(const Runner *r, const Flow *f, const float *shift)
{
    const int cw = bbcu_channel_words(f->channels);
    const size_t pixels = (size_t)f->height * f->width;
    uint64_t *bits = malloc(pixels * cw * sizeof(uint64_t));
    for (size_t p = 0; bits && p < pixels; p++)
        r->isa->pack_signs(f->x + p * f->channels, shift, f->channels, bits + p * cw);
    return bits;
}

/* Whether an op takes its input as packed signs (which the op before it can pack in its epilogue). */
static int binary(const Op *op) { return op && (op->kind == OP_BBCU_UNIT || op->kind == OP_BBCU_UPSAMPLE); }

/* next_shift (C,) repeated for each of `parts` blocks of C output channels: per-channel parameters
 * cover every output channel of a shuffled conv. */
static float *repeated(const float *next_shift, int channels, int parts)
{
    float *out = new_floats((size_t)channels * parts);
    for (int part = 0; out && part < parts; part++)
        memcpy(out + (size_t)part * channels, next_shift, (size_t)channels * sizeof(float));
    return out;
}

/* The rows one binary conv call reads and writes: the signs and residual of `height` x `width` input
 * pixels, y and next_bits (s times as many each side under a shuffle; next_bits NULL when no signs are
 * wanted), and output rows [from, to) of the input's (both 0: all), the rows around them read as real
 * neighbours. */
typedef struct Slice {
    const uint64_t *bits;
    const float *residual;
    int height, width;
    float *y;
    uint64_t *next_bits;
    int from, to;
} Slice;

/* One binary conv through the kernels: op's `parts` blocks of C output channels in one call, the
 * sub-pixel shuffle fused for an upsampler (block r is sub-pixel r), the leaky_relu op `leaky` (or NULL)
 * applied last; with next_shift, also the signs of y + next_shift into x->next_bits. */
static int binary_conv(const Runner *r, const Op *op, const Op *leaky, const Slice *x, const float *next_shift)
{
    const int c = op->in_channels, cw = bbcu_channel_words(c), outputs = op->parts * c;
    ConvArgs a = {0};
    a.x = x->bits;
    a.w = op->bits;
    a.height = x->height, a.width = x->width, a.channels = c, a.channel_words = cw, a.out_channels = outputs;
    a.shuffle = op->kind == OP_BBCU_UPSAMPLE ? op->scale : 1;
    a.o_lanes = bbcu_o_lanes(r->isa, outputs);
    a.y = x->y;
    a.scale = op->alpha, a.bias = op->binary_bias, a.gamma = op->gamma, a.beta = op->beta, a.zeta = op->zeta;
    a.residual = x->residual;
    a.leaky = leaky != NULL, a.leaky_slope = leaky ? leaky->slope : 0.0f;
    a.rows_from = x->from, a.rows_to = x->to;
    uint64_t *wl = bbcu_lane_weights(r->isa, a.w, outputs, cw);
    float *shifts = next_shift ? repeated(next_shift, c, op->parts) : NULL;
    a.wl = wl;
    a.next_shift = shifts;
    a.next_bits = next_shift ? x->next_bits : NULL;
    const int ready = (wl || !bbcu_reads_wl(r->isa)) && (!next_shift || (shifts && a.next_bits));
    const int status = ready ? bbcu_run_rows(&a, r->isa, bbcu_threads_for(&a, r->threads)) : -1;
    free(wl);
    free(shifts);
    return status;
}

/* A bbcu_unit (y written over its input) or a bbcu_upsample (y s times larger each side), with a
 * leaky_relu fused (or NULL); the next op's input signs come with it when that op is binary. */
static int run_binary(const Runner *r, const Op *op, const Op *leaky, const Op *next, Flow *f)
{
    const int s = op->kind == OP_BBCU_UPSAMPLE ? op->scale : 1, cw = bbcu_channel_words(f->channels);
    const size_t out_pixels = (size_t)f->height * s * f->width * s;
    uint64_t *bits = f->packed ? f->packed : pack(r, f, op->shift);
    uint64_t *next_bits = binary(next) ? malloc(out_pixels * cw * sizeof(uint64_t)) : NULL;
    f->packed = NULL;
    float *y = s == 1 ? f->x : new_floats(out_pixels * f->channels);
    const Slice x = {bits, f->x, f->height, f->width, y, next_bits, 0, 0};
    const int ready = bits && y && (next_bits || !binary(next));
    const int status = ready ? binary_conv(r, op, leaky, &x, binary(next) ? next->shift : NULL) : -1;
    free(bits);
    f->packed = next_bits;
    if (s == 1 || status) {
        if (y != f->x)
            free(y);
        return status;
    }
    free(f->x);
    f->x = y;
    f->height *= s, f->width *= s;
    return 0;
}

/* A 3x3 float conv (a->weight in Op.weight's layout): with few outputs on the kernels' blocked float
 * conv (the Python engine's, the same sums in the same order), any other on ops.c's. */
static void float_conv(const Runner *r, const FloatConvArgs *a)
{
    if (bbcu_few_outputs(a->channels, a->out_channels))
        bbcu_float_conv3x3(a, r->isa, r->threads);
    else
        bbcu_conv3x3_float(a, r->isa, r->threads);
}

static void leaky_relu(float *restrict x, size_t count, float slope)
{
    for (size_t i = 0; i < count; i++)
        x[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

static int replace_x(Flow *f, float *y, int height, int width, int channels)
{
    if (!y)
        return -1;
    free(f->x);
    f->x = y;
    f->height = height, f->width = width, f->channels = channels;
    return 0;
}

/* ------------------------------------------------------------------ the banded tail */

#define BAND_ROWS 32 /* output rows per band, as runtime.py's _BandedTail */

static int min_int(int a, int b) { return a < b ? a : b; }
static int max_int(int a, int b) { return a > b ? a : b; }

/* The rows of a high-resolution map a banded tail holds (runtime.py's _RowWindow): map rows
 * [base, made) in buffer rows [0, made - base) of `rows`, with their signs for a binary unit (bits; NULL
 * in a full-precision tail); before `done` they hold the unit's output (it updates them in place). */
typedef struct Window {
    float *features;
    uint64_t *bits;
    int rows, width, channels, base, made, done;
} Window;

static float *window_features(const Window *w, int row)
{
    return w->features + (size_t)(row - w->base) * w->width * w->channels;
}

static uint64_t *window_bits(const Window *w, int row)
{
    return w->bits + (size_t)(row - w->base) * w->width * bbcu_channel_words(w->channels);
}

/* Moves rows [row, made) to the buffers' start, so the next band's rows fit after them. */
static void forget_before(Window *w, int row)
{
    const size_t rows = (size_t)(w->made - row), words = bbcu_channel_words(w->channels);
    memmove(w->features, window_features(w, row), rows * w->width * w->channels * sizeof(float));
    if (w->bits)
        memmove(w->bits, window_bits(w, row), rows * w->width * words * sizeof(uint64_t));
    w->base = row;
}

/* One stage of a banded tail: an upsampler (a bbcu_upsample, or a conv whose output is pixel-shuffled,
 * with its LeakyReLU) or a full-precision conv_hr (scale 1), whose rows are made into a window as the
 * stage after it asks for them. */
typedef struct Stage {
    const Op *conv, *leaky; /* leaky: full-precision stages */
    const Op *next;         /* binary stages: the op whose input signs they pack */
    int scale, height;      /* height: the rows of its whole output map */
    Window w;
    float *made; /* full-precision upsamplers: room for the conv's rows of one call, before the shuffle */
} Stage;

/* Lets `w` forget the rows before `row`, but keeps the `scale` rows before its last (an upsampler's
 * next call writes from its input's row above on, window_features of which must lie in the window). */
static void keep_from(Window *w, int row, int scale) { forget_before(w, max_int(0, min_int(row, w->made - scale))); }

/* Appends rows of binary upsampler stages[k] up to `last`, with the signs of its next op's input,
 * made from the rows of its input they come from (their neighbours read, not recomputed): the tail's
 * input `in` for stage 0, else stages[k - 1], asked in turn for the rows it lacks. */
static int make_binary_rows(const Runner *r, Stage *stages, int k, Window *in, int in_height, int last)
{
    Stage *st = &stages[k];
    Window *input = k ? &stages[k - 1].w : in;
    const int s = st->scale, first = st->w.made, height = k ? stages[k - 1].height : in_height;
    if (first >= last)
        return 0;
    const int low_first = first / s, low_last = (last + s - 1) / s; /* the input rows these come from */
    const int read_first = max_int(0, low_first - 1), read_last = min_int(height, low_last + 1);
    if (k) {
        keep_from(input, read_first, stages[k - 1].scale);
        if (make_binary_rows(r, stages, k - 1, in, in_height, read_last))
            return -1;
    }
    if (s * low_last - st->w.base > st->w.rows || s * read_first < st->w.base)
        return -1; /* never reached: binary_stages leaves room for every band, keep_from the row above */
    const Slice x = {window_bits(input, read_first),
                     window_features(input, read_first),
                     read_last - read_first,
                     input->width,
                     window_features(&st->w, s * read_first),
                     window_bits(&st->w, s * read_first),
                     low_first - read_first,
                     low_last - read_first};
    st->w.made = s * low_last;
    return binary_conv(r, st->conv, NULL, &x, st->next->shift);
}

/* Runs the unit, its leaky_relu fused, on rows [done, last), in place, reading the signs around them. */
static int run_unit_rows(const Runner *r, const Op *unit, const Op *leaky, Window *w, int last)
{
    const int first = w->done;
    if (first >= last)
        return 0;
    const int read_first = max_int(0, first - 1), read_last = min_int(w->made, last + 1);
    float *features = window_features(w, read_first);
    const Slice x = {window_bits(w, read_first), features, read_last - read_first, w->width, features, NULL,
                     first - read_first, last - read_first};
    w->done = last;
    return binary_conv(r, unit, leaky, &x, NULL);
}

/* Output rows [top, bottom) of a tail's last conv into out (the whole output), from window rows
 * [y_first, y_last) (those rows and the rows around them). */
static void last_conv_band(const Runner *r, const Op *conv, const Window *w, int y_first, int y_last, int top,
                           int bottom, float *out)
{
    const int outputs = conv->out_channels;
    const FloatConvArgs a = {window_features(w, y_first), conv->weight, conv->bias, y_last - y_first, w->width,
                             w->channels, outputs, out + (size_t)y_first * w->width * outputs, top - y_first,
                             bottom - y_first};
    float_conv(r, &a);
}

/* The tail's output becomes the flow's features, or is freed when the tail failed. */
static int finish_tail(Flow *f, int status, float *out, int height, int width, int outputs)
{
    if (status) {
        free(out);
        return -1;
    }
    return replace_x(f, out, height, width, outputs);
}

/* The `count` binary upsamplers of ops on a (height, width) input, their windows (features and signs)
 * allocated: the last holds a band, the rows kept from the band before and its rounding to whole input
 * rows (runtime.py's _BandedTail.window); each other one what the next reads of it in one call, plus
 * the rows keep_from keeps; -1 when memory ran out. */
static int binary_stages(const Op *ops, int count, int height, int width, Stage *stages)
{
    int rows[BBCU_MAX_TAIL_STAGES], status = 0;
    for (int k = 0; k < count; k++) {
        Stage *st = &stages[k];
        st->conv = &ops[k], st->next = &ops[k + 1], st->scale = ops[k].scale;
        st->height = height *= st->scale;
        st->w.width = width *= st->scale;
        st->w.channels = ops[k].in_channels;
    }
    rows[count - 1] = BAND_ROWS + 4 * stages[count - 1].scale + 2;
    for (int k = count - 2; k >= 0; k--)
        rows[k] = (rows[k + 1] + stages[k + 1].scale - 1) / stages[k + 1].scale + 2 * stages[k].scale + 3;
    for (int k = 0; k < count; k++) {
        Window *w = &stages[k].w;
        w->rows = min_int(stages[k].height, rows[k]);
        w->features = new_floats((size_t)w->rows * w->width * w->channels);
        w->bits = malloc((size_t)w->rows * w->width * bbcu_channel_words(w->channels) * sizeof(uint64_t));
        status |= w->features && w->bits ? 0 : -1;
    }
    return status;
}

/* Ops[0 .. count) (bbcu_banded_tail): BBCU-M's upsamplers, conv_hr with its LeakyReLU fused, and
 * conv_last, band of rows by band of rows as runtime.py's _BandedTail runs its last upsampler and the
 * rest: each band's high-resolution features are made, used and overwritten in windows that stay in
 * cache, every row of every stage computed once, so none of BBCU-M x4's 2x and 4x maps exists whole
 * and the result is the whole-map run's bit for bit. */
static int run_binary_tail(const Runner *r, const Op *ops, int count, Flow *f)
{
    Stage stages[BBCU_MAX_TAIL_STAGES] = {0};
    const int n = count - 3; /* the upsamplers, then the unit, its leaky_relu and the last conv */
    const Op *unit = &ops[n], *leaky = &ops[n + 1], *conv = &ops[n + 2];
    int status = binary_stages(ops, n, f->height, f->width, stages);
    Window *w = &stages[n - 1].w;
    const int s = stages[n - 1].scale, height = stages[n - 1].height, width = w->width;
    const double row_work = ops_work(ops, count, f->input_pixels) / height; /* per output row */
    uint64_t *low_bits = f->packed ? f->packed : pack(r, f, ops[0].shift);
    f->packed = NULL;
    Window in = {f->x, low_bits, f->height, f->width, f->channels, 0, f->height, 0};
    float *out = new_floats((size_t)height * width * conv->out_channels);
    status |= low_bits && out ? 0 : -1;
    for (int top = 0; top < height && !status; top += BAND_ROWS) {
        const int bottom = min_int(height, top + BAND_ROWS);
        const int y_first = max_int(0, top - 1), y_last = min_int(height, bottom + 1); /* what conv reads */
        keep_from(w, y_first, s);
        status = make_binary_rows(r, stages, n - 1, &in, f->height, min_int(height, y_last + 1));
        if (!status)
            status = run_unit_rows(r, unit, leaky, w, y_last);
        if (!status) {
            last_conv_band(r, conv, w, y_first, y_last, top, bottom, out);
            advance(r, row_work * (bottom - top));
        }
    }
    free(low_bits);
    for (int k = 0; k < n; k++)
        free(stages[k].w.features), free(stages[k].w.bits);
    return finish_tail(f, status, out, height, width, conv->out_channels);
}

/* Makes rows of stages[k] up to `last` from the rows of its input around them (the tail's input map
 * `in` for stage 0, else stages[k - 1], asked in turn for the rows it lacks): its conv on the input
 * rows they come from, the shuffle into the window, the LeakyReLU. Rows a later call reads again stay
 * in the input's window, so no row of any stage is computed twice. */
static int make_stage_rows(const Runner *r, Stage *stages, int k, Window *in, int in_height, int last)
{
    Stage *st = &stages[k];
    Window *input = k ? &stages[k - 1].w : in;
    const int s = st->scale, first = st->w.made, height = k ? stages[k - 1].height : in_height;
    if (first >= last)
        return 0;
    const int low_first = first / s, low_last = (last + s - 1) / s; /* the input rows these come from */
    const int read_first = max_int(0, low_first - 1), read_last = min_int(height, low_last + 1);
    if (k) {
        forget_before(input, min_int(read_first, input->made));
        if (make_stage_rows(r, stages, k - 1, in, in_height, read_last))
            return -1;
    }
    if (s * low_last - st->w.base > st->w.rows || (s == 1 && read_first < st->w.base))
        return -1; /* never reached: stage_rows leaves room for every band, and conv_hr's rows from the
                    * band above its first are kept */
    const Op *conv = st->conv;
    float *y = s > 1 ? st->made : window_features(&st->w, read_first); /* a shuffle needs a copy */
    const FloatConvArgs a = {window_features(input, read_first), conv->weight, conv->bias, read_last - read_first,
                             input->width, input->channels, conv->out_channels, y, low_first - read_first,
                             low_last - read_first};
    float_conv(r, &a);
    const size_t low_row = (size_t)input->width * conv->out_channels;
    float *out = window_features(&st->w, s * low_first);
    if (s > 1)
        bbcu_pixel_shuffle(st->made + (low_first - read_first) * low_row, low_last - low_first, input->width,
                           st->w.channels, s, out);
    leaky_relu(out, (low_last - low_first) * low_row, st->leaky->slope);
    st->w.made = s * low_last;
    return 0;
}

/* The window rows of each stage: stage k + 1 reads at most ceil(its rows / its scale) + 2 rows of stage
 * k's, made in whole input rows (up to scale - 1 more); the last stage holds a band and its neighbours. */
static void stage_rows(const Stage *stages, int count, int *rows)
{
    rows[count - 1] = BAND_ROWS + 2;
    for (int k = count - 2; k >= 0; k--)
        rows[k] = (rows[k + 1] + stages[k + 1].scale - 1) / stages[k + 1].scale + 2 + stages[k].scale;
}

/* The `count` stages of ops (the upsamplers' conv, pixel_shuffle, leaky_relu, then conv_hr and its
 * leaky_relu) on a (height, width) input, their windows allocated; -1 when memory ran out. */
static int new_stages(const Op *ops, int count, int height, int width, Stage *stages)
{
    int rows[BBCU_MAX_TAIL_STAGES], status = 0;
    for (int k = 0; k < count; k++) {
        Stage *st = &stages[k];
        st->conv = &ops[3 * k];
        st->scale = k < count - 1 ? ops[3 * k + 1].scale : 1;
        st->leaky = &ops[3 * k + (k < count - 1 ? 2 : 1)];
        st->height = height *= st->scale;
        st->w.width = width *= st->scale;
        st->w.channels = st->conv->out_channels / (st->scale * st->scale);
    }
    stage_rows(stages, count, rows);
    for (int k = 0; k < count; k++) {
        Stage *st = &stages[k];
        const int in_width = st->w.width / st->scale, in_rows = (rows[k] + st->scale - 1) / st->scale + 2;
        st->w.rows = min_int(st->height, rows[k]);
        st->w.features = new_floats((size_t)st->w.rows * st->w.width * st->w.channels);
        st->made = st->scale > 1 ? new_floats((size_t)in_rows * in_width * st->conv->out_channels) : NULL;
        status |= st->w.features && (st->made || st->scale == 1) ? 0 : -1;
    }
    return status;
}

/* Ops[0 .. count) (bbcu_banded_tail): BBCU-L's upsamplers (conv, pixel_shuffle, leaky_relu each),
 * conv_hr with its leaky_relu and conv_last, band of rows by band of rows as run_binary_tail does, each
 * row of every stage computed once in a window of rows: none of the high-resolution maps exists whole
 * (BBCU-L x4's 4x maps are 236 MB each at 320x180 in), so the tile budget counts only the tail's input
 * and output, and a 320x180 input is no longer cut into tiles with context. */
static int run_full_tail(const Runner *r, const Op *ops, int count, Flow *f)
{
    Stage stages[BBCU_MAX_TAIL_STAGES] = {0};
    const int n = count / 3; /* the upsamplers, then conv_hr */
    int status = new_stages(ops, n, f->height, f->width, stages);
    const Op *conv = &ops[count - 1];
    const int height = stages[n - 1].height, width = stages[n - 1].w.width;
    const double row_work = ops_work(ops, count, f->input_pixels) / height; /* per output row */
    Window in = {f->x, NULL, f->height, f->width, f->channels, 0, f->height, 0}, *hr = &stages[n - 1].w;
    float *out = new_floats((size_t)height * width * conv->out_channels);
    status |= out ? 0 : -1;
    for (int top = 0; top < height && !status; top += BAND_ROWS) {
        const int bottom = min_int(height, top + BAND_ROWS);
        const int y_first = max_int(0, top - 1), y_last = min_int(height, bottom + 1); /* what conv reads */
        forget_before(hr, min_int(y_first, hr->made));
        status = make_stage_rows(r, stages, n - 1, &in, f->height, y_last);
        if (!status) {
            last_conv_band(r, conv, hr, y_first, y_last, top, bottom, out);
            advance(r, row_work * (bottom - top));
        }
    }
    for (int k = 0; k < n; k++)
        free(stages[k].w.features), free(stages[k].made);
    return finish_tail(f, status, out, height, width, conv->out_channels);
}

/* Runs op (a bbcu_unit with the leaky_relu `leaky` fused, or NULL); `next` is the op after them. */
static int run_op(const Runner *r, const Op *op, const Op *leaky, const Op *next, Flow *f, const float *in)
{
    const size_t count = (size_t)f->height * f->width * f->channels;
    const float k = r->model->k, slope = op->slope;
    /* The features in locals, so that the elementwise loops vectorise (through f they could alias it). */
    float *restrict x = f->x, *restrict skip = f->skip, *y;
    switch (op->kind) {
    case OP_INPUT_SCALE:
        f->skip = new_floats(count);
        f->x = new_floats(count);
        if (!f->skip || !f->x)
            return -1;
        for (size_t i = 0; i < count; i++)
            f->skip[i] = f->x[i] = in[i] * k;
        return 0;
    case OP_CONV:
        y = new_floats((size_t)f->height * f->width * op->out_channels);
        if (y) {
            const FloatConvArgs a = {x, op->weight, op->bias, f->height, f->width, f->channels, op->out_channels, y,
                                     0, 0};
            float_conv(r, &a);
        }
        return replace_x(f, y, f->height, f->width, op->out_channels);
    case OP_LEAKY_RELU:
        leaky_relu(x, count, slope);
        return 0;
    case OP_RELU:
        for (size_t i = 0; i < count; i++)
            x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return 0;
    case OP_PIXEL_SHUFFLE:
        y = new_floats(count);
        if (y)
            bbcu_pixel_shuffle(f->x, f->height, f->width, op->out_channels, op->scale, y);
        return replace_x(f, y, f->height * op->scale, f->width * op->scale, op->out_channels);
    case OP_BBCU_UNIT:
    case OP_BBCU_UPSAMPLE:
        return run_binary(r, op, leaky, next, f);
    case OP_ADD_BILINEAR_SKIP:
        return bbcu_add_bilinear(f->skip, f->height / op->scale, f->width / op->scale, f->channels, op->scale,
                                 f->origin_row, f->origin_col, f->x, r->threads);
    case OP_SUBTRACT_FROM_SKIP:
        for (size_t i = 0; i < count; i++)
            x[i] = skip[i] - x[i];
        return 0;
    case OP_OUTPUT_SCALE:
        for (size_t i = 0; i < count; i++)
            x[i] = x[i] / k;
        return 0;
    }
    return -1;
}

/* The leaky_relu right after op i when op i is a bbcu_unit, which then applies it last in its epilogue
 * (as the Python engine does in its banded tail): a separate pass over BBCU-M x4's largest map took an
 * eighth of bbcu-run's time. NULL otherwise. */
static const Op *fused_leaky(const bbcu_model *m, int i)
{
    const Op *next = i + 1 < m->op_count ? &m->ops[i + 1] : NULL;
    return m->ops[i].kind == OP_BBCU_UNIT && next && next->kind == OP_LEAKY_RELU ? next : NULL;
}

/* The whole graph on one (height, width) input, the image's from pixel (origin_row, origin_col) on; out
 * receives (sH, sW, out_channels). */
static int run_tile(const Runner *r, const float *in, int height, int width, int origin_row, int origin_col,
                    float *out)
{
    const bbcu_model *m = r->model;
    Flow f = {NULL, NULL, NULL, height, width, m->in_channels, origin_row, origin_col, (double)height * width};
    int status = 0;
    for (int i = 0; i < m->op_count && !status;) {
        const int tail = bbcu_banded_tail(m, i);
        if (tail) {
            const Op *ops = &m->ops[i];
            status = ops->kind == OP_BBCU_UPSAMPLE ? run_binary_tail(r, ops, tail, &f) : run_full_tail(r, ops, tail, &f);
            i += tail;
            continue;
        }
        const Op *op = &m->ops[i], *leaky = fused_leaky(m, i);
        i += leaky ? 2 : 1;
        status = run_op(r, op, leaky, i < m->op_count ? &m->ops[i] : NULL, &f, in);
        advance(r, ops_work(op, leaky ? 2 : 1, f.input_pixels));
    }
    if (!status)
        memcpy(out, f.x, (size_t)f.height * f.width * f.channels * sizeof(float));
    free(f.x);
    free(f.skip);
    free(f.packed);
    return status;
}

/* ------------------------------------------------------------------ tiling */

static int auto_tile(const bbcu_model *m, int height, int width, int budget_mib)
{
    const double budget = (double)(budget_mib > 0 ? budget_mib : DEFAULT_TILE_BUDGET_MIB) * (1 << 20);
    const double per_pixel = (double)m->floats_per_pixel * sizeof(float);
    if ((double)height * width * per_pixel <= budget)
        return height > width ? height : width;
    const int side = (int)sqrt(budget / per_pixel) - 2 * m->radius;
    return side > MIN_AUTO_TILE ? side : MIN_AUTO_TILE;
}

/* Rows [y0, y1) x columns [x0, x1) of the input. */
typedef struct Box {
    int y0, y1, x0, x1;
} Box;

/* The count of tiles of `tile` pixels a side, and tile `i` of them (row by row). */
static int tiles_across(int side, int tile) { return (side + tile - 1) / tile; }
static int tile_count(int height, int width, int tile)
{
    return tiles_across(height, tile) * tiles_across(width, tile);
}
static Box tile_core(int height, int width, int tile, int i)
{
    const int y0 = i / tiles_across(width, tile) * tile, x0 = i % tiles_across(width, tile) * tile;
    return (Box){y0, min_int(height, y0 + tile), x0, min_int(width, x0 + tile)};
}

/* The tile `core` with its context of the network's receptive radius, inside the image. */
static Box with_context(const bbcu_model *m, int height, int width, Box core)
{
    const int radius = m->radius;
    return (Box){max_int(0, core.y0 - radius), min_int(height, core.y1 + radius), max_int(0, core.x0 - radius),
                 min_int(width, core.x1 + radius)};
}

/* Runs tile `core` with its context and keeps its centre. */
static int run_core(const Runner *r, const float *in, int height, int width, Box core, float *out)
{
    const bbcu_model *m = r->model;
    const int s = m->scale, cin = m->in_channels, cout = m->out_channels;
    const Box box = with_context(m, height, width, core);
    const int th = box.y1 - box.y0, tw = box.x1 - box.x0;
    float *tile_in = new_floats((size_t)th * tw * cin), *tile_out = new_floats((size_t)th * tw * s * s * cout);
    int status = tile_in && tile_out ? 0 : -1;
    for (int h = 0; h < th && !status; h++)
        memcpy(tile_in + (size_t)h * tw * cin, in + ((size_t)(box.y0 + h) * width + box.x0) * cin,
               (size_t)tw * cin * sizeof(float));
    if (!status)
        status = run_tile(r, tile_in, th, tw, box.y0, box.x0, tile_out);
    for (int h = (core.y0 - box.y0) * s; h < (core.y1 - box.y0) * s && !status; h++)
        memcpy(out + ((size_t)(box.y0 * s + h) * width * s + (size_t)core.x0 * s) * cout,
               tile_out + ((size_t)h * tw * s + (size_t)(core.x0 - box.x0) * s) * cout,
               (size_t)(core.x1 - core.x0) * s * cout * sizeof(float));
    free(tile_in);
    free(tile_out);
    return status;
}

/* The work of the whole run: every tile with its context. */
static double run_work(const bbcu_model *m, int height, int width, int tile)
{
    double work = 0.0;
    for (int i = 0; i < tile_count(height, width, tile); i++) {
        const Box box = with_context(m, height, width, tile_core(height, width, tile, i));
        work += m->work * (double)(box.y1 - box.y0) * (box.x1 - box.x0);
    }
    return work;
}

static int online_cpus(void)
{
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

const char *bbcu_best_isa(void) { return bbcu_isa_best()->name; }

size_t bbcu_output_size(const bbcu_model *model, int height, int width)
{
    return (size_t)height * model->scale * width * model->scale * model->out_channels;
}

bbcu_status bbcu_run(const bbcu_model *model, const float *in, int height, int width, float *out,
                     const bbcu_options *options, bbcu_error *error)
{
    if (!model || !in || !out)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_run: model, in and out must not be NULL");
    if (height < 1 || width < 1 || height > BBCU_MAX_SIDE || width > BBCU_MAX_SIDE)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_run: image of %d x %d pixels (each side 1 to %d)", height,
                         width, BBCU_MAX_SIDE);
    const bbcu_options defaults = {0, 0, 0, NULL, NULL, NULL};
    const bbcu_options *o = options ? options : &defaults;
    const IsaKernels *isa = !o->isa || strcmp(o->isa, "auto") == 0 ? bbcu_isa_best() : bbcu_isa_find(o->isa);
    if (!isa || !bbcu_isa_supported(isa))
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_run: kernels '%s' unknown or not supported by this CPU",
                         o->isa);
    if (o->threads < 0 || o->tile < 0 || o->tile_budget_mib < 0)
        return bbcu_fail(error, BBCU_ERROR_ARGUMENT, "bbcu_run: threads, tile and tile_budget_mib must be >= 0");
    const int tile = o->tile ? o->tile : auto_tile(model, height, width, o->tile_budget_mib);
    Progress progress = {o->progress, o->progress_context, run_work(model, height, width, tile), 0.0};
    const Runner r = {model, isa, o->threads ? o->threads : online_cpus(), &progress};
    for (int i = 0; i < tile_count(height, width, tile); i++)
        if (run_core(&r, in, height, width, tile_core(height, width, tile, i), out))
            return bbcu_fail(error, BBCU_ERROR_MEMORY, "bbcu_run: out of memory (try a smaller tile)");
    if (o->progress)
        o->progress(o->progress_context, 1.0);
    if (error) {
        error->status = BBCU_OK;
        error->message[0] = '\0';
    }
    return BBCU_OK;
}
