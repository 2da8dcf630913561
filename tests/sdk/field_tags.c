/* SMOLVM_FIELD() checks its type tag at compile time (C11 _Generic):
 * tests/sdk/check-field-tags.sh compiles this file as it is, which must
 * succeed, and once with each -DMISTAG=N, which must fail. */
#include <stdbool.h>
#include <stdint.h>

#include <smolvm/state.h>

enum color { RED, GREEN };

struct dev {
	uint8_t u8;
	int8_t s8;
	bool flag;
	uint16_t u16;
	uint32_t u32;
	int32_t s32;
	enum color color; /* an int-sized enum */
	uint64_t u64;
	unsigned long long ull; /* the kernel's __u64 */
	uint8_t bytes[6];
	uint32_t words[4];
	struct {
		uint8_t nr;
		uint16_t code;
	} nested;
};

/* Every well-tagged kind of member. */
const struct smolvm_state_field field_tags_fields[];
const struct smolvm_state_field field_tags_fields[] = {
	SMOLVM_FIELD(struct dev, u8, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct dev, s8, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct dev, flag, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct dev, u16, SMOLVM_STATE_U16, 1),
	SMOLVM_FIELD(struct dev, u32, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct dev, s32, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct dev, color, SMOLVM_STATE_U32, 1),
	SMOLVM_FIELD(struct dev, u64, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct dev, ull, SMOLVM_STATE_U64, 1),
	SMOLVM_FIELD(struct dev, bytes, SMOLVM_STATE_BYTES, 1),
	SMOLVM_FIELD(struct dev, words, SMOLVM_STATE_BYTES, 1),
	SMOLVM_FIELD(struct dev, nested, SMOLVM_STATE_BYTES, 1),
	SMOLVM_FIELD(struct dev, nested.nr, SMOLVM_STATE_U8, 1),
	SMOLVM_FIELD(struct dev, nested.code, SMOLVM_STATE_U16, 2),
	SMOLVM_FIELD_NAMED("word2", struct dev, words[2], SMOLVM_STATE_U32, 2),
#if MISTAG == 1
	SMOLVM_FIELD(struct dev, u32, SMOLVM_STATE_U8, 1), /* 4 bytes as 1 */
#elif MISTAG == 2
	SMOLVM_FIELD(struct dev, u8, SMOLVM_STATE_U32, 1), /* 1 byte as 4 */
#elif MISTAG == 3
	SMOLVM_FIELD(struct dev, u64, SMOLVM_STATE_BYTES, 1), /* an integer as bytes */
#elif MISTAG == 4
	SMOLVM_FIELD(struct dev, bytes, SMOLVM_STATE_U8, 1), /* an array as an integer */
#elif MISTAG == 5
	SMOLVM_FIELD(struct dev, nested.code, SMOLVM_STATE_U32, 1),
#elif MISTAG == 6
	SMOLVM_FIELD_NAMED("w", struct dev, words[1], SMOLVM_STATE_U64, 1),
#endif
};

const struct smolvm_state_limit field_tags_limits[];
const struct smolvm_state_limit field_tags_limits[] = {
	SMOLVM_LIMIT(struct dev, u8, 7),
	SMOLVM_LIMIT(struct dev, nested.code, 300),
#if MISTAG == 7
	SMOLVM_LIMIT(struct dev, bytes, 1), /* a limit needs an integer */
#endif
};
