/* plugins/virtio-9p: the 9P2000.L decoder (proto.c) and the file server
 * (server.c) driven directly, as a hostile guest would, against a share in
 * a temporary directory with a secret beside it. Both sources are compiled
 * into this file (the plugin's descriptor, p9.c, is not). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/virtio-9p/proto.c"
#include "../../plugins/virtio-9p/server.c"
#include "unit.h"

Suite *p9_suite(void);

/* ---- building requests ------------------------------------------------------- */

struct msg {
	uint8_t b[P9_MAX_MSIZE];
	size_t n;
};

static void m_le(struct msg *m, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		m->b[m->n++] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0; /* n > 8: zeros after v */
}

static void m_begin(struct msg *m, uint8_t type)
{
	m->n = 0;
	m_le(m, 0, 4);
	m_le(m, type, 1);
	m_le(m, 7, 2); /* tag */
}

static void m_str(struct msg *m, const char *s)
{
	m_le(m, strlen(s), 2);
	memcpy(m->b + m->n, s, strlen(s));
	m->n += strlen(s);
}

static void m_end(struct msg *m)
{
	for (unsigned i = 0; i < 4; i++)
		m->b[i] = (uint8_t)(m->n >> (8 * i));
}

/* ---- a share ---------------------------------------------------------------- */

static char *top;      /* the temporary directory */
static char share[512], outside[512];
static struct p9_server srv;
static uint8_t reply[P9_MAX_MSIZE];
static size_t rlen;

/* A shell command, with every %s the temporary directory. */
static void sh(const char *cmd)
{
	char full[2048];
	size_t o = 0;

	for (const char *p = cmd; *p && o < sizeof(full) - 600; p++) {
		if (p[0] == '%' && p[1] == 's') {
			o += (size_t)snprintf(full + o, sizeof(full) - o, "%s", top);
			p++;
		} else {
			full[o++] = *p;
		}
	}
	full[o] = 0;
	ck_assert_msg(system(full) == 0, "%s", full);
}

