/* Describe device state once, save and load it with one routine each.
 *
 *   struct uart { uint8_t ier, lcr; ... };
 *   static const struct smolvm_state_field uart_fields[] = {
 *       SMOLVM_FIELD(struct uart, ier, SMOLVM_STATE_U8, 1),
 *       ...
 *   };
 *   smolvm_state_save_fields(api, w, uart_fields, N, u);
 *
 * A field added in state version 2 carries `since` = 2: loading a version-1
 * blob leaves it at the value create() gave it.
 */
#ifndef SMOLVM_STATE_H
#define SMOLVM_STATE_H

#include <errno.h>
#include <smolvm/plugin.h>

struct smolvm_state_field {
	const char *name;
	uint32_t type;   /* enum smolvm_state_type */
	uint32_t offset; /* in the device struct */
	uint32_t size;   /* bytes; fixed for integers */
	uint32_t since;  /* first state version that has it */
};

#define SMOLVM_FIELD(type_, member, stype, since_)                             \
	{ #member, (stype), (uint32_t)offsetof(type_, member),                 \
	  (uint32_t)sizeof(((type_ *)0)->member), (since_) }

#define SMOLVM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline int smolvm_state_save_fields(const struct smolvm_host_api *api,
					   struct smolvm_state_writer *w,
					   const struct smolvm_state_field *f,
					   size_t n, const void *base)
{
	for (size_t i = 0; i < n; i++) {
		int rc = api->state_put(w, f[i].name, (enum smolvm_state_type)f[i].type,
					(const char *)base + f[i].offset, f[i].size);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static inline int smolvm_state_load_fields(const struct smolvm_host_api *api,
					   struct smolvm_state_reader *r,
					   const struct smolvm_state_field *f,
					   size_t n, void *base,
					   uint32_t saved_version)
{
	for (size_t i = 0; i < n; i++) {
		if (f[i].since > saved_version)
			continue;
		int rc = api->state_get(r, f[i].name, (enum smolvm_state_type)f[i].type,
					(char *)base + f[i].offset, f[i].size);
		if (rc < 0)
			return rc;
	}
	return 0;
}

#endif
