/* core/machine/host_api.c: what a plugin learns through the host API
 * (instance_name, ABI 1.3), and how a call into a plugin turns its
 * set_error(), the host entries' own failures and its -errno into one
 * message (PLUGIN_CALL, PLUGIN_HOOK; docs/plugin-guide.md "Messages").
 * The devices here are functions of this file called through the real
 * host API table, as the core calls a plugin's ops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine/host_api.h"
#include "machine/vm.h"
#include "unit.h"

static struct vm vm;
static struct smolvm_ctx uart0, tally0, be;
static struct err e;

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(&e, 0, sizeof(e));
	uart0 = (struct smolvm_ctx){ .vm = &vm, .name = "uart0" };
	tally0 = (struct smolvm_ctx){ .vm = &vm, .name = "tally0" };
	be = (struct smolvm_ctx){ .vm = &vm, .name = "kvm" };
	host_clear_error();
}

/* ---- instance_name ---------------------------------------------------------- */

/* What a plugin's create() does with it: test the entry, then call it. */
static const char *name_seen(const struct smolvm_host_api *api, smolvm_ctx *ctx)
{
	return SMOLVM_HAS(api, instance_name) ? api->instance_name(ctx) : NULL;
}

START_TEST(test_instance_name)
{
	struct smolvm_ctx blk1 = { .vm = &vm, .name = "virtio-blk1" };

	ck_assert_int_ge(SMOLVM_ABI_MINOR, 3);
	ck_assert_uint_eq(host_api.abi_major, SMOLVM_ABI_MAJOR);
	ck_assert_uint_eq(host_api.abi_minor, SMOLVM_ABI_MINOR);
	ck_assert_str_eq(name_seen(&host_api, &tally0), "tally0");
	ck_assert_str_eq(name_seen(&host_api, &blk1), "virtio-blk1");
	ck_assert_str_eq(name_seen(&host_api, &be), "kvm");
}
END_TEST

/* A 1.2 host's table ends before the entry: a plugin sees it absent. */
START_TEST(test_instance_name_old_host)
{
	struct smolvm_host_api old = host_api;

	old.struct_size = offsetof(struct smolvm_host_api, instance_name);
	old.abi_minor = 2;
	ck_assert_ptr_null(name_seen(&old, &tally0));
	old = host_api;
	old.instance_name = NULL;
	ck_assert_ptr_null(name_seen(&old, &tally0));
}
END_TEST

/* ---- save_image / open_image (ABI 1.4) --------------------------------------- */

struct image_seen {
	char sec[64];
	uint64_t offset, size;
	int fd;
};

static int fake_save(void *opaque, const char *sec, int fd, uint64_t offset, uint64_t size,
		     struct err *why)
{
	struct image_seen *s = opaque;

	(void)why;
	snprintf(s->sec, sizeof(s->sec), "%s", sec);
	s->fd = fd;
	s->offset = offset;
	s->size = size;
	return 0;
}

static int fake_open(void *opaque, const char *sec, int *fd, uint64_t *size, struct err *why)
{
	(void)opaque;
	if (strcmp(sec, "image.tally0.log"))
		return -ENOENT;
	*fd = 42;
	*size = 4096;
	(void)why;
	return 0;
}

/* Outside a save or a restore the core has nowhere to put an image. */
START_TEST(test_image_outside_save)
{
	int fd = 7;
	uint64_t size = 9;

	ck_assert_int_eq(host_api.save_image(&tally0, "log", 3, 0, 10), -ENOTSUP);
	ck_assert_int_eq(host_api.open_image(&tally0, "log", &fd, &size), -ENOTSUP);
	ck_assert_int_eq(fd, -1);
	ck_assert_uint_eq(size, 0);
}
END_TEST

