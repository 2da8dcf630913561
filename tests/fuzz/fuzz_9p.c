/* Fuzz the virtio-9p request decoder (plugins/virtio-9p/proto.c) with the
 * bytes a hostile guest could put in a virtqueue buffer, and the server
 * (server.c) behind it: the input is cut into messages by their own size
 * fields and each is answered by a server over an empty temporary share.
 * Whatever the decoder accepts must lie inside the message; every reply
 * must be a well-formed message no longer than the room it was given. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/virtio-9p/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct p9_server srv;
static int ready;
static char dir[] = "/tmp/smolvm-fuzz9p-XXXXXX";
static uint8_t out[P9_MAX_MSIZE];

static void check(int cond)
{
	if (!cond)
		abort();
}

static void inside(const uint8_t *buf, size_t len, const struct p9_str *s)
{
	if (!s->len)
		return;
	check((const uint8_t *)s->s >= buf && (const uint8_t *)s->s + s->len <= buf + len);
	check(!memchr(s->s, 0, s->len));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* What the fuzzed requests made goes with the share at exit. */
static void cleanup(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	int root;

	check(mkdtemp(dir) != NULL);
	atexit(cleanup);
	root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	check(root >= 0);
	check(p9_server_init(&srv, root, 0) == 0);
	ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p9_req q;
	size_t off = 0;

	if (!ready)
		setup();
	/* the decoder alone, on the whole input */
	if (p9_decode(data, size, &q) == 0) {
		inside(data, size, &q.version);
		inside(data, size, &q.name);
		inside(data, size, &q.name2);
		inside(data, size, &q.target);
		check(q.nwname <= P9_MAXWELEM);
		for (unsigned i = 0; i < q.nwname; i++)
			inside(data, size, &q.wnames[i]);
		if (q.type == P9_TWRITE)
			check(q.data >= data && q.data + q.count <= data + size);
	}
	/* a session: messages one after another, as their size fields say;
	 * the first byte of each decides how much room its reply gets */
	p9_server_reset(&srv);
	while (size - off >= P9_HDR + 1) {
		size_t room = 16 + (size_t)data[off] * 512;
		uint32_t len = p9_get_le32(data + off + 1);
		size_t n;

		off++;
		if (len > size - off)
			len = (uint32_t)(size - off);
		if (room > sizeof(out))
			room = sizeof(out);
		n = p9_server_handle(&srv, data + off, len, out, room);
		check(n >= P9_HDR && n <= room && p9_get_le32(out) == n);
		off += len ? len : 1;
	}
	return 0;
}
