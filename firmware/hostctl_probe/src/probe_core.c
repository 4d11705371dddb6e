/* hostctl probe core: see probe_core.h and firmware/PROTOCOL.md.
 *
 * Line handling, in the order the checks are made (same order as the Python
 * mirror sims/device_core.py; the shared vectors in firmware/vectors/ pin it):
 *  1. bytes are collected up to '\n'; at most 79 may precede it (80 with the
 *     '\n'); a longer line is discarded to the next '\n' -> ERR 3. One '\r'
 *     just before '\n' is dropped (it counts toward the 80 bytes).
 *  2. an empty line gets no reply.
 *  3. a byte outside 0x20..0x7E -> ERR 2.
 *  4. a last token starting with '*' is the CRC: not '*' + 4 uppercase hex
 *     digits, or not matching the bytes before its space -> ERR 4.
 *  5. an empty token (double/leading/trailing space) -> ERR 2.
 *  6. id must be 1..65535 without leading zeros and a verb must follow -> ERR 2.
 *  7. unknown verb -> ERR 1; wrong argument count -> ERR 2; not a number
 *     (1..9 decimal digits) or out of range -> ERR 5; HELLO range without 1 -> ERR 6.
 * Every ERR carries the id if the line starts with a valid id and a space, else 0.
 */
#include "probe_core.h"

#ifdef __AVR__
#include <avr/pgmspace.h>
#define PROBE_PSTR(s) (__extension__({ static const char probe_pstr_[] PROGMEM = (s); &probe_pstr_[0]; }))
#define PROBE_PGM_BYTE(p) pgm_read_byte(p)
#define PROBE_PROGMEM PROGMEM
#else
#define PROBE_PSTR(s) (s)
#define PROBE_PGM_BYTE(p) (*(const uint8_t *)(p))
#define PROBE_PROGMEM
#endif

#ifndef PROBE_BOARD
#define PROBE_BOARD "uno"
#endif
#ifndef PROBE_MCU
#define PROBE_MCU "atmega328p"
#endif
#ifndef PROBE_F_CPU
#define PROBE_F_CPU "16000000"
#endif

/* ------------------------------------------------------------------ CRC */

uint16_t probe_crc16_update(uint16_t crc, uint8_t byte)
{
    uint8_t i;
    crc ^= (uint16_t)((uint16_t)byte << 8);
    for (i = 0; i < 8u; i++) {
        if (crc & 0x8000u) {
            crc = (uint16_t)(((uint16_t)(crc << 1)) ^ 0x1021u);
        } else {
            crc = (uint16_t)(crc << 1);
        }
    }
    return crc;
}

uint16_t probe_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        crc = probe_crc16_update(crc, data[i]);
    }
    return crc;
}

/* ----------------------------------------------------------- statistics */

void probe_acc_reset(probe_acc_t *a)
{
    a->n = 0;
    a->sum = 0;
    a->sumsq_lo = 0;
    a->sumsq_hi = 0;
    a->min = 0xFFFFu;
    a->max = 0;
}

void probe_acc_add(probe_acc_t *a, uint16_t x)
{
    uint32_t x2 = (uint32_t)x * (uint32_t)x;
    a->n++;
    a->sum += x;
    a->sumsq_lo += x2;
    if (a->sumsq_lo < x2) {
        a->sumsq_hi++;                      /* carry */
    }
    if (x < a->min) {
        a->min = x;
    }
    if (x > a->max) {
        a->max = x;
    }
}

uint64_t probe_acc_sumsq(const probe_acc_t *a)
{
    return ((uint64_t)a->sumsq_hi << 32) | a->sumsq_lo;
}

uint32_t probe_mean_milli(const probe_acc_t *a)
{
    uint64_t n = a->n;
    if (n == 0u) {
        return 0;
    }
    return (uint32_t)(((uint64_t)a->sum * 1000u + n / 2u) / n);
}

uint32_t probe_isqrt64(uint64_t v)
{
    uint64_t res = 0;
    uint64_t bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0u) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)res;
}