START_TEST(test_image_names)
{
	static const char *const bad[] = { "", "Log", "a/b", "..", "a.b", "a b",
					   "abcdefghijklmnopqrstuvwxyz012345" /* 32 */ };
	struct image_seen seen = { "", 0, 0, -1 };
	int fd;
	uint64_t size;

	vm.image_save = fake_save;
	vm.image_open = fake_open;
	vm.image_opaque = &seen;
	ck_assert_int_eq(host_api.save_image(&tally0, "log", 5, 4096, 1 << 20), 0);
	ck_assert_str_eq(seen.sec, "image.tally0.log");
	ck_assert_int_eq(seen.fd, 5);
	ck_assert_uint_eq(seen.offset, 4096);
	ck_assert_uint_eq(seen.size, 1 << 20);
	ck_assert_int_eq(host_api.save_image(&tally0, "abcdefghijklmnopqrstuvwxyz01234", 5, 0, 1),
			 0); /* 31 */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(host_api.save_image(&tally0, bad[i], 5, 0, 1), -EINVAL);
	ck_assert_int_eq(host_api.save_image(&tally0, NULL, 5, 0, 1), -EINVAL);
	ck_assert_int_eq(host_api.open_image(&tally0, "log", &fd, &size), 0);
	ck_assert_int_eq(fd, 42);
	ck_assert_uint_eq(size, 4096);
	ck_assert_int_eq(host_api.open_image(&uart0, "log", &fd, &size), -ENOENT);
	ck_assert_int_eq(fd, -1);
	vm.image_save = NULL;
	vm.image_open = NULL;
	vm.image_opaque = NULL;
}
END_TEST

/* ---- set_error precedence --------------------------------------------------- */

/* A restore that refuses a value with its own message. */
static int refuse(smolvm_ctx *ctx)
{
	host_api.set_error(ctx, "step %u out of range (1..255)", 300);
	return -EINVAL;
}

/* A create that claims a line and passes the host's failure on. */
static int claim_line(smolvm_ctx *ctx, uint32_t gsi)
{
	return host_api.irq_claim(ctx, gsi);
}

/* The same, with a message of its own on top. */
static int claim_line_said(smolvm_ctx *ctx, uint32_t gsi)
{
	int rc = host_api.irq_claim(ctx, gsi);

	if (rc)
		host_api.set_error(ctx, "cannot claim its line %u", gsi);
	return rc;
}

/* Tries line 4, settles for 5, then fails for a reason it does not give. */
static int handled_then_fails(smolvm_ctx *ctx, int rc)
{
	if (host_api.irq_claim(ctx, 4) && host_api.irq_claim(ctx, 5))
		return -EIO;
	return rc;
}

static int says_but_succeeds(smolvm_ctx *ctx)
{
	host_api.set_error(ctx, "nothing wrong really");
	return 0;
}

static void pause_that_complains(smolvm_ctx *ctx)
{
	host_api.set_error(ctx, "pause went badly");
}

START_TEST(test_plugin_reason)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "restore", refuse(&tally0)), -EINVAL);
	ck_assert_str_eq(e.msg, "cannot restore tally0: step 300 out of range (1..255)");
}
END_TEST

START_TEST(test_errno_only)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "save", -EIO), -EIO);
	ck_assert_str_eq(e.msg, "cannot save tally0: Input/output error");
}
END_TEST

START_TEST(test_host_entry_reason)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &uart0, "create", claim_line(&uart0, 4)), 0);
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", claim_line(&tally0, 4)), -EBUSY);
	ck_assert_str_eq(e.msg, "cannot create tally0: interrupt line 4 is uart0's already: "
				"give this device another (its irq option)");
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", claim_line(&tally0, 99)), -EINVAL);
	ck_assert_str_eq(e.msg, "cannot create tally0: interrupt line 99: there are 24 (0-23)");
}
END_TEST

/* The plugin's message does not replace the core's: both show. */
START_TEST(test_plugin_and_host_entry)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &uart0, "create", claim_line(&uart0, 4)), 0);
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", claim_line_said(&tally0, 4)),
			 -EBUSY);
	ck_assert_str_eq(e.msg, "cannot create tally0: cannot claim its line 4: interrupt line 4 "
				"is uart0's already: give this device another (its irq option)");
}
END_TEST

/* A host entry's failure the plugin handled (a later entry succeeded), or
 * one with another code than the call's, is not the call's reason. */
START_TEST(test_host_entry_not_the_reason)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &uart0, "create", claim_line(&uart0, 4)), 0);
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", handled_then_fails(&tally0, -EBUSY)),
			 -EBUSY);
	ck_assert_str_eq(e.msg, "cannot create tally0: Device or resource busy");
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", claim_line(&tally0, 4) ? -ENOENT : 0),
			 -ENOENT);
	ck_assert_str_eq(e.msg, "cannot create tally0: No such file or directory");
}
END_TEST

