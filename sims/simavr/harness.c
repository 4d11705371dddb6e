/*
 * hostctl simavr harness: runs the real probe firmware (an Arduino Uno ELF) in
 * simavr with a simulated colour-organ board around it.
 *
 * - UART0 <-> pseudo-terminal, single-threaded (no uart_pty part: its thread
 *   touches the simulator without a lock and it always claims /tmp/simavr-uart0).
 * - ADC: at the start of each conversion the selected channel gets the
 *   waveform's value at that simulated instant:
 *       v_ch(t) = bias_ch + amp_ch * sin(2*pi*f*t + phase_ch)
 *   quantised like a real ATmega328P (floor(v * 1024 / vref)), optional
 *   Gaussian noise in LSB. Optionally (SH <tau_ns>) the sample-and-hold
 *   capacitor is modelled as an RC charging towards the selected channel.
 * - LED inputs D2..D4 (PORTD 2..4) follow A1..A3: HIGH while
 *   v(t) - bias > threshold. Each edge is scheduled at its exact cycle, so a
 *   20 kHz tone costs 40k timer callbacks per simulated second, nothing more.
 * - Control channel: text lines on stdin, answers on stdout ("OK ..." or
 *   "ERR ..."); see README.md. simavr's own chatter goes to stderr.
 *
 * The MCU is held (not running) until GO: pyserial's open() flushes input,
 * so a boot banner sent before the host opened the port would be lost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <simavr/avr_adc.h>
#include <simavr/avr_ioport.h>
#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_time.h>
#include <simavr/sim_irq.h>
#include <simavr/sim_io.h>

#define N_CH 4
#define N_LED 3
#define LED_PIN0 2          /* D2..D4 */
#define UCSR0B_ADDR 0xC1    /* ATmega328P: UCSR0B, RXEN0 = bit 4 */
#define RXEN0_BIT 4
#define UART_TICK_US 87     /* one byte time at 115200 8N1 */
#define STDIN_POLL_EVERY 4000 /* avr_run() calls between control-channel polls */

static const double TWO_PI = 6.283185307179586476925286766559;

typedef struct {
    double bias_mv, amp_mv, phase0; /* phase0: phase at cycle tone_c0 */
} channel_t;

typedef struct {
    avr_t *avr;
    FILE *ctl;                      /* control replies (the real stdout) */
    int pty_master, pty_slave;
    char pty_name[128];

    /* simulated board */
    double freq_hz;
    avr_cycle_count_t tone_c0;      /* cycle at which phases are referenced */
    channel_t ch[N_CH];
    double led_thr_mv[N_LED];
    int led_state[N_LED];
    double vref_mv;
    double noise_lsb;
    uint64_t rng;

    /* sample-and-hold model, off while sh_tau_s == 0 (see sh_sample) */
    double sh_tau_s;
    int sh_ch;                      /* channel the hold capacitor follows, -1: not yet known */
    avr_cycle_count_t sh_since;     /* ... since this cycle, starting from sh_v0 (mV) */
    double sh_v0;
    avr_cycle_count_t conv_end;     /* the capacitor is held until the conversion ends */
    double sh_held;                 /* the held sample (mV) */
    int sh_pending;                 /* channel written to ADMUX during a conversion, -1: none */
    int sh_reconnected;             /* the last conversion's end has been applied */

    /* uart bridge */
    int rx_room;                    /* XON/XOFF from the AVR UART */
    uint8_t rxbuf[4096];
    size_t rx_len, rx_pos;
    avr_irq_t *uart_in;

    /* irqs */
    avr_irq_t *adc_in[N_CH];
    avr_irq_t *led_irq[N_LED];

    /* state */
    int running;                    /* released by GO */
    int reset_on_open;              /* Uno-style: opening the port resets the MCU */
    int client;                     /* someone has the pty slave open */
    double release_at;              /* wall clock (s) at which a held MCU starts; 0 = never */
    int dead;                       /* crashed / done */
    int quit;

    /* counters for EVENTS? */
    uint64_t adc_conv[N_CH];
    uint64_t led_edges[N_LED];
    uint64_t bytes_to_avr, bytes_from_avr, bytes_dropped;
} harness_t;

static harness_t H;
static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void ctl_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(H.ctl, fmt, ap);
    va_end(ap);
    fputc('\n', H.ctl);
    fflush(H.ctl);
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double sim_seconds(void)
{
    return (double)H.avr->cycle / (double)H.avr->frequency;
}

