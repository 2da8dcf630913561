/* core/script.c: machine scripts become machine_configs; mistakes are
 * reported as file:line: field; the sandbox holds against hostile text. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/src_lines.h"
#include "script/script.h"
#include "unit.h"

#define SCRIPT "/srv/vms/test/machine.lua"

static struct machine_config cfg;
static struct err e;

static void setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(&e, 0, sizeof(e));
}

static void teardown(void)
{
	machine_config_free(&cfg);
}

/* The script is copied into a buffer of exactly its length (no NUL), as
 * the _buffer API allows, so ASan catches reads past it. */
static int load(const char *src)
{
	size_t len = strlen(src);
	char *copy = malloc(len ? len : 1);
	int rc;

	memcpy(copy, src, len);
	rc = script_load_machine_buffer(SCRIPT, copy, len, &cfg, &e);
	free(copy);
	return rc;
}

static void load_ok(const char *src)
{
	int rc = load(src);
	ck_assert_msg(rc == 0, "script refused: %s", e.msg);
}

static void load_fails(const char *src, const char *where, const char *what)
{
	int rc = load(src);

	ck_assert_msg(rc == -EINVAL, "accepted (rc %d): %s", rc, src);
	/* The message starts with file:line. */
	ck_assert_msg(!strncmp(e.msg, where, strlen(where)), "expected \"%s\" at the start of \"%s\"",
		      where, e.msg);
	if (what)
		ck_assert_str_contains(e.msg, what);
	/* Nothing is left allocated in a refused config. */
	ck_assert_ptr_null(cfg.kernel);
	ck_assert_ptr_null(cfg.devices);
	ck_assert_ptr_null(cfg.script);
}

/* ---- good scripts ------------------------------------------------------ */

static const char good[] =
	"-- a test machine\n"
	"local mem = \"1G\"\n"
	"machine {\n"
	"  name = \"test\",\n"
	"  cpus = 4,\n"
	"  memory = mem,\n"
	"  kernel = \"images/vmlinux\",\n"
	"  initrd = \"/abs/initrd.img\",\n"
	"  cmdline = \"console=ttyS0 \" .. \"quiet\",\n"
	"  devices = {\n"
	"    { type = \"uart\", port = 0x2f8, irq = 3, enabled = true },\n"
	"    { type = \"uart\" },\n"
	"    { type = \"virtio-blk\", file = \"disk.img\", ro = false, ratio = 1.5 },\n"
	"  },\n"
	"}\n";

START_TEST(test_good)
{
	const struct dev_config *d;

	load_ok(good);
	ck_assert_str_eq(cfg.script, SCRIPT);
	ck_assert_str_eq(cfg.name, "test");
	ck_assert_uint_eq(cfg.cpus, 4);
	ck_assert_uint_eq(cfg.memory, 1ull << 30);
	/* Relative paths are relative to the script, absolute ones stay. */
	ck_assert_str_eq(cfg.kernel, "/srv/vms/test/images/vmlinux");
	ck_assert_str_eq(cfg.initrd, "/abs/initrd.img");
	ck_assert_str_eq(cfg.cmdline, "console=ttyS0 quiet");
	ck_assert_uint_eq(cfg.ndevices, 3);

	d = &cfg.devices[0];
	ck_assert_str_eq(d->type, "uart");
	ck_assert_str_eq(d->name, "uart0");
	ck_assert_uint_eq(d->n, 3);
	ck_assert_str_eq(dev_config_get(d, "port"), "760");
	ck_assert_str_eq(dev_config_get(d, "irq"), "3");
	ck_assert_str_eq(dev_config_get(d, "enabled"), "true");
	ck_assert_ptr_null(dev_config_get(d, "type"));

	d = &cfg.devices[1];
	ck_assert_str_eq(d->type, "uart");
	ck_assert_str_eq(d->name, "uart1");
	ck_assert_uint_eq(d->n, 0);

	d = &cfg.devices[2];
	ck_assert_str_eq(d->type, "virtio-blk");
	ck_assert_str_eq(d->name, "virtio-blk0");
	ck_assert_str_eq(dev_config_get(d, "file"), "disk.img"); /* options stay text */
	ck_assert_str_eq(dev_config_get(d, "ro"), "false");
	ck_assert_str_eq(dev_config_get(d, "ratio"), "1.5");
}
END_TEST

START_TEST(test_defaults)
{
	load_ok("machine { kernel = \"vmlinux\" }");
	ck_assert_uint_eq(cfg.cpus, MACHINE_DEFAULT_CPUS);
	ck_assert_uint_eq(cfg.memory, MACHINE_DEFAULT_MEMORY);
	ck_assert_str_eq(cfg.kernel, "/srv/vms/test/vmlinux");
	ck_assert_ptr_null(cfg.name);
	ck_assert_ptr_null(cfg.initrd);
	ck_assert_ptr_null(cfg.cmdline);
	ck_assert_uint_eq(cfg.ndevices, 0);
}
END_TEST