/* set_error() and 0: no failure, and the message goes no further. */
START_TEST(test_success_drops_message)
{
	strcpy(e.msg, "untouched");
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "restore", says_but_succeeds(&tally0)), 0);
	ck_assert_str_eq(e.msg, "untouched");
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "save", -EIO), -EIO);
	ck_assert_str_eq(e.msg, "cannot save tally0: Input/output error");
}
END_TEST

/* A backend's op: "NAME: REASON" (its caller adds the section). */
START_TEST(test_backend_form)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &be, NULL, refuse(&be)), -EINVAL);
	ck_assert_str_eq(e.msg, "kvm: step 300 out of range (1..255)");
	ck_assert_int_eq(PLUGIN_CALL(&e, &be, NULL, -ENOTSUP), -ENOTSUP);
	ck_assert_str_eq(e.msg, "kvm: Operation not supported");
	/* vcpu_run may describe a triple fault and return 0 */
	ck_assert_int_eq(PLUGIN_CALL(&e, &be, NULL, says_but_succeeds(&be)), 0);
	ck_assert_str_eq(host_last_error(), "kvm: nothing wrong really");
}
END_TEST

/* The core's own failure in a device's op reads the same way. */
START_TEST(test_core_failure_form)
{
	ck_assert_int_eq(plugin_fail(&tally0, "save", -EINVAL, &e, "writing its state: %s",
				     strerror(EINVAL)),
			 -EINVAL);
	ck_assert_str_eq(e.msg, "cannot save tally0: writing its state: Invalid argument");
}
END_TEST

/* What stderr got while `fn` ran, with the machine at `verbose`. */
static char *stderr_of(void (*fn)(void), int verbose)
{
	char path[] = "/tmp/smolvm-unit-stderr-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	size_t len;
	char *out;

	ck_assert_int_ge(fd, 0);
	vm.verbose = verbose;
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	out = unit_read_file(path, &len);
	unlink(path);
	return out;
}

static void create_says_but_succeeds(void)
{
	ck_assert_int_eq(PLUGIN_CALL(&e, &tally0, "create", says_but_succeeds(&tally0)), 0);
}

static void pause_complains(void)
{
	PLUGIN_HOOK(vm.verbose, "pause", pause_that_complains(&tally0));
	ck_assert_str_eq(host_last_error(), "unknown error");
}

START_TEST(test_dropped_shown_with_vv)
{
	char *out = stderr_of(create_says_but_succeeds, 1);

	ck_assert_str_eq(out, "");
	free(out);
	out = stderr_of(create_says_but_succeeds, 2);
	ck_assert_str_eq(out, "smolvm: tally0: debug: create succeeded; its set_error message "
			      "is dropped: nothing wrong really\r\n");
	free(out);
	out = stderr_of(pause_complains, 1);
	ck_assert_str_eq(out, "");
	free(out);
	out = stderr_of(pause_complains, 2);
	ck_assert_str_eq(out, "smolvm: tally0: debug: pause cannot fail; its set_error message "
			      "is dropped: pause went badly\r\n");
	free(out);
}
END_TEST

Suite *host_api_suite(void)
{
	Suite *s = suite_create("host_api");
	TCase *tc;

	tc = tcase_create("instance_name");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_instance_name);
	tcase_add_test(tc, test_instance_name_old_host);
	suite_add_tcase(s, tc);

	tc = tcase_create("images");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_image_outside_save);
	tcase_add_test(tc, test_image_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_plugin_reason);
	tcase_add_test(tc, test_errno_only);
	tcase_add_test(tc, test_host_entry_reason);
	tcase_add_test(tc, test_plugin_and_host_entry);
	tcase_add_test(tc, test_host_entry_not_the_reason);
	tcase_add_test(tc, test_success_drops_message);
	tcase_add_test(tc, test_backend_form);
	tcase_add_test(tc, test_core_failure_form);
	tcase_add_test(tc, test_dropped_shown_with_vv);
	suite_add_tcase(s, tc);
	return s;
}