static void setup_share(int readonly)
{
	int root;

	top = unit_tmpdir();
	snprintf(share, sizeof(share), "%s/share", top);
	snprintf(outside, sizeof(outside), "%s/outside", top);
	sh("mkdir -p %s/share/dir %s/outside && echo secret > %s/outside/secret");
	sh("echo hello > %s/share/hello.txt && ln -s /etc %s/share/abs && "
	   "ln -s ../outside %s/share/rel");
	sh("mkfifo %s/share/fifo && ln -s hello.txt %s/share/inside");
	root = open(share, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
	ck_assert_int_eq(p9_server_init(&srv, root, readonly), 0);
}

static void setup_rw(void) { setup_share(0); }
static void setup_ro(void) { setup_share(1); }

static void teardown(void)
{
	char cmd[1024];

	p9_server_free(&srv);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w %s; rm -rf %s", top, top);
	ck_assert(system(cmd) == 0);
	free(top);
}

/* Sends m; returns the reply's type, or -ecode for an Rlerror. */
static int send_msg(struct msg *m)
{
	m_end(m);
	rlen = p9_server_handle(&srv, m->b, m->n, reply, sizeof(reply));
	ck_assert_uint_ge(rlen, P9_HDR);
	ck_assert_uint_eq(p9_get_le32(reply), rlen);
	ck_assert_uint_eq(reply[5] | reply[6] << 8, 7);
	if (reply[4] == P9_RLERROR)
		return -(int)p9_get_le32(reply + P9_HDR);
	return reply[4];
}

static void version_attach(void)
{
	struct msg m;

	m_begin(&m, P9_TVERSION);
	m_le(&m, 512 * 1024, 4);
	m_str(&m, "9P2000.L");
	ck_assert_int_eq(send_msg(&m), P9_RVERSION);
	ck_assert_uint_eq(p9_get_le32(reply + P9_HDR), P9_MAX_MSIZE); /* capped */
	m_begin(&m, P9_TATTACH);
	m_le(&m, 1, 4);
	m_le(&m, P9_NOFID, 4);
	m_str(&m, "root");
	m_str(&m, "");
	m_le(&m, 0, 4);
	ck_assert_int_eq(send_msg(&m), P9_RATTACH);
}

/* Walks fid 1 by the names (NULL-terminated) to newfid; the reply type. */
static int walk(uint32_t newfid, const char *const *names)
{
	struct msg m;
	unsigned n = 0;

	while (names[n])
		n++;
	m_begin(&m, P9_TWALK);
	m_le(&m, 1, 4);
	m_le(&m, newfid, 4);
	m_le(&m, n, 2);
	for (unsigned i = 0; i < n; i++)
		m_str(&m, names[i]);
	return send_msg(&m);
}

#define WALK(fid, ...) walk(fid, (const char *const[]){ __VA_ARGS__, NULL })

static int lopen(uint32_t fid, uint32_t flags)
{
	struct msg m;

	m_begin(&m, P9_TLOPEN);
	m_le(&m, fid, 4);
	m_le(&m, flags, 4);
	return send_msg(&m);
}

static int lcreate(uint32_t fid, const char *name, uint32_t flags)
{
	struct msg m;

	m_begin(&m, P9_TLCREATE);
	m_le(&m, fid, 4);
	m_str(&m, name);
	m_le(&m, flags, 4);
	m_le(&m, 0644, 4);
	m_le(&m, 0, 4);
	return send_msg(&m);
}

static int read_fid(uint32_t fid, uint64_t off, uint32_t count, char *out)
{
	struct msg m;
	int t;

	m_begin(&m, P9_TREAD);
	m_le(&m, fid, 4);
	m_le(&m, off, 8);
	m_le(&m, count, 4);
	t = send_msg(&m);
	if (t == P9_RREAD) {
		uint32_t n = p9_get_le32(reply + P9_HDR);
		memcpy(out, reply + P9_HDR + 4, n);
		out[n] = 0;
	}
	return t;
}

static int write_fid(uint32_t fid, const char *data)
{
	struct msg m;

	m_begin(&m, P9_TWRITE);
	m_le(&m, fid, 4);
	m_le(&m, 0, 8);
	m_le(&m, strlen(data), 4);
	memcpy(m.b + m.n, data, strlen(data));
	m.n += strlen(data);
	return send_msg(&m);
}

static int mkdir_in(uint32_t dfid, const char *name)
{
	struct msg m;

	m_begin(&m, P9_TMKDIR);
	m_le(&m, dfid, 4);
	m_str(&m, name);
	m_le(&m, 0755, 4);
	m_le(&m, 0, 4);
	return send_msg(&m);
}

static int unlink_in(uint32_t dfid, const char *name, uint32_t flags)
{
	struct msg m;

	m_begin(&m, P9_TUNLINKAT);
	m_le(&m, dfid, 4);
	m_str(&m, name);
	m_le(&m, flags, 4);
	return send_msg(&m);
}

static int exists(const char *dir, const char *name)
{
	char p[1024];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return lstat(p, &st) == 0;
}

/* ---- the decoder ---------------------------------------------------------------- */

START_TEST(decode_rejects_malformed)
{
	struct msg m;
	struct p9_req q;

	m_begin(&m, P9_TVERSION);
	m_le(&m, 8192, 4);
	m_str(&m, "9P2000.L");
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), 0);
	ck_assert_uint_eq(q.msize, 8192);
	ck_assert_int_eq(q.version.len, 8);
	/* a size field that is not the length */
	ck_assert_int_eq(p9_decode(m.b, m.n - 1, &q), -EBADMSG);
	ck_assert_uint_eq(q.tag, 7);
	/* a header cut short */
	ck_assert_int_eq(p9_decode(m.b, 5, &q), -EBADMSG);
	ck_assert_uint_eq(q.tag, 0xffff);
	/* a string longer than the message */
	m_begin(&m, P9_TVERSION);
	m_le(&m, 8192, 4);
	m_le(&m, 200, 2);
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), -EBADMSG);
	/* a NUL in a name */
	m_begin(&m, P9_TWALK);
	m_le(&m, 1, 4);
	m_le(&m, 2, 4);
	m_le(&m, 1, 2);
	m_le(&m, 3, 2);
	memcpy(m.b + m.n, "a\0b", 3);
	m.n += 3;
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), -EBADMSG);
	/* too many walk names */
	m_begin(&m, P9_TWALK);
	m_le(&m, 1, 4);
	m_le(&m, 2, 4);
	m_le(&m, P9_MAXWELEM + 1, 2);
	for (int i = 0; i <= P9_MAXWELEM; i++)
		m_str(&m, "x");
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), -EBADMSG);
	/* a write whose count runs past the end */
	m_begin(&m, P9_TWRITE);
	m_le(&m, 1, 4);
	m_le(&m, 0, 8);
	m_le(&m, 100, 4);
	m_str(&m, "short");
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), -EBADMSG);
	/* a type nobody knows */
	m_begin(&m, 250);
	m_end(&m);
	ck_assert_int_eq(p9_decode(m.b, m.n, &q), -EOPNOTSUPP);
	/* the server answers each with an Rlerror, never a crash */
	m_begin(&m, 250);
	ck_assert_int_eq(send_msg(&m), -EOPNOTSUPP);
}
END_TEST