static const struct {
	const char *value;
	unsigned long long bytes;
} sizes[] = {
	{ "\"256M\"", 256ull << 20 }, { "\"1G\"", 1ull << 30 }, { "\"3G\"", 3ull << 30 },
	{ "512", 512ull << 20 },      { "16", 16ull << 20 },    { "\"65536K\"", 64ull << 20 },
	{ "128.0", 128ull << 20 },
};

START_TEST(test_list_options)
{
	const struct dev_config *d;

	load_ok("machine { kernel = 'k', devices = {\n"
		"  { type = 'net', forward = { 'tcp:8080', 22, true }, mac = '52:54:00:12:34:56' },\n"
		"} }");
	ck_assert_uint_eq(cfg.ndevices, 1);
	d = &cfg.devices[0];
	ck_assert_uint_eq(d->n, 4);
	ck_assert_str_eq(dev_config_get(d, "forward[1]"), "tcp:8080");
	ck_assert_str_eq(dev_config_get(d, "forward[2]"), "22");
	ck_assert_str_eq(dev_config_get(d, "forward[3]"), "true");
	ck_assert_ptr_null(dev_config_get(d, "forward[4]"));
	ck_assert_ptr_null(dev_config_get(d, "forward"));
	ck_assert_str_eq(dev_config_get(d, "mac"), "52:54:00:12:34:56");
}
END_TEST

START_TEST(test_reboot)
{
	load_ok("machine { kernel = 'k', reboot = 'restart' }");
	ck_assert_int_eq(cfg.reboot_restart, 1);
	machine_config_free(&cfg);
	load_ok("machine { kernel = 'k', reboot = 'exit' }");
	ck_assert_int_eq(cfg.reboot_restart, 0);
	machine_config_free(&cfg);
	load_fails("machine {\n kernel = 'k',\n reboot = 'sometimes' }",
		   SCRIPT ":3: machine.reboot: ", "expected \"exit\" or \"restart\"");
	load_fails("machine { kernel = 'k', reboot = true }", SCRIPT ":1: machine.reboot: ",
		   "got true");
}
END_TEST

START_TEST(test_memory_sizes)
{
	char src[128];

	snprintf(src, sizeof(src), "machine { kernel = \"k\", memory = %s }", sizes[_i].value);
	load_ok(src);
	ck_assert_uint_eq(cfg.memory, sizes[_i].bytes);
}
END_TEST

START_TEST(test_cpus_range)
{
	load_ok("machine { kernel = \"k\", cpus = 64 }");
	ck_assert_uint_eq(cfg.cpus, 64);
	machine_config_free(&cfg);
	load_ok("machine { kernel = \"k\", cpus = 1 }");
	ck_assert_uint_eq(cfg.cpus, 1);
}
END_TEST

START_TEST(test_relative_script_name)
{
	int rc = script_load_machine_buffer("machine.lua", "machine { kernel = 'vmlinux' }", 30,
					    &cfg, &e);

	ck_assert_msg(rc == 0, "%s", e.msg);
	ck_assert_str_eq(cfg.kernel, "./vmlinux");
}
END_TEST

START_TEST(test_from_file)
{
	char *dir = unit_tmpdir();
	char *path = unit_write_file(dir, "m.lua", good, strlen(good));
	char *want;
	int rc = script_load_machine(path, &cfg, &e);

	ck_assert_msg(rc == 0, "%s", e.msg);
	ck_assert(asprintf(&want, "%s/images/vmlinux", dir) > 0);
	ck_assert_str_eq(cfg.kernel, want);
	ck_assert_str_eq(cfg.script, path);
	free(want);
	free(path);
	machine_config_free(&cfg);
	ck_assert_int_lt(script_load_machine("/nonexistent/m.lua", &cfg, &e), 0);
	ck_assert_str_contains(e.msg, "/nonexistent/m.lua");
	unit_rmdir(dir);
}
END_TEST

/* ---- validation errors ------------------------------------------------- */

START_TEST(test_bad_memory)
{
	load_fails("-- line 1\n"
		   "machine {\n"
		   "  kernel = \"vmlinux\",\n"
		   "  memory = \"lots\",\n"
		   "}\n",
		   SCRIPT ":4: machine.memory: ", "\"256M\"");
}
END_TEST

static const struct {
	const char *value, *what;
} bad_sizes[] = {
	{ "\"lots\"", "expected a size" }, { "\"1T\"", "expected a size" },
	{ "\"-1\"", "expected a size" },   { "-1", "expected a size in MiB" },
	{ "0", "expected a size in MiB" }, { "1.5", "expected a size in MiB" },
	{ "\"8M\"", "outside 16 MiB..3072 MiB" }, { "\"4G\"", "outside" },
	{ "true", "expected a size" },     { "{}", "expected a size" },
	{ "\"1000001K\"", "not page-aligned" }, { "\"\"", "expected a size" },
};

START_TEST(test_bad_sizes)
{
	char src[128];

	snprintf(src, sizeof(src), "machine {\n kernel = \"k\",\n memory = %s }", bad_sizes[_i].value);
	load_fails(src, SCRIPT ":3: machine.memory: ", bad_sizes[_i].what);
}
END_TEST

