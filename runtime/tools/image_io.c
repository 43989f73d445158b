/*
 * Image files for bbcu-run (see image_io.h).
 */
#include "image_io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bbcu.h"

static int fail(char *error, size_t size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error, size, format, args);
    va_end(args);
    return -1;
}

static int allocate(Image *image, int height, int width, int channels)
{
    image->height = height, image->width = width, image->channels = channels;
    image->data = malloc((size_t)height * width * channels * sizeof(float));
    return image->data ? 0 : -1;
}

void image_free(Image *image)
{
    free(image->data);
    image->data = NULL;
}

/* 16-bit sample to the 8-bit one bbcu's reader makes of it: round(v / 257), never half-way. */
static unsigned eight_bits(unsigned v) { return (2 * v + 257) / 514; }

static float sample(unsigned v8) { return (float)v8 / 255.0f; }

/* Clipped (NaN to 0), times 255, rounded half to even (nearbyintf in the default rounding mode). */
static unsigned char to_uint8(float v)
{
    const float clipped = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
    return (unsigned char)nearbyintf(clipped * 255.0f);
}

/* ------------------------------------------------------------------ PNG */

/* libpng's own handlers print; bbcu-run reports one line of its own instead. */
static void png_quiet_error(png_structp png, png_const_charp message)
{
    (void)message;
    png_longjmp(png, 1);
}

static void png_quiet_warning(png_structp png, png_const_charp message) { (void)png, (void)message; }

static int palette_is_grey(png_structp png, png_infop info)
{
    png_colorp palette;
    int count;
    if (!png_get_PLTE(png, info, &palette, &count))
        return 0;
    for (int i = 0; i < count; i++)
        if (palette[i].red != palette[i].green || palette[i].red != palette[i].blue)
            return 0;
    return 1;
}

static int read_png(FILE *file, const char *path, Image *image, char *error, size_t error_size)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_quiet_error, png_quiet_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile pixels = NULL; /* volatile: read after longjmp */
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return fail(error, error_size, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        image_free(image);
        return fail(error, error_size, "%s: not a readable PNG file (corrupt or truncated)", path);
    }
    png_set_user_limits(png, BBCU_MAX_SIDE, BBCU_MAX_SIDE);
    png_set_benign_errors(png, 0); /* missing or extra image data is an error, as in bbcu's reader */
    png_init_io(png, file);
    png_read_info(png, info);
    const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    const int grey = type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA
                     || (type == PNG_COLOR_TYPE_PALETTE && palette_is_grey(png, info));
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (type & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(png);
    png_read_update_info(png, info);
    const int height = (int)png_get_image_height(png, info), width = (int)png_get_image_width(png, info);
    const int stored = png_get_channels(png, info), wide = png_get_bit_depth(png, info) == 16;
    const size_t row_bytes = png_get_rowbytes(png, info);
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof *rows * height);
    if (!pixels || !rows || allocate(image, height, width, grey ? 1 : 3))
        png_error(png, "out of memory");
    for (int h = 0; h < height; h++)
        rows[h] = pixels + row_bytes * h;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* reads up to IEND: a file cut after its pixels is refused too */
    for (size_t p = 0; p < (size_t)height * width; p++)
        for (int c = 0; c < image->channels; c++) {
            const unsigned char *s = pixels + (p * stored + c) * (wide ? 2 : 1);
            image->data[p * image->channels + c] = sample(wide ? eight_bits((unsigned)s[0] << 8 | s[1]) : s[0]);
        }
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return 0;
}