/* tone phase (radians, unwrapped) at cycle c */
static double phase_at(int ch, avr_cycle_count_t c)
{
    double dt = ((double)c - (double)H.tone_c0) / (double)H.avr->frequency;
    return TWO_PI * H.freq_hz * dt + H.ch[ch].phase0;
}

static double ac_mv(int ch, avr_cycle_count_t c)
{
    if (H.ch[ch].amp_mv == 0.0)
        return 0.0;
    return H.ch[ch].amp_mv * sin(phase_at(ch, c));
}

/* ---------- noise (xorshift64* + Box-Muller) ---------- */
static double rng_uniform(void)
{
    uint64_t x = H.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    H.rng = x;
    return ((double)((x * 2685821657736338717ULL) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_gauss(void)
{
    double u1 = rng_uniform(), u2 = rng_uniform();
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

/* ---------- ADC ---------- */

/* ---- sample-and-hold model (SH <tau_ns>) ----
 * The ATmega328P charges a 14 pF hold capacitor through the source and the
 * multiplexer resistance (tau = R * 14 pF) while a channel is selected and no
 * conversion holds it; it samples 1.5 ADC clocks after a conversion starts and
 * holds until the conversion ends. ADMUX written while idle switches at once;
 * written during a conversion, it switches when that conversion ends (the
 * datasheet's "continuous updating resumes in the last ADC clock cycle"; the
 * end is one ADC clock later, the conservative choice). Exact RC response to
 * the sine: the steady-state low-pass output plus the decaying start error. */
#define ADMUX_ADDR 0x7C
#define ADCSRA_ADDR 0x7A

static int adc_clock_cycles(void)
{
    int adps = H.avr->data[ADCSRA_ADDR] & 7;
    return adps < 1 ? 2 : 1 << adps;
}

static double sh_steady(int ch, avr_cycle_count_t c)
{
    if (H.ch[ch].amp_mv == 0.0)
        return H.ch[ch].bias_mv;
    double wt = TWO_PI * (H.freq_hz > 0.0 ? H.freq_hz : 0.0) * H.sh_tau_s;
    return H.ch[ch].bias_mv + H.ch[ch].amp_mv / sqrt(1.0 + wt * wt) * sin(phase_at(ch, c) - atan(wt));
}

/* capacitor voltage (mV) at cycle c, following sh_ch since sh_since */
static double sh_track(avr_cycle_count_t c)
{
    double dt = ((double)c - (double)H.sh_since) / (double)H.avr->frequency;
    return sh_steady(H.sh_ch, c) + (H.sh_v0 - sh_steady(H.sh_ch, H.sh_since)) * exp(-dt / H.sh_tau_s);
}

static void sh_connect(int ch, avr_cycle_count_t c, double v0)
{
    H.sh_ch = ch;
    H.sh_since = c;
    H.sh_v0 = v0;
}

/* a finished conversion releases the capacitor to the (possibly new) channel */
static void sh_advance(avr_cycle_count_t c)
{
    if (!H.sh_reconnected && c >= H.conv_end) {
        sh_connect(H.sh_pending >= 0 ? H.sh_pending : H.sh_ch, H.conv_end, H.sh_held);
        H.sh_pending = -1;
        H.sh_reconnected = 1;
    }
}

static void sh_reset(void)
{
    H.sh_ch = -1;
    H.sh_pending = -1;
    H.sh_reconnected = 1;
    H.conv_end = 0;
}

static void admux_write(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)param;
    avr->data[addr] = v;
    int ch = v & 0x0F;
    if (H.sh_tau_s <= 0.0 || ch >= N_CH)
        return;
    sh_advance(avr->cycle);
    if (!H.sh_reconnected)
        H.sh_pending = ch;                    /* converting: applies at its end */
    else if (H.sh_ch < 0)
        sh_connect(ch, avr->cycle, sh_steady(ch, avr->cycle));
    else if (ch != H.sh_ch)
        sh_connect(ch, avr->cycle, sh_track(avr->cycle));
}

/* the millivolts conversion of channel ch started at cycle c samples */
static double sh_sample(int ch, avr_cycle_count_t c)
{
    int clk = adc_clock_cycles();
    sh_advance(c);
    if (H.sh_ch != ch) /* e.g. ADMUX never written since reset */
        sh_connect(ch, c, H.sh_ch < 0 ? sh_steady(ch, c) : sh_track(c));
    double v = sh_track(c + (avr_cycle_count_t)(3 * clk / 2));
    H.sh_held = v;
    H.conv_end = c + (avr_cycle_count_t)(13 * clk);
    H.sh_reconnected = 0;
    return v;
}

/* simavr computes count = mv * 1023 / vref (integer). Feed it the millivolt
 * value that yields the count a real ATmega328P gives: floor(v * 1024 / vref). */
static uint32_t count_to_simavr_mv(uint32_t count)
{
    uint32_t vref = (uint32_t)H.vref_mv;
    return (count * vref + 1022) / 1023; /* ceil(count * vref / 1023) */
}

static void adc_trigger(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    union {
        avr_adc_mux_t mux;
        uint32_t v;
    } e = {.v = value};
    if (e.mux.kind != ADC_MUX_SINGLE)
        return;
    int ch = e.mux.src;
    if (ch < 0 || ch >= N_CH)
        return;
    H.adc_conv[ch]++;
    double mv = H.sh_tau_s > 0.0 ? sh_sample(ch, H.avr->cycle)
                                 : H.ch[ch].bias_mv + ac_mv(ch, H.avr->cycle);
    double x = mv * 1024.0 / H.vref_mv;
    if (H.noise_lsb > 0.0)
        x += H.noise_lsb * rng_gauss();
    double f = floor(x);
    uint32_t count = f < 0.0 ? 0 : (f > 1023.0 ? 1023 : (uint32_t)f);
    /* The ATmega328P latches the channel when a conversion starts, and the firmware
     * selects the next channel while this one converts. simavr 1.6 looks at ADMUX only
     * when ADCL is read, i.e. after that change: give every channel this conversion's
     * count, so the result is the latched channel's whatever ADMUX says by then. */
    for (int c = 0; c < N_CH; c++)
        avr_raise_irq(H.adc_in[c], count_to_simavr_mv(count));
}

/* ---------- LEDs: exact edge scheduling ---------- */

static void led_drive(int i, int level, int force)
{
    if (!force && H.led_state[i] == level)
        return;
    if (H.led_state[i] != level)
        H.led_edges[i]++;
    H.led_state[i] = level;
    if (force) /* irqs are filtered: make sure the PIN bit really gets written */
        H.led_irq[i]->value = !level;
    avr_raise_irq(H.led_irq[i], (uint32_t)level);
}

/* LED i follows analog channel i+1. Returns the state at cycle c and, via
 * *next, the first cycle > c at which it changes (0 = never). */
static int led_eval(int i, avr_cycle_count_t c, avr_cycle_count_t *next)
{
    int ch = i + 1;
    double a = fabs(H.ch[ch].amp_mv), thr = H.led_thr_mv[i];
    *next = 0;
    if (a == 0.0 || H.freq_hz <= 0.0) {
        return ac_mv(ch, c) > thr;
    }
    if (thr >= a)
        return 0;
    if (thr < -a)
        return 1;
    /* HIGH while sin(theta) > thr/a, i.e. theta mod 2pi in (t1, pi - t1) */
    double t1 = asin(thr / a);
    double t2 = M_PI - t1;
    double th = phase_at(ch, c);
    if (H.ch[ch].amp_mv < 0) th += M_PI;
    double k = floor(th / TWO_PI);
    double r = th - k * TWO_PI; /* 0 <= r < 2pi */
    int state;
    double next_r;
    /* t1 is in (-pi/2, pi/2]; normalise edges into [0, 2pi) ordering */
    if (t1 >= 0.0) {
        if (r < t1) { state = 0; next_r = t1; }
        else if (r < t2) { state = 1; next_r = t2; }
        else { state = 0; next_r = t1 + TWO_PI; }
    } else {
        double t1n = t1 + TWO_PI; /* high on [0,t2) U (t1n, 2pi) */
        if (r < t2) { state = 1; next_r = t2; }
        else if (r < t1n) { state = 0; next_r = t1n; }
        else { state = 1; next_r = t2 + TWO_PI; }
    }
    double dth = next_r - r;
    double dcyc = dth / (TWO_PI * H.freq_hz) * (double)H.avr->frequency;
    avr_cycle_count_t n = (avr_cycle_count_t)ceil(dcyc);
    if (n < 1)
        n = 1;
    *next = c + n;
    return state;
}

static avr_cycle_count_t led_timer(struct avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)avr;
    int i = (int)(intptr_t)param;
    avr_cycle_count_t next;
    /* evaluate just after the edge so rounding cannot give the old state */
    int s = led_eval(i, when, &next);
    led_drive(i, s, 0);
    return next; /* absolute cycle, 0 = stop */
}

static void leds_reschedule(int force)
{
    for (int i = 0; i < N_LED; i++) {
        avr_cycle_timer_cancel(H.avr, led_timer, (void *)(intptr_t)i);
        avr_cycle_count_t next;
        int s = led_eval(i, H.avr->cycle, &next);
        led_drive(i, s, force);
        if (next)
            avr_cycle_timer_register(H.avr, next - H.avr->cycle, led_timer, (void *)(intptr_t)i);
    }
}

/* ---------- UART bridge ---------- */

static void uart_out(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    uint8_t b = (uint8_t)value;
    H.bytes_from_avr++;
    ssize_t r;
    do {
        r = write(H.pty_master, &b, 1);
    } while (r < 0 && errno == EINTR);
    if (r != 1)
        H.bytes_dropped++; /* nobody reading and the pty buffer is full */
}

static void uart_xon(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    H.rx_room = 1;
}

static void uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (value)
        H.rx_room = 0;
}

/* One byte per byte-time, only while the receiver is enabled and the UART
 * fifo has room: like a real 115200 baud line, never a burst. */
static avr_cycle_count_t uart_tick(struct avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)param;
    if (H.rx_pos >= H.rx_len) {
        ssize_t r = read(H.pty_master, H.rxbuf, sizeof(H.rxbuf));
        H.rx_pos = 0;
        H.rx_len = r > 0 ? (size_t)r : 0;
    }
    int rxen = (avr->data[UCSR0B_ADDR] >> RXEN0_BIT) & 1;
    if (H.rx_pos < H.rx_len && H.rx_room && rxen) {
        H.bytes_to_avr++;
        avr_raise_irq(H.uart_in, H.rxbuf[H.rx_pos++]);
    }
    return when + avr_usec_to_cycles(avr, UART_TICK_US);
}

