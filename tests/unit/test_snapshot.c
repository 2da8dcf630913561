/* core/snapshot/snapshot.c, the parts of a restore that need no KVM:
 * snapshot_open refusing a bundle (missing sections, corrupt sections, a
 * foreign arch or page size), snapshot_check_plugins refusing the plugins
 * of this host (backend, devices, state versions), the typed state reader
 * on a bundle's state sections, and the golden bundles: one real bundle
 * per supported format version (tests/golden/), loaded by today's code. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "machine/config.h"
#include "machine/loader.h"
#include "machine/state.h"
#include "script/script.h"
#include "snapshot/sign.h"
#include "snapshot/snapmem.h"
#include "snapshot/snapshot.h"
#include "unit.h"

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert(fwrite(buf, 1, len, f) == len);
	ck_assert(fclose(f) == 0);
}

/* ==== snapshot_open ======================================================= */

/* A small bundle shaped like the ticker's: every section snapshot_open
 * looks at, with state sections in the typed encoding. */
enum {
	NO_MANIFEST = 1, NO_LUA = 2, NO_VM = 4, NO_MEMORY = 8, NO_CPU = 16, NO_DEV = 32,
};

static const char good_lua[] =
	"machine {\n  name = \"ticker\",\n  memory = \"16M\",\n  kernel = \"ticker.elf\",\n"
	"  devices = { { type = \"uart\" } },\n}\n";

static char *manifest_text(const char *arch, const char *page_size, const char *memory)
{
	char *s;

	ck_assert(asprintf(&s,
			   "[bundle]\nformat = 1\nsmolvm = 0.1.0\ncreated = 2026-11-22T13:00:02Z\n\n"
			   "[machine]\nname = ticker\narch = %s\ncpus = 1\nmemory = %s\n"
			   "script = /srv/vms/ticker.lua\n\n"
			   "[host]\nbackend = kvm\n%s%s%squirks = 0\n\n"
			   "[device.uart0]\ntype = uart\nversion = 1.0.0\nabi = 1.0\nstate_version = 1\n",
			   arch, memory, page_size ? "page_size = " : "", page_size ? page_size : "",
			   page_size ? "\n" : "") > 0);
	return s;
}

static void add_state(struct bundle_writer *bw, const char *name, uint32_t type)
{
	struct smolvm_state_writer w;
	struct err e = { "" };
	uint32_t v = 0x12345678;

	state_writer_init(&w);
	ck_assert_int_eq(state_begin(&w, "regs", 0), 0);
	ck_assert_int_eq(state_put(&w, "value", SMOLVM_STATE_U32, &v, 4), 0);
	ck_assert_int_eq(state_end(&w), 0);
	ck_assert_int_eq(w.failed, 0);
	ck_assert_msg(bundle_add(bw, name, type, w.buf, w.len, &e) == 0, "%s", e.msg);
	state_writer_free(&w);
}

static char *write_bundle(const char *dir, const char *file, const char *manifest,
			  unsigned leave_out, uint64_t mem_size)
{
	struct bundle_writer bw;
	struct snapmem_stats st;
	struct guest_mem gm;
	struct err e = { "" };
	char *path;

	ck_assert(asprintf(&path, "%s/%s", dir, file) > 0);
	ck_assert_msg(bundle_writer_open(&bw, path, &e) == 0, "%s", e.msg);
	if (!(leave_out & NO_MANIFEST))
		ck_assert_int_eq(bundle_add(&bw, "manifest", SEC_MANIFEST, manifest, strlen(manifest), &e), 0);
	if (!(leave_out & NO_LUA))
		ck_assert_int_eq(bundle_add(&bw, "lua", SEC_LUA, good_lua, strlen(good_lua), &e), 0);
	if (!(leave_out & NO_VM))
		add_state(&bw, "vm", SEC_VM);
	if (!(leave_out & NO_DEV))
		add_state(&bw, "dev.uart0", SEC_DEVICE);
	if (!(leave_out & NO_CPU))
		add_state(&bw, "cpu.0", SEC_CPU);
	if (!(leave_out & NO_MEMORY)) {
		memset(&gm, 0, sizeof(gm));
		gm.size = mem_size;
		gm.base = calloc(1, mem_size);
		ck_assert_ptr_nonnull(gm.base);
		memcpy(gm.base + 4096, "ticker memory", 13);
		ck_assert_msg(snapmem_write(&bw, &gm, NULL, &st, &e) == 0, "%s", e.msg);
		free(gm.base);
	}
	ck_assert_msg(bundle_writer_commit(&bw, &e) == 0, "%s", e.msg);
	return path;
}

/* Flips one bit of section `name` of the file at `path`, `at` bytes into
 * it (negative: from its end; its hash and checksum in the TOC stay as
 * they were). */
