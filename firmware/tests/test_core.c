#define _POSIX_C_SOURCE 200809L
/* Host unit tests of the probe core (hostctl_probe/src/probe_core.c).
 *
 * Usage: test_core <vectors-dir> [fuzz-regression-file ...]
 * Reads the shared vectors (crc.txt, stats.txt, session.txt) in place, runs the
 * unit tests below with a fake HAL, then replays every fuzz regression input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fuzz_one.h"
#include "../hostctl_probe/src/probe_core.h"

static int g_checks, g_failed;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        g_checks++;                                                              \
        if (!(cond)) {                                                           \
            g_failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* ------------------------------------------------------------ fake HAL */

#define MAX_RUNS 64
#define OUT_MAX 8192

typedef struct {
    uint16_t val;
    uint32_t count;
} run_t;

typedef struct {
    run_t runs[MAX_RUNS];
    int nruns;
    int idx;        /* current run */
    uint32_t used;  /* samples used from the current run */
} chan_t;

#define TRACE_MAX 16384

typedef struct {
    /* window mode: 7 scripted streams (A0..A3, D2..D4); time jumps after n rounds */
    chan_t ch[7];
    int window;                 /* a window is armed */
    uint32_t n, el_ms, el_us, reads;
    /* real-time mode: every ADC result advances the clock */
    uint32_t us_per_read;
    uint16_t const_adc;
    uint8_t const_led;
    uint64_t us;                /* clock */
    uint32_t ms_offset;         /* millis() = ms_offset + us / 1000 */
    int next;                   /* expected next sample: 0..3 ADC, 4..6 LED */
    int order_errors, overrun;
    /* the ADC as the ATmega328P has it: a conversion latches the selected channel */
    int mux;                    /* selected channel */
    int conv;                   /* channel being converted, -1 = idle */
    int adc_misuse;             /* start while converting, result while idle */
    /* every HAL call but the clocks, e.g. "S0 C0 S1 R C1 ... L2 " (see test_adc_order) */
    char trace[TRACE_MAX];
    size_t tracelen;
    int trace_full;
    char out[OUT_MAX];
    size_t outlen;
} fake_t;

static void trace(fake_t *f, char kind, int arg)
{
    if (f->tracelen + 4 >= TRACE_MAX) {
        f->trace_full = 1;
        return;
    }
    f->trace[f->tracelen++] = kind;
    if (arg >= 0) {
        f->trace[f->tracelen++] = (char)('0' + arg);
    }
    f->trace[f->tracelen++] = ' ';
    f->trace[f->tracelen] = '\0';
}

static uint16_t take(chan_t *c, int *overrun)
{
    while (c->idx < c->nruns && c->used >= c->runs[c->idx].count) {
        c->idx++;
        c->used = 0;
    }
    if (c->idx >= c->nruns) {
        (*overrun)++;
        return 0;
    }
    c->used++;
    return c->runs[c->idx].val;
}

static void fake_select(void *ctx, uint8_t channel)
{
    fake_t *f = (fake_t *)ctx;
    trace(f, 'S', channel);
    f->mux = channel;
}

static void fake_start(void *ctx)
{
    fake_t *f = (fake_t *)ctx;
    trace(f, 'C', f->mux);
    if (f->conv >= 0) {
        f->adc_misuse++;
    }
    f->conv = f->mux;                   /* latched: a later select is for the next one */
    if (f->conv != f->next) {
        f->order_errors++;
    }
    f->next = (f->next + 1) % 7;
}

static uint16_t fake_result(void *ctx)
{
    fake_t *f = (fake_t *)ctx;
    int channel = f->conv;
    trace(f, 'R', -1);
    if (channel < 0 || channel > 3) {
        f->adc_misuse++;
        return 0;
    }
    f->conv = -1;
    if (f->window) {
        uint16_t v = take(&f->ch[channel], &f->overrun);
        f->reads++;
        if (f->reads == 4u * f->n) {
            f->us += f->el_us;
            f->ms_offset += f->el_ms;   /* millis() and micros() as scripted */
            f->window = 0;
        }
        return v;
    }
    f->us += f->us_per_read;
    return f->const_adc;
}

