/*
 * bbcu-run: restore an image with a packed .bbcu model, on libbbcu alone.
 *
 *     bbcu-run [--threads N] [--tile N] [--isa NAME] [--float OUT.pfm] [--png-level L] MODEL.bbcu IN OUT
 *
 * IN is PNG, PPM or PGM; OUT is written by its extension (.png, .ppm, .pgm, or .pfm for the unclipped
 * float output; --png-level: zlib's level for a PNG, 0-9, default 6). Grey and colour are matched to
 * the model as bbcu's Python restore does: a grey image on a colour model is replicated to three
 * channels and the output averaged back to one; a colour image on a grey model is restored channel by
 * channel. Any failure prints one line and exits 1 (2 for a usage error). On a terminal, stderr shows a
 * progress bar with the rate and the time left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bbcu.h"
#include "image_io.h"

static const char USAGE[] =
    "usage: bbcu-run [--threads N] [--tile N] [--isa auto|portable|avx2|avx512|amx|neon] [--float OUT.pfm] "
    "[--png-level 0-9] [--info] MODEL.bbcu IN OUT\n";

typedef struct Arguments {
    bbcu_options options;
    const char *model, *in, *out, *float_out;
    int info, png_level;
} Arguments;

static int number_in(const char *text, long low, long high, int *out)
{
    char *end;
    const long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < low || v > high)
        return -1;
    *out = (int)v;
    return 0;
}

static int positive_number(const char *text, int *out) { return number_in(text, 1, 1 << 20, out); }

static int parse_arguments(int argc, char **argv, Arguments *a)
{
    const char *positional[3];
    int count = 0;
    memset(a, 0, sizeof *a);
    a->png_level = DEFAULT_PNG_LEVEL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const int has_value = i + 1 < argc;
        if (strcmp(arg, "--info") == 0)
            a->info = 1;
        else if (strcmp(arg, "--threads") == 0 && has_value) {
            if (positive_number(argv[++i], &a->options.threads))
                return -1;
        } else if (strcmp(arg, "--tile") == 0 && has_value) {
            if (positive_number(argv[++i], &a->options.tile))
                return -1;
        } else if (strcmp(arg, "--isa") == 0 && has_value)
            a->options.isa = argv[++i];
        else if (strcmp(arg, "--float") == 0 && has_value)
            a->float_out = argv[++i];
        else if (strcmp(arg, "--png-level") == 0 && has_value) {
            if (number_in(argv[++i], 0, 9, &a->png_level))
                return -1;
        }
        else if (arg[0] == '-' && arg[1] != '\0')
            return -1;
        else if (count < 3)
            positional[count++] = arg;
        else
            return -1;
    }
    if (count != (a->info ? 1 : 3))
        return -1;
    a->model = positional[0];
    a->in = count > 1 ? positional[1] : NULL;
    a->out = count > 2 ? positional[2] : NULL;
    return 0;
}

static int failure(const char *message)
{
    fprintf(stderr, "bbcu-run: %s\n", message);
    return 1;
}

/* ------------------------------------------------------------------ progress bar */

#define BAR_WIDTH 30
#define BAR_PERIOD 0.1 /* seconds between redraws */

/* The bar's state: bbcu_options.progress reports each run's fraction; a colour image on a grey model
 * takes one run per channel. */
typedef struct Bar {
    int run, runs;
    double output_pixels; /* of all runs */
    double start, drawn_at;
    int drawn, finished;
} Bar;

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* bbcu_options.progress: redraws the line at most every BAR_PERIOD, and once, with a newline, at the end. */
static void draw_bar(void *context, double fraction)
{
    Bar *b = context;
    const double done = (b->run + fraction) / b->runs, now = seconds(), elapsed = now - b->start;
    const int finished = done >= 1.0;
    if (b->finished || (!finished && now - b->drawn_at < BAR_PERIOD))
        return;
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < (int)(done * BAR_WIDTH) ? '#' : ' ';
    bar[BAR_WIDTH] = '\0';
    const double left = done > 0.0 ? elapsed * (1.0 - done) / done : 0.0;
    const double rate = elapsed > 0.0 ? done * b->output_pixels / elapsed / 1e6 : 0.0;
    fprintf(stderr, "\rbbcu-run: %3d%% [%s] %.1f s, %.1f s left, %.2f output MP/s%s", (int)(done * 100.0), bar,
            elapsed, left, rate, finished ? "\n" : "");
    fflush(stderr);
    b->drawn = 1, b->finished = finished, b->drawn_at = now;
}