static void flip_bit(const char *path, const char *name, int64_t at)
{
	struct bundle b;
	struct err e = { "" };
	const struct bundle_section *s;
	uint64_t pos;
	size_t len;
	char *buf;

	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	s = bundle_find(&b, name);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_gt(s->size, at < 0 ? (uint64_t)-at - 1 : (uint64_t)at);
	pos = s->offset + (at < 0 ? s->size - (uint64_t)-at : (uint64_t)at);
	bundle_close(&b);
	buf = unit_read_file(path, &len);
	buf[pos] ^= 0x04;
	write_file(path, buf, len);
	free(buf);
}

/* One bit in the middle of a section. */
static void corrupt_section(const char *path, const char *name)
{
	struct bundle b;
	struct err e = { "" };
	int64_t mid;

	ck_assert_msg(bundle_open(&b, path, &e) == 0, "%s", e.msg);
	ck_assert_ptr_nonnull(bundle_find(&b, name));
	mid = (int64_t)(bundle_find(&b, name)->size / 2);
	bundle_close(&b);
	flip_bit(path, name, mid);
}

static char *tmp;
static struct restore_plan plan;

static void open_setup(void)
{
	tmp = unit_tmpdir();
	memset(&plan, 0, sizeof(plan));
}

static void open_teardown(void)
{
	unit_rmdir(tmp);
	tmp = NULL;
}

/* snapshot_open refuses `path` with `rc` and a message holding `msg` (and
 * the bundle's path), leaving nothing open. */
static void expect_open_refused(const char *what, const char *path, int rc, const char *msg)
{
	struct err e = { "" };
	int got;

	memset(&plan, 0x5a, sizeof(plan));
	got = snapshot_open(path, &plan, &e);
	ck_assert_msg(got == rc, "%s: rc %d, expected %d (%s)", what, got, rc, e.msg);
	ck_assert_msg(strstr(e.msg, msg) != NULL, "%s: expected \"%s\" in \"%s\"", what, msg, e.msg);
	ck_assert_msg(strstr(e.msg, path) != NULL, "%s: the path is not in \"%s\"", what, e.msg);
	ck_assert_ptr_null(plan.b.secs);
	ck_assert_ptr_null(plan.lua);
	ck_assert_ptr_null(plan.memory);
}

