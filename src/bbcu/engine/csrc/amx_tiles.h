/*
 * AMX tile configuration, shared by the AMX path (conv_amx.c) and its probe (benchmarks/amx_tiles.c).
 * Included after <immintrin.h> with AMX-TILE switched on.
 */
#ifndef BBCU_AMX_TILES_H
#define BBCU_AMX_TILES_H

#include <stddef.h>
#include <stdint.h>

/* The 64-byte operand of ldtilecfg (palette 1). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} TileConfig;

/* Eight tiles of 16 rows x 64 bytes (each 16 x 64 int8, or 16 x 16 int32). */
static inline void configure_tiles(void)
{
    /* volatile: GCC's _tile_loadconfig tells the compiler that it reads 8 bytes, and at -O3 the
     * stores to the rest were dropped as dead (ldtilecfg then faulted on a half-written config). */
    volatile TileConfig config;
    volatile uint8_t *bytes = (volatile uint8_t *)&config;
    for (size_t i = 0; i < sizeof config; i++)
        bytes[i] = 0;
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig((const void *)&config);
}

#endif
