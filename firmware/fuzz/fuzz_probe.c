/* libFuzzer entry point: arbitrary bytes -> line assembler + parser (see fuzz_one.c). */
#include "fuzz_one.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return probe_fuzz_one(data, size);
}