START_TEST(test_open_good)
{
	char *man = manifest_text("x86_64", "4096", "1048576");
	char *path = write_bundle(tmp, "good.smolmachine", man, 0, 1 << 20);
	struct err e = { "" };
	const uint8_t *p;
	uint8_t *mem;

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(plan.m.name, "ticker");
	ck_assert_str_eq(plan.m.backend, "kvm");
	ck_assert_uint_eq(plan.m.ndevs, 1);
	ck_assert_uint_eq(plan.lua_len, strlen(good_lua));
	ck_assert_mem_eq(plan.lua, good_lua, plan.lua_len);
	ck_assert_ptr_nonnull(plan.memory);
	ck_assert_int_eq(bundle_section_data(&plan.b, plan.memory, &p, &e), 0);
	mem = calloc(1, plan.m.memory);
	ck_assert_ptr_nonnull(mem);
	/* Format 2: the section's hash covers its chunk table, the table
	 * the hash of each chunk. */
	ck_assert_uint_eq(plan.b.version, 2);
	ck_assert_uint_eq(plan.memory->covered, SNAPMEM_HDR + SNAPMEM_ENTRY);
	ck_assert_msg(snapmem_read(p, plan.memory->size, plan.memory->covered, mem, plan.m.memory, 1,
				   &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(mem + 4096, "ticker memory", 13);
	free(mem);
	snapshot_close(&plan);
	ck_assert_ptr_null(plan.b.secs);

	/* The page size is optional (0: not recorded). */
	free(man);
	man = manifest_text("x86_64", NULL, "1048576");
	unlink(path);
	free(path);
	path = write_bundle(tmp, "nopage.smolmachine", man, 0, 1 << 20);
	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(plan.m.page_size, 0);
	snapshot_close(&plan);
	free(man);
	free(path);
}
END_TEST

START_TEST(test_open_missing_sections)
{
	static const struct {
		unsigned leave_out;
		const char *what;
	} t[] = {
		{ NO_MANIFEST, "no manifest" },
		{ NO_LUA, "no lua" },
		{ NO_VM, "no vm" },
		{ NO_MEMORY, "no memory" },
		{ NO_MANIFEST | NO_LUA | NO_VM | NO_MEMORY | NO_CPU | NO_DEV, "no sections" },
	};
	char *man = manifest_text("x86_64", "4096", "1048576");

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *path = write_bundle(tmp, "missing.smolmachine", man, t[i].leave_out, 1 << 20);
		expect_open_refused(t[i].what, path, -EBADMSG,
				    ": missing a manifest, lua, vm or memory section");
		unlink(path);
		free(path);
	}
	free(man);
}
END_TEST

/* A section whose bytes do not match its hash: every small section is
 * verified when the bundle is opened; memory's chunk table when it is
 * read, and each chunk against its own hash as it is decompressed. */
START_TEST(test_open_corrupt_sections)
{
	static const char *const names[] = { "manifest", "lua", "vm", "dev.uart0", "cpu.0" };
	char *man = manifest_text("x86_64", "4096", "1048576");
	struct err e = { "" };
	const uint8_t *p;
	char want[64];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *path = write_bundle(tmp, "corrupt.smolmachine", man, 0, 1 << 20);
		corrupt_section(path, names[i]);
		snprintf(want, sizeof(want), "section %s does not match its hash (corrupt or modified)",
			 names[i]);
		expect_open_refused(names[i], path, -EBADMSG, want);
		unlink(path);
		free(path);
	}

	/* The memory section's last bytes are its one stored chunk: beyond
	 * what the section's hash covers, caught by the chunk's. */
	char *path = write_bundle(tmp, "corrupt.smolmachine", man, 0, 1 << 20);
	flip_bit(path, "memory", -6);
	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&plan.b, plan.memory, &p, &e), 0);
	uint8_t *mem = calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(mem);
	ck_assert_int_eq(snapmem_read(p, plan.memory->size, plan.memory->covered, mem, 1 << 20, 1,
				      &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: chunk 0 does not match its hash "
			 "(corrupt or modified)");
	free(mem);
	ck_assert_int_eq(snapshot_verify(&plan.b, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "checksum mismatch"); /* the XXH3 of the whole, first */
	snapshot_close(&plan);
	unlink(path);
	free(path);

	/* Its chunk table: the section's hash. */
	path = write_bundle(tmp, "corrupt.smolmachine", man, 0, 1 << 20);
	flip_bit(path, "memory", SNAPMEM_HDR + 16); /* the hash of chunk 0 */
	/* (checked when it is opened, with the parents' tables of a child) */
	ck_assert_int_eq(snapshot_open(path, &plan, &e), -EBADMSG);
	ck_assert_str_contains(e.msg, "section memory does not match its hash (corrupt or modified)");
	unlink(path);
	free(path);

	/* The container is checked first: its refusals come through. */
	path = write_bundle(tmp, "corrupt.smolmachine", man, 0, 1 << 20);
	size_t len;
	char *buf = unit_read_file(path, &len);
	buf[3] ^= 0x20;
	write_file(path, buf, len);
	expect_open_refused("magic", path, -EBADMSG, "not a smolvm bundle (bad magic)");
	buf[3] ^= 0x20;
	write_file(path, buf, len - 1);
	expect_open_refused("truncated", path, -EBADMSG, "(truncated?)");
	free(buf);
	unlink(path);
	free(path);
	free(man);
}
END_TEST

START_TEST(test_open_bad_manifest)
{
	static const struct {
		const char *what, *text;
		int rc;
		const char *msg;
	} t[] = {
		{ "not INI", "just text\n", -EBADMSG, ": manifest: line 1 is not valid INI" },
		{ "empty", "", -EBADMSG, ": manifest: missing format, cpus, memory, arch or backend" },
		{ "format 2", "[bundle]\nformat = 2\n[machine]\narch = x86_64\ncpus = 1\nmemory = 1\n"
			      "[host]\nbackend = kvm\n", -EPROTO, ": manifest format 2, this smolvm reads 1" },
		{ "cpus 0", "[bundle]\nformat = 1\n[machine]\narch = x86_64\ncpus = 0\nmemory = 1\n"
			    "[host]\nbackend = kvm\n", -EBADMSG, "manifest: [machine] cpus = \"0\" is invalid" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *path = write_bundle(tmp, "man.smolmachine", t[i].text, 0, 1 << 20);
		expect_open_refused(t[i].what, path, t[i].rc, t[i].msg);
		unlink(path);
		free(path);
	}
}
END_TEST

/* The messages name what the bundle holds and what this host has. */
START_TEST(test_open_foreign_host)
{
	char *man, *path;

	man = manifest_text("aarch64", "4096", "1048576");
	path = write_bundle(tmp, "arm.smolmachine", man, 0, 1 << 20);
	expect_open_refused("arch", path, -ENOTSUP, "a aarch64 machine; this host runs x86_64");
	unlink(path);
	free(path);
	free(man);

	man = manifest_text("x86", "4096", "1048576");
	path = write_bundle(tmp, "x86.smolmachine", man, 0, 1 << 20);
	expect_open_refused("arch x86", path, -ENOTSUP, "a x86 machine; this host runs x86_64");
	unlink(path);
	free(path);
	free(man);

	man = manifest_text("x86_64", "16384", "1048576");
	path = write_bundle(tmp, "16k.smolmachine", man, 0, 1 << 20);
	expect_open_refused("page size", path, -ENOTSUP, "saved with 16384-byte pages, this host uses 4096");
	unlink(path);
	free(path);
	free(man);
}
END_TEST

START_TEST(test_open_no_file)
{
	char *path;
	struct err e = { "" };

	ck_assert(asprintf(&path, "%s/none.smolmachine", tmp) > 0);
	ck_assert_int_eq(snapshot_open(path, &plan, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "none.smolmachine: No such file or directory");
	free(path);
	ck_assert_int_eq(snapshot_open(tmp, &plan, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "not a regular file");
}
END_TEST

/* The manifest's memory size and the memory section disagree: found when
 * the memory is read (the cache), before any machine exists. */
START_TEST(test_open_memory_size_mismatch)
{
	char *man = manifest_text("x86_64", "4096", "2097152");
	char *path = write_bundle(tmp, "mem.smolmachine", man, 0, 1 << 20);
	char *cache;
	struct cache_result r;
	struct err e = { "" };

	const char *old = getenv("SMOLVM_CACHE_DIR");
	char *saved = old ? strdup(old) : NULL;

	ck_assert(asprintf(&cache, "%s/cache", tmp) > 0);
	setenv("SMOLVM_CACHE_DIR", cache, 1);
	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(cache_memory(&plan.b, plan.memory, NULL, plan.m.memory, &r, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section holds 1048576 bytes, expected 2097152");
	ck_assert_int_eq(r.fd, -1);
	snapshot_close(&plan);
	if (saved)
		setenv("SMOLVM_CACHE_DIR", saved, 1);
	else
		unsetenv("SMOLVM_CACHE_DIR");
	free(saved);
	ck_assert_int_eq(rmdir(cache), 0); /* nothing left in the cache */
	free(cache);
	unlink(path);
	free(path);
	free(man);
}
END_TEST

/* ==== snapshot_check_plugins ============================================= */

static const char *uart_so(void) { return env_or("SMOLVM_UART_SO", UART_SO); }
static const char *kvm_so(void) { return env_or("SMOLVM_KVM_SO", KVM_SO); }

static char *test_plugin(const char *name)
{
	char *p;
	ck_assert(asprintf(&p, "%s/%s.so", env_or("SMOLVM_TEST_PLUGIN_DIR", TEST_PLUGIN_DIR), name) > 0);
	ck_assert_msg(access(p, R_OK) == 0, "%s missing: run make test-plugins", p);
	return p;
}

static struct plugin uart_pl, kvm_pl, old_pl;

static void load(const char *path, struct plugin *p)
{
	struct err e = { "" };

	ck_assert_msg(access(path, R_OK) == 0, "%s missing: run make all", path);
	ck_assert_msg(plugin_open(path, p, &e) == 0, "%s: %s", path, e.msg);
}

static void plugins_setup(void)
{
	char *old = test_plugin("old_minor");

	load(uart_so(), &uart_pl);
	load(kvm_so(), &kvm_pl);
	load(old, &old_pl);
	free(old);
}

static void plugins_teardown(void)
{
	free(uart_pl.path);
	free(kvm_pl.path);
	free(old_pl.path);
}

/* A plugin set of copies of the given plugins (paths not owned). */
static struct plugin_set set_of(const struct plugin *a, const struct plugin *b)
{
	struct plugin_set s = { calloc(2, sizeof(struct plugin)), 0 };

	ck_assert_ptr_nonnull(s.v);
	if (a)
		s.v[s.n++] = *a;
	if (b)
		s.v[s.n++] = *b;
	return s;
}

/* The plan of a bundle with the given device sections, and a script
 * config declaring the given devices. */
static void plan_with(const char *devices)
{
	char *text;
	struct err e = { "" };

	ck_assert(asprintf(&text,
			   "[bundle]\nformat = 1\n[machine]\narch = x86_64\ncpus = 1\nmemory = 16777216\n"
			   "[host]\nbackend = kvm\n%s", devices) > 0);
	memset(&plan, 0, sizeof(plan));
	ck_assert_msg(manifest_parse(text, strlen(text), &plan.m, &e) == 0, "%s", e.msg);
	free(text);
}

static char *types[4], *names[4];
static struct dev_config devs[4];

static struct machine_config config_with(size_t n, ...)
{
	struct machine_config c;
	va_list ap;

	memset(&c, 0, sizeof(c));
	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		types[i] = va_arg(ap, char *);
		names[i] = va_arg(ap, char *);
		memset(&devs[i], 0, sizeof(devs[i]));
		devs[i].type = types[i];
		devs[i].name = names[i];
	}
	va_end(ap);
	c.devices = devs;
	c.ndevices = n;
	return c;
}

#define UART0 "[device.uart0]\ntype = uart\nversion = 1.0.0\nstate_version = 1\n"

static void expect_check(const struct plugin_set *set, const struct machine_config *cfg,
			 int rc, const char *msg)
{
	struct err e = { "" };
	int got = snapshot_check_plugins(&plan, cfg, set, &e);

	ck_assert_msg(got == rc, "rc %d, expected %d (%s)", got, rc, e.msg);
	if (msg)
		ck_assert_str_contains(e.msg, msg);
}

START_TEST(test_check_good)
{
	struct plugin_set set = set_of(&kvm_pl, &uart_pl);
	struct machine_config cfg = config_with(1, "uart", "uart0");

	plan_with(UART0);
	expect_check(&set, &cfg, 0, NULL);
	/* No devices at all. */
	plan_with("");
	cfg = config_with(0);
	expect_check(&set, &cfg, 0, NULL);
	free(set.v);
}
END_TEST

START_TEST(test_check_backend)
{
	struct plugin_set set = set_of(&uart_pl, NULL);
	struct machine_config cfg = config_with(1, "uart", "uart0");
	struct plugin fake = uart_pl;

	plan_with(UART0);
	expect_check(&set, &cfg, -ENOENT,
		     "the bundle needs backend plugin \"kvm\", which is not installed");
	free(set.v);
	/* A device plugin named like the backend is not the backend. */
	fake.desc.name = "kvm";
	set = set_of(&fake, &uart_pl);
	expect_check(&set, &cfg, -ENOENT, "backend plugin \"kvm\"");
	free(set.v);
}
END_TEST

START_TEST(test_check_devices)
{
	struct plugin_set set = set_of(&kvm_pl, &uart_pl);
	struct machine_config cfg;

	plan_with(UART0);
	cfg = config_with(0);
	expect_check(&set, &cfg, -EINVAL, "the bundle holds 1 devices but its script declares 0");
	cfg = config_with(2, "uart", "uart0", "uart", "uart1");
	expect_check(&set, &cfg, -EINVAL, "the bundle holds 1 devices but its script declares 2");
	cfg = config_with(1, "uart", "uart1");
	expect_check(&set, &cfg, -EINVAL, "device 1 is uart0 (uart) in the bundle but uart1 (uart) in its script");
	cfg = config_with(1, "virtio-rng", "uart0");
	expect_check(&set, &cfg, -EINVAL, "device 1 is uart0 (uart) in the bundle but uart0 (virtio-rng) in its script");

	/* The order counts. */
	plan_with(UART0 "[device.virtio-rng0]\ntype = virtio-rng\n");
	cfg = config_with(2, "virtio-rng", "virtio-rng0", "uart", "uart0");
	expect_check(&set, &cfg, -EINVAL, "device 1 is uart0 (uart) in the bundle but virtio-rng0 (virtio-rng)");

	/* A device whose plugin this host lacks. */
	cfg = config_with(2, "uart", "uart0", "virtio-rng", "virtio-rng0");
	expect_check(&set, &cfg, -ENOENT, "virtio-rng0: device plugin \"virtio-rng\" (saved with ");
	plan_with("[device.blk0]\ntype = virtio-blk\nversion = 0.9.1\n");
	cfg = config_with(1, "virtio-blk", "blk0");
	expect_check(&set, &cfg, -ENOENT, "blk0: device plugin \"virtio-blk\" (saved with 0.9.1) is not installed");
	/* The backend is not a device. */
	plan_with("[device.kvm0]\ntype = kvm\n");
	cfg = config_with(1, "kvm", "kvm0");
	expect_check(&set, &cfg, -ENOENT, "kvm0: device plugin \"kvm\"");
	free(set.v);
}
END_TEST

START_TEST(test_check_restore_hook)
{
	struct plugin_set set = set_of(&kvm_pl, &old_pl);
	struct machine_config cfg = config_with(1, "old-minor", "old-minor0");

	plan_with("[device.old-minor0]\ntype = old-minor\nstate_version = 1\n");
	expect_check(&set, &cfg, -ENOTSUP, "old-minor0: plugin old-minor has no restore hook");
	free(set.v);
}
END_TEST

START_TEST(test_check_state_versions)
{
	struct plugin_set set = set_of(&kvm_pl, &uart_pl);
	struct machine_config cfg = config_with(1, "uart", "uart0");
	uint32_t min = uart_pl.ops.dev.min_state_version, max = uart_pl.ops.dev.state_version;
	char *dev, want[160];

	ck_assert_uint_ge(min, 1);
	ck_assert_uint_ge(max, min);
	/* Newer than this plugin reads. */
	ck_assert(asprintf(&dev, "[device.uart0]\ntype = uart\nstate_version = %u\n", max + 1) > 0);
	plan_with(dev);
	snprintf(want, sizeof(want), "uart0: saved state version %u, plugin uart %s reads versions %u to %u",
		 max + 1, uart_pl.desc.version, min, max);
	expect_check(&set, &cfg, -EPROTO, want);
	free(dev);
	/* Older than it still reads. */
	ck_assert(asprintf(&dev, "[device.uart0]\ntype = uart\nstate_version = %u\n", min - 1) > 0);
	plan_with(dev);
	snprintf(want, sizeof(want), "uart0: saved state version %u, plugin uart %s reads versions %u to %u",
		 min - 1, uart_pl.desc.version, min, max);
	expect_check(&set, &cfg, -EPROTO, want);
	free(dev);
	/* No state_version recorded reads as 0: older than any plugin. */
	plan_with("[device.uart0]\ntype = uart\n");
	expect_check(&set, &cfg, -EPROTO, "saved state version 0");
	/* Both ends of the range are accepted, with a plugin reading 2..5. */
	struct plugin wide = uart_pl;
	wide.ops.dev.min_state_version = 2;
	wide.ops.dev.state_version = 5;
	free(set.v);
	set = set_of(&kvm_pl, &wide);
	for (uint32_t v = 1; v <= 6; v++) {
		ck_assert(asprintf(&dev, "[device.uart0]\ntype = uart\nstate_version = %u\n", v) > 0);
		plan_with(dev);
		if (v >= 2 && v <= 5)
			expect_check(&set, &cfg, 0, NULL);
		else
			expect_check(&set, &cfg, -EPROTO, "reads versions 2 to 5");
		free(dev);
	}
	free(set.v);
}
END_TEST

/* ==== the typed state reader on a bundle's state sections ================= */

START_TEST(test_state_sections)
{
	char *man = manifest_text("x86_64", "4096", "1048576");
	char *path = write_bundle(tmp, "state.smolmachine", man, 0, 1 << 20);
	struct smolvm_state_reader r;
	struct err e = { "" };
	const struct bundle_section *s;
	const uint8_t *p;
	uint8_t *copy;
	uint32_t v;

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	s = bundle_find(&plan.b, "cpu.0");
	ck_assert_int_eq(bundle_section_data(&plan.b, s, &p, &e), 0);

	/* Whole: fine, and a reader that never entered "regs" is refused. */
	ck_assert_msg(state_reader_init(&r, p, s->size, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(state_reader_check(&r, &e), -EPROTO);
	ck_assert_str_eq(e.msg, "unknown required state section \"regs\"");
	ck_assert_int_eq(state_enter(&r, "regs"), 0);
	ck_assert_int_eq(state_get(&r, "value", SMOLVM_STATE_U32, &v, 4), 0);
	ck_assert_uint_eq(v, 0x12345678);
	ck_assert_int_eq(state_leave(&r), 0);
	ck_assert_int_eq(state_reader_check(&r, &e), 0);
	state_reader_free(&r);

	/* Every strict prefix is refused. */
	for (size_t n = 1; n < s->size; n++) {
		memset(&e, 0, sizeof(e));
		ck_assert_int_eq(state_reader_init(&r, p, n, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "state truncated or unbalanced");
		ck_assert_ptr_null(r.recs);
	}
	/* Garbage: an unknown record kind, a field of the wrong size, a
	 * section end with nothing open. */
	copy = malloc(s->size);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, p, s->size);
	copy[0] = 9;
	ck_assert_int_eq(state_reader_init(&r, copy, s->size, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "malformed state record");
	memcpy(copy, p, s->size);
	copy[13] = SMOLVM_STATE_U64; /* "value" (after "regs"'s 12 bytes) is 4 bytes */
	ck_assert_int_eq(state_reader_init(&r, copy, s->size, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "malformed state record");
	ck_assert_int_eq(state_reader_init(&r, "\x03\x00\x00\x00\x00\x00\x00\x00", 8, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "malformed state record");
	memset(copy, 0xff, s->size);
	ck_assert_int_eq(state_reader_init(&r, copy, s->size, &e), -EBADMSG);
	ck_assert_str_eq(e.msg, "state truncated or unbalanced");
	free(copy);
	snapshot_close(&plan);
	unlink(path);
	free(path);
	free(man);
}
END_TEST

/* ==== golden bundles ======================================================= */

/* One real bundle per supported format version, packed once and never
 * regenerated (tests/golden/README.md). Today's reader must load each. */
static char *golden(const char *file)
{
	char *p;
	ck_assert(asprintf(&p, "%s/%s", env_or("SMOLVM_GOLDEN_DIR", GOLDEN_DIR), file) > 0);
	ck_assert_msg(access(p, R_OK) == 0, "%s: %s", p, strerror(errno));
	return p;
}

static const struct {
	const char *name;
	uint32_t type, compression;
} golden_v1_sections[] = {
	{ "manifest", SEC_MANIFEST, COMP_NONE }, { "lua", SEC_LUA, COMP_NONE },
	{ "vm", SEC_VM, COMP_NONE },             { "dev.uart0", SEC_DEVICE, COMP_NONE },
	{ "cpu.0", SEC_CPU, COMP_NONE },         { "memory", SEC_MEMORY, COMP_ZSTD },
};

START_TEST(test_golden_v1_opens)
{
	char *path = golden("ticker-v1.smolmachine");
	struct err e = { "" };
	const struct manifest *m = &plan.m;
	size_t len;
	char *raw = unit_read_file(path, &len);

	/* Format 1, as the header says. */
	ck_assert_uint_ge(len, BUNDLE_HEADER_SIZE);
	ck_assert_mem_eq(raw, BUNDLE_MAGIC, 8);
	ck_assert_uint_eq((uint8_t)raw[8], 1);
	free(raw);

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_msg(bundle_verify_all(&plan.b, &e) == 0, "%s", e.msg);
	ck_assert_msg(snapshot_verify(&plan.b, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(plan.b.version, 1);
	/* Format 1 has no signatures and no identity to sign. */
	ck_assert_uint_eq(plan.b.nsigs, 0);
	ck_assert_int_eq(bundle_signature_valid(&plan.b, 0), 0);
	ck_assert_uint_eq(plan.b.n, sizeof(golden_v1_sections) / sizeof(golden_v1_sections[0]));
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = bundle_find(&plan.b, golden_v1_sections[i].name);
		ck_assert_msg(s != NULL, "no section %s", golden_v1_sections[i].name);
		ck_assert_uint_eq(s->type, golden_v1_sections[i].type);
		ck_assert_uint_eq(s->compression, golden_v1_sections[i].compression);
		ck_assert_uint_eq(s->flags, 0);
		ck_assert_uint_eq(s->covered, s->size); /* format 1: the XXH3 covers it all */
	}
	ck_assert_ptr_eq(plan.memory, bundle_find(&plan.b, "memory"));
	ck_assert_uint_eq(plan.memory->raw_size, 64ull << 20);

	ck_assert_uint_eq(m->format, 1);
	ck_assert_str_eq(m->smolvm, "0.1.0");
	ck_assert_str_eq(m->name, "ticker");
	ck_assert_str_eq(m->arch, "x86_64");
	ck_assert_uint_eq(m->cpus, 1);
	ck_assert_uint_eq(m->memory, 64ull << 20);
	ck_assert_str_eq(m->backend, "kvm");
	ck_assert_uint_eq(m->page_size, 4096);
	ck_assert_uint_eq(m->ndevs, 1);
	ck_assert_str_eq(m->devs[0].name, "uart0");
	ck_assert_str_eq(m->devs[0].type, "uart");
	ck_assert_str_eq(m->devs[0].version, "1.0.0");
	ck_assert_uint_eq(m->devs[0].abi_major, 1);
	ck_assert_uint_eq(m->devs[0].state_version, 1);
	ck_assert_msg(strlen(m->script) > 19 &&
		      !strcmp(m->script + strlen(m->script) - 19, "/scripts/ticker.lua"), "%s", m->script);
	ck_assert_msg(memmem(plan.lua, plan.lua_len, "ready = \"tick 5\"", 16) != NULL, "%.*s",
		      (int)plan.lua_len, plan.lua);
	snapshot_close(&plan);
	free(path);
}
END_TEST

/* Format 2's golden bundle: its identity (the hash of its TOC) is what it
 * was when it was made, every hash matches, and its signature by the
 * golden key (tests/golden/golden.pub) verifies. */
START_TEST(test_golden_v2_opens)
{
	static const char id_hex[] =
		"e40b03b90570f47ea710d31a1f79e6fb8e7595dd044ed52cde433445739c7cd7";
	static const char key_b64[] = "iaUE6Hxplp7JYsmmIEbe89fgPCu4bBiaNrunOMgRwEo=";
	char *path = golden("ticker-v2.smolmachine");
	uint8_t key[32];
	char hex[2 * BUNDLE_HASH_SIZE + 1];
	struct err e = { "" };
	size_t n;

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(plan.b.version, 2);
	ck_assert_msg(snapshot_verify(&plan.b, &e) == 0, "%s", e.msg);
	sodium_bin2hex(hex, sizeof(hex), plan.b.id, sizeof(plan.b.id));
	ck_assert_str_eq(hex, id_hex);
	ck_assert_uint_eq(plan.b.nsigs, 1);
	ck_assert_int_eq(sodium_base642bin(key, sizeof(key), key_b64, strlen(key_b64), NULL, &n,
					   NULL, sodium_base64_VARIANT_ORIGINAL), 0);
	ck_assert_uint_eq(n, 32);
	ck_assert_mem_eq(plan.b.sigs[0].key, key, 32);
	ck_assert_int_eq(bundle_signature_valid(&plan.b, 0), 1);
	ck_assert_ptr_eq(plan.memory, bundle_find(&plan.b, "memory"));
	ck_assert_uint_lt(plan.memory->covered, plan.memory->size); /* the chunk table */
	ck_assert_uint_eq(plan.m.memory, 64ull << 20);
	snapshot_close(&plan);
	free(path);
}
END_TEST

/* Every state section parses; the vCPU's and the VM's hold required
 * sections a reader must enter; every device section's plugin reads it. */
START_TEST(test_golden_v1_state)
{
	char *path = golden("ticker-v1.smolmachine");
	struct smolvm_state_reader r;
	struct err e = { "" };
	const uint8_t *p;
	size_t nstate = 0;

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < plan.b.n; i++) {
		const struct bundle_section *s = &plan.b.secs[i];
		if (s->type != SEC_VM && s->type != SEC_CPU && s->type != SEC_DEVICE)
			continue;
		nstate++;
		ck_assert_int_eq(bundle_section_data(&plan.b, s, &p, &e), 0);
		ck_assert_msg(state_reader_init(&r, p, s->size, &e) == 0, "%s: %s", s->name, e.msg);
		ck_assert_uint_gt(r.n, 0);
		if (s->type != SEC_DEVICE) {
			ck_assert_int_eq(state_reader_check(&r, &e), -EPROTO);
			ck_assert_str_contains(e.msg, "unknown required state section \"");
		}
		state_reader_free(&r);
		/* Cut short: refused. */
		ck_assert_int_eq(state_reader_init(&r, p, s->size - 1, &e), -EBADMSG);
		ck_assert_str_eq(e.msg, "state truncated or unbalanced");
	}
	ck_assert_uint_eq(nstate, 3);
	snapshot_close(&plan);
	free(path);
}
END_TEST

START_TEST(test_golden_v1_memory)
{
	char *path = golden("ticker-v1.smolmachine");
	struct err e = { "" };
	const uint8_t *p;
	uint64_t size = 0;
	uint8_t *mem;

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(bundle_section_data(&plan.b, plan.memory, &p, &e), 0);
	ck_assert_msg(snapmem_size(p, plan.memory->size, &size, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(size, plan.m.memory);
	mem = calloc(1, size);
	ck_assert_ptr_nonnull(mem);
	/* Format 1: the caller verified the whole section (its XXH3). */
	ck_assert_uint_eq(plan.memory->covered, plan.memory->size);
	ck_assert_msg(snapmem_read(p, plan.memory->size, plan.memory->covered, mem, size, 0, &e) == 0,
		      "%s", e.msg);
	/* A format 1 memory section carries no chunk hashes: it cannot be
	 * read on the strength of a hash of its head. */
	ck_assert_int_eq(snapmem_read(p, plan.memory->size, plan.memory->size - 1, mem, size, 0, &e),
			 -EBADMSG);
	ck_assert_str_eq(e.msg, "memory section: its chunks are not covered by its hash");
	ck_assert_msg(snapmem_verify(p, plan.memory->size, plan.memory->size, &e) == 0, "%s", e.msg);
	/* The ticker guest is in there, with its strings. */
	ck_assert_ptr_nonnull(memmem(mem, size, "ticker: start", 13));
	ck_assert_ptr_nonnull(memmem(mem, size, "tick %", 6));
	free(mem);
	snapshot_close(&plan);
	free(path);
}
END_TEST

/* The machine its own script declares, checked against the plugins this
 * build makes: what `smolvm run` does before it builds anything. */
START_TEST(test_golden_v1_plugins)
{
	char *path = golden("ticker-v1.smolmachine");
	struct plugin_set set = set_of(&kvm_pl, &uart_pl);
	struct machine_config cfg;
	struct err e = { "" };

	ck_assert_msg(snapshot_open(path, &plan, &e) == 0, "%s", e.msg);
	ck_assert_msg(script_load_machine_buffer(plan.m.script, plan.lua, plan.lua_len, &cfg, &e) == 0,
		      "%s", e.msg);
	ck_assert_uint_eq(cfg.ndevices, 1);
	ck_assert_str_eq(cfg.devices[0].name, "uart0");
	ck_assert_msg(snapshot_check_plugins(&plan, &cfg, &set, &e) == 0, "%s", e.msg);
	free(set.v);
	/* And without the backend, refused. */
	set = set_of(&uart_pl, NULL);
	ck_assert_int_eq(snapshot_check_plugins(&plan, &cfg, &set, &e), -ENOENT);
	ck_assert_str_contains(e.msg, "backend plugin \"kvm\"");
	free(set.v);
	machine_config_free(&cfg);
	snapshot_close(&plan);
	free(path);
}
END_TEST

Suite *snapshot_suite(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc;

	tc = tcase_create("open");
	tcase_add_checked_fixture(tc, open_setup, open_teardown);
	tcase_add_test(tc, test_open_good);
	tcase_add_test(tc, test_open_missing_sections);
	tcase_add_test(tc, test_open_corrupt_sections);
	tcase_add_test(tc, test_open_bad_manifest);
	tcase_add_test(tc, test_open_foreign_host);
	tcase_add_test(tc, test_open_no_file);
	tcase_add_test(tc, test_open_memory_size_mismatch);
	tcase_add_test(tc, test_state_sections);
	suite_add_tcase(s, tc);

	tc = tcase_create("check_plugins");
	tcase_add_checked_fixture(tc, plugins_setup, plugins_teardown);
	tcase_add_test(tc, test_check_good);
	tcase_add_test(tc, test_check_backend);
	tcase_add_test(tc, test_check_devices);
	tcase_add_test(tc, test_check_restore_hook);
	tcase_add_test(tc, test_check_state_versions);
	suite_add_tcase(s, tc);

	tc = tcase_create("golden");
	tcase_add_checked_fixture(tc, plugins_setup, plugins_teardown);
	tcase_add_test(tc, test_golden_v1_opens);
	tcase_add_test(tc, test_golden_v2_opens);
	tcase_add_test(tc, test_golden_v1_state);
	tcase_add_test(tc, test_golden_v1_memory);
	tcase_add_test(tc, test_golden_v1_plugins);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}
