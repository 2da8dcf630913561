/* backends/kvm/quirks.c: which faulting instructions the VMM finishes
 * itself on a soft-emulated host, and what that does to the registers. */
#include <stdint.h>
#include <string.h>

#include "quirks.h"
#include "unit.h"

#define RFLAGS_AC (1ull << 18)
#define RIP0 0xffffffff81000000ull

static enum quirk_action decode(const uint8_t *b, size_t n, unsigned *len)
{
	*len = 0xdead;
	return quirk_decode(b, n, len);
}

START_TEST(test_int3)
{
	const uint8_t b[] = { 0xcc, 0x90, 0x90 };
	struct quirk_regs r = { .rip = RIP0, .rflags = 0x202 };
	unsigned len;

	ck_assert_int_eq(decode(b, sizeof(b), &len), QUIRK_INT3);
	ck_assert_uint_eq(len, 1);
	quirk_apply(QUIRK_INT3, len, &r);
	ck_assert_uint_eq(r.rip, RIP0 + 1); /* #BP is a trap */
	ck_assert_int_eq(r.inject_bp, 1);
	ck_assert_uint_eq(r.rflags, 0x202);
	ck_assert_str_eq(quirk_name(QUIRK_INT3), "int3");
}
END_TEST

START_TEST(test_fwait)
{
	const uint8_t b[] = { 0x9b };
	struct quirk_regs r = { .rip = RIP0, .rflags = 0x202, .inject_bp = 1 };
	unsigned len;

	ck_assert_int_eq(decode(b, 1, &len), QUIRK_SKIP);
	ck_assert_uint_eq(len, 1);
	quirk_apply(QUIRK_SKIP, len, &r);
	ck_assert_uint_eq(r.rip, RIP0 + 1);
	ck_assert_int_eq(r.inject_bp, 0); /* no stale #BP from an earlier exit */
	ck_assert_uint_eq(r.rflags, 0x202);
	ck_assert_str_eq(quirk_name(QUIRK_SKIP), "fwait");
}
END_TEST

START_TEST(test_clac)
{
	const uint8_t b[] = { 0x0f, 0x01, 0xca, 0xcc };
	struct quirk_regs r = { .rip = RIP0, .rflags = 0x202 | RFLAGS_AC | 1 };
	unsigned len;

	ck_assert_int_eq(decode(b, sizeof(b), &len), QUIRK_CLAC);
	ck_assert_uint_eq(len, 3);
	quirk_apply(QUIRK_CLAC, len, &r);
	ck_assert_uint_eq(r.rip, RIP0 + 3);
	ck_assert_uint_eq(r.rflags, 0x202 | 1); /* only AC changes */
	ck_assert_int_eq(r.inject_bp, 0);
	/* Clearing a clear AC keeps it clear. */
	quirk_apply(QUIRK_CLAC, len, &r);
	ck_assert_uint_eq(r.rflags, 0x202 | 1);
	ck_assert_uint_eq(r.rip, RIP0 + 6);
}
END_TEST

START_TEST(test_stac)
{
	const uint8_t b[] = { 0x0f, 0x01, 0xcb };
	struct quirk_regs r = { .rip = RIP0, .rflags = 0x202 };
	unsigned len;

	ck_assert_int_eq(decode(b, sizeof(b), &len), QUIRK_STAC);
	ck_assert_uint_eq(len, 3);
	quirk_apply(QUIRK_STAC, len, &r);
	ck_assert_uint_eq(r.rip, RIP0 + 3);
	ck_assert_uint_eq(r.rflags, 0x202 | RFLAGS_AC);
	ck_assert_int_eq(r.inject_bp, 0);
	ck_assert_str_eq(quirk_name(QUIRK_STAC), "stac");
	ck_assert_str_eq(quirk_name(QUIRK_CLAC), "clac");
}
END_TEST

static const struct {
	uint8_t b[4];
	size_t n;
	const char *what;
} unknown[] = {
	{ { 0x0f, 0x01, 0xc1 }, 3, "vmcall" },
	{ { 0x0f, 0x01, 0xd9 }, 3, "vmmcall" },
	{ { 0x0f, 0x0b }, 2, "ud2" },
	{ { 0x0f, 0x01, 0xcc }, 3, "0f 01 cc (not stac)" },
	{ { 0x0f, 0x02, 0xca }, 3, "0f 02 ca (not clac)" },
	{ { 0x90 }, 1, "nop" },
	{ { 0xcd, 0x03 }, 2, "int 3 (two-byte form)" },
	{ { 0x66, 0x0f, 0x01, 0xca }, 4, "prefixed clac" },
	{ { 0x0f, 0x01, 0xca }, 2, "clac, truncated to 2 bytes" },
	{ { 0x0f, 0x01, 0xcb }, 1, "stac, truncated to 1 byte" },
	{ { 0xcc }, 0, "no bytes at all" },
};

START_TEST(test_unknown)
{
	struct quirk_regs r = { .rip = RIP0, .rflags = 0x202 | RFLAGS_AC };
	unsigned len;

	ck_assert_msg(decode(unknown[_i].b, unknown[_i].n, &len) == QUIRK_UNHANDLED,
		      "%s decoded as %s", unknown[_i].what,
		      quirk_name(quirk_decode(unknown[_i].b, unknown[_i].n, &len)));
	ck_assert_uint_eq(len, 0);
	quirk_apply(QUIRK_UNHANDLED, len, &r);
	ck_assert_uint_eq(r.rip, RIP0);
	ck_assert_uint_eq(r.rflags, 0x202 | RFLAGS_AC);
	ck_assert_int_eq(r.inject_bp, 0);
	ck_assert_str_eq(quirk_name(QUIRK_UNHANDLED), "unhandled");
	ck_assert_str_eq(quirk_name((enum quirk_action)99), "?");
}
END_TEST

Suite *quirks_suite(void)
{
	Suite *s = suite_create("quirks");
	TCase *tc;

	tc = tcase_create("decode-apply");
	tcase_add_test(tc, test_int3);
	tcase_add_test(tc, test_fwait);
	tcase_add_test(tc, test_clac);
	tcase_add_test(tc, test_stac);
	suite_add_tcase(s, tc);

	tc = tcase_create("unhandled");
	tcase_add_loop_test(tc, test_unknown, 0, (int)(sizeof(unknown) / sizeof(unknown[0])));
	suite_add_tcase(s, tc);
	return s;
}