static uint8_t fake_led(void *ctx, uint8_t led)
{
    fake_t *f = (fake_t *)ctx;
    trace(f, 'L', led);
    if (led + 4 != f->next) {
        f->order_errors++;
    }
    f->next = (f->next + 1) % 7;
    if (f->ch[4 + led].nruns) {
        return (uint8_t)take(&f->ch[4 + led], &f->overrun);
    }
    return f->const_led;
}

/* In window mode the clock does not run between jumps (us_per_read = 0). */
static uint32_t fake_millis(void *ctx)
{
    fake_t *f = (fake_t *)ctx;
    return (uint32_t)(f->ms_offset + (f->us_per_read ? (uint32_t)(f->us / 1000u) : 0u));
}

static uint32_t fake_micros(void *ctx) { return (uint32_t)((fake_t *)ctx)->us; }

static void fake_write(void *ctx, const uint8_t *data, uint16_t len)
{
    fake_t *f = (fake_t *)ctx;
    if (f->outlen + len < OUT_MAX) {
        memcpy(f->out + f->outlen, data, len);
        f->outlen += len;
        f->out[f->outlen] = '\0';
    }
}

static fake_t g_fake;
static probe_hal_t g_hal = {fake_select, fake_start, fake_result, fake_led,
                            fake_millis,  fake_micros, fake_write, &g_fake};
static probe_t g_probe;

static void fake_reset(uint32_t nominal)
{
    memset(&g_fake, 0, sizeof g_fake);
    g_fake.conv = -1;
    probe_init(&g_probe, &g_hal, nominal);
}

static void feed(const char *s, size_t len)
{
    size_t i;
    g_fake.outlen = 0;
    g_fake.out[0] = '\0';
    for (i = 0; i < len; i++) {
        probe_feed(&g_probe, (uint8_t)s[i]);
    }
}

static void feeds(const char *s) { feed(s, strlen(s)); }

/* every output line: printable, " *XXXX" with the right CRC */
static void check_output_lines(void)
{
    const char *p = g_fake.out;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len, i;
        unsigned crc = 0;
        CHECK(nl != NULL, "output ends without newline: %s", p);
        if (!nl) {
            return;
        }
        len = (size_t)(nl - p);
        CHECK(len >= 6 && p[len - 6] == ' ' && p[len - 5] == '*', "no CRC: %.*s", (int)len, p);
        for (i = 0; i < len; i++) {
            CHECK(p[i] >= 0x20 && p[i] <= 0x7E, "non-printable output byte");
        }
        if (len >= 6) {
            CHECK(sscanf(p + len - 4, "%4X", &crc) == 1 &&
                      probe_crc16((const uint8_t *)p, len - 6) == crc,
                  "bad CRC in %.*s", (int)len, p);
        }
        p = nl + 1;
    }
}

/* ------------------------------------------------------- vector files */

/* \\ \n \r \t \xHH -> bytes; returns length or -1 */
static int unescape(const char *s, char *out, int cap)
{
    int n = 0;
    while (*s) {
        char c = *s++;
        if (c == '\\') {
            char e = *s++;
            if (e == 'n') {
                c = '\n';
            } else if (e == 'r') {
                c = '\r';
            } else if (e == 't') {
                c = '\t';
            } else if (e == '\\') {
                c = '\\';
            } else if (e == 'x' && s[0] && s[1]) {
                char hx[3] = {s[0], s[1], 0};
                char *end;
                c = (char)strtol(hx, &end, 16);
                if (*end) {
                    return -1;
                }
                s += 2;
            } else {
                return -1;
            }
        }
        if (n >= cap) {
            return -1;
        }
        out[n++] = c;
    }
    return n;
}

