/* core/session/bringup.c: ready = { port = N } reads the guest's
 * /proc/net/tcp, text a hostile guest controls. */
#include <stdlib.h>
#include <string.h>

#include "session/bringup.h"
#include "unit.h"

static const char table[] =
	"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	"   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
	"   1: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";

START_TEST(test_listening_port)
{
	ck_assert(bringup_listens(table, 8000));  /* 1F40, state 0A */
	ck_assert(!bringup_listens(table, 5432)); /* 1538 is established, not listening */
	ck_assert(!bringup_listens(table, 80));
	ck_assert(!bringup_listens("", 8000));
}
END_TEST

START_TEST(test_hostile_tables)
{
	char *big = malloc(70000);

	/* no newline at the end, garbage, huge fields, numbers out of range */
	ck_assert(!bringup_listens("0: 0100007F:1F40", 8000));
	ck_assert(!bringup_listens("\n\n\n:::: ::::: 0A\n", 8000));
	ck_assert(!bringup_listens("0: 0100007F:FFFFFFFFFF40 00000000:0000 0A\n", 8000));
	memset(big, 'A', 69999);
	big[69999] = 0;
	ck_assert(!bringup_listens(big, 8000));
	memcpy(big, "0: ", 3); /* an address field far past its buffer */
	ck_assert(!bringup_listens(big, 8000));
	free(big);
}
END_TEST

Suite *bringup_suite(void)
{
	Suite *s = suite_create("bringup");
	TCase *tc = tcase_create("port");

	tcase_add_test(tc, test_listening_port);
	tcase_add_test(tc, test_hostile_tables);
	suite_add_tcase(s, tc);
	return s;
}
