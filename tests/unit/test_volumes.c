/* session/volumes.c: --volume values, the slots they fill (the snapshot's
 * guest paths back into their own slots) and the guest's mount commands. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/volumes.h"
#include "unit.h"

Suite *volumes_suite(void);

START_TEST(volume_values)
{
	struct err e;

	ck_assert_int_eq(grant_check_volume("./src:/work", &e), 0);
	ck_assert_int_eq(grant_check_volume("/a:b:/c:ro", &e), 0);
	ck_assert_int_ne(grant_check_volume("./src:work", &e), 0);
	ck_assert_str_contains(e.msg, "expected HOSTDIR:GUESTDIR");
	ck_assert_int_ne(grant_check_volume("src", &e), 0);
	ck_assert_int_ne(grant_check_volume(":/work", &e), 0);
	ck_assert_int_ne(grant_check_volume("./src:/", &e), 0);
	ck_assert_int_ne(grant_check_volume("./src:/it's", &e), 0);
}
END_TEST

/* A machine with `slots` empty virtio-9p devices after a uart. */
static void machine(struct machine_config *c, int slots)
{
	memset(c, 0, sizeof(*c));
	ck_assert_ptr_nonnull(machine_config_add_device(c, "uart"));
	for (int i = 0; i < slots; i++)
		ck_assert_ptr_nonnull(machine_config_add_device(c, VOLUME_TYPE));
}

START_TEST(slots_filled)
{
	struct machine_config c;
	struct kept k;
	struct err e;
	char *dir = unit_tmpdir(), a[600], b[600], *script = NULL;
	const char *vols[2];

	snprintf(a, sizeof(a), "%s:/data", dir);
	snprintf(b, sizeof(b), "%s:/work/:ro", dir);
	vols[0] = a;
	vols[1] = b;
	kept_init(&k);
	/* the snapshot had /work in the second slot */
	ck_assert_int_eq(kept_set(&k, VOLUME_KEPT_PREFIX "virtio-9p1", "/work", 5, &e), 0);
	machine(&c, 2);
	ck_assert_str_eq(c.devices[2].name, "virtio-9p1");
	ck_assert_int_eq(volumes_apply(&c, vols, 2, 1, "b.smolmachine", &k, &script, &e), 0);
	ck_assert_str_eq(dev_config_get(&c.devices[2], "guest"), "/work");
	ck_assert_str_eq(dev_config_get(&c.devices[2], "readonly"), "true");
	ck_assert_str_eq(dev_config_get(&c.devices[1], "guest"), "/data");
	ck_assert_str_eq(dev_config_get(&c.devices[1], "path"), dir);
	/* only the new one is mounted, after the slots' drivers are bound */
	ck_assert_ptr_nonnull(script);
	ck_assert_str_contains(script, "virtio-mmio/bind");
	ck_assert_str_contains(script, "mount -t 9p -o trans=virtio,version=9p2000.L virtio-9p0 '/data'");
	ck_assert(!strstr(script, "'/work'"));
	free(script);
	machine_config_free(&c);

	/* without the snapshot's /work: refused, saying what to give */
	machine(&c, 2);
	ck_assert_int_eq(volumes_apply(&c, vols, 1, 1, "b.smolmachine", &k, &script, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "mounted at /work");
	ck_assert_str_contains(e.msg, "--volume HOSTDIR:/work");
	ck_assert_ptr_null(script);
	machine_config_free(&c);

	/* no slot at all */
	kept_free(&k);
	kept_init(&k);
	machine(&c, 0);
	ck_assert_int_eq(volumes_apply(&c, vols, 1, 1, "b.smolmachine", &k, &script, &e), -ENOSPC);
	ck_assert_str_contains(e.msg, "no volume slot");
	machine_config_free(&c);

	/* an untrusted bundle's own share becomes a slot */
	machine(&c, 1);
	ck_assert_int_eq(dev_config_set(&c.devices[1], "path", "/etc"), 0);
	ck_assert_int_eq(volumes_apply(&c, NULL, 0, 0, "b.smolmachine", &k, &script, &e), 0);
	ck_assert_ptr_null(dev_config_get(&c.devices[1], "path"));
	machine_config_free(&c);
	kept_free(&k);
	unit_rmdir(dir);
}
END_TEST

Suite *volumes_suite(void)
{
	Suite *s = suite_create("volumes");
	TCase *t = tcase_create("volumes");

	tcase_add_test(t, volume_values);
	tcase_add_test(t, slots_filled);
	suite_add_tcase(s, t);
	return s;
}
