/* The one piece of the PC keyboard controller a microVM needs: the reset
 * line. Linux with reboot=k writes 0xfe to port 0x64 to reboot; test guests
 * do the same to end. Status reads 0 (input buffer empty), so the kernel
 * does not wait for a keyboard that is not there. */
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
	(void)off, (void)size;
	if (opaque && *(const uint8_t *)data == I8042_CMD_RESET)
		vm_request_stop(opaque, VM_STOP_RESET, NULL);
}

static const struct smolvm_io_ops i8042_ops = {
	.struct_size = sizeof(struct smolvm_io_ops),
	.read = i8042_read,
	.write = i8042_write,
};

int i8042_add(struct vm *vm, struct err *e)
{
	/* 0x60 data (writes ignored: opaque NULL), 0x64 command/status;
	 * 0x61 in between belongs to the PIT's speaker gate. */
	int rc = bus_add(&vm->pio, 0x60, 1, &i8042_ops, NULL, "i8042", e);
	return rc ? rc : bus_add(&vm->pio, 0x64, 1, &i8042_ops, vm, "i8042", e);
}