uint32_t probe_rms_milli(const probe_acc_t *a)
{
    uint64_t n = a->n;
    uint64_t s = a->sum;
    uint64_t v;
    if (n == 0u) {
        return 0;
    }
    v = (n * probe_acc_sumsq(a) - s * s) / n;          /* n * population variance */
    return probe_isqrt64(v * 1000000u / n);
}

uint8_t probe_format_u32(uint32_t v, char *out)
{
    char tmp[10];
    uint8_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v != 0u);
    for (i = 0; i < n; i++) {
        out[i] = tmp[n - 1u - i];
    }
    out[n] = '\0';
    return n;
}

uint8_t probe_format_milli(uint32_t milli, char *out)
{
    uint8_t n = probe_format_u32(milli / 1000u, out);
    uint32_t frac = milli % 1000u;
    out[n++] = '.';
    out[n++] = (char)('0' + frac / 100u);
    out[n++] = (char)('0' + (frac / 10u) % 10u);
    out[n++] = (char)('0' + frac % 10u);
    out[n] = '\0';
    return n;
}

/* ---------------------------------------------------------------- output */

static void emit_mem(probe_t *p, const char *s, uint8_t len)
{
    uint8_t i;
    for (i = 0; i < len; i++) {
        p->crc = probe_crc16_update(p->crc, (uint8_t)s[i]);
    }
    p->hal->write(p->hal->ctx, (const uint8_t *)s, len);
}

/* A string constant (in flash on AVR). */
static void emit_p(probe_t *p, const char *s)
{
    char chunk[16];
    uint8_t n = 0;
    for (;;) {
        char c = (char)PROBE_PGM_BYTE(s);
        if (c == '\0' || n == sizeof chunk) {
            if (n) {
                emit_mem(p, chunk, n);
            }
            n = 0;
            if (c == '\0') {
                return;
            }
        }
        chunk[n++] = c;
        s++;
    }
}

static void emit_u32(probe_t *p, uint32_t v)
{
    char tmp[11];
    emit_mem(p, tmp, probe_format_u32(v, tmp));
}

static void emit_milli(probe_t *p, uint32_t v)
{
    char tmp[16];
    emit_mem(p, tmp, probe_format_milli(v, tmp));
}

static void line_begin(probe_t *p)
{
    p->crc = 0xFFFFu;
}

static void line_end(probe_t *p)
{
    static const char hex[] = "0123456789ABCDEF";
    uint8_t t[8];
    t[0] = ' ';
    t[1] = '*';
    t[2] = (uint8_t)hex[(p->crc >> 12) & 0xFu];
    t[3] = (uint8_t)hex[(p->crc >> 8) & 0xFu];
    t[4] = (uint8_t)hex[(p->crc >> 4) & 0xFu];
    t[5] = (uint8_t)hex[p->crc & 0xFu];
    t[6] = '\n';
    p->hal->write(p->hal->ctx, t, 7);
}

static const char reason1[] PROBE_PROGMEM = "unknown-command";
static const char reason2[] PROBE_PROGMEM = "bad-syntax";
static const char reason3[] PROBE_PROGMEM = "line-too-long";
static const char reason4[] PROBE_PROGMEM = "bad-crc";
static const char reason5[] PROBE_PROGMEM = "bad-argument";
static const char reason6[] PROBE_PROGMEM = "unsupported-version";
static const char reason7[] PROBE_PROGMEM = "busy";

static void reply_err(probe_t *p, uint16_t id, uint8_t code)
{
    const char *r;
    switch (code) {
    case 1: r = reason1; break;
    case 2: r = reason2; break;
    case 3: r = reason3; break;
    case 4: r = reason4; break;
    case 5: r = reason5; break;
    case 6: r = reason6; break;
    default: r = reason7; code = 7; break;
    }
    line_begin(p);
    emit_u32(p, id);
    emit_p(p, PROBE_PSTR(" ERR "));
    emit_u32(p, code);
    emit_p(p, PROBE_PSTR(" "));
    emit_p(p, r);
    line_end(p);
}