/* BUG (seen under ASan): key_line() looks for "memory =" with strncmp()
 * at every offset of a buffer that need not be NUL-terminated, so a
 * script ending in a prefix of the key is read past its end. */
START_TEST(test_key_search_in_bounds)
{
	/* ["memory"] is not found as "memory =": the search runs to the end. */
	load_fails("machine {\n kernel = 'k',\n [\"memory\"] = 'lots' }\n-- mem",
		   SCRIPT ":1: machine.memory: ", "expected a size");
}
END_TEST

/* Lines for messages: whole names, `=` not `==`, the nth at or after a
 * line; each device remembers the line of its `type =`. */
START_TEST(test_key_lines)
{
	static const char src[] = "machine {\n"      /* 1 */
				  "  kernel = 'k',\n" /* 2 */
				  "  devices = {\n"  /* 3 */
				  "    { type = 'uart', port = 0x3f8 },\n" /* 4 */
				  "    { type = 'tally',\n"               /* 5 */
				  "      xport = 1, note = 'port == 2',\n" /* 6 */
				  "      port = 0x700 },\n"               /* 7 */
				  "  },\n"
				  "}\n";
	size_t n = strlen(src);

	ck_assert_int_eq(src_key_line(src, n, "type", 1, 1), 4);
	ck_assert_int_eq(src_key_line(src, n, "type", 1, 2), 5);
	ck_assert_int_eq(src_key_line(src, n, "type", 1, 3), 0);
	ck_assert_int_eq(src_key_line(src, n, "port", 5, 1), 7);
	ck_assert_int_eq(src_key_line(src, n, "port", 1, 1), 4);
	ck_assert_int_eq(src_key_line(src, n, "por", 1, 1), 0);
	ck_assert_int_eq(src_key_line(src, n, "", 1, 1), 0);
	ck_assert_int_eq(src_key_line(NULL, 0, "port", 1, 1), 0);
	/* a buffer ending in the key (no NUL after it) */
	ck_assert_int_eq(src_key_line("a = 1\nport", 10, "port", 1, 1), 0);
	ck_assert_int_eq(src_key_line("a = 1\nport=", 11, "port", 1, 1), 2);

	load_ok(src);
	ck_assert_uint_eq(cfg.ndevices, 2);
	ck_assert_int_eq(cfg.devices[0].line, 4);
	ck_assert_int_eq(cfg.devices[1].line, 5);
}
END_TEST

START_TEST(test_unknown_key)
{
	load_fails("machine {\n"
		   "  kernel = \"vmlinux\",\n"
		   "\n"
		   "  colour = \"red\",\n"
		   "}\n",
		   SCRIPT ":4: machine.colour: ", "unknown key");
}
END_TEST

START_TEST(test_non_string_key)
{
	load_fails("machine { kernel = \"k\", [1] = true }", SCRIPT ":1: machine.?: ",
		   "unknown key");
}
END_TEST

/* Without `kernel` the session boots the default guest. */
START_TEST(test_no_kernel)
{
	load_ok("local x = 1\n\nmachine { cpus = 2 }\n");
	ck_assert_ptr_null(cfg.kernel);
	ck_assert_uint_eq(cfg.cpus, 2);
}
END_TEST

/* ---- root filesystems, start, ready (docs/rootfs.md) ------------------- */

START_TEST(test_rootfs_debian)
{
	load_ok("machine {\n"
		"  rootfs = { debian = \"bookworm\", packages = { \"python3\", \"curl\" },\n"
		"    mirror = \"http://m/debian\", size = \"2G\",\n"
		"    copy = { [\"b.sql\"] = \"/z\", [\"/abs/a\"] = \"/a/\" },\n"
		"    run = { \"one\", \"two\" } },\n"
		"  start = \"svc start\",\n"
		"  ready = { exec = \"pg_isready\", timeout = 90 },\n"
		"  devices = { { type = \"uart\" }, { type = \"virtio-blk\", path = \"d\" } },\n"
		"}\n");
	ck_assert_ptr_nonnull(cfg.rootfs);
	ck_assert_int_eq(cfg.rootfs->kind, ROOTFS_DEBIAN);
	ck_assert_str_eq(cfg.rootfs->source, "bookworm");
	ck_assert_uint_eq(cfg.rootfs->npackages, 2);
	ck_assert_str_eq(cfg.rootfs->packages[1], "curl");
	ck_assert_str_eq(cfg.rootfs->mirror, "http://m/debian");
	ck_assert_uint_eq(cfg.rootfs->size, 2ull << 30);
	/* sorted by destination; relative sources from the script's folder */
	ck_assert_uint_eq(cfg.rootfs->ncopy, 2);
	ck_assert_str_eq(cfg.rootfs->copy[0].to, "/a/");
	ck_assert_str_eq(cfg.rootfs->copy[0].from, "/abs/a");
	ck_assert_str_eq(cfg.rootfs->copy[1].from, "/srv/vms/test/b.sql");
	ck_assert_uint_eq(cfg.rootfs->nrun, 2);
	ck_assert_str_eq(cfg.rootfs->run[1], "two");
	ck_assert_uint_eq(cfg.nstart, 1);
	ck_assert_str_eq(cfg.start[0], "svc start");
	ck_assert_str_eq(cfg.ready_when.exec, "pg_isready");
	ck_assert_uint_eq(cfg.ready_when.timeout_s, 90);
	/* the root filesystem's disk comes first: the guest's /dev/vda */
	ck_assert_uint_eq(cfg.ndevices, 3);
	ck_assert_str_eq(cfg.devices[0].type, "virtio-blk");
	ck_assert_str_eq(cfg.devices[0].name, "virtio-blk0");
	ck_assert_str_eq(dev_config_get(&cfg.devices[0], "serial"), "rootfs");
	ck_assert_str_eq(cfg.devices[1].name, "uart0");
	ck_assert_str_eq(cfg.devices[2].name, "virtio-blk1");
}
END_TEST

