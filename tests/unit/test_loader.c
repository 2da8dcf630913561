/* core/plugin.c: the loader against tests/plugins/, one broken plugin per
 * refusal, the ones the compatibility rules must accept, and the scan. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine/loader.h"
#include "unit.h"

static const char *plugin_dir(void)
{
	const char *d = getenv("SMOLVM_TEST_PLUGIN_DIR");
	return d && *d ? d : TEST_PLUGIN_DIR;
}

static char *plugin_path(const char *name)
{
	char *p;
	ck_assert(asprintf(&p, "%s/%s.so", plugin_dir(), name) > 0);
	ck_assert_msg(access(p, R_OK) == 0, "%s missing: run make test-plugins", p);
	return p;
}

/* ---- refusals ---------------------------------------------------------- */

#define DESC_SIZE sizeof(struct smolvm_plugin)
#define DEV_OPS_SIZE sizeof(struct smolvm_device_ops)
#define STR_(x) #x
#define STR(x) STR_(x)
#define HOST_ABI STR(SMOLVM_ABI_MAJOR) "." STR(SMOLVM_ABI_MINOR)

static const struct refusal {
	const char *file;
	int rc;
	const char *msg[3]; /* each must appear in the message */
} refusals[] = {
	{ "nosym", -ENOEXEC, { "no smolvm_plugin_v1 symbol", "not a smolvm plugin" } },
	{ "major2", -EPROTO, { "plugin ABI 2.0, host " HOST_ABI, "different major" } },
	{ "minor99", -EPROTO, { "plugin needs ABI 1.99, host has " HOST_ABI } },
	{ "next_minor", -EPROTO, { "plugin needs ABI " STR(SMOLVM_ABI_MAJOR) ".", "host has " HOST_ABI } },
	/* sizes: see test_size_messages */
	{ "small_desc", -EINVAL, { "plugin descriptor is ", "smaller than ABI 1.0's" } },
	{ "big_tail", -EINVAL, { "plugin descriptor is ", "uses fields past the host's" } },
	{ "small_ops", -EINVAL, { "small-ops: ", "device ops table is ", "smaller than ABI 1.0's" } },
	{ "ops_tail", -EINVAL, { "ops-tail: ", "device ops table is ", "uses fields past the host's" } },
	{ "no_ops", -EINVAL, { "no-ops: no ops table" } },
	{ "bad_name", -EINVAL, { "plugin name \"Bad Name\" is not 1-64 of [a-z0-9_-]" } },
	{ "bad_kind", -EINVAL, { "bad-kind: ", "unknown plugin kind 7" } },
	{ "no_create", -EINVAL, { "no-create: ", "device ops table has no create()" } },
	{ "bad_state_version", -EINVAL, { "bad-state-version: ", "min_state_version 3 above state_version 2" } },
	{ "bad_option", -EINVAL, { "bad-option: ", "option \"Bad Option\": a name is 1-64 of [a-z0-9_]" } },
	{ "backend_incomplete", -EINVAL, { "backend-incomplete: ", "backend ops table lacks a required entry" } },
};

START_TEST(test_refused)
{
	const struct refusal *t = &refusals[_i];
	char *path = plugin_path(t->file);
	struct plugin p;
	struct err e = { "" };
	int rc;

	memset(&p, 0x5a, sizeof(p));
	rc = plugin_open(path, &p, &e);
	ck_assert_msg(rc == t->rc, "%s: rc %d, expected %d (%s)", t->file, rc, t->rc, e.msg);
	for (size_t i = 0; i < 3 && t->msg[i]; i++)
		ck_assert_str_contains(e.msg, t->msg[i]);
	/* Nothing half-loaded is left behind. */
	ck_assert_ptr_null(p.path);
	ck_assert_ptr_null(p.handle);
	free(path);
}
END_TEST

/* The size refusals name both sizes: the plugin's and the host's (or the
 * smallest an ABI 1.0 plugin may have, which never changes). */
