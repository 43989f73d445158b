/*
 * Running a loaded network: the graph top to bottom on one tile, and the tiling around it.
 *
 * This mirrors bbcu.engine.runtime (the Python engine): features are float32 (H, W, C), a bbcu_unit is
 * one call of the shared kernels (src/bbcu/engine/csrc) with its whole epilogue fused and, when the
 * next op is binary too, that op's input signs packed in the same pass; a bbcu_upsample is one such
 * call C -> s^2 C with the sub-pixel shuffle fused into its epilogue, the input its residual (the
 * nearest-neighbour skip); a conv with few outputs (a network's last) runs on the kernels' blocked
 * float conv, in the Python engine's order of sums. A network's tail from its first upsampler on runs
 * band of rows by band of rows (run_tail), further than the Python engine's: none of its upsampled
 * maps exists whole. Progress is reported per layer and per band (bbcu_options.progress).
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

/* One stage of a banded tail: an upsampler (a bbcu_upsample; or a conv whose output is pixel-shuffled,
 * with its LeakyReLU) or a full-precision conv_hr (scale 1, with its LeakyReLU), whose rows are made
 * into a window as the stage after it asks for them. */
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

/* The input rows a stage reads to make its next rows: those they come from, [low_first, low_last), and
 * the rows around them, [read_first, read_last). */
typedef struct RowPlan {
    int low_first, low_last, read_first, read_last;
} RowPlan;

/* A binary upsampler's rows: one kernel call, the shuffle fused, the signs of its next op's input
 * packed beside its features. */
static int binary_rows(const Runner *r, const Stage *st, const Window *input, RowPlan p)
{
    const int s = st->scale;
    const Slice x = {window_bits(input, p.read_first),
                     window_features(input, p.read_first),
                     p.read_last - p.read_first,
                     input->width,
                     window_features(&st->w, s * p.read_first),
                     window_bits(&st->w, s * p.read_first),
                     p.low_first - p.read_first,
                     p.low_last - p.read_first};
    return binary_conv(r, st->conv, NULL, &x, st->next->shift);
}

/* A full-precision stage's rows: its conv (an upsampler's into `made`, conv_hr's straight into its
 * window), an upsampler's shuffle into the window, the LeakyReLU. */
static int full_rows(const Runner *r, const Stage *st, const Window *input, RowPlan p)
{
    const Op *conv = st->conv;
    const int s = st->scale;
    const FloatConvArgs a = {window_features(input, p.read_first),
                             conv->weight,
                             conv->bias,
                             p.read_last - p.read_first,
                             input->width,
                             input->channels,
                             conv->out_channels,
                             s > 1 ? st->made : window_features(&st->w, p.read_first),
                             p.low_first - p.read_first,
                             p.low_last - p.read_first};
    float_conv(r, &a);
    const size_t low_row = (size_t)input->width * conv->out_channels;
    float *out = window_features(&st->w, s * p.low_first);
    if (s > 1)
        bbcu_pixel_shuffle(st->made + (p.low_first - p.read_first) * low_row, p.low_last - p.low_first, input->width,
                           st->w.channels, s, out);
    leaky_relu(out, (p.low_last - p.low_first) * low_row, st->leaky->slope);
    return 0;
}

/* Appends rows of stages[k] up to `last`, made from the rows of its input they come from (their
 * neighbours read, not recomputed): the tail's input `in` for stage 0, else stages[k - 1], asked in
 * turn for the rows it lacks. The rows a later call reads again stay in the input's window, so no row
 * of any stage is computed twice. */