START_TEST(encode_stops_when_full)
{
	uint8_t buf[16];
	struct p9_out o;

	p9_begin(&o, buf, sizeof(buf), P9_RREADLINK, 1);
	p9_put_str(&o, "0123456789", 10);
	ck_assert_uint_eq(p9_end(&o), 0);
	ck_assert_uint_eq(p9_error(buf, sizeof(buf), 3, ENOENT), 11);
	ck_assert_uint_eq(p9_get_le32(buf + 7), ENOENT);
}
END_TEST

START_TEST(path_check)
{
	ck_assert(p9_path_ok(""));
	ck_assert(p9_path_ok("a/b.c"));
	ck_assert(!p9_path_ok("/etc"));
	ck_assert(!p9_path_ok("a/../b"));
	ck_assert(!p9_path_ok(".."));
	ck_assert(!p9_path_ok("a//b"));
	ck_assert(!p9_path_ok("a/"));
	ck_assert(!p9_path_ok("./a"));
}
END_TEST

/* ---- the server ----------------------------------------------------------------- */

START_TEST(read_write_create)
{
	char buf[256];

	version_attach();
	ck_assert_int_eq(WALK(2, "hello.txt"), P9_RWALK);
	ck_assert_int_eq(lopen(2, O_RDONLY), P9_RLOPEN);
	ck_assert_int_eq(read_fid(2, 0, 100, buf), P9_RREAD);
	ck_assert_str_eq(buf, "hello\n");
	ck_assert_int_eq(write_fid(2, "x"), -EBADF); /* opened for reading */
	/* a new file, written, seen on the host */
	ck_assert_int_eq(WALK(3, "dir"), P9_RWALK);
	ck_assert_int_eq(lcreate(3, "new.txt", O_RDWR), P9_RLCREATE);
	ck_assert_int_eq(write_fid(3, "from the guest"), P9_RWRITE);
	ck_assert_uint_eq(p9_get_le32(reply + P9_HDR), 14);
	snprintf(buf, sizeof(buf), "%s/dir/new.txt", share);
	{
		size_t len;
		char *got = unit_read_file(buf, &len);
		ck_assert_str_eq(got, "from the guest");
		free(got);
	}
	/* mkdir, readdir lists it, unlink and rmdir */
	ck_assert_int_eq(WALK(4, "dir"), P9_RWALK);
	ck_assert_int_eq(mkdir_in(4, "sub"), P9_RMKDIR);
	ck_assert(exists(share, "dir/sub"));
	ck_assert_int_eq(lopen(4, O_RDONLY | O_DIRECTORY), P9_RLOPEN);
	{
		struct msg m;
		m_begin(&m, P9_TREADDIR);
		m_le(&m, 4, 4);
		m_le(&m, 0, 8);
		m_le(&m, 4096, 4);
		ck_assert_int_eq(send_msg(&m), P9_RREADDIR);
		ck_assert(memmem(reply, rlen, "new.txt", 7) != NULL);
		ck_assert(memmem(reply, rlen, "sub", 3) != NULL);
	}
	ck_assert_int_eq(WALK(5, ""), -ENOENT); /* an empty name */
	ck_assert_int_eq(WALK(5, "dir"), P9_RWALK);
	ck_assert_int_eq(unlink_in(5, "sub", AT_REMOVEDIR), P9_RUNLINKAT);
	ck_assert_int_eq(unlink_in(5, "new.txt", 0), P9_RUNLINKAT);
	ck_assert(!exists(share, "dir/sub") && !exists(share, "dir/new.txt"));
	/* getattr of the share */
	{
		struct msg m;
		m_begin(&m, P9_TGETATTR);
		m_le(&m, 1, 4);
		m_le(&m, P9_GETATTR_BASIC, 8);
		ck_assert_int_eq(send_msg(&m), P9_RGETATTR);
		ck_assert(S_ISDIR(p9_get_le32(reply + P9_HDR + 8 + 13)));
	}
}
END_TEST