START_TEST(test_rootfs_sources)
{
	static const struct {
		const char *lua;
		enum rootfs_kind kind;
		const char *source;
	} cases[] = {
		{ "oci = \"img:3.12\"", ROOTFS_OCI, "/srv/vms/test/img:3.12" },
		{ "docker_archive = \"/x/app.tar\"", ROOTFS_DOCKER_ARCHIVE, "/x/app.tar" },
		{ "dir = \"tree\"", ROOTFS_DIR, "/srv/vms/test/tree" },
		{ "tar = \"r.tar.gz\"", ROOTFS_TAR, "/srv/vms/test/r.tar.gz" },
		{ "image = \"r.ext4\"", ROOTFS_IMAGE, "/srv/vms/test/r.ext4" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char src[256];
		snprintf(src, sizeof(src), "machine { rootfs = { %s } }", cases[i].lua);
		load_ok(src);
		ck_assert_int_eq(cfg.rootfs->kind, cases[i].kind);
		ck_assert_str_eq(cfg.rootfs->source, cases[i].source);
		machine_config_free(&cfg);
	}
}
END_TEST

START_TEST(test_ready_forms)
{
	load_ok("machine { ready = \"# \" }");
	ck_assert_str_eq(cfg.ready, "# ");
	machine_config_free(&cfg);
	load_ok("machine { ready = { text = \"up\", timeout = 5 } }");
	ck_assert_str_eq(cfg.ready, "up");
	ck_assert_uint_eq(cfg.ready_when.timeout_s, 5);
	machine_config_free(&cfg);
	load_ok("machine { ready = { port = 5432 }, start = { \"a\", \"b\" } }");
	ck_assert_uint_eq(cfg.ready_when.port, 5432);
	ck_assert_uint_eq(cfg.nstart, 2);
}
END_TEST

START_TEST(test_rootfs_errors)
{
	load_fails("machine {\n rootfs = { }\n}", SCRIPT ":2: machine.rootfs: ",
		   "exactly one source");
	load_fails("machine {\n rootfs = { dir = \"a\", tar = \"b\" }\n}", SCRIPT ":2: machine.rootfs: ",
		   "(got 2)");
	load_fails("machine {\n rootfs = { debian = \"x\", pakages = {} }\n}",
		   SCRIPT ":2: rootfs.pakages: ", "unknown key");
	load_fails("machine { rootfs = { dir = \"a\", packages = { \"p\" } } }", SCRIPT ":1: ",
		   "go with debian");
	load_fails("machine { rootfs = { image = \"a\", run = \"x\" } }", SCRIPT ":1: ",
		   "used as it is");
	load_fails("machine { rootfs = { dir = \"a\", copy = { [\"x\"] = \"relative\" } } }",
		   SCRIPT ":1: rootfs.copy[\"x\"]: ", "absolute");
	load_fails("machine { rootfs = { dir = \"a\", size = \"1M\" } }", SCRIPT ":1: rootfs.size: ",
		   "at least 16M");
	load_fails("machine { rootfs = { dir = \"a\", run = { \"a\", {} } } }", SCRIPT ":1: rootfs.run[2]: ",
		   "expected a string");
	load_fails("machine { rootfs = \"bookworm\" }", SCRIPT ":1: machine.rootfs: ", "expected a table");
	load_fails("machine { start = 3 }", SCRIPT ":1: machine.start: ", "list of strings");
	load_fails("machine { ready = { port = 70000 } }", SCRIPT ":1: machine.ready.port: ", "65535");
	load_fails("machine { ready = { exec = \"a\", port = 1 } }", SCRIPT ":1: machine.ready: ",
		   "exactly one");
	load_fails("machine { ready = { timeout = 5 } }", SCRIPT ":1: machine.ready: ", "exactly one");
	load_fails("machine { ready = { exce = \"a\" } }", SCRIPT ":1: machine.ready.exce: ",
		   "unknown key");
	load_fails("machine { ready = true }", SCRIPT ":1: machine.ready: ", "console text");
}
END_TEST

START_TEST(test_device_without_type)
{
	load_fails("machine {\n"
		   "  kernel = \"vmlinux\",\n"
		   "  devices = {\n"
		   "    { type = \"uart\" },\n"
		   "    { port = 0x2f8 },\n"
		   "  },\n"
		   "}\n",
		   SCRIPT ":3: devices[2]: ", "missing \"type\"");
}
END_TEST

START_TEST(test_device_errors)
{
	load_fails("machine { kernel = 'k', devices = { 'uart' } }", SCRIPT ":1: devices[1]: ",
		   "expected a table");
	load_fails("machine { kernel = 'k', devices = 'uart' }", SCRIPT ":1: machine.devices: ",
		   "expected a list");
	load_fails("machine { kernel = 'k', devices = { { type = 'uart', irq = print } } }",
		   SCRIPT ":1: devices[1].irq: ", "expected a string, number or boolean, got function");
	load_fails("machine { kernel = 'k', devices = { { type = 'net', forward = { 'a', {} } } } }",
		   SCRIPT ":1: devices[1].forward[2]: ", "expected a string, number or boolean");
	load_fails("machine { kernel = 'k', devices = { { type = {} } } }",
		   SCRIPT ":1: devices[1].type: ", "expected a string");
	load_fails("machine { kernel = 'k', devices = { { type = 'uart', [2] = 1 } } }",
		   SCRIPT ":1: devices[1]: ", "keys must be names");
}
END_TEST

START_TEST(test_too_many_devices)
{
	load_fails("local d = {} for i = 1, 65 do d[i] = { type = 'uart' } end\n"
		   "machine { kernel = 'k', devices = d }",
		   SCRIPT ":2: machine.devices: ", "limit is 64");
}
END_TEST

static const char *const bad_cpus[] = { "0", "65", "-1", "2.5", "'many'", "true", "{}" };

START_TEST(test_bad_cpus)
{
	char src[128];

	snprintf(src, sizeof(src), "machine {\n kernel = 'k',\n\n cpus = %s,\n}", bad_cpus[_i]);
	load_fails(src, SCRIPT ":4: machine.cpus: ", "expected a whole number from 1 to 64");
}
END_TEST

START_TEST(test_wrong_types)
{
	load_fails("machine { kernel = 42 }", SCRIPT ":1: machine.kernel: ",
		   "expected a string, got number");
	load_fails("machine { kernel = 'k', name = {} }", SCRIPT ":1: machine.name: ",
		   "expected a string, got table");
	load_fails("machine { kernel = 'k', cmdline = false }", SCRIPT ":1: machine.cmdline: ",
		   "expected a string");
}
END_TEST

START_TEST(test_syntax_error)
{
	load_fails("machine {\n  kernel = 'k',\n  cpus = = 2,\n}\n", SCRIPT ":3: ", NULL);
}
END_TEST

START_TEST(test_runtime_error)
{
	load_fails("\n\nlocal x = nil\nx.y = 1\n", SCRIPT ":4: ", "attempt to index");
}
END_TEST

START_TEST(test_never_calls_machine)
{
	load_fails("local m = { kernel = 'k' }\n", SCRIPT ": ", "never calls machine");
}
END_TEST

START_TEST(test_calls_machine_twice)
{
	load_fails("machine { kernel = 'a' }\n\nmachine { kernel = 'b' }\n", SCRIPT ":3: ",
		   "only once");
}
END_TEST

START_TEST(test_machine_not_a_table)
{
	load_fails("\nmachine 'vmlinux'\n", SCRIPT ":2: ", "table expected");
}
END_TEST

/* ---- sandbox ------------------------------------------------------------ */

static const char *const banned[] = {
	"io", "os", "package", "debug", "require", "dofile", "loadfile",
	"string.dump", "collectgarbage", "(\"\").dump", "getmetatable('').__index.dump",
	"_G.io", "_ENV.os", "loadstring", "module", "setfenv",
};

START_TEST(test_banned_globals)
{
	char src[256];

	snprintf(src, sizeof(src), "machine { kernel = 'k', cmdline = type(%s) }", banned[_i]);
	load_ok(src);
	ck_assert_msg(!strcmp(cfg.cmdline, "nil"), "%s is a %s in the sandbox", banned[_i],
		      cfg.cmdline);
}
END_TEST

START_TEST(test_allowed_libraries)
{
	load_ok("machine { kernel = 'k', cmdline = string.format('%d %s %s %d %s', "
		"math.max(1, 7), table.concat({'a', 'b'}, ','), string.rep('x', 3), "
		"utf8.len('h\\u{e9}'), type(load)) }");
	ck_assert_str_eq(cfg.cmdline, "7 a,b xxx 2 function");
}
END_TEST

START_TEST(test_load_text)
{
	/* load() works for text, and the chunk sees the same sandbox. */
	load_ok("local f = assert(load('return 6 * 7, type(io)'))\n"
		"local a, b = f()\n"
		"machine { kernel = 'k', cmdline = a .. ' ' .. b }");
	ck_assert_str_eq(cfg.cmdline, "42 nil");
}
END_TEST

/* Real bytecode from the host's Lua, embedded as a string literal. */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	char **out = ud;
	size_t len = strlen(*out);

	(void)L;
	*out = realloc(*out, len + sz * 4 + 1);
	for (size_t i = 0; i < sz; i++)
		sprintf(*out + len + i * 4, "\\%03u", ((const unsigned char *)p)[i]);
	return 0;
}