/* ---------- setup ---------- */

static void no_sleep(avr_t *avr, avr_cycle_count_t howlong)
{
    (void)avr;
    (void)howlong; /* never wait in wall time; the uart tick bounds each sleep */
}

static void install_timers(void)
{
    avr_cycle_timer_register_usec(H.avr, UART_TICK_US, uart_tick, NULL);
    leds_reschedule(1);
}

static int open_pty(void)
{
    struct termios t;
    if (openpty(&H.pty_master, &H.pty_slave, H.pty_name, NULL, NULL) < 0) {
        fprintf(stderr, "harness: openpty failed: %s\n", strerror(errno));
        return -1;
    }
    if (tcgetattr(H.pty_slave, &t) == 0) {
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        tcsetattr(H.pty_slave, TCSANOW, &t);
    }
    int fl = fcntl(H.pty_master, F_GETFL);
    fcntl(H.pty_master, F_SETFL, fl | O_NONBLOCK);
    fcntl(H.pty_master, F_SETFD, FD_CLOEXEC);
    if (H.reset_on_open) {
        /* no slave fd of ours: POLLHUP on the master then means "no client" */
        close(H.pty_slave);
        H.pty_slave = -1;
    } else {
        /* keep the slave open: the master never sees EIO/HUP when the host closes
         * and reopens the port */
        fcntl(H.pty_slave, F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: harness [--mmcu atmega328p] [--freq 16000000] [--vref-mv 5000]\n"
            "               [--noise-lsb 0] [--seed N] [--go | --reset-on-open] FIRMWARE.elf\n");
}

/* ---------- control channel ---------- */

static int parse_doubles(char *s, double *out, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (n >= max)
            return -1;
        char *end;
        errno = 0;
        double v = strtod(tok, &end);
        if (*end || errno || !isfinite(v))
            return -1;
        out[n++] = v;
    }
    return n;
}

