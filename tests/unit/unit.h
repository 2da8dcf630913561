/* The unit-test runner's shared bits: one suite per module, plus helpers
 * for temporary files and for code that must not crash the runner. */
#ifndef SMOLVM_UNIT_H
#define SMOLVM_UNIT_H

#include <check.h>
#include <stddef.h>

Suite *plugin_suite(void);
Suite *script_suite(void);
Suite *x86_boot_suite(void);
Suite *quirks_suite(void);
Suite *state_suite(void);
Suite *uart_suite(void);
Suite *console_suite(void);
Suite *machine_suite(void);
Suite *blk_suite(void);
Suite *agent_suite(void);
Suite *bundle_suite(void);
Suite *snapshot_suite(void);
Suite *rootfs_suite(void);
Suite *bringup_suite(void);
Suite *dirs_suite(void);
Suite *options_suite(void);
Suite *host_api_suite(void);
Suite *lineage_suite(void);
Suite *p9_suite(void);
Suite *volumes_suite(void);

/* A fresh directory under $TMPDIR (or /tmp); removed with its files. */
char *unit_tmpdir(void);
void unit_rmdir(char *dir);
/* Writes `len` bytes to dir/name; returns the malloc'd path. */
char *unit_write_file(const char *dir, const char *name, const void *buf, size_t len);
/* The whole file (NUL-terminated, malloc'd); fails the test if it cannot. */
char *unit_read_file(const char *path, size_t *len);

/* Runs fn(arg) in a child process that is killed after `timeout_s`
 * seconds. Returns fn's result (0..255), or -1 for a crash or a timeout,
 * with a description of what happened in `why`. Keeps a hang or an
 * abort() in the code under test from taking the runner down with it
 * (even with CK_FORK=no). */
int unit_run_isolated(int (*fn)(void *), void *arg, unsigned timeout_s,
		      char *why, size_t why_len);

#define ck_assert_str_contains(hay, needle)                                    \
	ck_assert_msg(strstr((hay), (needle)) != NULL,                        \
		      "expected \"%s\" in \"%s\"", (needle), (hay))

#endif
