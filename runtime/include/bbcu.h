/*
 * libbbcu: run a packed 1-bit restoration network (a `.bbcu` file written by `bbcu export`) in plain C.
 *
 * Dependencies: libc, libm and POSIX threads only. The library runs every architecture the `.bbcu`
 * format describes (BBCU-L and BBCU-M x2/x3/x4, the binary DnCNN and DnCNN-3), full-precision layers
 * included, and agrees with bbcu's Python engine (`bbcu.engine.load`) to 1e-4 on the [0, 1] scale.
 * The binary convolutions use the fastest kernels the CPU offers (AVX2 / AVX-512 on x86-64, NEON on
 * aarch64, portable C elsewhere), chosen at run time.
 *
 * Typical use:
 *
 *     bbcu_model *model;
 *     bbcu_error error;
 *     if (bbcu_load("bbcu-m-x4.bbcu", &model, &error) != BBCU_OK) {
 *         fprintf(stderr, "%s\n", error.message);
 *         return 1;
 *     }
 *     float *out = malloc(sizeof(float) * bbcu_output_size(model, height, width));
 *     bbcu_status status = bbcu_run(model, in, height, width, out, NULL, &error);
 *     bbcu_free(model);
 *
 * Images are float32, interleaved channels (row-major height x width x channels, "HWC"), on the [0, 1]
 * scale: an 8-bit sample v is v / 255.0f. The output is not clipped.
 *
 * Thread safety: a loaded model is read-only; any number of threads may call bbcu_run on one model at
 * once. Every function reports failure through its return value and, when `error` is not NULL, a
 * one-line message: the library never prints, never exits, and refuses a malformed or hostile file
 * instead of reading outside it.
 */
#ifndef BBCU_H
#define BBCU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BBCU_VERSION "0.2.0" /* 0.2.0: bbcu_options gained progress and progress_context (rebuild callers) */

/* What went wrong. */
typedef enum bbcu_status {
    BBCU_OK = 0,
    BBCU_ERROR_IO = 1,       /* the file could not be opened or read */
    BBCU_ERROR_FORMAT = 2,   /* the file is not a valid .bbcu model (or exceeds the limits below) */
    BBCU_ERROR_ARGUMENT = 3, /* a bad argument: NULL pointer, empty or too large image, unknown ISA */
    BBCU_ERROR_MEMORY = 4,   /* memory ran out */
} bbcu_status;

#define BBCU_MESSAGE_SIZE 256

/* A failure's status and one-line message (no trailing newline). */
typedef struct bbcu_error {
    bbcu_status status;
    char message[BBCU_MESSAGE_SIZE];
} bbcu_error;

/* A loaded, validated network. Opaque. */
typedef struct bbcu_model bbcu_model;

/* How bbcu_run works; NULL means every default. */
typedef struct bbcu_options {
    /* Threads for the convolutions; 0: one per online CPU. */
    int threads;
    /* Side of the square input tiles, in input pixels; 0: automatic (the whole image when its largest
     * feature map fits in tile_budget_mib, else the largest tiles that do). Tiles overlap by the
     * network's receptive radius and only their centres are kept, so the output equals the untiled
     * one bit for bit whatever the tile size. */
    int tile;
    /* Memory budget of one feature map for automatic tiling, MiB; 0: 128. Peak use is a few times it. */
    int tile_budget_mib;
    /* Binary-conv kernels: NULL or "auto" (the default of this CPU), "portable", "avx2", "avx512", "amx", "neon". */
    const char *isa;
    /* When not NULL, called on the calling thread as the work advances (after each layer, and each band
     * of rows of a banded tail), with progress_context and the fraction of the work done: non-decreasing,
     * 1 at the end of a successful run. The work is the network's multiply-adds over all tiles, a
     * binary one counted as BBCU_BINARY_MAC_WORK of a float one, so the fraction tracks time. */
    void (*progress)(void *context, double fraction);
    void *progress_context;
} bbcu_options;

/* The work of one binary multiply-add in bbcu_options.progress's fraction, against 1 for a float one: the
 * kernels count binary MACs 7 to 11 times faster than fp32 FMAs on the CPUs measured. */
#define BBCU_BINARY_MAC_WORK 0.125

/* Largest accepted image side and channel counts; anything larger is refused, not attempted. */
#define BBCU_MAX_SIDE 65536
#define BBCU_MAX_CHANNELS 4096
#define BBCU_MAX_SCALE 8

/* Loads and validates `path` as strictly as bbcu's Python reader (bbcu.formats.packed.load_packed),
 * and also refuses non-finite floats. On success *model owns everything it needs; free it with
 * bbcu_free. On failure *model is NULL. */
bbcu_status bbcu_load(const char *path, bbcu_model **model, bbcu_error *error);

/* As bbcu_load, from the `size` bytes of a .bbcu file in memory (copied as needed: data may be freed
 * after the call). */
bbcu_status bbcu_load_memory(const void *data, size_t size, bbcu_model **model, bbcu_error *error);

/* Frees a model (NULL is fine). */
void bbcu_free(bbcu_model *model);

/* The network's registry name: "bbcu-l", "bbcu-m", "dncnn-bbcu" or "dncnn3-bbcu". */
const char *bbcu_architecture(const bbcu_model *model);
/* Upscaling factor (1 for denoising and JPEG deblocking). */
int bbcu_scale(const bbcu_model *model);
/* Image channels read and written (1 grey, 3 RGB). */
int bbcu_in_channels(const bbcu_model *model);
int bbcu_out_channels(const bbcu_model *model);
/* How far, in input pixels, an output pixel's input reaches: the overlap tiles need. */
int bbcu_receptive_radius(const bbcu_model *model);
/* Floats bbcu_run writes for a height x width input: (scale*height) * (scale*width) * out_channels. */
size_t bbcu_output_size(const bbcu_model *model, int height, int width);

/* Restores one image: `in` holds height x width x in_channels floats, `out` receives
 * bbcu_output_size(model, height, width) floats. `in` and `out` must not overlap. */
bbcu_status bbcu_run(const bbcu_model *model, const float *in, int height, int width, float *out,
                     const bbcu_options *options, bbcu_error *error);

/* The kernels "auto" picks on this CPU ("portable", "avx2", "avx512" or "neon"; never "amx", see isa.c). */
const char *bbcu_best_isa(void);

#ifdef __cplusplus
}
#endif

#endif