static void set_tone(double f, const double *bias, const double *amp, const double *phase)
{
    avr_cycle_count_t now = H.avr->cycle;
    for (int c = 0; c < N_CH; c++) {
        double ph = phase ? phase[c] : (H.freq_hz > 0 ? fmod(phase_at(c, now), TWO_PI) : 0.0);
        H.ch[c].phase0 = ph;
        H.ch[c].bias_mv = bias[c];
        H.ch[c].amp_mv = amp[c];
    }
    H.freq_hz = f;
    H.tone_c0 = now;
    leds_reschedule(0);
}

static int mcu_reset(void)
{
    if (H.avr->state == cpu_Done) /* simavr freed the core (avr_terminate) */
        return -1;
    avr_reset(H.avr);
    H.avr->state = cpu_Running;
    H.dead = 0;
    H.rx_room = 1;
    H.rx_len = H.rx_pos = 0;
    sh_reset();
    install_timers();
    return 0;
}

/* --reset-on-open: a host opening the port resets the board (DTR), and the sketch
 * starts 0.1 s of wall time later, after pyserial's open() has flushed its input. */
static void watch_client(void)
{
    struct pollfd p = {.fd = H.pty_master, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 0) < 0)
        return;
    int present = !(p.revents & POLLHUP);
    if (present && !H.client) {
        H.client = 1;
        if (mcu_reset() == 0) {
            H.running = 0;
            H.release_at = wall_seconds() + 0.1;
            ctl_reply("! OPENED %.9f", sim_seconds());
        }
    } else if (!present && H.client) {
        H.client = 0;
        ctl_reply("! CLOSED %.9f", sim_seconds());
    }
    if (!H.running && H.release_at > 0 && wall_seconds() >= H.release_at) {
        H.release_at = 0;
        H.running = 1;
    }
}

