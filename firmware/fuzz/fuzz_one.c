/* Invariants checked for any byte stream:
 *  - every output line is printable ASCII, ends in " *XXXX\n" with the right CRC;
 *  - a line never exceeds 255 bytes;
 *  - at most one reply per '\n' received (+ the boot banner), never a partial line;
 *  - every reply's id is 0..65535 and OK/ERR codes are well formed (1..6).
 */
#include "fuzz_one.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../hostctl_probe/src/probe_core.h"

#define FUZZ_OUT_MAX 256u

typedef struct {
    uint64_t us;
    uint32_t seed;
    uint8_t mux, conv;
    uint8_t line[FUZZ_OUT_MAX];
    size_t len;
    unsigned long lines;
} fuzz_hal_t;

static void fuzz_fail(const char *what, const uint8_t *line, size_t len)
{
    fprintf(stderr, "fuzz invariant broken: %s: '%.*s'\n", what, (int)len, (const char *)line);
    abort();
}

static void f_select(void *ctx, uint8_t ch)
{
    ((fuzz_hal_t *)ctx)->mux = ch;
}

static void f_start(void *ctx)
{
    fuzz_hal_t *f = (fuzz_hal_t *)ctx;
    f->conv = f->mux;          /* latched at the start, like the ATmega328P */
}

static uint16_t f_result(void *ctx)
{
    fuzz_hal_t *f = (fuzz_hal_t *)ctx;
    f->us += 1000u;            /* 4 ms per round: MEASURE 5000 takes <= 1250 rounds */
    f->seed = f->seed * 1103515245u + 12345u + f->conv;
    return (uint16_t)((f->seed >> 16) % 1100u);   /* also > 1023: the core clamps */
}

static uint8_t f_led(void *ctx, uint8_t led)
{
    fuzz_hal_t *f = (fuzz_hal_t *)ctx;
    return (uint8_t)(((f->seed >> 8) >> led) & 1u);
}

static uint32_t f_millis(void *ctx) { return (uint32_t)(((fuzz_hal_t *)ctx)->us / 1000u); }
static uint32_t f_micros(void *ctx) { return (uint32_t)((fuzz_hal_t *)ctx)->us; }

static void check_line(const uint8_t *s, size_t len)
{
    size_t i;
    unsigned crc;
    if (len < 7u || s[len - 6u] != ' ' || s[len - 5u] != '*') {
        fuzz_fail("no CRC", s, len);
    }
    for (i = 0; i < len; i++) {
        if (s[i] < 0x20u || s[i] > 0x7Eu) {
            fuzz_fail("non-printable output", s, len);
        }
    }
    if (sscanf((const char *)s + len - 4u, "%4X", &crc) != 1 ||
        probe_crc16(s, len - 6u) != crc) {
        fuzz_fail("bad CRC", s, len);
    }
    if (s[0] != '!') {
        const char *p = (const char *)s;
        char *end;
        unsigned long id = strtoul(p, &end, 10);
        if (end == p || id > 65535u || *end != ' ') {
            fuzz_fail("bad reply id", s, len);
        }
        if (strncmp(end, " OK ", 4) != 0) {
            if (strncmp(end, " ERR ", 5) != 0 || end[5] < '1' || end[5] > '6' || end[6] != ' ') {
                fuzz_fail("neither OK nor ERR 1..6", s, len);
            }
        }
    }
}

static void f_write(void *ctx, const uint8_t *data, uint16_t len)
{
    fuzz_hal_t *f = (fuzz_hal_t *)ctx;
    uint16_t i;
    for (i = 0; i < len; i++) {
        if (data[i] == '\n') {
            check_line(f->line, f->len);
            f->len = 0;
            f->lines++;
        } else {
            if (f->len >= FUZZ_OUT_MAX) {
                fuzz_fail("output line too long", f->line, f->len);
            }
            f->line[f->len++] = data[i];
        }
    }
}

int probe_fuzz_one(const uint8_t *data, size_t size)
{
    static fuzz_hal_t f;
    probe_hal_t hal;
    probe_t p;
    size_t i;
    unsigned long newlines = 0;

    memset(&f, 0, sizeof f);
    f.us = 0xFFFFFFFFu - 3000000u;     /* micros() wraps during the run */
    hal.adc_select = f_select;
    hal.adc_start = f_start;
    hal.adc_result = f_result;
    hal.led_read = f_led;
    hal.millis = f_millis;
    hal.micros = f_micros;
    hal.write = f_write;
    hal.ctx = &f;
    probe_init(&p, &hal, 9000u);
    probe_boot(&p);
    for (i = 0; i < size; i++) {
        probe_feed(&p, data[i]);
        if (data[i] == '\n') {
            newlines++;
        }
        if (f.len != 0u) {
            fuzz_fail("partial line left after a byte was handled", f.line, f.len);
        }
        if (p.len >= PROBE_MAX_LINE) {
            fuzz_fail("line buffer overrun", p.buf, sizeof p.buf);
        }
    }
    if (f.lines > newlines + 1u) {
        fuzz_fail("more replies than lines", f.line, 0);
    }
    return 0;
}