START_TEST(create_exclusive)
{
	version_attach();
	ck_assert_int_eq(WALK(2, "dir"), P9_RWALK);
	ck_assert_int_eq(lcreate(2, "x", O_RDWR | O_EXCL), P9_RLCREATE);
	ck_assert_int_eq(WALK(3, "dir"), P9_RWALK);
	ck_assert_int_eq(lcreate(3, "x", O_RDWR | O_EXCL), -EEXIST);
	ck_assert_int_eq(lcreate(3, "x", O_RDWR), P9_RLCREATE);
}
END_TEST

START_TEST(rename_moves_fids)
{
	char buf[64];
	struct msg m;

	version_attach();
	ck_assert_int_eq(WALK(2, "hello.txt"), P9_RWALK);
	ck_assert_int_eq(WALK(3, "dir"), P9_RWALK);
	m_begin(&m, P9_TRENAMEAT);
	m_le(&m, 1, 4);
	m_str(&m, "hello.txt");
	m_le(&m, 3, 4);
	m_str(&m, "moved.txt");
	ck_assert_int_eq(send_msg(&m), P9_RRENAMEAT);
	ck_assert(exists(share, "dir/moved.txt"));
	/* fid 2 follows its file: it opens by its new path */
	ck_assert_int_eq(lopen(2, O_RDONLY), P9_RLOPEN);
	ck_assert_int_eq(read_fid(2, 0, 10, buf), P9_RREAD);
	ck_assert_str_eq(buf, "hello\n");
}
END_TEST

/* ---- escapes --------------------------------------------------------------------- */