/* "v" or "v*k", comma-separated -> runs; returns number of samples or -1 */
static long parse_runs(const char *s, chan_t *c)
{
    long total = 0;
    c->nruns = 0;
    c->idx = 0;
    c->used = 0;
    while (*s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10), k = 1;
        if (end == s || c->nruns >= MAX_RUNS) {
            return -1;
        }
        s = end;
        if (*s == '*') {
            k = strtoul(s + 1, &end, 10);
            if (end == s + 1) {
                return -1;
            }
            s = end;
        }
        c->runs[c->nruns].val = (uint16_t)v;
        c->runs[c->nruns].count = (uint32_t)k;
        c->nruns++;
        total += (long)k;
        if (*s == ',') {
            s++;
        } else if (*s) {
            return -1;
        }
    }
    return total;
}

static FILE *open_vec(const char *dir, const char *name)
{
    char path[1024];
    FILE *fp;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fp = fopen(path, "r");
    CHECK(fp != NULL, "cannot open vector file %s", path);
    return fp;
}

static void chomp(char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
}

static int test_crc_vectors(const char *dir)
{
    char line[512], bytes[512];
    int count = 0, lineno = 0;
    FILE *fp = open_vec(dir, "crc.txt");
    if (!fp) {
        return 0;
    }
    while (fgets(line, sizeof line, fp)) {
        unsigned want;
        int n;
        lineno++;
        chomp(line);
        if (!line[0] || line[0] == '#') {
            continue;
        }
        CHECK(strncmp(line, "crc ", 4) == 0 && strlen(line) >= 9 && line[8] == ' ' &&
                  sscanf(line + 4, "%4X", &want) == 1,
              "crc.txt:%d malformed", lineno);
        n = unescape(line + 9, bytes, (int)sizeof bytes);
        CHECK(n >= 0, "crc.txt:%d bad escape", lineno);
        if (n >= 0) {
            CHECK(probe_crc16((const uint8_t *)bytes, (size_t)n) == want,
                  "crc.txt:%d got %04X want %04X", lineno,
                  probe_crc16((const uint8_t *)bytes, (size_t)n), want);
        }
        count++;
    }
    fclose(fp);
    return count;
}

static int test_stats_vectors(const char *dir)
{
    static char line[4096];
    int count = 0, lineno = 0;
    FILE *fp = open_vec(dir, "stats.txt");
    if (!fp) {
        return 0;
    }
    while (fgets(line, sizeof line, fp)) {
        char *arrow, want[128], got[128], m[16], r[16];
        chan_t c;
        probe_acc_t acc;
        long n;
        lineno++;
        chomp(line);
        if (!line[0] || line[0] == '#') {
            continue;
        }
        arrow = strstr(line, " -> ");
        CHECK(strncmp(line, "stats ", 6) == 0 && arrow != NULL, "stats.txt:%d malformed", lineno);
        if (!arrow) {
            continue;
        }
        *arrow = '\0';
        snprintf(want, sizeof want, "%s", arrow + 4);
        n = parse_runs(line + 6, &c);
        CHECK(n > 0, "stats.txt:%d bad samples", lineno);
        probe_acc_reset(&acc);
        {
            int dummy = 0;
            long i;
            for (i = 0; i < n; i++) {
                probe_acc_add(&acc, take(&c, &dummy));
            }
        }
        probe_format_milli(probe_mean_milli(&acc), m);
        probe_format_milli(probe_rms_milli(&acc), r);
        snprintf(got, sizeof got, "%s %s %u %u", m, r, (unsigned)acc.min, (unsigned)acc.max);
        CHECK(strcmp(got, want) == 0, "stats.txt:%d got '%s' want '%s'", lineno, got, want);
        count++;
    }
    fclose(fp);
    return count;
}

