/* One fuzz input through the line assembler + parser with a fake HAL.
 * Shared by the libFuzzer target (fuzz_probe.c) and `make test`, which replays
 * every file in fuzz/regressions/. Aborts (via fuzz_check) if an invariant breaks. */
#ifndef FUZZ_ONE_H
#define FUZZ_ONE_H
#include <stddef.h>
#include <stdint.h>
int probe_fuzz_one(const uint8_t *data, size_t size);
#endif
