/* Shared folders (--volume HOST:GUEST[:ro]): a host directory inside the
 * guest through a virtio-9p device, granted on the command line.
 *
 * A guest kernel finds virtio-mmio devices on its command line at boot, so
 * a machine booted or packed with a guest agent (virtio-vsock) gets
 * VOLUME_SLOTS empty virtio-9p devices at the end of its devices: slots,
 * which the guest's driver passes over (device ID 0). At run or exec a
 * --volume fills one (the device then answers as a 9p device with a
 * share), and the guest agent binds the slot's driver and mounts the tag.
 * A snapshot remembers which slot had which guest path (kept value
 * "smolvm.volume.<device>"), so a restore puts the user's --volume for
 * that path back into the same slot, from whatever host directory, and
 * refuses to run without it. docs/machine-scripts.md, "Shared folders". */
#ifndef SMOLVM_VOLUMES_H
#define SMOLVM_VOLUMES_H

#include <stddef.h>

#include "lib/err.h"
#include "machine/config.h"
#include "machine/loader.h"
#include "session/grants.h"
#include "session/kept.h"
#include "snapshot/manifest.h"

#define VOLUME_SLOTS 4
#define VOLUME_TYPE "virtio-9p"
#define VOLUME_KEPT_PREFIX "smolvm.volume."
/* Binding a slot and mounting it runs guest kernel code: seconds on
 * hardware KVM, tens of seconds where the guest kernel is emulated. */
#define VOLUMES_MOUNT_TIMEOUT_MS 300000

/* boot, pack: the slots, when the machine has a guest agent and the
 * virtio-9p plugin is installed (else nothing). */
int volumes_add_slots(struct machine_config *cfg, const struct plugin_set *set,
		      struct err *e) WARN_UNUSED;

/* run, exec: the slots the bundle's manifest has after the devices of its
 * script, made again (the script does not declare them). */
int volumes_restore_slots(struct machine_config *cfg, const struct manifest *m,
			  struct err *e) WARN_UNUSED;

/* run, exec: the --volume values into the slots (the snapshot's own guest
 * paths first, then free slots), their records in `k`, and in *script
 * (malloc'd, NULL when nothing is to be mounted) the shell commands the
 * guest agent runs to mount the new ones. A bundle this user does not
 * trust shares no directory its script names: those devices become slots. */
int volumes_apply(struct machine_config *cfg, const char *const *vols, size_t n, int trusted,
		  const char *bundle, struct kept *k, char **script, struct err *e) WARN_UNUSED;

/* In the guest, through its agent at `vsock`: runs the script of
 * volumes_apply(). 0, or -errno with the mount's own message in e. */
int volumes_mount(const char *vsock, const char *script, int timeout_ms, int cancel_fd,
		  struct err *e) WARN_UNUSED;

#endif