static int arm_window(const char *spec, int lineno)
{
    static char buf[4096];
    char *tok, *save = NULL;
    int seen = 0;
    snprintf(buf, sizeof buf, "%s", spec);
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        const char *keys[7] = {"a0", "a1", "a2", "a3", "d2", "d3", "d4"};
        int k;
        CHECK(eq != NULL, "session.txt:%d window field %s", lineno, tok);
        if (!eq) {
            return 0;
        }
        *eq = '\0';
        if (strcmp(tok, "n") == 0) {
            g_fake.n = (uint32_t)strtoul(eq + 1, NULL, 10);
        } else if (strcmp(tok, "ms") == 0) {
            g_fake.el_ms = (uint32_t)strtoul(eq + 1, NULL, 10);
        } else if (strcmp(tok, "us") == 0) {
            g_fake.el_us = (uint32_t)strtoul(eq + 1, NULL, 10);
        } else {
            for (k = 0; k < 7; k++) {
                if (strcmp(tok, keys[k]) == 0) {
                    long n = parse_runs(eq + 1, &g_fake.ch[k]);
                    CHECK(n == (long)g_fake.n, "session.txt:%d %s has %ld samples, n=%lu", lineno,
                          tok, n, (unsigned long)g_fake.n);
                    seen |= 1 << k;
                    break;
                }
            }
            CHECK(k < 7, "session.txt:%d unknown window key %s", lineno, tok);
        }
    }
    CHECK(seen == 0x7F, "session.txt:%d window lacks a channel", lineno);
    g_fake.window = 1;
    g_fake.reads = 0;
    g_fake.us_per_read = 0;
    return 1;
}

static int g_session_sends, g_session_replies;

/* Compare the output of the last send/reset with the expected reply lines. */
static void session_flush(const char *expected, int lineno)
{
    if (lineno > 0) {
        CHECK(strcmp(g_fake.out, expected) == 0, "session.txt: block ending line %d\n got: %s\nwant: %s",
              lineno, g_fake.out, expected);
        check_output_lines();
    }
}

static void test_session_vectors(const char *dir)
{
    static char line[4096], bytes[4096], expected[OUT_MAX];
    int lineno = 0, block = 0;
    FILE *fp = open_vec(dir, "session.txt");
    if (!fp) {
        return;
    }
    expected[0] = '\0';
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        chomp(line);
        if (!line[0] || line[0] == '#') {
            continue;
        }
        if (strncmp(line, "reply ", 6) == 0) {
            CHECK(block > 0, "session.txt:%d reply before any send/reset", lineno);
            CHECK(strlen(expected) + strlen(line) + 2 < sizeof expected, "too many replies");
            strcat(expected, line + 6);
            strcat(expected, "\n");
            g_session_replies++;
            continue;
        }
        session_flush(expected, block);
        expected[0] = '\0';
        if (strncmp(line, "reset ", 6) == 0) {
            fake_reset((uint32_t)strtoul(line + 6, NULL, 10));
            g_fake.outlen = 0;
            g_fake.out[0] = '\0';
            probe_boot(&g_probe);
            block = lineno;
        } else if (strncmp(line, "window ", 7) == 0) {
            CHECK(!g_fake.window, "session.txt:%d previous window not consumed", lineno);
            arm_window(line + 7, lineno);
            block = 0;
        } else if (strncmp(line, "send ", 5) == 0) {
            int n = unescape(line + 5, bytes, (int)sizeof bytes);
            CHECK(n >= 0, "session.txt:%d bad escape", lineno);
            feed(bytes, n > 0 ? (size_t)n : 0u);
            block = lineno;
            g_session_sends++;
        } else {
            CHECK(0, "session.txt:%d unknown line kind", lineno);
        }
    }
    session_flush(expected, block);
    CHECK(!g_fake.window, "session.txt: a window was never consumed");
    CHECK(g_fake.order_errors == 0, "sampling order A0..A3,D2..D4 violated %d times",
          g_fake.order_errors);
    CHECK(g_fake.overrun == 0, "MEASURE took more rounds than the window had");
    CHECK(g_fake.adc_misuse == 0, "ADC started while converting or read while idle");
    fclose(fp);
}