START_TEST(test_load_bytecode)
{
	lua_State *L = luaL_newstate();
	char *lit = calloc(1, 1), *src;

	ck_assert_int_eq(luaL_loadstring(L, "return 'from bytecode'"), LUA_OK);
	ck_assert_int_eq(lua_dump(L, dump_writer, &lit, 0), 0);
	lua_close(L);
	ck_assert(asprintf(&src,
			   "local f, err = load(\"%s\")\n"
			   "machine { kernel = 'k', cmdline = tostring(f) .. '|' .. tostring(err) }",
			   lit) > 0);
	free(lit);
	load_ok(src);
	free(src);
	ck_assert_msg(!strncmp(cfg.cmdline, "nil|", 4), "bytecode loaded: %s", cfg.cmdline);
	ck_assert_str_contains(cfg.cmdline, "binary chunk");
}
END_TEST

struct raw {
	unsigned char *p;
	size_t n;
};

static int raw_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	struct raw *r = ud;

	(void)L;
	r->p = realloc(r->p, r->n + sz);
	memcpy(r->p + r->n, p, sz);
	r->n += sz;
	return 0;
}

START_TEST(test_bytecode_script)
{
	/* The script itself may not be bytecode either. */
	lua_State *L = luaL_newstate();
	struct raw raw = { NULL, 0 };
	int rc;

	ck_assert_int_eq(luaL_loadstring(L, "machine { kernel = 'k' }"), LUA_OK);
	ck_assert_int_eq(lua_dump(L, raw_writer, &raw, 0), 0);
	lua_close(L);
	rc = script_load_machine_buffer(SCRIPT, (const char *)raw.p, raw.n, &cfg, &e);
	free(raw.p);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "binary chunk");
}
END_TEST

