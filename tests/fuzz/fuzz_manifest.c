/* Fuzz the manifest parser on its own (INI text through inih). */
#include <stdint.h>
#include <stdlib.h>

#include "snapshot/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	struct err e;

	(void)manifest_parse((const char *)data, size, &m, &e);
	return 0;
}
