/* Typed device state: the writer/reader behind the host API's state_*
 * entries. Encoding (little-endian), one record after another:
 *   u8 kind (1 field, 2 section begin, 3 section end), u8 type or flags,
 *   u16 name length, u32 data length, name bytes, data bytes.
 * The reader validates the whole buffer before the first lookup. */
#ifndef SMOLVM_STATE_CORE_H
#define SMOLVM_STATE_CORE_H

#include <smolvm/plugin.h>
#include <stdio.h>

#include "lib/err.h"

struct smolvm_state_writer {
	unsigned char *buf;
	size_t len, cap;
	int depth;
	int failed; /* -errno of the first failure, sticky */
};

enum state_rec_kind { REC_FIELD = 1, REC_BEGIN = 2, REC_END = 3 };

struct state_rec {
	uint8_t kind, type;
	const char *name; /* not NUL-terminated */
	uint16_t name_len;
	const unsigned char *data;
	uint32_t data_len;
	int32_t parent; /* index of the enclosing section, -1 at top */
	int32_t end;    /* for a section: index of its end record */
	int visited;
};

#define STATE_MAX_DEPTH 16

struct smolvm_state_reader {
	struct state_rec *recs;
	size_t n;
	int32_t stack[STATE_MAX_DEPTH];
	int depth;
	char err[256];
};

#define STATE_SECTION_OPTIONAL 1

void state_writer_init(struct smolvm_state_writer *w);
void state_writer_free(struct smolvm_state_writer *w);
int state_put(struct smolvm_state_writer *w, const char *name,
	      enum smolvm_state_type type, const void *data, uint32_t len);
int state_begin(struct smolvm_state_writer *w, const char *name, int optional);
int state_end(struct smolvm_state_writer *w);

int state_reader_init(struct smolvm_state_reader *r, const void *buf, size_t len,
		      struct err *e) WARN_UNUSED;
void state_reader_free(struct smolvm_state_reader *r);
int state_get(struct smolvm_state_reader *r, const char *name,
	      enum smolvm_state_type type, void *data, uint32_t len);
int state_enter(struct smolvm_state_reader *r, const char *name);
int state_leave(struct smolvm_state_reader *r);
/* Prints every field and section of an encoded state, one a line, each
 * line starting with `indent` (inspect). */
int state_dump(FILE *f, const void *buf, size_t len, const char *indent,
	       struct err *e) WARN_UNUSED;
/* After a restore: refuses a required section nobody entered. */
int state_reader_check(struct smolvm_state_reader *r, struct err *e) WARN_UNUSED;

#endif