static void handle_command(char *line)
{
    char *args = line;
    while (*args && *args != ' ' && *args != '\t')
        args++;
    if (*args)
        *args++ = 0;
    const char *cmd = line;
    double v[16];

    if (!strcmp(cmd, "TONE")) {
        int n = parse_doubles(args, v, 13);
        if ((n != 9 && n != 13) || v[0] < 0 || v[0] > 1e6) {
            ctl_reply("ERR TONE wants <freq_hz 0..1e6> then bias,amp (mV) for A0..A3 "
                      "[phase0..3 rad]");
            return;
        }
        double bias[N_CH], amp[N_CH], ph[N_CH];
        for (int c = 0; c < N_CH; c++) {
            bias[c] = v[1 + 2 * c];
            amp[c] = v[2 + 2 * c];
            if (n == 13)
                ph[c] = v[9 + c];
        }
        set_tone(v[0], bias, amp, n == 13 ? ph : NULL);
        ctl_reply("OK TONE %.6f %.9f", H.freq_hz, sim_seconds());
    } else if (!strcmp(cmd, "SILENCE")) {
        double bias[N_CH], amp[N_CH] = {0, 0, 0, 0};
        for (int c = 0; c < N_CH; c++)
            bias[c] = H.ch[c].bias_mv;
        set_tone(0.0, bias, amp, NULL);
        ctl_reply("OK SILENCE %.9f", sim_seconds());
    } else if (!strcmp(cmd, "LEDTHR")) {
        if (parse_doubles(args, v, N_LED) != N_LED) {
            ctl_reply("ERR LEDTHR wants 3 thresholds in mV (LEDs on A1, A2, A3)");
            return;
        }
        for (int i = 0; i < N_LED; i++)
            H.led_thr_mv[i] = v[i];
        leds_reschedule(0);
        ctl_reply("OK LEDTHR %.3f %.3f %.3f", v[0], v[1], v[2]);
    } else if (!strcmp(cmd, "NOISE")) {
        int n = parse_doubles(args, v, 2);
        if (n < 1 || v[0] < 0 || (n == 2 && (v[1] < 0 || v[1] > 1e18))) {
            ctl_reply("ERR NOISE wants <sigma_lsb> [seed >= 0]");
            return;
        }
        H.noise_lsb = v[0];
        if (n == 2)
            H.rng = (uint64_t)v[1] * 0x9E3779B97F4A7C15ULL + 1;
        ctl_reply("OK NOISE %.4f", H.noise_lsb);
    } else if (!strcmp(cmd, "SH")) {
        if (parse_doubles(args, v, 1) != 1 || v[0] < 0 || v[0] > 1e6) {
            ctl_reply("ERR SH wants <tau_ns 0..1e6> (0: no sample-and-hold model)");
            return;
        }
        H.sh_tau_s = v[0] * 1e-9;
        sh_reset();
        ctl_reply("OK SH %.3f", v[0]);
    } else if (!strcmp(cmd, "TIME?")) {
        ctl_reply("OK TIME %.9f %llu", sim_seconds(), (unsigned long long)H.avr->cycle);
    } else if (!strcmp(cmd, "GO")) {
        if (!H.running) {
            H.running = 1;
        }
        ctl_reply("OK GO %.9f", sim_seconds());
    } else if (!strcmp(cmd, "RESET")) {
        /* like the Uno's DTR auto-reset when the port is opened */
        if (mcu_reset() < 0) {
            ctl_reply("ERR RESET impossible: the firmware stopped (slept with interrupts off)");
            return;
        }
        ctl_reply("OK RESET %.9f", sim_seconds());
    } else if (!strcmp(cmd, "STATE?")) {
        ctl_reply("OK STATE running=%d dead=%d cpu=%d pins=%d,%d,%d", H.running, H.dead,
                  H.avr->state, H.led_state[0], H.led_state[1], H.led_state[2]);
    } else if (!strcmp(cmd, "EVENTS?")) {
        ctl_reply("OK EVENTS t=%.9f adc=%llu,%llu,%llu,%llu led_edges=%llu,%llu,%llu rx=%llu "
                  "tx=%llu dropped=%llu", sim_seconds(),
                  (unsigned long long)H.adc_conv[0], (unsigned long long)H.adc_conv[1],
                  (unsigned long long)H.adc_conv[2], (unsigned long long)H.adc_conv[3],
                  (unsigned long long)H.led_edges[0], (unsigned long long)H.led_edges[1],
                  (unsigned long long)H.led_edges[2], (unsigned long long)H.bytes_to_avr,
                  (unsigned long long)H.bytes_from_avr, (unsigned long long)H.bytes_dropped);
    } else if (!strcmp(cmd, "QUIT")) {
        ctl_reply("OK QUIT");
        H.quit = 1;
    } else if (!*cmd) {
        /* blank line: ignore */
    } else {
        ctl_reply("ERR unknown command %s", cmd);
    }
}

