/* core/machine.c: sizes as the user writes them, and device options. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "machine/config.h"
#include "unit.h"

static const struct {
	const char *s;
	uint64_t bytes;
} good[] = {
	{ "256M", 256ull << 20 },   { "1G", 1ull << 30 },      { "4096K", 4096ull << 10 },
	{ "512MiB", 512ull << 20 }, { "12", 12ull << 20 },     { "2g", 2ull << 30 },
	{ "64mb", 64ull << 20 },    { "1kib", 1024 },          { "4096B", 4096 },
	{ "17179869183G", 17179869183ull << 30 }, /* the largest that fits */
};

START_TEST(test_parse_good)
{
	uint64_t v = 0xdeadbeef;

	ck_assert_msg(parse_size(good[_i].s, &v) == 0, "\"%s\" refused", good[_i].s);
	ck_assert_msg(v == good[_i].bytes, "\"%s\" -> %llu, expected %llu", good[_i].s,
		      (unsigned long long)v, (unsigned long long)good[_i].bytes);
}
END_TEST

static const char *const bad[] = {
	"lots", "", "1T", "-1", " 12", "12 M", "M", "1.5G", "12Mx", "12BiB", "12iB",
	"0x100", "18446744073709551616", /* 2^64 */
	"17179869184G",                  /* 2^64 bytes */
};

START_TEST(test_parse_bad)
{
	uint64_t v = 0xdeadbeef;

	ck_assert_msg(parse_size(bad[_i], &v) < 0, "\"%s\" accepted as %llu", bad[_i],
		      (unsigned long long)v);
	ck_assert_uint_eq(v, 0xdeadbeef); /* untouched on failure */
}
END_TEST

START_TEST(test_parse_null)
{
	uint64_t v = 7;
	ck_assert_int_lt(parse_size(NULL, &v), 0);
	ck_assert_uint_eq(v, 7);
}
END_TEST

START_TEST(test_dev_config_get)
{
	char *keys[] = { "port", "irq" }, *vals[] = { "0x2f8", "3" };
	struct dev_config d = { .type = "uart", .n = 2, .keys = keys, .vals = vals };

	ck_assert_str_eq(dev_config_get(&d, "irq"), "3");
	ck_assert_str_eq(dev_config_get(&d, "port"), "0x2f8");
	ck_assert_ptr_null(dev_config_get(&d, "ir"));
	ck_assert_ptr_null(dev_config_get(&d, "type")); /* type is not an option */
}
END_TEST

START_TEST(test_dev_config_path)
{
	char *keys[] = { "file", "abs", "type" }, *vals[] = { "disk.img", "/img/root.img", "x" };
	struct dev_config d = { .type = "blk", .n = 3, .keys = keys, .vals = vals };
	const char *p1, *p2;

	p1 = dev_config_path(&d, "file", "/srv/vms/m.lua");
	ck_assert_str_eq(p1, "/srv/vms/disk.img");
	p2 = dev_config_path(&d, "file", "/srv/vms/m.lua");
	ck_assert_ptr_eq(p1, p2); /* made once, owned by the config */
	ck_assert_str_eq(dev_config_path(&d, "abs", "/srv/vms/m.lua"), "/img/root.img");
	ck_assert_ptr_null(dev_config_path(&d, "nope", "/srv/vms/m.lua"));
	ck_assert_str_eq(dev_config_get(&d, "file"), "disk.img"); /* the text is unchanged */
	free(d.paths[0]);
	free(d.paths);
	d.paths = NULL;

	/* A script in the current directory or at the root. */
	ck_assert_str_eq(dev_config_path(&d, "file", "m.lua"), "disk.img");
	ck_assert_str_eq(dev_config_path(&d, "file", "/m.lua"), "/disk.img");
	for (size_t i = 0; i < d.n; i++)
		free(d.paths ? d.paths[i] : NULL);
	free(d.paths);
}
END_TEST

Suite *machine_suite(void)
{
	Suite *s = suite_create("machine");
	TCase *tc;

	tc = tcase_create("parse_size");
	tcase_add_loop_test(tc, test_parse_good, 0, (int)(sizeof(good) / sizeof(good[0])));
	tcase_add_loop_test(tc, test_parse_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_parse_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("dev_config");
	tcase_add_test(tc, test_dev_config_get);
	tcase_add_test(tc, test_dev_config_path);
	suite_add_tcase(s, tc);
	return s;
}
