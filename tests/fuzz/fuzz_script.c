/* Fuzz machine-script loading: arbitrary text must end in a config or a
 * clear error, inside the sandbox's instruction and memory limits. */
#include <stdint.h>
#include <stdlib.h>

#include "script/script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct machine_config cfg;
	struct err e;

	if (script_load_machine_buffer("fuzz.lua", (const char *)data, size, &cfg, &e) == 0)
		machine_config_free(&cfg);
	return 0;
}
