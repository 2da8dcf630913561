/* core/console.c: the escape-key filter (Ctrl-A x quits, Ctrl-A Ctrl-A
 * sends one Ctrl-A), applied only when the input is a terminal. */
#include <string.h>

#include "machine/console.h"
#include "unit.h"

static struct console con;
static unsigned char out[64];

static void setup_tty(void)
{
	memset(&con, 0, sizeof(con));
	con.is_tty = 1;
	memset(out, 0xee, sizeof(out));
}

static size_t filter(const char *in, size_t n)
{
	return console_filter(&con, (const unsigned char *)in, n, out);
}

START_TEST(test_plain_bytes)
{
	ck_assert_uint_eq(filter("ls -l\r", 6), 6);
	ck_assert_mem_eq(out, "ls -l\r", 6);
	ck_assert_int_eq(con.quit, 0);
}
END_TEST

START_TEST(test_ctrl_a_x_quits)
{
	ck_assert_uint_eq(filter("ab\x01xcd", 6), 2);
	ck_assert_mem_eq(out, "ab", 2);
	ck_assert_int_eq(con.quit, 1);
	/* Nothing passes once the user has quit. */
	ck_assert_uint_eq(filter("more", 4), 0);
}
END_TEST

START_TEST(test_ctrl_a_upper_x_quits)
{
	ck_assert_uint_eq(filter("\x01X", 2), 0);
	ck_assert_int_eq(con.quit, 1);
}
END_TEST

START_TEST(test_ctrl_a_twice)
{
	ck_assert_uint_eq(filter("\x01\x01z", 3), 2);
	ck_assert_mem_eq(out, "\x01z", 2);
	ck_assert_int_eq(con.quit, 0);
	ck_assert_int_eq(con.escape, 0);
	/* ... and the Ctrl-A sent on does not start a new escape. */
	ck_assert_uint_eq(filter("x", 1), 1);
	ck_assert_int_eq(con.quit, 0);
}
END_TEST

START_TEST(test_ctrl_a_other)
{
	ck_assert_uint_eq(filter("\x01" "c", 2), 2);
	ck_assert_mem_eq(out, "\x01" "c", 2);
	ck_assert_int_eq(con.quit, 0);
}
END_TEST

START_TEST(test_escape_across_reads)
{
	/* Ctrl-A at the end of one read, x at the start of the next. */
	ck_assert_uint_eq(filter("a\x01", 2), 1);
	ck_assert_int_eq(con.escape, 1);
	ck_assert_int_eq(con.quit, 0);
	ck_assert_uint_eq(filter("x", 1), 0);
	ck_assert_int_eq(con.quit, 1);
}
END_TEST

START_TEST(test_escape_across_reads_other)
{
	/* A held Ctrl-A comes out with the next byte: one input byte, two
	 * output bytes. Callers must size `out` for n + 1. */
	ck_assert_uint_eq(filter("\x01", 1), 0);
	ck_assert_uint_eq(filter("q", 1), 2);
	ck_assert_mem_eq(out, "\x01q", 2);
	ck_assert_uint_eq(out[2], 0xee);
}
END_TEST

START_TEST(test_not_a_tty)
{
	con.is_tty = 0;
	ck_assert_uint_eq(filter("\x01x\x01\x01y", 5), 5);
	ck_assert_mem_eq(out, "\x01x\x01\x01y", 5);
	ck_assert_int_eq(con.quit, 0);
	ck_assert_int_eq(con.escape, 0);
}
END_TEST

Suite *console_suite(void)
{
	Suite *s = suite_create("console");
	TCase *tc;

	tc = tcase_create("filter-tty");
	tcase_add_checked_fixture(tc, setup_tty, NULL);
	tcase_add_test(tc, test_plain_bytes);
	tcase_add_test(tc, test_ctrl_a_x_quits);
	tcase_add_test(tc, test_ctrl_a_upper_x_quits);
	tcase_add_test(tc, test_ctrl_a_twice);
	tcase_add_test(tc, test_ctrl_a_other);
	tcase_add_test(tc, test_escape_across_reads);
	tcase_add_test(tc, test_escape_across_reads_other);
	suite_add_tcase(s, tc);

	tc = tcase_create("filter-pipe");
	tcase_add_checked_fixture(tc, setup_tty, NULL);
	tcase_add_test(tc, test_not_a_tty);
	suite_add_tcase(s, tc);
	return s;
}
