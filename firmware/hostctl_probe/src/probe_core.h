/* hostctl probe core: protocol v1 (firmware/PROTOCOL.md), portable C99.
 *
 * No dynamic allocation, no floating point, bounded buffers. The hardware is
 * reached only through probe_hal_t, so the same code runs on the Uno (the
 * sketch supplies register-level ADC/pin access and Arduino's Serial) and on
 * the host under test (a fake HAL with scripted samples and a fake clock).
 */
#ifndef PROBE_CORE_H
#define PROBE_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROBE_PROTO_VERSION 1u
#define PROBE_FW "hostctl-probe/1.0.0"
#define PROBE_MAX_LINE 80u          /* bytes incl. the terminating '\n' */
#define PROBE_MEASURE_MIN_MS 1u
#define PROBE_MEASURE_MAX_MS 5000u
#define PROBE_MAX_ROUNDS 65535u
#define PROBE_ANALOG_CHANNELS 4u
#define PROBE_LEDS 3u

enum {
    PROBE_ERR_UNKNOWN_COMMAND = 1,
    PROBE_ERR_BAD_SYNTAX = 2,
    PROBE_ERR_LINE_TOO_LONG = 3,
    PROBE_ERR_BAD_CRC = 4,
    PROBE_ERR_BAD_ARGUMENT = 5,
    PROBE_ERR_UNSUPPORTED_VERSION = 6,
    PROBE_ERR_BUSY = 7
};

/* Hardware access. Every function gets ctx back.
 *
 * The ADC is three calls so that the core decides when the multiplexer moves:
 *  - adc_select: route channel 0..3 (A0..A3) to the ADC. While no conversion runs the
 *    sample-and-hold starts charging towards it at once; during a conversion the
 *    choice applies to the next conversion only.
 *  - adc_start: start a conversion and return once it has latched its channel, so an
 *    adc_select that follows cannot change what this conversion measures.
 *  - adc_result: wait for the running conversion to end; its count 0..1023.
 */
typedef struct probe_hal {
    void (*adc_select)(void *ctx, uint8_t channel);
    void (*adc_start)(void *ctx);
    uint16_t (*adc_result)(void *ctx);
    uint8_t (*led_read)(void *ctx, uint8_t led);        /* 0..2 -> D2..D4, 1 = HIGH */
    uint32_t (*millis)(void *ctx);
    uint32_t (*micros)(void *ctx);
    void (*write)(void *ctx, const uint8_t *data, uint16_t len);
    void *ctx;
} probe_hal_t;

/* Per-channel accumulators of one MEASURE window. */
typedef struct probe_acc {
    uint32_t n;
    uint32_t sum;       /* S = sum x      (<= 65535 * 1023) */
    uint32_t sumsq_lo;  /* Q = sum x^2 (<= 65535 * 1023^2 < 2^37), split in two */
    uint16_t sumsq_hi;  /* words: a 64-bit add costs ~100 cycles per sample on AVR */
    uint16_t min, max;
} probe_acc_t;

typedef struct probe {
    const probe_hal_t *hal;
    uint8_t buf[PROBE_MAX_LINE - 1u];   /* bytes before '\n' (79 max) */
    uint8_t len;
    uint8_t overflow;                   /* line longer than allowed: discard to '\n' */
    uint32_t rate_hz;                   /* per-channel rate of the last MEASURE (or nominal) */
    uint16_t crc;                       /* running CRC of the reply being written */
} probe_t;

void probe_init(probe_t *p, const probe_hal_t *hal, uint32_t nominal_rate_hz);
/* Writes the "! BOOT ..." banner. */
void probe_boot(probe_t *p);
/* Feed one received byte; a completed line is handled (and answered) at once. */
void probe_feed(probe_t *p, uint8_t byte);
/* Handle one complete line (without '\n'; a trailing '\r' is removed here). */
void probe_handle_line(probe_t *p, const uint8_t *line, uint8_t len);

/* CRC-16/CCITT-FALSE. */
uint16_t probe_crc16_update(uint16_t crc, uint8_t byte);
uint16_t probe_crc16(const uint8_t *data, size_t len);

/* Statistics (PROTOCOL.md integer formulas). */
void probe_acc_reset(probe_acc_t *a);
void probe_acc_add(probe_acc_t *a, uint16_t x);
uint64_t probe_acc_sumsq(const probe_acc_t *a);
uint32_t probe_mean_milli(const probe_acc_t *a);
uint32_t probe_rms_milli(const probe_acc_t *a);
uint32_t probe_isqrt64(uint64_t v);
/* "m/1000.m%1000" with exactly 3 decimals into out (>= 15 bytes); returns length. */
uint8_t probe_format_milli(uint32_t milli, char *out);
/* Unsigned decimal into out (>= 11 bytes); returns length. */
uint8_t probe_format_u32(uint32_t v, char *out);

#ifdef __cplusplus
}
#endif
#endif