static int make_rows(const Runner *r, Stage *stages, int k, Window *in, int in_height, int last)
{
    Stage *st = &stages[k];
    Window *input = k ? &stages[k - 1].w : in;
    const int s = st->scale, first = st->w.made, height = k ? stages[k - 1].height : in_height;
    if (first >= last)
        return 0;
    const int low_first = first / s, low_last = (last + s - 1) / s;
    const RowPlan plan = {low_first, low_last, max_int(0, low_first - 1), min_int(height, low_last + 1)};
    if (k) {
        keep_from(input, plan.read_first, stages[k - 1].scale);
        if (make_rows(r, stages, k - 1, in, in_height, plan.read_last))
            return -1;
    }
    if (s * low_last - st->w.base > st->w.rows || s * plan.read_first < st->w.base)
        return -1; /* never reached: new_windows leaves room for every band, keep_from the rows above */
    st->w.made = s * low_last;
    return st->next ? binary_rows(r, st, input, plan) : full_rows(r, st, input, plan);
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

/* The stages of a tail's `count` ops (bbcu_banded_tail): BBCU-M's bbcu_upsamples, or BBCU-L's
 * upsamplers (conv, pixel_shuffle, leaky_relu each) and its conv_hr with its leaky_relu. Returns their
 * count. */
static int tail_stages(const Op *ops, int count, Stage *stages)
{
    const int binary = ops[0].kind == OP_BBCU_UPSAMPLE, n = binary ? count - 3 : count / 3;
    for (int k = 0; k < n; k++) {
        Stage *st = &stages[k];
        if (binary) {
            st->conv = &ops[k], st->next = &ops[k + 1], st->scale = ops[k].scale;
            st->w.channels = ops[k].in_channels;
        } else {
            st->conv = &ops[3 * k], st->scale = k < n - 1 ? ops[3 * k + 1].scale : 1;
            st->leaky = &ops[3 * k + (k < n - 1 ? 2 : 1)];
            st->w.channels = st->conv->out_channels / (st->scale * st->scale);
        }
    }
    return n;
}

/* Each stage's output size on a (height, width) input and its window: the last one's holds a band, the
 * rows kept from the band before and the rounding to whole input rows (runtime.py's
 * _BandedTail.window); each other one's what the next stage reads of it in one call and the rows
 * keep_from keeps. Binary stages keep the signs of their rows too; full-precision upsamplers get room
 * for their conv's rows of one call. -1 when memory ran out. */
static int new_windows(Stage *stages, int n, int height, int width)
{
    int rows[BBCU_MAX_TAIL_STAGES], status = 0;
    rows[n - 1] = BAND_ROWS + 4 * stages[n - 1].scale + 2;
    for (int k = n - 2; k >= 0; k--)
        rows[k] = (rows[k + 1] + stages[k + 1].scale - 1) / stages[k + 1].scale + 2 * stages[k].scale + 3;
    for (int k = 0; k < n; k++) {
        Stage *st = &stages[k];
        Window *w = &st->w;
        const int s = st->scale, in_width = width, in_rows = (rows[k] + s - 1) / s + 2;
        st->height = height *= s;
        w->width = width *= s;
        w->rows = min_int(st->height, rows[k]);
        w->features = new_floats((size_t)w->rows * w->width * w->channels);
        if (st->next)
            w->bits = malloc((size_t)w->rows * w->width * bbcu_channel_words(w->channels) * sizeof(uint64_t));
        if (!st->next && s > 1)
            st->made = new_floats((size_t)in_rows * in_width * st->conv->out_channels);
        status |= w->features && (w->bits || !st->next) && (st->made || st->next || s == 1) ? 0 : -1;
    }
    return status;
}

/* Ops[0 .. count) (bbcu_banded_tail) band of rows by band of rows, as runtime.py's _BandedTail runs
 * BBCU-M's last upsampler and the rest: each band's high-resolution features are made, used and
 * overwritten in windows that stay in cache, every row of every stage computed once, so none of the
 * upsampled maps exists whole (the tile budget counts only the tail's input and output) and the
 * result is the whole-map run's bit for bit. A binary tail's conv_hr (a bbcu_unit, its LeakyReLU
 * fused) runs in place in the last window. */
static int run_tail(const Runner *r, const Op *ops, int count, Flow *f)
{
    Stage stages[BBCU_MAX_TAIL_STAGES] = {0};
    const int n = tail_stages(ops, count, stages), binary = stages[0].next != NULL;
    const Op *conv = &ops[count - 1];
    int status = new_windows(stages, n, f->height, f->width);
    Window *w = &stages[n - 1].w;
    const int s = stages[n - 1].scale, height = stages[n - 1].height, width = w->width;
    const double row_work = ops_work(ops, count, f->input_pixels) / height; /* per output row */
    uint64_t *low_bits = binary ? (f->packed ? f->packed : pack(r, f, ops[0].shift)) : NULL;
    if (binary)
        f->packed = NULL;
    Window in = {f->x, low_bits, f->height, f->width, f->channels, 0, f->height, 0};
    float *out = new_floats((size_t)height * width * conv->out_channels);
    status |= (low_bits || !binary) && out ? 0 : -1;
    for (int top = 0; top < height && !status; top += BAND_ROWS) {
        const int bottom = min_int(height, top + BAND_ROWS);
        const int y_first = max_int(0, top - 1), y_last = min_int(height, bottom + 1); /* what conv reads */
        keep_from(w, y_first, s);
        /* The in-place unit reads one row more than it writes. */
        status = make_rows(r, stages, n - 1, &in, f->height, min_int(height, y_last + binary));
        if (!status && binary)
            status = run_unit_rows(r, &ops[n], &ops[n + 1], w, y_last);
        if (!status) {
            last_conv_band(r, conv, w, y_first, y_last, top, bottom, out);
            advance(r, row_work * (bottom - top));
        }
    }
    free(low_bits);
    for (int k = 0; k < n; k++)
        free(stages[k].w.features), free(stages[k].w.bits), free(stages[k].made);
    if (status) {
        free(out);
        return -1;
    }
    return replace_x(f, out, height, width, conv->out_channels);
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
            status = run_tail(r, &m->ops[i], tail, &f);
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