/* ------------------------------------------------------------ unit tests */

static void test_isqrt_and_format(void)
{
    char b[20];
    uint64_t k;
    CHECK(probe_isqrt64(0) == 0, "isqrt 0");
    CHECK(probe_isqrt64(1) == 1, "isqrt 1");
    CHECK(probe_isqrt64(2) == 1, "isqrt 2");
    CHECK(probe_isqrt64(3) == 1, "isqrt 3");
    CHECK(probe_isqrt64(4) == 2, "isqrt 4");
    CHECK(probe_isqrt64(UINT64_MAX) == 4294967295u, "isqrt max");
    CHECK(probe_isqrt64((uint64_t)4294967295u * 4294967295u) == 4294967295u, "isqrt (2^32-1)^2");
    for (k = 1; k < 3000000u; k += 7919u) {
        CHECK(probe_isqrt64(k * k) == k && probe_isqrt64(k * k - 1u) == k - 1u &&
                  probe_isqrt64(k * k + 2u * k) == k,
              "isqrt around %lu^2", (unsigned long)k);
    }
    probe_format_milli(0, b);
    CHECK(strcmp(b, "0.000") == 0, "milli 0 -> %s", b);
    probe_format_milli(1, b);
    CHECK(strcmp(b, "0.001") == 0, "milli 1 -> %s", b);
    probe_format_milli(511734, b);
    CHECK(strcmp(b, "511.734") == 0, "milli 511734 -> %s", b);
    probe_format_milli(1023050, b);
    CHECK(strcmp(b, "1023.050") == 0, "milli 1023050 -> %s", b);
    probe_format_milli(4294967295u, b);
    CHECK(strcmp(b, "4294967.295") == 0, "milli max -> %s", b);
    probe_format_u32(0, b);
    CHECK(strcmp(b, "0") == 0, "u32 0");
    probe_format_u32(4294967295u, b);
    CHECK(strcmp(b, "4294967295") == 0, "u32 max");
    CHECK(probe_crc16((const uint8_t *)"", 0) == 0xFFFFu, "crc of nothing");
    CHECK(probe_crc16((const uint8_t *)"123456789", 9) == 0x29B1u, "crc check value");
}

/* the sums stay exact at the limits: 65535 rounds of 1023 through the real loop */
static void test_measure_limits(void)
{
    fake_reset(9000);
    g_fake.us_per_read = 1;             /* 4 us per round: 65535 rounds in 262 ms */
    g_fake.const_adc = 1023;
    g_fake.const_led = 1;
    feeds("5 MEASURE 5000\n");
    {
        static const char want[] =
            "5 OK MEASURE ms=262 n=65535 rate_hz=250000 a0=1023.000,0.000,1023,1023 "
            "a1=1023.000,0.000,1023,1023 a2=1023.000,0.000,1023,1023 "
            "a3=1023.000,0.000,1023,1023 led=65535,65535,65535 *";
        CHECK(strncmp(g_fake.out, want, strlen(want)) == 0, "65535 rounds of 1023: %s", g_fake.out);
    }
    check_output_lines();

    /* an ADC value above 10 bits is clamped, never overflowing the sums */
    fake_reset(9000);
    g_fake.us_per_read = 1;
    g_fake.const_adc = 0xFFFF;
    feeds("6 MEASURE 5000\n");
    CHECK(strstr(g_fake.out, " n=65535 ") && strstr(g_fake.out, "a3=1023.000,0.000,1023,1023 led=0,0,0"),
          "clamped: %s", g_fake.out);
    CHECK(g_fake.order_errors == 0, "round order");
}