static void reply_ok_head(probe_t *p, uint16_t id, const char *verb_p)
{
    line_begin(p);
    emit_u32(p, id);
    emit_p(p, PROBE_PSTR(" OK "));
    emit_p(p, verb_p);
}

static void reply_identity(probe_t *p, uint16_t id, const char *verb_p)
{
    reply_ok_head(p, id, verb_p);
    emit_p(p, PROBE_PSTR(" proto=1 fw=" PROBE_FW " board=" PROBE_BOARD " mcu=" PROBE_MCU
                         " f_cpu=" PROBE_F_CPU " adc_bits=10 vref_mv=5000 channels=4 leds=3"
                         " rate_hz="));
    emit_u32(p, p->rate_hz);
    line_end(p);
}

/* ------------------------------------------------------------ lifecycle */

void probe_init(probe_t *p, const probe_hal_t *hal, uint32_t nominal_rate_hz)
{
    p->hal = hal;
    p->len = 0;
    p->overflow = 0;
    p->rate_hz = nominal_rate_hz;
    p->crc = 0xFFFFu;
}

void probe_boot(probe_t *p)
{
    line_begin(p);
    emit_p(p, PROBE_PSTR("! BOOT fw=" PROBE_FW " proto=1"));
    line_end(p);
}

/* ---------------------------------------------------------------- parser */

/* The id if the line starts with 1..65535 (no leading zero) and a space, else 0. */
static uint16_t readable_id(const uint8_t *s, uint8_t len)
{
    uint32_t v = 0;
    uint8_t i;
    if (len < 2u || s[0] < '1' || s[0] > '9') {
        return 0;
    }
    for (i = 0; i < len && s[i] != ' '; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5u) {
            return 0;
        }
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    if (i >= len || v > 65535u) {
        return 0;                 /* no space after the id, or too large */
    }
    return (uint16_t)v;
}

/* 1..9 decimal digits (leading zeros allowed) -> 1 and *out; else 0. */
static uint8_t parse_number(const uint8_t *s, uint8_t len, uint32_t *out)
{
    uint32_t v = 0;
    uint8_t i;
    if (len == 0u || len > 9u) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static uint8_t hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return (uint8_t)(c - '0');
    }
    if (c >= 'A' && c <= 'F') {
        return (uint8_t)(c - 'A' + 10);
    }
    return 0xFFu;
}

static uint8_t token_is(const uint8_t *s, uint8_t len, const char *lit_p)
{
    uint8_t i;
    for (i = 0; i < len; i++) {
        uint8_t c = (uint8_t)PROBE_PGM_BYTE(lit_p + i);
        if (c == 0u || c != s[i]) {
            return 0;
        }
    }
    return PROBE_PGM_BYTE(lit_p + len) == 0u;
}