/* Ends an unfinished bar's line, so that a message after it starts on a line of its own. */
static void end_bar(const Bar *b)
{
    if (b->drawn && !b->finished)
        fputc('\n', stderr);
}

/* Runs the model on one (H, W, C) plane set whose C is the model's in_channels. */
static bbcu_status run(const bbcu_model *model, const float *in, int height, int width, float **out,
                       const bbcu_options *options, bbcu_error *error)
{
    *out = malloc(bbcu_output_size(model, height, width) * sizeof(float));
    if (!*out)
        return BBCU_ERROR_MEMORY;
    return bbcu_run(model, in, height, width, *out, options, error);
}

/* Restores `image` into `result`, matching its channels to the model's (see the file comment); the bar
 * (options' progress_context, when there is one) learns which run is going. */
static bbcu_status restore(const bbcu_model *model, const Image *image, Image *result, const bbcu_options *options,
                           bbcu_error *error)
{
    Bar *bar = options->progress ? options->progress_context : NULL;
    const int s = bbcu_scale(model), cin = bbcu_in_channels(model), cout = bbcu_out_channels(model);
    const size_t pixels = (size_t)image->height * image->width, out_pixels = pixels * s * s;
    result->height = image->height * s, result->width = image->width * s, result->channels = image->channels;
    result->data = NULL;
    if (image->channels == cin) {
        result->channels = cout;
        return run(model, image->data, image->height, image->width, &result->data, options, error);
    }
    float *in = malloc(pixels * cin * sizeof(float)), *out = NULL;
    result->data = malloc(out_pixels * image->channels * sizeof(float));
    bbcu_status status = in && result->data ? BBCU_OK : BBCU_ERROR_MEMORY;
    /* Grey on colour: one run on the replicated image. Colour on grey: one run per channel. */
    const int runs = image->channels > cin ? image->channels : 1;
    for (int r = 0; r < runs && !status; r++) {
        if (bar)
            bar->run = r, bar->runs = runs;
        for (size_t p = 0; p < pixels; p++)
            for (int c = 0; c < cin; c++)
                in[p * cin + c] = image->data[p * image->channels + (runs > 1 ? r : 0)];
        status = run(model, in, image->height, image->width, &out, options, error);
        for (size_t p = 0; p < out_pixels && !status; p++) {
            float sum = 0.0f;
            for (int c = 0; c < cout; c++)
                sum += out[p * cout + c];
            result->data[p * image->channels + r] = sum / (float)cout;
        }
        free(out);
        out = NULL;
    }
    free(in);
    if (status == BBCU_ERROR_MEMORY && error && error->status != BBCU_ERROR_MEMORY)
        snprintf(error->message, sizeof error->message, "out of memory");
    return status;
}

int main(int argc, char **argv)
{
    Arguments a;
    if (parse_arguments(argc, argv, &a)) {
        fputs(USAGE, stderr);
        return 2;
    }
    bbcu_model *model;
    bbcu_error error = {BBCU_OK, "out of memory"};
    if (bbcu_load(a.model, &model, &error))
        return failure(error.message);
    if (a.info) {
        printf("%s x%d, %d -> %d channels, receptive radius %d, kernels %s\n", bbcu_architecture(model),
               bbcu_scale(model), bbcu_in_channels(model), bbcu_out_channels(model), bbcu_receptive_radius(model),
               bbcu_best_isa());
        bbcu_free(model);
        return 0;
    }
    Image image, result = {0, 0, 0, NULL};
    char message[BBCU_MESSAGE_SIZE + 64];
    int status = 0;
    if (image_read(a.in, &image, message, sizeof message)) {
        bbcu_free(model);
        return failure(message);
    }
    const double start = seconds();
    Bar bar = {.runs = 1, .output_pixels = (double)image.height * image.width * bbcu_scale(model) * bbcu_scale(model),
               .start = start, .drawn_at = start};
    if (isatty(STDERR_FILENO))
        a.options.progress = draw_bar, a.options.progress_context = &bar;
    if (restore(model, &image, &result, &a.options, &error)) {
        end_bar(&bar);
        status = failure(error.message);
    }
    else if ((a.float_out && image_write(a.float_out, &result, a.png_level, message, sizeof message))
             || image_write(a.out, &result, a.png_level, message, sizeof message))
        status = failure(message);
    image_free(&image);
    image_free(&result);
    bbcu_free(model);
    return status;
}