/* real-time clock: the window ends when ms have passed; wrap-around of millis/micros */
static void test_measure_timing(void)
{
    static const uint32_t ms_offsets[] = {0u, 0xFFFFFF00u};
    static const uint64_t us_starts[] = {0u, 0xFFFFFFFFu - 100000u};
    int k;
    for (k = 0; k < 2; k++) {
        unsigned long ms, n, rate;
        fake_reset(9000);
        g_fake.us_per_read = 26;        /* a 26 us conversion per channel: 104 us per round */
        g_fake.ms_offset = ms_offsets[k];
        g_fake.us = us_starts[k];
        g_fake.const_adc = 512;
        feeds("7 MEASURE 200\n");
        CHECK(sscanf(g_fake.out, "7 OK MEASURE ms=%lu n=%lu rate_hz=%lu", &ms, &n, &rate) == 3,
              "measure reply: %s", g_fake.out);
        /* millis() starts at us/1000 and the round that crosses 200 ms is the last */
        CHECK(ms >= 200 && ms <= 201, "elapsed ms=%lu (clock set %d)", ms, k);
        CHECK(n >= 1920 && n <= 1926, "rounds n=%lu", n);
        CHECK(rate >= 9600 && rate <= 9616, "rate_hz=%lu", rate);
        check_output_lines();
        feeds("8 ID\n");
        {
            char want[32];
            snprintf(want, sizeof want, " rate_hz=%lu *", rate);
            CHECK(strstr(g_fake.out, want) != NULL, "ID reports the last rate: %s", g_fake.out);
        }
    }
    /* MEASURE 1: at least one round even if the clock jumps by a lot */
    fake_reset(9000);
    g_fake.us_per_read = 5000;
    feeds("9 MEASURE 1\n");
    CHECK(strncmp(g_fake.out, "9 OK MEASURE ms=20 n=1 rate_hz=50 ", 34) == 0, "one round: %s",
          g_fake.out);
    /* a frozen clock cannot hang MEASURE: the 65535-round cap ends it */
    fake_reset(9000);
    g_fake.us_per_read = 0;
    feeds("10 MEASURE 5000\n");
    CHECK(strncmp(g_fake.out, "10 OK MEASURE ms=0 n=65535 rate_hz=4294967295 ", 46) == 0,
          "frozen clock: %s", g_fake.out);
}

/* The multiplexer and the sample-and-hold (probe_core.c, do_measure): channel k+1 is
 * selected right after conversion k started (the ATmega328P latched k at that start) and
 * before conversion k's result is waited for, so k+1's sample-and-hold settles from the
 * end of conversion k until conversion k+1 samples. Nothing else moves the multiplexer:
 * a select between a result and the next start would leave the next channel only the
 * 1.5 ADC clocks before its sample (the old order). Across rounds, A3's conversion
 * selects A0. Checked call by call (clock reads aside) over two whole MEASUREs. */
static void test_adc_order(void)
{
    static char want[TRACE_MAX];
    static const char *const cmds[2] = {"11 MEASURE 1\n", "12 MEASURE 2\n"};
    size_t len = 0, i;
    int w;
    fake_reset(9000);
    g_fake.us_per_read = 26;            /* ~9.6 rounds per ms */
    for (w = 0; w < 2; w++) {
        unsigned long n = 0, k;
        feeds(cmds[w]);
        CHECK(sscanf(g_fake.out, "%*u OK MEASURE ms=%*u n=%lu", &n) == 1 && n >= 3,
              "several rounds wanted: %s", g_fake.out);
        len += (size_t)snprintf(want + len, sizeof want - len, "S0 ");
        for (k = 0; k < n && len < sizeof want - 64; k++) {
            int c;
            for (c = 0; c < 4; c++) {
                len += (size_t)snprintf(want + len, sizeof want - len, "C%d S%d R ", c,
                                        (c + 1) % 4);
            }
            len += (size_t)snprintf(want + len, sizeof want - len, "L0 L1 L2 ");
        }
    }
    CHECK(!g_fake.trace_full && len < sizeof want - 64, "trace buffer too small");
    for (i = 0; want[i] && want[i] == g_fake.trace[i]; i++) {
    }
    CHECK(strcmp(g_fake.trace, want) == 0,
          "HAL call order differs at trace byte %lu:\n got ...%.60s\nwant ...%.60s",
          (unsigned long)i, g_fake.trace + (i > 30 ? i - 30 : 0), want + (i > 30 ? i - 30 : 0));
    CHECK(g_fake.adc_misuse == 0 && g_fake.order_errors == 0 && g_fake.conv == -1,
          "ADC misuse %d, order errors %d", g_fake.adc_misuse, g_fake.order_errors);
    check_output_lines();
}