static void do_measure(probe_t *p, uint16_t id, uint32_t ms)
{
    const probe_hal_t *h = p->hal;
    probe_acc_t acc[PROBE_ANALOG_CHANNELS];
    uint16_t lit[PROBE_LEDS] = {0, 0, 0};
    uint32_t t0_ms, t0_us, el_ms, el_us, n = 0;
    uint8_t c;

    for (c = 0; c < PROBE_ANALOG_CHANNELS; c++) {
        probe_acc_reset(&acc[c]);
    }
    /* Channel order and the sample-and-hold. The ADC's hold capacitor (14 pF) charges
     * through the 10 kOhm bias network plus 1-100 kOhm of multiplexer resistance and
     * samples 1.5 ADC clocks (3 us) after a conversion starts. Selecting a channel right
     * before starting its conversion left it about those 3 us (3.6 time constants at
     * 50 kOhm): part of the previous channel's voltage stayed in the sample. The
     * ATmega328P locks the channel when a conversion starts and takes a new ADMUX value
     * only in the last ADC clock of that conversion (datasheet, Analog-to-Digital
     * Converter, "Changing Channel or Reference Selection": 24.5 in Atmel-8271, 28.5 in
     * DS40002061). So channel c+1 is selected right after conversion c started: it then
     * settles from the end of conversion c, through the work between conversions, until
     * conversion c+1 samples: >= 14.6 us (185 CPU cycles from one conversion's end to the
     * next start, counted under simavr, + 1.5 ADC clocks; 38 us for A0 after the LEDs),
     * 17 time constants at 50 kOhm, at no cost in rate (discarding a conversion after
     * each switch instead: 3379 instead of 5751 rounds/s). The last channel of a round
     * selects A0 for the next; A0 is selected here for the first one. */
    h->adc_select(h->ctx, 0);
    t0_ms = h->millis(h->ctx);
    t0_us = h->micros(h->ctx);
    do {
        for (c = 0; c < PROBE_ANALOG_CHANNELS; c++) {
            uint16_t x;
            h->adc_start(h->ctx);                             /* converts channel c */
            h->adc_select(h->ctx, (uint8_t)(c + 1u < PROBE_ANALOG_CHANNELS ? c + 1u : 0u));
            x = h->adc_result(h->ctx);
            if (x > 1023u) {
                x = 1023u;        /* a 10-bit ADC; keeps the sums inside their bounds */
            }
            probe_acc_add(&acc[c], x);
        }
        for (c = 0; c < PROBE_LEDS; c++) {
            /* branch-free: a round must take the same time lit or dark, or the sampling
               phase would follow the signal and bias every statistic */
            lit[c] += (uint16_t)(h->led_read(h->ctx, c) & 1u);
        }
        n++;
    } while (n < PROBE_MAX_ROUNDS && (uint32_t)(h->millis(h->ctx) - t0_ms) < ms);
    el_ms = h->millis(h->ctx) - t0_ms;
    el_us = h->micros(h->ctx) - t0_us;
    {
        /* n * 10^6 / us; saturates instead of wrapping if the clock stood still */
        uint64_t rate = (uint64_t)n * 1000000u / (el_us ? el_us : 1u);
        p->rate_hz = rate > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)rate;
    }

    reply_ok_head(p, id, PROBE_PSTR("MEASURE"));
    emit_p(p, PROBE_PSTR(" ms="));
    emit_u32(p, el_ms);
    emit_p(p, PROBE_PSTR(" n="));
    emit_u32(p, n);
    emit_p(p, PROBE_PSTR(" rate_hz="));
    emit_u32(p, p->rate_hz);
    for (c = 0; c < PROBE_ANALOG_CHANNELS; c++) {
        char key[4];
        key[0] = ' ';
        key[1] = 'a';
        key[2] = (char)('0' + c);
        key[3] = '=';
        emit_mem(p, key, 4);
        emit_milli(p, probe_mean_milli(&acc[c]));
        emit_p(p, PROBE_PSTR(","));
        emit_milli(p, probe_rms_milli(&acc[c]));
        emit_p(p, PROBE_PSTR(","));
        emit_u32(p, acc[c].min);
        emit_p(p, PROBE_PSTR(","));
        emit_u32(p, acc[c].max);
    }
    emit_p(p, PROBE_PSTR(" led="));
    for (c = 0; c < PROBE_LEDS; c++) {
        if (c) {
            emit_p(p, PROBE_PSTR(","));
        }
        emit_u32(p, lit[c]);
    }
    line_end(p);
}

#define MAX_TOKENS 5u