START_TEST(no_way_out)
{
	struct msg m;
	char buf[64];

	version_attach();
	/* ".." at the top is the top */
	ck_assert_int_eq(WALK(2, "..", "..", "outside", "secret"), P9_RWALK);
	ck_assert_uint_eq(reply[P9_HDR] | reply[P9_HDR + 1] << 8, 2); /* only ".." twice */
	ck_assert_int_eq(WALK(2, "..", "hello.txt"), P9_RWALK);
	ck_assert_int_eq(lopen(2, O_RDONLY), P9_RLOPEN);
	ck_assert_int_eq(read_fid(2, 0, 10, buf), P9_RREAD);
	ck_assert_str_eq(buf, "hello\n");
	/* names with a slash, ".", ".." to create */
	ck_assert_int_eq(WALK(3, "dir/../../outside"), -ENOENT);
	ck_assert_int_eq(WALK(3, "."), -ENOENT);
	ck_assert_int_eq(WALK(4, "dir"), P9_RWALK);
	ck_assert_int_eq(lcreate(4, "../../outside/x", O_RDWR), -EINVAL);
	ck_assert_int_eq(WALK(4, "dir"), -EEXIST); /* fid 4 is taken */
	ck_assert_int_eq(mkdir_in(1, ".."), -EINVAL);
	/* symlinks: walked to (the guest reads them), never through */
	/* (a partial walk: the first qid, no new fid) */
	ck_assert_int_eq(WALK(5, "abs", "passwd"), P9_RWALK);
	ck_assert_uint_eq(reply[P9_HDR] | reply[P9_HDR + 1] << 8, 1);
	ck_assert_int_eq(lopen(5, O_RDONLY), -EBADF);
	ck_assert_int_eq(WALK(5, "rel", "secret"), P9_RWALK);
	ck_assert_uint_eq(reply[P9_HDR] | reply[P9_HDR + 1] << 8, 1);
	ck_assert_int_eq(lopen(5, O_RDONLY), -EBADF);
	ck_assert_int_eq(WALK(5, "abs"), P9_RWALK);
	ck_assert_int_eq(lopen(5, O_RDONLY), -ELOOP);
	ck_assert_int_eq(WALK(6, "rel"), P9_RWALK);
	m_begin(&m, P9_TREADLINK);
	m_le(&m, 6, 4);
	ck_assert_int_eq(send_msg(&m), P9_RREADLINK);
	ck_assert(memmem(reply, rlen, "../outside", 10) != NULL);
	/* even one pointing inside is the guest's to follow */
	ck_assert_int_eq(WALK(7, "inside"), P9_RWALK);
	ck_assert_int_eq(lopen(7, O_RDONLY), -ELOOP);
	/* a FIFO is not opened (it would block the server), nor made */
	ck_assert_int_eq(WALK(8, "fifo"), P9_RWALK);
	ck_assert_int_eq(lopen(8, O_RDONLY), -EACCES);
	m_begin(&m, P9_TMKNOD);
	m_le(&m, 1, 4);
	m_str(&m, "dev");
	m_le(&m, S_IFCHR | 0600, 4);
	m_le(&m, 1, 4);
	m_le(&m, 3, 4);
	m_le(&m, 0, 4);
	ck_assert_int_eq(send_msg(&m), -EPERM);
	ck_assert(!exists(share, "dev"));
	/* a symlink the guest makes is only text */
	m_begin(&m, P9_TSYMLINK);
	m_le(&m, 1, 4);
	m_str(&m, "esc");
	m_str(&m, "/");
	m_le(&m, 0, 4);
	ck_assert_int_eq(send_msg(&m), P9_RSYMLINK);
	ck_assert_int_eq(WALK(9, "esc", "etc"), P9_RWALK);
	ck_assert_int_eq(lopen(9, O_RDONLY), -EBADF);
	/* a hard link to the symlink "abs" links the link, not /etc */
	ck_assert_int_eq(WALK(10, "abs"), P9_RWALK);
	m_begin(&m, P9_TLINK);
	m_le(&m, 1, 4);
	m_le(&m, 10, 4);
	m_str(&m, "abs2");
	ck_assert_int_eq(send_msg(&m), P9_RLINK);
	{
		char p[1024];
		struct stat st;
		snprintf(p, sizeof(p), "%s/abs2", share);
		ck_assert_int_eq(lstat(p, &st), 0);
		ck_assert(S_ISLNK(st.st_mode));
	}
	ck_assert(!exists(outside, "x"));
}
END_TEST

/* The guest walked to a directory; then the host side swapped it for a
 * symlink to the outside: creating in it, opening below it, renaming into
 * it all fail, and nothing appears outside. */