/* bursts of garbage never hang it, the buffer stays bounded, and it recovers */
static void test_bursts(void)
{
    uint32_t seed = 12345u;
    int i, lines = 0, replies = 0;
    const char *p;
    fake_reset(9000);
    g_fake.us_per_read = 1000;
    g_fake.outlen = 0;
    for (i = 0; i < 200000; i++) {
        uint8_t b;
        seed = seed * 1664525u + 1013904223u;
        b = (uint8_t)(seed >> 24);
        if ((seed >> 8) % 97u == 0u) {
            b = '\n';
        }
        if (b == '\n') {
            lines++;
        }
        if (g_fake.outlen > OUT_MAX - 512) {
            check_output_lines();
            for (p = g_fake.out; (p = strchr(p, '\n')) != NULL; p++) {
                replies++;
            }
            g_fake.outlen = 0;
            g_fake.out[0] = '\0';
        }
        probe_feed(&g_probe, b);
        CHECK(g_probe.len < PROBE_MAX_LINE, "line buffer bound");
    }
    check_output_lines();
    for (p = g_fake.out; (p = strchr(p, '\n')) != NULL; p++) {
        replies++;
    }
    CHECK(replies <= lines && replies > lines / 2, "replies %d for %d lines", replies, lines);
    feeds("\n");
    feeds("42 PING\n");
    CHECK(strcmp(g_fake.out, "42 OK PING *BE7E\n") == 0,
          "recovers after garbage: %s", g_fake.out);
    {
        /* every byte value alone on a line */
        int b;
        for (b = 0; b < 256; b++) {
            char two[2];
            two[0] = (char)b;
            two[1] = '\n';
            feed(two, 2);
            if (b == '\n' || b == '\r') {
                CHECK(g_fake.outlen == 0, "byte %d then newline: %s", b, g_fake.out);
            } else {
                CHECK(strncmp(g_fake.out, "0 ERR 2 bad-syntax *", 20) == 0, "byte %d alone: %s", b,
                      g_fake.out);
            }
        }
    }
}

static void test_banner(void)
{
    fake_reset(9000);
    probe_boot(&g_probe);
    CHECK(strncmp(g_fake.out, "! BOOT fw=hostctl-probe/1.0.0 proto=1 *", 39) == 0 &&
              strlen(g_fake.out) == 44,
          "banner: %s", g_fake.out);
    check_output_lines();
}

static int replay_file(const char *path)
{
    static uint8_t data[1 << 20];
    size_t n;
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot open regression %s", path);
    if (!fp) {
        return 0;
    }
    n = fread(data, 1, sizeof data, fp);
    fclose(fp);
    probe_fuzz_one(data, n);   /* aborts on a broken invariant; ASan/UBSan catch the rest */
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "vectors";
    int ncrc, nstats, nreplay = 0, i;

    test_isqrt_and_format();
    test_banner();
    ncrc = test_crc_vectors(dir);
    nstats = test_stats_vectors(dir);
    test_session_vectors(dir);
    test_measure_limits();
    test_measure_timing();
    test_adc_order();
    test_bursts();
    for (i = 2; i < argc; i++) {
        nreplay += replay_file(argv[i]);
    }
    printf("vectors: %d crc, %d stats, %d session sends with %d reply lines; "
           "%d fuzz regressions replayed\n",
           ncrc, nstats, g_session_sends, g_session_replies, nreplay);
    CHECK(ncrc >= 5 && nstats >= 10 && g_session_sends >= 50, "too few vectors read");
    printf("%d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}