START_TEST(test_size_messages)
{
	static const struct {
		const char *file, *what;
		size_t a;
		const char *why;
		size_t b;
	} t[] = {
		{ "small_desc", "plugin descriptor", offsetof(struct smolvm_plugin, name),
		  "smaller than ABI 1.0's", 48 },
		{ "big_tail", "plugin descriptor", DESC_SIZE + 8, "and uses fields past the host's",
		  DESC_SIZE },
		{ "small_ops", "small-ops: device ops table", offsetof(struct smolvm_device_ops, create),
		  "smaller than ABI 1.0's", 72 },
		{ "ops_tail", "ops-tail: device ops table", DEV_OPS_SIZE + sizeof(void *),
		  "and uses fields past the host's", DEV_OPS_SIZE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *path = plugin_path(t[i].file), want[256];
		struct plugin p;
		struct err e = { "" };

		snprintf(want, sizeof(want), "%s is %zu bytes%s %s %zu", t[i].what, t[i].a,
			 t[i].why[0] == 's' ? "," : "", t[i].why, t[i].b);
		ck_assert_int_eq(plugin_open(path, &p, &e), -EINVAL);
		ck_assert_str_eq(e.msg, want);
		free(path);
	}
}
END_TEST

START_TEST(test_not_elf)
{
	char *dir = unit_tmpdir();
	char *path = unit_write_file(dir, "text.so", "not an ELF\n", 11);
	struct plugin p;
	struct err e = { "" };

	ck_assert_int_eq(plugin_open(path, &p, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "cannot load");
	ck_assert_ptr_null(p.path);
	free(path);
	ck_assert_int_eq(plugin_open("/nonexistent/smolvm/x.so", &p, &e), -ENOEXEC);
	ck_assert_str_contains(e.msg, "cannot load");
	unit_rmdir(dir);
}
END_TEST

/* ---- plugins that must load ------------------------------------------- */

START_TEST(test_old_minor_loads)
{
	char *path = plugin_path("old_minor");
	struct plugin p;
	struct err e = { "" };

	ck_assert_msg(plugin_open(path, &p, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(p.desc.name, "old-minor");
	ck_assert_uint_eq(p.desc.abi_major, 1);
	ck_assert_uint_eq(p.desc.abi_minor, 0);
	ck_assert_uint_eq(p.desc.kind, SMOLVM_PLUGIN_DEVICE);
	ck_assert_str_eq(p.desc.version, "1.0.0");
	ck_assert_str_eq(p.desc.summary, "claims ABI 1.0");
	ck_assert_str_eq(p.path, path);
	ck_assert_ptr_nonnull(p.handle);
	ck_assert_ptr_nonnull(p.ops.dev.create);
	ck_assert_uint_eq(p.ops.dev.state_version, 1);
	/* 1.0's table is 72 bytes: `options` (ABI 1.2) reads as absent */
	ck_assert_uint_eq(p.ops.dev.struct_size, 72);
	ck_assert_ptr_null(p.ops.dev.options);
	free(p.path);
	free(path);
}
END_TEST

START_TEST(test_zero_tail_loads)
{
	char *path = plugin_path("big_zero");
	struct plugin p;
	struct err e = { "" };

	ck_assert_msg(plugin_open(path, &p, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(p.desc.name, "zero-tail");
	ck_assert_str_eq(p.desc.version, "2.0");
	/* The zero-extended copy keeps what the plugin said it was. */
	ck_assert_uint_eq(p.desc.struct_size, DESC_SIZE + 24);
	ck_assert_ptr_nonnull(p.ops.dev.create);
	free(p.path);
	free(path);
}
END_TEST

START_TEST(test_dup_a_loads)
{
	char *path = plugin_path("dup_a");
	struct plugin p;
	struct err e = { "" };

	ck_assert_msg(plugin_open(path, &p, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(p.desc.name, "dup");
	ck_assert_str_eq(p.desc.version, "a");
	free(p.path);
	free(path);
}
END_TEST

START_TEST(test_real_uart_loads)
{
	const char *path = getenv("SMOLVM_UART_SO");
	struct plugin p;
	struct err e = { "" };

	if (!path || !*path)
		path = UART_SO;
	ck_assert_msg(access(path, R_OK) == 0, "%s missing: run make all", path);
	ck_assert_msg(plugin_open(path, &p, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(p.desc.name, "uart");
	ck_assert_uint_eq(p.desc.kind, SMOLVM_PLUGIN_DEVICE);
	ck_assert_ptr_nonnull(p.ops.dev.save);
	ck_assert_ptr_nonnull(p.ops.dev.restore);
	ck_assert_str_eq(plugin_kind_name(p.desc.kind), "device");
	free(p.path);
}
END_TEST

START_TEST(test_kind_names)
{
	ck_assert_str_eq(plugin_kind_name(SMOLVM_PLUGIN_BACKEND), "backend");
	ck_assert_str_eq(plugin_kind_name(SMOLVM_PLUGIN_DEVICE), "device");
	ck_assert_str_eq(plugin_kind_name(7), "unknown");
}
END_TEST

/* ---- scanning ---------------------------------------------------------- */

struct refusal_log {
	size_t n;
	char path[32][512];
	char why[32][512];
};

static void log_refusal(void *opaque, const char *path, const char *why)
{
	struct refusal_log *l = opaque;

	ck_assert_uint_lt(l->n, 32);
	snprintf(l->path[l->n], sizeof(l->path[0]), "%s", path);
	snprintf(l->why[l->n], sizeof(l->why[0]), "%s", why);
	l->n++;
}

static const char *why_for(const struct refusal_log *l, const char *file)
{
	char suffix[128];
	snprintf(suffix, sizeof(suffix), "/%s.so", file);
	for (size_t i = 0; i < l->n; i++) {
		size_t pl = strlen(l->path[i]), sl = strlen(suffix);
		if (pl >= sl && !strcmp(l->path[i] + pl - sl, suffix))
			return l->why[i];
	}
	return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

START_TEST(test_scan)
{
	static struct refusal_log rlog;
	char *dirs[] = { (char *)"/nonexistent/smolvm-plugins", (char *)plugin_dir() };
	struct plugin_set set = { 0 };
	const struct plugin *p;
	const char *why;

	memset(&rlog, 0, sizeof(rlog));
	plugins_scan(&set, dirs, 2, log_refusal, &rlog);

	/* Exactly the good ones, the first "dup" among them. */
	ck_assert_uint_eq(set.n, 5);
	ck_assert_ptr_nonnull(plugins_find(&set, "escape-test", SMOLVM_PLUGIN_DEVICE));
	ck_assert_ptr_nonnull(plugins_find(&set, "hostfile-test", SMOLVM_PLUGIN_DEVICE));
	p = plugins_find(&set, "dup", SMOLVM_PLUGIN_DEVICE);
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p->desc.version, "a");
	ck_assert(ends_with(p->path, "/dup_a.so"));
	ck_assert_ptr_nonnull(plugins_find(&set, "old-minor", 0));
	ck_assert_ptr_nonnull(plugins_find(&set, "zero-tail", SMOLVM_PLUGIN_DEVICE));
	ck_assert_ptr_null(plugins_find(&set, "zero-tail", SMOLVM_PLUGIN_BACKEND));
	ck_assert_ptr_null(plugins_find(&set, "Bad Name", 0));
	ck_assert_ptr_null(plugins_find(&set, "du", 0));

	/* Every broken one reported once, with its own reason. */
	ck_assert_uint_eq(rlog.n, sizeof(refusals) / sizeof(refusals[0]) + 1);
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		why = why_for(&rlog, refusals[i].file);
		ck_assert_msg(why != NULL, "%s.so not reported", refusals[i].file);
		ck_assert_str_contains(why, refusals[i].msg[0]);
	}
	why = why_for(&rlog, "dup_b");
	ck_assert_ptr_nonnull(why);
	ck_assert_str_contains(why, "duplicate plugin name \"dup\", already loaded from ");
	ck_assert_msg(strstr(why, "/dup_a.so") != NULL, "%s", why);
	plugins_free(&set);
	ck_assert_uint_eq(set.n, 0);
	ck_assert_ptr_null(set.v);
}
END_TEST

/* Search-path order beats file-name order: the first directory wins. */
START_TEST(test_scan_first_dir_wins)
{
	static struct refusal_log rlog;
	char *tmp = unit_tmpdir();
	char *src = plugin_path("dup_b"), *copy;
	char *dirs[] = { tmp, (char *)plugin_dir() };
	struct plugin_set set = { 0 };
	const struct plugin *p;
	const char *why;
	FILE *in = fopen(src, "rb");
	char buf[1 << 16];
	size_t n;
	char *data = NULL;
	size_t len = 0;

	ck_assert_ptr_nonnull(in);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		data = realloc(data, len + n);
		memcpy(data + len, buf, n);
		len += n;
	}
	fclose(in);
	copy = unit_write_file(tmp, "zz_dup.so", data, len);
	free(data);

	memset(&rlog, 0, sizeof(rlog));
	plugins_scan(&set, dirs, 2, log_refusal, &rlog);
	p = plugins_find(&set, "dup", 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p->desc.version, "b");
	ck_assert_str_eq(p->path, copy);
	why = why_for(&rlog, "dup_a");
	ck_assert_ptr_nonnull(why);
	ck_assert_str_contains(why, copy);
	ck_assert_ptr_nonnull(why_for(&rlog, "dup_b"));
	ck_assert_uint_eq(set.n, 5);
	plugins_free(&set);
	free(copy);
	free(src);
	unit_rmdir(tmp);
}
END_TEST

/* BUG under UBSan: scan_dir() calls qsort(NULL, 0, ...) for a directory
 * without any .so, and qsort's base is declared nonnull. */
START_TEST(test_scan_empty_dir)
{
	static struct refusal_log rlog;
	char *tmp = unit_tmpdir();
	char *junk = unit_write_file(tmp, "README", "x", 1);
	char *dirs[] = { tmp };
	struct plugin_set set = { 0 };

	memset(&rlog, 0, sizeof(rlog));
	plugins_scan(&set, dirs, 1, log_refusal, &rlog);
	ck_assert_uint_eq(set.n, 0);
	ck_assert_uint_eq(rlog.n, 0);
	plugins_free(&set);
	free(junk);
	unit_rmdir(tmp);
}
END_TEST

Suite *plugin_suite(void)
{
	Suite *s = suite_create("plugin-loader");
	TCase *tc;

	tc = tcase_create("refusals");
	tcase_add_loop_test(tc, test_refused, 0, (int)(sizeof(refusals) / sizeof(refusals[0])));
	tcase_add_test(tc, test_size_messages);
	tcase_add_test(tc, test_not_elf);
	suite_add_tcase(s, tc);

	tc = tcase_create("compatible");
	tcase_add_test(tc, test_old_minor_loads);
	tcase_add_test(tc, test_zero_tail_loads);
	tcase_add_test(tc, test_dup_a_loads);
	tcase_add_test(tc, test_real_uart_loads);
	tcase_add_test(tc, test_kind_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("scan");
	tcase_add_test(tc, test_scan);
	tcase_add_test(tc, test_scan_first_dir_wins);
	tcase_add_test(tc, test_scan_empty_dir);
	suite_add_tcase(s, tc);
	return s;
}