static int write_png(FILE *file, const char *path, const Image *image, int level, char *error, size_t error_size)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_quiet_error, png_quiet_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile row = NULL; /* volatile: read after longjmp */
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return fail(error, error_size, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(row);
        return fail(error, error_size, "%s: cannot write PNG", path);
    }
    png_init_io(png, file);
    png_set_compression_level(png, level);
    png_set_IHDR(png, info, (png_uint_32)image->width, (png_uint_32)image->height, 8,
                 image->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    const size_t row_samples = (size_t)image->width * image->channels;
    row = malloc(row_samples);
    if (!row)
        png_error(png, "out of memory");
    for (int h = 0; h < image->height; h++) {
        for (size_t i = 0; i < row_samples; i++)
            row[i] = to_uint8(image->data[h * row_samples + i]);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return 0;
}

/* ------------------------------------------------------------------ PPM / PGM / PFM */

/* The next header number of a netpbm file, skipping blanks and # comments. */
static long header_number(FILE *file)
{
    int c = fgetc(file);
    while (c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        if (c == '#')
            while (c != '\n' && c != EOF)
                c = fgetc(file);
        c = fgetc(file);
    }
    long v = -1;
    while (c >= '0' && c <= '9' && v < 1L << 20) {
        v = (v < 0 ? 0 : v * 10) + (c - '0');
        c = fgetc(file);
    }
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ? v : -1; /* one blank ends each number */
}

static int read_netpbm(FILE *file, const char *path, int channels, Image *image, char *error, size_t error_size)
{
    const long width = header_number(file), height = header_number(file), maxval = header_number(file);
    if (width < 1 || height < 1 || width > BBCU_MAX_SIDE || height > BBCU_MAX_SIDE || maxval < 1 || maxval > 65535)
        return fail(error, error_size, "%s: malformed PPM/PGM header", path);
    if (allocate(image, (int)height, (int)width, channels))
        return fail(error, error_size, "%s: out of memory", path);
    const int wide = maxval > 255;
    for (size_t i = 0; i < (size_t)height * width * channels; i++) {
        int hi = fgetc(file), lo = wide ? fgetc(file) : 0;
        if (hi == EOF || lo == EOF) {
            image_free(image);
            return fail(error, error_size, "%s: truncated PPM/PGM data", path);
        }
        const unsigned v = wide ? (unsigned)(hi << 8 | lo) : (unsigned)hi;
        if (v > (unsigned)maxval) {
            image_free(image);
            return fail(error, error_size, "%s: PPM/PGM sample above its maxval", path);
        }
        const unsigned v8 = maxval == 255 ? v : maxval == 65535 ? eight_bits(v) : (v * 510 + maxval) / (2 * maxval);
        image->data[i] = sample(v8);
    }
    return 0;
}

static int write_netpbm(FILE *file, const char *path, const Image *image, char *error, size_t error_size)
{
    const size_t row_samples = (size_t)image->width * image->channels;
    unsigned char *row = malloc(row_samples);
    if (!row)
        return fail(error, error_size, "%s: out of memory", path);
    fprintf(file, "P%d\n%d %d\n255\n", image->channels == 1 ? 5 : 6, image->width, image->height);
    for (int h = 0; h < image->height; h++) {
        for (size_t i = 0; i < row_samples; i++)
            row[i] = to_uint8(image->data[h * row_samples + i]);
        fwrite(row, 1, row_samples, file);
    }
    free(row);
    return 0;
}

/* PFM: float32 little-endian (scale -1), rows stored bottom to top. */
static int write_pfm(FILE *file, const Image *image)
{
    fprintf(file, "P%c\n%d %d\n-1.0\n", image->channels == 1 ? 'f' : 'F', image->width, image->height);
    const size_t row = (size_t)image->width * image->channels;
    for (int h = image->height - 1; h >= 0; h--)
        fwrite(image->data + h * row, sizeof(float), row, file);
    return 0;
}

/* ------------------------------------------------------------------ entry points */

int image_read(const char *path, Image *image, char *error, size_t error_size)
{
    memset(image, 0, sizeof *image);
    FILE *file = fopen(path, "rb");
    if (!file)
        return fail(error, error_size, "%s: cannot open (%s)", path, strerror(errno));
    unsigned char magic[8] = {0};
    const size_t got = fread(magic, 1, sizeof magic, file);
    int status;
    if (got == sizeof magic && png_sig_cmp(magic, 0, sizeof magic) == 0) {
        rewind(file);
        status = read_png(file, path, image, error, error_size);
    } else if (got >= 3 && magic[0] == 'P' && (magic[1] == '5' || magic[1] == '6')) {
        fseek(file, 2, SEEK_SET);
        status = read_netpbm(file, path, magic[1] == '5' ? 1 : 3, image, error, error_size);
    } else {
        status = fail(error, error_size, "%s: not a PNG, PPM or PGM image", path);
    }
    fclose(file);
    return status;
}

static int has_suffix(const char *path, const char *suffix)
{
    const size_t n = strlen(path), m = strlen(suffix);
    if (n < m)
        return 0;
    for (size_t i = 0; i < m; i++)
        if ((path[n - m + i] | 0x20) != suffix[i])
            return 0;
    return 1;
}

int image_write(const char *path, const Image *image, int png_level, char *error, size_t error_size)
{
    const int png = has_suffix(path, ".png"), pfm = has_suffix(path, ".pfm");
    const int netpbm = has_suffix(path, ".ppm") || has_suffix(path, ".pgm");
    if (!png && !pfm && !netpbm)
        return fail(error, error_size, "%s: unknown output format (use .png, .ppm, .pgm or .pfm)", path);
    FILE *file = fopen(path, "wb");
    if (!file)
        return fail(error, error_size, "%s: cannot write (%s)", path, strerror(errno));
    int status = png   ? write_png(file, path, image, png_level, error, error_size)
                 : pfm ? write_pfm(file, image)
                       : write_netpbm(file, path, image, error, error_size);
    if (fclose(file) != 0 && status == 0)
        status = fail(error, error_size, "%s: cannot write (%s)", path, strerror(errno));
    if (status)
        remove(path);
    return status;
}
