/* The one piece of the PC keyboard controller a microVM needs: the reset
 * line. The machine registers these ports on its port-I/O bus. */
#ifndef SMOLVM_I8042_H
#define SMOLVM_I8042_H

#include <smolvm/plugin.h>

#define I8042_DATA_PORT 0x60   /* writes ignored */
#define I8042_COMMAND_PORT 0x64 /* command/status; 0x61 between belongs to the PIT */

/* opaque of the command port's handlers: what a reset command calls. */
struct i8042 {
	void (*reset)(void *opaque);
	void *opaque;
};

/* Handlers for both ports; the data port's opaque is NULL. */
extern const struct smolvm_io_ops i8042_ops;

#endif