void probe_handle_line(probe_t *p, const uint8_t *line, uint8_t len)
{
    uint8_t tok_start[MAX_TOKENS], tok_len[MAX_TOKENS];
    uint8_t ntok = 0, i, body_len, start;
    uint16_t id;

    if (len > 0u && line[len - 1u] == '\r') {
        len--;
    }
    if (len == 0u) {
        return;                                   /* empty line: no reply */
    }
    id = readable_id(line, len);
    for (i = 0; i < len; i++) {
        if (line[i] < 0x20u || line[i] > 0x7Eu) {
            reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
            return;
        }
    }
    /* CRC: the last space-separated token, if it starts with '*'. */
    body_len = len;
    for (i = len; i > 0u; i--) {
        if (line[i - 1u] == ' ') {
            break;
        }
    }
    if (i > 0u && i < len && line[i] == '*') {
        uint8_t sp = (uint8_t)(i - 1u);          /* index of the space */
        uint16_t want = 0;
        uint8_t k, ok = (uint8_t)(len - i == 5u);
        for (k = 1; ok && k < 5u; k++) {
            uint8_t v = hexval(line[i + k]);
            if (v == 0xFFu) {
                ok = 0;
            } else {
                want = (uint16_t)((want << 4) | v);
            }
        }
        if (!ok || probe_crc16(line, sp) != want) {
            reply_err(p, id, PROBE_ERR_BAD_CRC);
            return;
        }
        body_len = sp;
    }
    /* Tokens separated by single spaces; an empty token is a syntax error. */
    start = 0;
    for (i = 0; i <= body_len; i++) {
        if (i == body_len || line[i] == ' ') {
            if (i == start) {
                reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
                return;
            }
            if (ntok < MAX_TOKENS) {
                tok_start[ntok] = start;
                tok_len[ntok] = (uint8_t)(i - start);
                ntok++;
            } else {
                ntok = MAX_TOKENS + 1u;          /* "too many" for every verb */
            }
            start = (uint8_t)(i + 1u);
        }
    }
    if (id == 0u || ntok < 2u) {
        reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
        return;
    }
    {
        const uint8_t *verb = line + tok_start[1];
        uint8_t vlen = tok_len[1];
        uint8_t nargs = (uint8_t)(ntok - 2u);
        uint32_t a, b;
        if (token_is(verb, vlen, PROBE_PSTR("HELLO"))) {
            if (nargs != 2u) {
                reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
            } else if (!parse_number(line + tok_start[2], tok_len[2], &a) ||
                       !parse_number(line + tok_start[3], tok_len[3], &b) ||
                       a > 65535u || b > 65535u) {
                reply_err(p, id, PROBE_ERR_BAD_ARGUMENT);
            } else if (a > PROBE_PROTO_VERSION || b < PROBE_PROTO_VERSION) {
                reply_err(p, id, PROBE_ERR_UNSUPPORTED_VERSION);
            } else {
                reply_identity(p, id, PROBE_PSTR("HELLO"));
            }
        } else if (token_is(verb, vlen, PROBE_PSTR("ID"))) {
            if (nargs != 0u) {
                reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
            } else {
                reply_identity(p, id, PROBE_PSTR("ID"));
            }
        } else if (token_is(verb, vlen, PROBE_PSTR("PING"))) {
            if (nargs != 0u) {
                reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
            } else {
                reply_ok_head(p, id, PROBE_PSTR("PING"));
                line_end(p);
            }
        } else if (token_is(verb, vlen, PROBE_PSTR("MEASURE"))) {
            if (nargs != 1u) {
                reply_err(p, id, PROBE_ERR_BAD_SYNTAX);
            } else if (!parse_number(line + tok_start[2], tok_len[2], &a) ||
                       a < PROBE_MEASURE_MIN_MS || a > PROBE_MEASURE_MAX_MS) {
                reply_err(p, id, PROBE_ERR_BAD_ARGUMENT);
            } else {
                do_measure(p, id, a);
            }
        } else {
            reply_err(p, id, PROBE_ERR_UNKNOWN_COMMAND);
        }
    }
}

void probe_feed(probe_t *p, uint8_t byte)
{
    if (byte != '\n') {
        if (p->len < sizeof p->buf) {
            p->buf[p->len++] = byte;
        } else {
            p->overflow = 1;                      /* keep the prefix for the id */
        }
        return;
    }
    if (p->overflow) {
        uint16_t id = readable_id(p->buf, p->len);
        p->len = 0;
        p->overflow = 0;
        reply_err(p, id, PROBE_ERR_LINE_TOO_LONG);
        return;
    }
    {
        uint8_t len = p->len;
        p->len = 0;
        probe_handle_line(p, p->buf, len);
    }
}
