/* core/machine/options.c: a plugin's declared options, and a device's
 * configuration checked against them (the suggestion for a typo, types,
 * lists, required options), and the loader's check of the declarations. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "machine/options.h"
#include "unit.h"

static const struct smolvm_option tally_opts[] = {
	{ "port", SMOLVM_OPT_INT, 0, "0x700", "first of 16 ports" },
	{ "period_ms", SMOLVM_OPT_INT, 0, "100", NULL },
	{ "verbose", SMOLVM_OPT_BOOL, 0, "false", NULL },
	{ "path", SMOLVM_OPT_PATH, SMOLVM_OPT_REQUIRED, NULL, "the disk image" },
	{ "forward", SMOLVM_OPT_LIST, SMOLVM_OPT_ONE_OR_LIST, NULL, NULL },
	{ "allow", SMOLVM_OPT_LIST, 0, NULL, NULL },
	{ "label", SMOLVM_OPT_STRING, 0, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct smolvm_option no_opts[] = { { NULL, 0, 0, NULL, NULL } };

#define WHERE "devices[2]"

/* A device whose table is the pairs key, value, ..., NULL. */
struct dev {
	struct dev_config d;
	char *keys[16], *vals[16];
};

static struct dev *dev_of(struct dev *x, const char *const *kv)
{
	memset(x, 0, sizeof(*x));
	for (size_t i = 0; kv[2 * i]; i++) {
		x->keys[i] = (char *)kv[2 * i];
		x->vals[i] = (char *)kv[2 * i + 1];
		x->d.n++;
	}
	x->d.type = (char *)"tally";
	x->d.name = (char *)"tally0";
	x->d.keys = x->keys;
	x->d.vals = x->vals;
	return x;
}

/* ---- suggestions ----------------------------------------------------- */

START_TEST(test_distance)
{
	ck_assert_uint_eq(options_distance("perod_ms", "period_ms"), 1);
	ck_assert_uint_eq(options_distance("prot", "port"), 1); /* a swap is one edit */
	ck_assert_uint_eq(options_distance("port", "port"), 0);
	ck_assert_uint_eq(options_distance("", "irq"), 3);
	ck_assert_uint_eq(options_distance("kitten", "sitting"), 3);
	ck_assert_uint_eq(options_distance("ab", "ba"), 1);

	char longname[80];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	ck_assert_uint_eq(options_distance(longname, "a"), SIZE_MAX);
}
END_TEST

START_TEST(test_suggest)
{
	ck_assert_str_eq(options_suggest(tally_opts, "perod_ms"), "period_ms");
	ck_assert_str_eq(options_suggest(tally_opts, "prot"), "port");
	ck_assert_str_eq(options_suggest(tally_opts, "Port"), "port");
	ck_assert_str_eq(options_suggest(tally_opts, "forwards"), "forward");
	ck_assert_str_eq(options_suggest(tally_opts, "peroid_ms"), "period_ms");
	/* too far to be a typo */
	ck_assert_ptr_null(options_suggest(tally_opts, "x"));
	ck_assert_ptr_null(options_suggest(tally_opts, "speed"));
	ck_assert_ptr_null(options_suggest(tally_opts, "pth_xx"));
	ck_assert_ptr_null(options_suggest(no_opts, "port"));
	ck_assert_ptr_null(options_suggest(NULL, "port"));
}
END_TEST

/* ---- a device's configuration ---------------------------------------- */