START_TEST(symlink_swapped_in)
{
	char p[1024], q[1024];
	struct msg m;

	version_attach();
	ck_assert_int_eq(WALK(2, "dir"), P9_RWALK);
	sh("echo x > %s/share/dir/f");
	ck_assert_int_eq(WALK(3, "dir", "f"), P9_RWALK);
	snprintf(p, sizeof(p), "%s/dir", share);
	snprintf(q, sizeof(q), "%s/dir.old", share);
	ck_assert_int_eq(rename(p, q), 0);
	ck_assert_int_eq(symlink(outside, p), 0);
	ck_assert_int_eq(lcreate(2, "planted", O_RDWR), -ENOTDIR);
	ck_assert_int_eq(mkdir_in(2, "planted"), -ENOTDIR);
	ck_assert_int_eq(lopen(3, O_RDONLY), -ELOOP);
	m_begin(&m, P9_TRENAMEAT);
	m_le(&m, 1, 4);
	m_str(&m, "hello.txt");
	m_le(&m, 2, 4);
	m_str(&m, "planted");
	ck_assert_int_eq(send_msg(&m), -ENOTDIR);
	ck_assert_int_eq(unlink_in(2, "secret", 0), -ENOTDIR);
	ck_assert(!exists(outside, "planted"));
	ck_assert(exists(outside, "secret"));
	ck_assert(exists(share, "hello.txt"));
}
END_TEST

START_TEST(readonly_refuses_writes)
{
	struct msg m;
	char buf[64];

	version_attach();
	ck_assert_int_eq(WALK(2, "hello.txt"), P9_RWALK);
	ck_assert_int_eq(lopen(2, O_WRONLY), -EROFS);
	ck_assert_int_eq(lopen(2, O_RDONLY | O_TRUNC), -EROFS);
	ck_assert_int_eq(lopen(2, O_RDONLY), P9_RLOPEN);
	ck_assert_int_eq(read_fid(2, 0, 10, buf), P9_RREAD);
	ck_assert_int_eq(lcreate(1, "new", O_RDWR), -EROFS);
	ck_assert_int_eq(mkdir_in(1, "new"), -EROFS);
	ck_assert_int_eq(unlink_in(1, "hello.txt", 0), -EROFS);
	m_begin(&m, P9_TSETATTR);
	m_le(&m, 2, 4);
	m_le(&m, P9_SETATTR_SIZE, 4);
	m_le(&m, 0, 4 * 3);
	m_le(&m, 0, 8 * 5);
	ck_assert_int_eq(send_msg(&m), -EROFS);
	m_begin(&m, P9_TREMOVE);
	m_le(&m, 2, 4);
	ck_assert_int_eq(send_msg(&m), -EROFS);
	ck_assert(exists(share, "hello.txt"));
	ck_assert(!exists(share, "new"));
	{
		char p[1024];
		struct stat st;
		snprintf(p, sizeof(p), "%s/hello.txt", share);
		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_int_eq(st.st_size, 6);
	}
}
END_TEST

/* ---- snapshots ------------------------------------------------------------------- */

struct saved {
	uint32_t fid[16], oflags[16];
	char path[16][256];
	int open[16], n;
};

static int collect(void *opaque, uint32_t fid, const char *path, uint32_t oflags, int open)
{
	struct saved *s = opaque;

	ck_assert_int_lt(s->n, 16);
	s->fid[s->n] = fid;
	s->oflags[s->n] = oflags;
	s->open[s->n] = open;
	snprintf(s->path[s->n], sizeof(s->path[0]), "%s", path);
	s->n++;
	return 0;
}