/* Read whatever is on stdin (non-blocking), run complete lines.
 * timeout_us < 0: don't wait. */
static void poll_control(long timeout_us)
{
    static char buf[1024];
    static size_t len = 0;
    fd_set rd;
    struct timeval tv = {0, timeout_us > 0 ? timeout_us : 0};
    FD_ZERO(&rd);
    FD_SET(0, &rd);
    int r = select(1, &rd, NULL, NULL, &tv);
    if (r <= 0)
        return;
    ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
    if (n == 0) { /* parent went away */
        H.quit = 1;
        return;
    }
    if (n < 0)
        return;
    len += (size_t)n;
    for (;;) {
        char *nl = memchr(buf, '\n', len);
        if (!nl) {
            if (len >= sizeof(buf) - 1)
                len = 0; /* absurd line: drop it */
            break;
        }
        *nl = 0;
        if (nl > buf && nl[-1] == '\r')
            nl[-1] = 0;
        handle_command(buf);
        size_t used = (size_t)(nl - buf) + 1;
        memmove(buf, nl + 1, len - used);
        len -= used;
        if (H.quit)
            break;
    }
}

int main(int argc, char **argv)
{
    const char *mmcu = "atmega328p";
    uint32_t freq = 16000000;
    const char *elf = NULL;
    int go = 0;
    memset(&H, 0, sizeof(H));
    H.vref_mv = 5000.0;
    H.rng = 0x853c49e6748fea9bULL;
    for (int i = 0; i < N_LED; i++)
        H.led_thr_mv[i] = 1e9; /* LEDs dark until LEDTHR */
    for (int c = 0; c < N_CH; c++)
        H.ch[c].bias_mv = 2500.0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mmcu") && i + 1 < argc)
            mmcu = argv[++i];
        else if (!strcmp(argv[i], "--freq") && i + 1 < argc)
            freq = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--vref-mv") && i + 1 < argc)
            H.vref_mv = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--noise-lsb") && i + 1 < argc)
            H.noise_lsb = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            H.rng = strtoull(argv[++i], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
        else if (!strcmp(argv[i], "--go"))
            go = 1;
        else if (!strcmp(argv[i], "--reset-on-open"))
            H.reset_on_open = 1;
        else if (argv[i][0] == '-') {
            usage();
            return 2;
        } else
            elf = argv[i];
    }
    if (!elf || freq == 0 || H.vref_mv < 1000.0 || H.vref_mv > 6000.0) {
        usage();
        return 2;
    }

    /* Control replies keep the real stdout; everything simavr prints
     * (it uses printf freely) goes to stderr. */
    int ctl_fd = dup(1);
    if (ctl_fd < 0 || dup2(2, 1) < 0) {
        perror("harness: dup");
        return 1;
    }
    H.ctl = fdopen(ctl_fd, "w");
    if (!H.ctl) {
        perror("harness: fdopen");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    elf_firmware_t fw;
    memset(&fw, 0, sizeof(fw));
    if (access(elf, R_OK) != 0 || elf_read_firmware(elf, &fw) != 0) {
        fprintf(stderr, "harness: cannot load firmware ELF %s\n", elf);
        ctl_reply("ERR cannot load firmware ELF %s", elf);
        return 1;
    }
    /* Arduino ELFs carry no .mmcu section: set both by hand */
    snprintf(fw.mmcu, sizeof(fw.mmcu), "%s", mmcu);
    fw.frequency = freq;

    H.avr = avr_make_mcu_by_name(fw.mmcu);
    if (!H.avr) {
        ctl_reply("ERR unknown mcu %s", fw.mmcu);
        return 1;
    }
    avr_init(H.avr);
    avr_load_firmware(H.avr, &fw);
    H.avr->frequency = freq;
    H.avr->vcc = H.avr->avcc = H.avr->aref = (uint32_t)H.vref_mv;
    H.avr->log = LOG_ERROR;
    H.avr->sleep = no_sleep;

    if (open_pty() < 0) {
        ctl_reply("ERR openpty failed");
        return 1;
    }

    /* UART0 */
    uint32_t flags = 0;
    avr_ioctl(H.avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(AVR_UART_FLAG_POLL_SLEEP | AVR_UART_FLAG_STDIO);
    avr_ioctl(H.avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    H.uart_in = avr_io_getirq(H.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(H.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            uart_out, NULL);
    avr_irq_register_notify(avr_io_getirq(H.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            uart_xon, NULL);
    avr_irq_register_notify(avr_io_getirq(H.avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            uart_xoff, NULL);
    H.rx_room = 1;

    /* ADC */
    for (int c = 0; c < N_CH; c++)
        H.adc_in[c] = avr_io_getirq(H.avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + c);
    avr_irq_register_notify(avr_io_getirq(H.avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER),
                            adc_trigger, NULL);

    /* sample-and-hold model: follow the ADMUX writes */
    avr_register_io_write(H.avr, ADMUX_ADDR, admux_write, NULL);
    sh_reset();

    /* LED inputs */
    for (int i = 0; i < N_LED; i++)
        H.led_irq[i] = avr_io_getirq(H.avr, AVR_IOCTL_IOPORT_GETIRQ('D'), LED_PIN0 + i);

    if (!H.uart_in || !H.adc_in[0] || !H.led_irq[0]) {
        ctl_reply("ERR mcu %s lacks UART0/ADC/PORTD", fw.mmcu);
        return 1;
    }
    install_timers();

    ctl_reply("PTY %s", H.pty_name);
    H.running = go;

    unsigned long k = 0;
    while (!H.quit && !g_stop) {
        if (!H.running || H.dead) {
            if (H.reset_on_open)
                watch_client();
            poll_control(H.release_at > 0 ? 2000 : 20000);
            continue;
        }
        int st = avr_run(H.avr);
        if (st == cpu_Done || st == cpu_Crashed) {
            H.dead = 1;
            ctl_reply("! STOPPED %s pc=0x%04x t=%.9f", st == cpu_Done ? "done" : "crashed",
                      (unsigned)H.avr->pc, sim_seconds());
            continue;
        }
        if (++k >= STDIN_POLL_EVERY) {
            k = 0;
            /* a reset from inside (watchdog) clears every cycle timer: re-arm ours */
            if (!avr_cycle_timer_status(H.avr, uart_tick, NULL))
                install_timers();
            poll_control(-1);
            if (H.reset_on_open)
                watch_client();
        }
    }
    if (g_stop)
        ctl_reply("! EXIT signal");
    close(H.pty_master);
    if (H.pty_slave >= 0)
        close(H.pty_slave);
    fclose(H.ctl);
    return 0;
}