START_TEST(test_endless_loop)
{
	int rc = load("machine { kernel = 'k' }\nwhile true do end\n");

	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "instruction budget of 50000000 exhausted");
	ck_assert_str_contains(e.msg, SCRIPT ":2:"); /* in the traceback at least */
	ck_assert_ptr_null(cfg.kernel);
}
END_TEST

START_TEST(test_endless_recursion)
{
	int rc = load("local function f(n) return f(n + 1) + 1 end\nf(1)\nmachine { kernel = 'k' }");
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "stack overflow");
}
END_TEST

START_TEST(test_memory_bomb_string)
{
	int rc = load("local s = 'x'\nwhile true do s = s .. s end\nmachine { kernel = 'k' }");
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "not enough memory");
}
END_TEST

START_TEST(test_memory_bomb_rep)
{
	int rc = load("local s = string.rep('x', 1 << 30)\nmachine { kernel = 'k' }");
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "not enough memory");
}
END_TEST

START_TEST(test_memory_bomb_table)
{
	int rc = load("local t, i = {}, 0\n"
		      "while true do i = i + 1; t[i] = { i, i, i, i } end\n"
		      "machine { kernel = 'k' }");
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_contains(e.msg, "not enough memory");
}
END_TEST

/* The limit is SCRIPT_MAX_MEMORY: a quarter of it is fine, more is not. */
START_TEST(test_memory_limit)
{
	char src[256];

	snprintf(src, sizeof(src),
		 "local s = string.rep('x', %u)\nmachine { kernel = 'k', cmdline = tostring(#s) }",
		 SCRIPT_MAX_MEMORY / 4);
	load_ok(src);
	ck_assert_uint_eq(strtoul(cfg.cmdline, NULL, 10), SCRIPT_MAX_MEMORY / 4);
	machine_config_free(&cfg);
	snprintf(src, sizeof(src),
		 "local s = string.rep('x', %u)\nmachine { kernel = 'k' }",
		 SCRIPT_MAX_MEMORY + (1u << 20));
	ck_assert_int_eq(load(src), -EINVAL);
	ck_assert_str_contains(e.msg, "not enough memory");
}
END_TEST

/* After a memory error the state still works: the limit is per script. */
START_TEST(test_memory_error_caught)
{
	load_ok("local ok = pcall(string.rep, 'x', 1 << 30)\n"
		"machine { kernel = 'k', cmdline = tostring(ok) }");
	ck_assert_str_eq(cfg.cmdline, "false");
}
END_TEST

/* ---- hooks: the state stays open; each call has its own budget ---------- */

static struct script *open_hooks(const char *src)
{
	struct script *s = NULL;
	ck_assert_msg(script_open(SCRIPT, src, strlen(src), &cfg, &s, &e) == 0, "%s", e.msg);
	return s;
}

START_TEST(test_hooks_called_with_args)
{
	struct script *s = open_hooks("machine { kernel = 'k' }\n"
				      "calls = 0\n"
				      "function on_console(vm, line) calls = calls + #line end\n");
	lua_State *L = script_lua(s);

	ck_assert(script_has_hooks(s));
	ck_assert(script_has_hook(s, "on_console"));
	ck_assert(!script_has_hook(s, "on_boot"));
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(script_call_hook(s, "on_console", "abcd", &e), 0);
	}
	lua_getglobal(L, "calls");
	ck_assert_int_eq(lua_tointeger(L, -1), 12);
	lua_pop(L, 1);
	script_close(s);
}
END_TEST