static const struct {
	const char *kv[9];
	const char *msg; /* NULL: accepted */
} cases[] = {
	{ { "path", "d.img", NULL }, NULL },
	{ { "path", "d.img", "port", "1792", "period_ms", "0x10", NULL }, NULL },
	{ { "path", "d.img", "port", "-1", "verbose", "true", NULL }, NULL },
	{ { "path", "d.img", "port", "18446744073709551615", NULL }, NULL },
	{ { "path", "d.img", "forward", "tcp::1-:2", NULL }, NULL },
	{ { "path", "d.img", "forward[1]", "a", "forward[2]", "b", NULL }, NULL },
	{ { "path", "d.img", "allow[1]", "a", "label", "7", NULL }, NULL },
	{ { "path", "d.img", "type", "tally", NULL }, NULL }, /* the core's key */
	{ { "path", "d.img", "perod_ms", "5", NULL },
	  WHERE ".perod_ms: unknown option (did you mean period_ms?)" },
	{ { "path", "d.img", "speed", "5", NULL },
	  WHERE ".speed: unknown option (known: port, period_ms, verbose, path, forward, "
		"allow, label)" },
	{ { "path", "d.img", "speed[1]", "5", NULL },
	  WHERE ".speed: unknown option (known: " },
	{ { "path", "d.img", "port", "abc", NULL },
	  WHERE ".port: expected an integer, got \"abc\"" },
	{ { "path", "d.img", "port", "5.0", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port", " 5", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port", "", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port", "99999999999999999999", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port", "-0x", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port[1]", "1", "port[2]", "2", NULL },
	  WHERE ".port: expected an integer, got a list" },
	{ { "path", "d.img", "label[1]", "a", NULL },
	  WHERE ".label: expected one value, got a list" },
	{ { "path", "d.img", "verbose[1]", "true", NULL },
	  WHERE ".verbose: expected true or false, got a list" },
	{ { "path", "d.img", "verbose", "1", NULL },
	  WHERE ".verbose: expected true or false, got \"1\"" },
	{ { "path", "d.img", "allow", "a", NULL },
	  WHERE ".allow: expected a list such as { \"a\", \"b\" }, got one value \"a\"" },
	{ { "port", "1", NULL }, WHERE ".path: missing (required: the disk image)" },
	{ { "path[1]", "d.img", NULL }, WHERE ".path: expected a file name, got a list" },
	/* two wrong: the first by name, whatever the order */
	{ { "path", "d.img", "zz", "1", "port", "x", NULL }, WHERE ".port: expected an integer" },
	{ { "path", "d.img", "port", "x", "aa", "1", NULL }, WHERE ".aa: unknown option" },
	/* a key wrong before a required one missing */
	{ { "prt", "1", NULL }, WHERE ".prt: unknown option (did you mean port?)" },
};

START_TEST(test_check)
{
	struct dev x;
	struct err e = { "" };
	const char *key = "unset";
	int rc = options_check(&dev_of(&x, cases[_i].kv)->d, tally_opts, WHERE, &key, &e);

	if (!cases[_i].msg) {
		ck_assert_msg(rc == 0, "case %d refused: %s", _i, e.msg);
		ck_assert_ptr_null(key);
		return;
	}
	ck_assert_int_eq(rc, -EINVAL);
	/* the key as the script wrote it (for its line), none when missing */
	if (strstr(e.msg, ": missing"))
		ck_assert_ptr_null(key);
	else
		ck_assert_msg(key && !strncmp(e.msg + strlen(WHERE ".") , key, strcspn(key, "[")),
			      "case %d: key %s for \"%s\"", _i, key ? key : "(null)", e.msg);
	ck_assert_msg(!strncmp(e.msg, cases[_i].msg, strlen(cases[_i].msg)),
		      "case %d: \"%s\", expected it to start \"%s\"", _i, e.msg, cases[_i].msg);
}
END_TEST

START_TEST(test_check_list_required)
{
	static const struct smolvm_option opts[] = {
		{ "forward", SMOLVM_OPT_LIST, SMOLVM_OPT_REQUIRED, NULL, NULL },
		{ NULL, 0, 0, NULL, NULL },
	};
	static const char *const given[] = { "forward[1]", "x", NULL };
	static const char *const none[] = { NULL };
	struct dev x;
	struct err e = { "" };

	ck_assert_int_eq(options_check(&dev_of(&x, given)->d, opts, WHERE, NULL, &e), 0);
	ck_assert_int_eq(options_check(&dev_of(&x, none)->d, opts, WHERE, NULL, &e), -EINVAL);
	ck_assert_str_eq(e.msg, WHERE ".forward: missing (required)");
}
END_TEST

START_TEST(test_check_nothing_declared)
{
	static const char *const kv[] = { "anything", "goes", "port[1]", "x", NULL };
	struct dev x;
	struct err e = { "" };

	/* an ABI 1.0/1.1 plugin: not checked */
	ck_assert_int_eq(options_check(&dev_of(&x, kv)->d, NULL, WHERE, NULL, &e), 0);
	/* an empty declaration: it takes none */
	ck_assert_int_eq(options_check(&dev_of(&x, kv)->d, no_opts, WHERE, NULL, &e), -EINVAL);
	ck_assert_str_eq(e.msg, WHERE ".anything: unknown option (this device takes none)");
	ck_assert_int_eq(options_check(&dev_of(&x, kv + 4)->d, no_opts, WHERE, NULL, &e), 0);
}
END_TEST

/* ---- the declarations ------------------------------------------------ */

static const struct smolvm_option dup_opts[] = {
	{ "port", SMOLVM_OPT_INT, 0, NULL, NULL },
	{ "port", SMOLVM_OPT_STRING, 0, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL },
};
static const struct smolvm_option bad_type[] = {
	{ "port", 9, 0, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option zero_type[] = {
	{ "port", 0, 0, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option bad_flags[] = {
	{ "port", SMOLVM_OPT_INT, 0x80, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option one_or_list_int[] = {
	{ "port", SMOLVM_OPT_INT, SMOLVM_OPT_ONE_OR_LIST, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option core_key[] = {
	{ "type", SMOLVM_OPT_STRING, 0, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option list_name[] = {
	{ "port[1]", SMOLVM_OPT_STRING, 0, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };
static const struct smolvm_option empty_name[] = {
	{ "", SMOLVM_OPT_STRING, 0, NULL, NULL }, { NULL, 0, 0, NULL, NULL } };

static const struct {
	const struct smolvm_option *opts;
	const char *msg;
} declared[] = {
	{ dup_opts, "option \"port\" declared twice" },
	{ bad_type, "option \"port\": unknown type 9" },
	{ zero_type, "option \"port\": unknown type 0" },
	{ bad_flags, "option \"port\": unknown flags 0x80" },
	{ one_or_list_int, "option \"port\": SMOLVM_OPT_ONE_OR_LIST on type int (it goes with lists)" },
	{ core_key, "option \"type\" is the core's" },
	{ list_name, "option \"port[1]\": a name is 1-64 of [a-z0-9_]" },
	{ empty_name, "option \"\": a name is 1-64 of [a-z0-9_]" },
};

START_TEST(test_declared_refused)
{
	struct err e = { "" };

	ck_assert_int_eq(options_check_declared(declared[_i].opts, &e), -EINVAL);
	ck_assert_str_contains(e.msg, declared[_i].msg);
}
END_TEST

START_TEST(test_declared_ok)
{
	struct err e = { "" };

	ck_assert_int_eq(options_check_declared(tally_opts, &e), 0);
	ck_assert_int_eq(options_check_declared(no_opts, &e), 0);
	ck_assert_int_eq(options_check_declared(NULL, &e), 0);
}
END_TEST

/* An array with no end in sight is refused after OPTIONS_MAX entries,
 * without reading further. */
START_TEST(test_declared_too_many)
{
	static struct smolvm_option many[OPTIONS_MAX + 1];
	static char names[OPTIONS_MAX + 1][8];
	struct err e = { "" };

	for (size_t i = 0; i <= OPTIONS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "o%zu", i);
		many[i] = (struct smolvm_option){ names[i], SMOLVM_OPT_STRING, 0, NULL, NULL };
	}
	ck_assert_int_eq(options_check_declared(many, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "more than 128 options");
	many[OPTIONS_MAX].name = NULL;
	ck_assert_int_eq(options_check_declared(many, &e), 0);
}
END_TEST

START_TEST(test_type_names)
{
	ck_assert_str_eq(options_type_name(SMOLVM_OPT_STRING), "string");
	ck_assert_str_eq(options_type_name(SMOLVM_OPT_INT), "int");
	ck_assert_str_eq(options_type_name(SMOLVM_OPT_BOOL), "bool");
	ck_assert_str_eq(options_type_name(SMOLVM_OPT_PATH), "path");
	ck_assert_str_eq(options_type_name(SMOLVM_OPT_LIST), "list");
	ck_assert_str_eq(options_type_name(42), "?");
}
END_TEST

Suite *options_suite(void)
{
	Suite *s = suite_create("options");
	TCase *tc;

	tc = tcase_create("suggest");
	tcase_add_test(tc, test_distance);
	tcase_add_test(tc, test_suggest);
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_loop_test(tc, test_check, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_check_list_required);
	tcase_add_test(tc, test_check_nothing_declared);
	suite_add_tcase(s, tc);

	tc = tcase_create("declared");
	tcase_add_loop_test(tc, test_declared_refused, 0,
			    (int)(sizeof(declared) / sizeof(declared[0])));
	tcase_add_test(tc, test_declared_ok);
	tcase_add_test(tc, test_declared_too_many);
	tcase_add_test(tc, test_type_names);
	suite_add_tcase(s, tc);
	return s;
}
