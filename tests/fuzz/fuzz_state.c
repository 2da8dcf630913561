/* Fuzz the device-state reader: state blobs come from bundles, which are
 * untrusted. Any input must be refused or walked without a fault. */
#include <stdint.h>
#include <stdlib.h>

#include "machine/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "ier", "rx", "regs", "queue", "a", "b" };
	struct smolvm_state_reader r;
	struct err e;
	uint8_t buf[64];

	if (state_reader_init(&r, data, size, &e))
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		for (int t = SMOLVM_STATE_U8; t <= SMOLVM_STATE_BYTES; t++)
			for (uint32_t len = 0; len <= 16; len += 8)
				state_get(&r, names[i], t, buf, t == SMOLVM_STATE_BYTES ? len : 1u << (t - 1));
		if (state_enter(&r, names[i]) == 0) {
			state_get(&r, "a", SMOLVM_STATE_U32, buf, 4);
			state_enter(&r, "b");
			state_leave(&r);
			state_leave(&r);
		}
	}
	(void)state_reader_check(&r, &e);
	state_reader_free(&r);
	return 0;
}