START_TEST(test_hook_budget_is_per_call)
{
	/* Each call spends ~3/5 of the budget: only a per-call budget lets
	 * the second one finish. */
	struct script *s = open_hooks("machine { kernel = 'k' }\n"
				      "function on_boot(vm) local n = 0\n"
				      "  for i = 1, 10000000 do n = n + i end end\n"
				      "function on_exit(vm) while true do end end\n");

	ck_assert_int_eq(script_call_hook(s, "on_boot", NULL, &e), 0);
	ck_assert_int_eq(script_call_hook(s, "on_boot", NULL, &e), 0);
	ck_assert_int_eq(script_call_hook(s, "on_exit", NULL, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "hook on_exit (" SCRIPT ":4): " SCRIPT ":4: instruction budget"),
		      "%s", e.msg);
	/* and the state is usable after that */
	ck_assert_int_eq(script_call_hook(s, "on_boot", NULL, &e), 0);
	script_close(s);
}
END_TEST

START_TEST(test_hook_typos_refused)
{
	struct script *s = NULL;
	const char *src = "machine { kernel = 'k' }\nfunction on_bot(vm) end\n";

	ck_assert_int_eq(script_open(SCRIPT, src, strlen(src), &cfg, &s, &e), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(e.msg, "on_bot looks like a hook"), "%s", e.msg);
	src = "machine { kernel = 'k' }\non_exit = 3\n";
	ck_assert_int_eq(script_open(SCRIPT, src, strlen(src), &cfg, &s, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "on_exit must be a function"), "%s", e.msg);
	/* names that merely start alike are fine when they are not functions */
	ck_assert_int_eq(load("machine { kernel = 'k' }\non_count = 3\n"), 0);
}
END_TEST

START_TEST(test_hooks_file_overrides)
{
	struct script *s = open_hooks("machine { kernel = 'k' }\n"
				      "function after_restore(vm) who = 'bundle' end\n");
	char path[] = "/tmp/smolvm-hooks-XXXXXX";
	int fd = mkstemp(path);
	const char *mine = "function after_restore(vm) who = 'user' end\n";

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, mine, strlen(mine)), (ssize_t)strlen(mine));
	close(fd);
	ck_assert_int_eq(script_load_hooks(s, path, &e), 0);
	ck_assert_int_eq(script_call_hook(s, "after_restore", NULL, &e), 0);
	lua_getglobal(script_lua(s), "who");
	ck_assert_str_eq(lua_tostring(script_lua(s), -1), "user");
	lua_pop(script_lua(s), 1);
	/* a hooks file may not declare a machine */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, "machine { kernel = 'x' }\n", 25), 25);
	close(fd);
	ck_assert_int_eq(script_load_hooks(s, path, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "machine() belongs in the machine script"), "%s", e.msg);
	unlink(path);
	script_close(s);
}
END_TEST

/* ---- sandbox escapes that hang or crash: run in a child ---------------- */

static int child_load(void *arg)
{
	struct machine_config c;
	struct err ce;
	const char *src = arg;
	int rc = script_load_machine_buffer(SCRIPT, src, strlen(src), &c, &ce);

	if (rc == 0) {
		machine_config_free(&c);
		return 10; /* accepted */
	}
	if (rc == -EINVAL && strstr(ce.msg, "instruction budget"))
		return 20;
	if (rc == -EINVAL)
		return 30;
	return 40;
}

static void expect_refused_in_child(const char *src, int want, const char *what)
{
	char why[128];
	int rc = unit_run_isolated(child_load, (void *)src, 8, why, sizeof(why));

	ck_assert_msg(rc == want, "%s: child %s (want exit %d)\n  script: %s", what, why, want,
		      src);
}

/* BUG: the budget error is an ordinary Lua error, so pcall() catches it;
 * a loop around pcall runs forever (the count hook keeps firing inside
 * the protected call). */
START_TEST(test_budget_survives_pcall)
{
	expect_refused_in_child(
		"while true do pcall(function() while true do end end) end\n"
		"machine { kernel = 'k' }",
		20, "pcall around an endless loop");
}
END_TEST

START_TEST(test_budget_in_coroutine)
{
	expect_refused_in_child(
		"while true do\n"
		"  coroutine.resume(coroutine.create(function() while true do end end))\n"
		"end\n"
		"machine { kernel = 'k' }",
		20, "endless loops in coroutines");
}
END_TEST

/* BUG: validate() runs outside any protected call, and luaL_tolstring()
 * (used to quote a bad value) calls the value's __tostring metamethod.
 * An error there is unprotected: Lua aborts the whole process. */
START_TEST(test_tostring_error_in_validation)
{
	expect_refused_in_child(
		"machine { kernel = 'k',\n"
		"  cpus = setmetatable({}, { __tostring = function() error('boom') end }) }",
		30, "__tostring raising an error while cpus is reported");
}
END_TEST

