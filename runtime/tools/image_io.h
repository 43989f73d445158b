/*
 * Image files for bbcu-run: PNG (libpng), binary PPM/PGM, and PFM for raw float output.
 *
 * Samples are float32 on the [0, 1] scale, interleaved (height x width x channels), as libbbcu takes
 * them. Reading follows bbcu's Python reader (bbcu.formats.image_io): 8-bit v -> v / 255, 16-bit
 * samples rounded to 8 bits first, alpha dropped, palettes expanded. Writing 8-bit follows
 * bbcu.imaging.pixels.to_uint8: clip to [0, 1], times 255, round half to even.
 */
#ifndef BBCU_IMAGE_IO_H
#define BBCU_IMAGE_IO_H

#include <stddef.h>

typedef struct Image {
    int height, width, channels; /* channels: 1 (grey) or 3 (RGB) */
    float *data;
} Image;

/* Reads a PNG, PPM (P6) or PGM (P5) file, chosen by its first bytes. Returns 0, or -1 with a one-line
 * reason in error. */
int image_read(const char *path, Image *image, char *error, size_t error_size);

/* zlib's default, and Pillow's (bbcu's Python writer): level 1 writes a 1280x720 colour PNG about 4.5x
 * faster, 11 % larger (docs/deploy.md). */
#define DEFAULT_PNG_LEVEL 6

/* Writes by extension: .png (compressed at zlib level png_level, 0-9), .ppm/.pgm (8-bit, 3/1 channels)
 * or .pfm (float32, unclipped). Returns 0, or -1 with a one-line reason. */
int image_write(const char *path, const Image *image, int png_level, char *error, size_t error_size);

void image_free(Image *image);

#endif