START_TEST(fids_reopen_elsewhere)
{
	struct saved sv = { .n = 0 };
	char buf[64], moved[600];
	int root;

	version_attach();
	sh("echo inside > %s/share/dir/f");
	ck_assert_int_eq(WALK(2, "dir", "f"), P9_RWALK);
	ck_assert_int_eq(lopen(2, O_RDONLY), P9_RLOPEN);
	ck_assert_int_eq(WALK(3, "dir"), P9_RWALK);
	ck_assert_int_eq(lcreate(3, "w", O_WRONLY | O_TRUNC), P9_RLCREATE);
	ck_assert_int_eq(write_fid(3, "abc"), P9_RWRITE);
	ck_assert_int_eq(p9_server_each_fid(&srv, collect, &sv), 0);
	ck_assert_int_eq(sv.n, 3);
	p9_server_free(&srv);

	/* the share moves; the fids open again under it by path */
	snprintf(moved, sizeof(moved), "%s/moved", top);
	ck_assert_int_eq(rename(share, moved), 0);
	root = open(moved, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
	ck_assert_int_eq(p9_server_init(&srv, root, 0), 0);
	for (int i = 0; i < sv.n; i++)
		ck_assert_int_eq(p9_server_restore_fid(&srv, sv.fid[i], sv.path[i], sv.oflags[i],
						       sv.open[i]), 0);
	ck_assert_int_eq(read_fid(2, 0, 60, buf), P9_RREAD);
	ck_assert_str_eq(buf, "inside\n");
	/* not truncated again: what was written stays */
	ck_assert_int_eq(write_fid(3, "d"), P9_RWRITE);
	{
		char p[1024];
		size_t len;
		char *got;
		snprintf(p, sizeof(p), "%s/dir/w", moved);
		got = unit_read_file(p, &len);
		ck_assert_str_eq(got, "dbc");
		free(got);
	}
	/* hostile saved state */
	ck_assert_int_eq(p9_server_restore_fid(&srv, 9, "../outside/secret", 0, 1), -EINVAL);
	ck_assert_int_eq(p9_server_restore_fid(&srv, 9, "/etc/passwd", 0, 1), -EINVAL);
	ck_assert_int_eq(p9_server_restore_fid(&srv, 9, "rel/secret", 0, 1), -ELOOP);
	ck_assert_int_eq(p9_server_restore_fid(&srv, 2, "hello.txt", 0, 0), -EEXIST);
	ck_assert_int_eq(p9_server_restore_fid(&srv, 10, "hello.txt", O_CREAT, 1), -EINVAL);
	/* a file that is gone: the fid is kept, stale */
	ck_assert_int_eq(p9_server_restore_fid(&srv, 11, "gone", 0, 1), -ENOENT);
	ck_assert_int_eq(read_fid(11, 0, 10, buf), -ESTALE);
	/* restored under the old name for teardown */
	ck_assert_int_eq(rename(moved, share), 0);
}
END_TEST

Suite *p9_suite(void)
{
	Suite *s = suite_create("virtio-9p");
	TCase *t = tcase_create("decoder");

	tcase_add_checked_fixture(t, setup_rw, teardown);
	tcase_add_test(t, decode_rejects_malformed);
	tcase_add_test(t, encode_stops_when_full);
	tcase_add_test(t, path_check);
	suite_add_tcase(s, t);
	t = tcase_create("server");
	tcase_add_checked_fixture(t, setup_rw, teardown);
	tcase_add_test(t, read_write_create);
	tcase_add_test(t, rename_moves_fids);
	tcase_add_test(t, create_exclusive);
	tcase_add_test(t, fids_reopen_elsewhere);
	suite_add_tcase(s, t);
	t = tcase_create("escapes");
	tcase_add_checked_fixture(t, setup_rw, teardown);
	tcase_add_test(t, no_way_out);
	tcase_add_test(t, symlink_swapped_in);
	suite_add_tcase(s, t);
	t = tcase_create("readonly");
	tcase_add_checked_fixture(t, setup_ro, teardown);
	tcase_add_test(t, readonly_refuses_writes);
	suite_add_tcase(s, t);
	return s;
}
