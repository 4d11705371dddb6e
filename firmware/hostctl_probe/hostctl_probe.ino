// hostctl probe firmware for an Arduino Uno (ATmega328P, 16 MHz).
//
// A thin layer: Serial at 115200 baud, register-level fast ADC, D2-D4 as
// inputs, and the portable protocol core in src/probe_core.{c,h} (which the
// Arduino IDE / arduino-cli compile along with this sketch). The protocol is
// firmware/PROTOCOL.md; wiring and build notes are in firmware/README.md.

#include "src/probe_core.h"

// ADC clock = 16 MHz / 32 = 500 kHz: 13 ADC clocks = 26 us per conversion
// (Arduino's default prescaler 128 takes 104 us). The ATmega328P datasheet
// gives full 10-bit resolution up to 200 kHz; at 500 kHz the loss is well
// under 1 LSB for the low-impedance (bias divider) sources used here.
#ifndef PROBE_ADC_PRESCALER_BITS
#define PROBE_ADC_PRESCALER_BITS (_BV(ADPS2) | _BV(ADPS0))   // /32
#endif

// Rounds per second before the first MEASURE (HELLO/ID rate_hz): what a
// 16 MHz Uno reaches with this loop; every MEASURE reports the real value.
#ifndef PROBE_NOMINAL_RATE_HZ
#define PROBE_NOMINAL_RATE_HZ 5700UL
#endif

static probe_t probe;

// One ADC clock in CPU cycles (the prescaler's division factor; /2 for 0 and 1).
#define PROBE_ADC_CLOCK_CYCLES \
  ((PROBE_ADC_PRESCALER_BITS & 7) < 1 ? 2u : (1u << (PROBE_ADC_PRESCALER_BITS & 7)))

static void hal_adc_select(void *ctx, uint8_t channel)
{
  (void)ctx;
  ADMUX = _BV(REFS0) | (channel & 0x07);   // AVcc reference, right-adjusted
}

static void hal_adc_start(void *ctx)
{
  (void)ctx;
  ADCSRA |= _BV(ADSC);
  // The conversion starts on the next rising ADC clock edge and locks the channel
  // there; the datasheet ("Changing Channel or Reference Selection") asks for one ADC
  // clock after ADSC before ADMUX is written again. Spent while converting: free.
  __builtin_avr_delay_cycles(PROBE_ADC_CLOCK_CYCLES);
}

static uint16_t hal_adc_result(void *ctx)
{
  (void)ctx;
  // A conversion takes 13 ADC clocks (~26 us); the guard only makes sure a
  // broken ADC cannot hang the loop (~2 ms worst case).
  for (uint16_t guard = 0; (ADCSRA & _BV(ADSC)) && guard < 4000; guard++) {
  }
  return ADC;
}

static uint8_t hal_led_read(void *ctx, uint8_t led)
{
  (void)ctx;
  return (PIND >> (2 + led)) & 1;          // D2, D3, D4 = PD2, PD3, PD4
}

static uint32_t hal_millis(void *ctx)
{
  (void)ctx;
  return millis();
}

static uint32_t hal_micros(void *ctx)
{
  (void)ctx;
  return micros();
}

static void hal_write(void *ctx, const uint8_t *data, uint16_t len)
{
  (void)ctx;
  Serial.write(data, len);   // waits only while the 64-byte TX buffer drains
}

static const probe_hal_t hal = {
  hal_adc_select, hal_adc_start, hal_adc_result, hal_led_read,
  hal_millis, hal_micros, hal_write, 0
};

void setup()
{
  Serial.begin(115200);
  pinMode(2, INPUT);
  pinMode(3, INPUT);
  pinMode(4, INPUT);
  DIDR0 = 0x0F;                              // A0-A3: digital input buffers off
  ADCSRA = _BV(ADEN) | PROBE_ADC_PRESCALER_BITS;
  hal_adc_select(0, 0);                      // the first conversion takes 25 clocks
  hal_adc_start(0);
  (void)hal_adc_result(0);
  probe_init(&probe, &hal, PROBE_NOMINAL_RATE_HZ);
  probe_boot(&probe);
}

void loop()
{
  // Each byte is handled at once; a MEASURE runs here for at most 5 s while
  // the UART interrupt keeps filling the 64-byte receive buffer.
  int avail = Serial.available();
  while (avail-- > 0) {
    int c = Serial.read();
    if (c >= 0) {
      probe_feed(&probe, (uint8_t)c);
    }
  }
}
