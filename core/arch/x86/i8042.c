/* Linux with reboot=k writes 0xfe to port 0x64 to reboot; test guests do
 * the same to end. Status reads 0 (input buffer empty), so the kernel does
 * not wait for a keyboard that is not there. */
#include "arch/x86/i8042.h"

#include <stdint.h>

#define I8042_CMD_RESET 0xfe

static void i8042_read(void *opaque, uint64_t off, void *data, uint32_t size)
{
	(void)opaque, (void)off, (void)size;
	*(uint8_t *)data = 0;
}

static void i8042_write(void *opaque, uint64_t off, const void *data, uint32_t size)
{
	const struct i8042 *k = opaque;

	(void)off, (void)size;
	if (k && *(const uint8_t *)data == I8042_CMD_RESET)
		k->reset(k->opaque);
}

const struct smolvm_io_ops i8042_ops = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = i8042_read,
	.write = i8042_write,
};