START_TEST(test_tostring_loop_in_validation)
{
	expect_refused_in_child(
		"machine { kernel = 'k',\n"
		"  memory = setmetatable({}, { __tostring = function() while true do end end }) }",
		20, "__tostring looping while memory is reported");
}
END_TEST

START_TEST(test_tostring_non_string)
{
	expect_refused_in_child(
		"machine { kernel = 'k',\n"
		"  cpus = setmetatable({}, { __tostring = function() return {} end }) }",
		30, "__tostring returning a table");
}
END_TEST

/* A finalizer runs with Lua's debug hooks off: no budget could stop one at
 * lua_close. None can be made: __gc in a metatable as it is set is refused,
 * and one added later does not mark the object. */
START_TEST(test_no_finalizers)
{
	struct script *s = NULL;
	const char *gc = "machine { kernel = 'k' }\n"
			 "setmetatable({}, { __gc = function() while true do end end })\n";
	const char *late = "machine { kernel = 'k' }\n"
			   "local mt = {}\n"
			   "keep = setmetatable({}, mt)\n"
			   "mt.__gc = function() while true do end end\n"
			   "local p = setmetatable({}, { __metatable = 'mine' })\n"
			   "assert(not pcall(setmetatable, p, {}))\n";

	ck_assert_int_eq(script_open(SCRIPT, gc, strlen(gc), &cfg, &s, &e), -EINVAL);
	ck_assert_str_contains(e.msg, "__gc finalizers are not allowed");
	machine_config_free(&cfg);
	ck_assert_msg(script_open(SCRIPT, late, strlen(late), &cfg, &s, &e) == 0, "%s", e.msg);
	script_close(s); /* returns: nothing to finalize */
}
END_TEST

Suite *script_suite(void)
{
	Suite *s = suite_create("script");
	TCase *tc;

	tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_good);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_list_options);
	tcase_add_test(tc, test_reboot);
	tcase_add_loop_test(tc, test_memory_sizes, 0, (int)(sizeof(sizes) / sizeof(sizes[0])));
	tcase_add_test(tc, test_cpus_range);
	tcase_add_test(tc, test_relative_script_name);
	tcase_add_test(tc, test_from_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bad_memory);
	tcase_add_loop_test(tc, test_bad_sizes, 0, (int)(sizeof(bad_sizes) / sizeof(bad_sizes[0])));
	tcase_add_test(tc, test_key_search_in_bounds);
	tcase_add_test(tc, test_key_lines);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_non_string_key);
	tcase_add_test(tc, test_no_kernel);
	tcase_add_test(tc, test_rootfs_debian);
	tcase_add_test(tc, test_rootfs_sources);
	tcase_add_test(tc, test_ready_forms);
	tcase_add_test(tc, test_rootfs_errors);
	tcase_add_test(tc, test_device_without_type);
	tcase_add_test(tc, test_device_errors);
	tcase_add_test(tc, test_too_many_devices);
	tcase_add_loop_test(tc, test_bad_cpus, 0, (int)(sizeof(bad_cpus) / sizeof(bad_cpus[0])));
	tcase_add_test(tc, test_wrong_types);
	tcase_add_test(tc, test_syntax_error);
	tcase_add_test(tc, test_runtime_error);
	tcase_add_test(tc, test_never_calls_machine);
	tcase_add_test(tc, test_calls_machine_twice);
	tcase_add_test(tc, test_machine_not_a_table);
	suite_add_tcase(s, tc);

	tc = tcase_create("sandbox");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_banned_globals, 0, (int)(sizeof(banned) / sizeof(banned[0])));
	tcase_add_test(tc, test_allowed_libraries);
	tcase_add_test(tc, test_load_text);
	tcase_add_test(tc, test_load_bytecode);
	tcase_add_test(tc, test_bytecode_script);
	tcase_add_test(tc, test_endless_loop);
	tcase_add_test(tc, test_endless_recursion);
	tcase_add_test(tc, test_memory_bomb_string);
	tcase_add_test(tc, test_memory_bomb_rep);
	tcase_add_test(tc, test_memory_bomb_table);
	tcase_add_test(tc, test_memory_limit);
	tcase_add_test(tc, test_memory_error_caught);
	suite_add_tcase(s, tc);

	tc = tcase_create("hooks");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hooks_called_with_args);
	tcase_add_test(tc, test_hook_budget_is_per_call);
	tcase_add_test(tc, test_hook_typos_refused);
	tcase_add_test(tc, test_hooks_file_overrides);
	suite_add_tcase(s, tc);

	tc = tcase_create("sandbox-escapes");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_budget_survives_pcall);
	tcase_add_test(tc, test_budget_in_coroutine);
	tcase_add_test(tc, test_tostring_error_in_validation);
	tcase_add_test(tc, test_tostring_loop_in_validation);
	tcase_add_test(tc, test_tostring_non_string);
	tcase_add_test(tc, test_no_finalizers);
	suite_add_tcase(s, tc);
	return s;
}
