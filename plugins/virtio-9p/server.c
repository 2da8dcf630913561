/* The 9P2000.L server over a host directory (server.h). */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

struct p9_fid {
	struct p9_fid *next; /* in its hash bucket */
	uint32_t fid;
	char *path;      /* relative to the share, "" for the share itself */
	int fd;          /* O_PATH, pins the inode walked to; -1 when stale */
	int ofd;         /* opened by lopen/lcreate, or -1 */
	uint32_t oflags; /* as opened (for a restore) */
	uint8_t qtype;
};

#define RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* openat2 under the share; glibc 2.36 has no wrapper. A rename elsewhere
 * in the share during the lookup makes the kernel say EAGAIN: try again. */
static int open_under(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE,
	};
	long fd = -1;

	for (int tries = 0; tries < 8; tries++) {
		fd = syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	return fd < 0 ? -errno : (int)fd;
}

/* ---- fids --------------------------------------------------------------------- */

static size_t bucket_of(const struct p9_server *s, uint32_t fid)
{
	return (fid * 2654435761u) & (s->nbuckets - 1);
}

static struct p9_fid *fid_find(struct p9_server *s, uint32_t fid)
{
	for (struct p9_fid *f = s->buckets[bucket_of(s, fid)]; f; f = f->next)
		if (f->fid == fid)
			return f;
	return NULL;
}

static void fid_close(struct p9_fid *f)
{
	if (f->ofd >= 0)
		close(f->ofd);
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

static void fid_remove(struct p9_server *s, uint32_t fid)
{
	struct p9_fid **pp = &s->buckets[bucket_of(s, fid)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->fid == fid) {
			struct p9_fid *f = *pp;
			*pp = f->next;
			fid_close(f);
			s->nfids--;
			return;
		}
	}
}

/* A new fid for `path` (taken over) and its O_PATH fd (taken over). */
static int fid_add(struct p9_server *s, uint32_t fid, char *path, int fd, uint8_t qtype)
{
	struct p9_fid *f;

	if (fid == P9_NOFID || s->nfids >= P9_MAX_FIDS || fid_find(s, fid)) {
		free(path);
		if (fd >= 0)
			close(fd);
		return fid == P9_NOFID || s->nfids >= P9_MAX_FIDS ? -EMFILE : -EEXIST;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		free(path);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	f->fid = fid;
	f->path = path;
	f->fd = fd;
	f->ofd = -1;
	f->qtype = qtype;
	f->next = s->buckets[bucket_of(s, fid)];
	s->buckets[bucket_of(s, fid)] = f;
	s->nfids++;
	return 0;
}

int p9_server_init(struct p9_server *s, int root, int readonly)
{
	memset(s, 0, sizeof(*s));
	s->root = root;
	s->readonly = readonly;
	s->msize = P9_MAX_MSIZE;
	s->nbuckets = 1024;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	return s->buckets ? 0 : -ENOMEM;
}

void p9_server_reset(struct p9_server *s)
{
	for (size_t i = 0; s->buckets && i < s->nbuckets; i++) {
		while (s->buckets[i]) {
			struct p9_fid *f = s->buckets[i];
			s->buckets[i] = f->next;
			fid_close(f);
		}
	}
	s->nfids = 0;
}

void p9_server_free(struct p9_server *s)
{
	p9_server_reset(s);
	free(s->buckets);
	s->buckets = NULL;
	if (s->root >= 0)
		close(s->root);
	s->root = -1;
}

/* ---- paths -------------------------------------------------------------------- */

/* One name of a request: not empty, no '/', not "." or ".." (the decoder
 * already refused NULs). */
static int name_ok(const struct p9_str *n)
{
	if (!n->len || n->len > NAME_MAX || memchr(n->s, '/', n->len))
		return 0;
	return !(n->len == 1 && n->s[0] == '.') && !(n->len == 2 && !memcmp(n->s, "..", 2));
}

int p9_path_ok(const char *path)
{
	const char *p = path;

	if (!*p)
		return 1;
	if (strlen(path) >= PATH_MAX)
		return 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!n || (n == 1 && p[0] == '.') || (n == 2 && !memcmp(p, "..", 2)) || n > NAME_MAX)
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

/* dir + "/" + name (or name alone under the share), malloc'd. */
static char *join(const char *dir, const char *name, size_t nlen)
{
	size_t dl = strlen(dir), len = dl + (dl ? 1 : 0) + nlen;
	char *p;

	if (len >= PATH_MAX || !(p = malloc(len + 1)))
		return NULL;
	memcpy(p, dir, dl);
	if (dl)
		p[dl++] = '/';
	memcpy(p + dl, name, nlen);
	p[len] = 0;
	return p;
}

/* The parent of `path`, in place ("" stays ""). */
static void up(char *path)
{
	char *slash = strrchr(path, '/');

	if (slash)
		*slash = 0;
	else
		path[0] = 0;
}

static uint8_t qtype_of(mode_t m)
{
	return S_ISDIR(m) ? P9_QTDIR : S_ISLNK(m) ? P9_QTSYMLINK : P9_QTFILE;
}

static void qid_of(const struct stat *st, struct p9_qid *q)
{
	q->type = qtype_of(st->st_mode);
	q->version = 0;
	q->path = (uint64_t)st->st_ino;
}

/* The O_PATH fd of `path` and its stat. */
static int lookup(struct p9_server *s, const char *path, struct stat *st)
{
	int fd = open_under(s->root, path, O_PATH, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* The directory of fid `dfid`, opened afresh by its path (never through a
 * fd that a host-side move may have taken outside the share). */
static int parent_dir(struct p9_server *s, struct p9_fid *d)
{
	if (d->fd < 0)
		return -ESTALE;
	if (d->qtype != P9_QTDIR)
		return -ENOTDIR;
	return open_under(s->root, d->path, O_PATH | O_DIRECTORY, 0);
}

/* Every fid at `from` or below it moves to `to` (a rename). */
static void rename_fids(struct p9_server *s, const char *from, const char *to)
{
	size_t fl = strlen(from);

	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct p9_fid *f = s->buckets[i]; f; f = f->next) {
			char *np;
			if (strncmp(f->path, from, fl) || (f->path[fl] && f->path[fl] != '/'))
				continue;
			if (asprintf(&np, "%s%s", to, f->path + fl) < 0)
				continue; /* out of memory: the fid keeps the old name */
			free(f->path);
			f->path = np;
		}
	}
}

/* ---- requests ----------------------------------------------------------------- */

struct ctx {
	struct p9_server *s;
	const struct p9_req *q;
	struct p9_out o;
};

static struct p9_fid *get_fid(struct ctx *c, uint32_t fid, int *rc)
{
	struct p9_fid *f = fid_find(c->s, fid);

	*rc = !f ? -EBADF : f->fd < 0 ? -ESTALE : 0;
	return *rc ? NULL : f;
}

static int do_version(struct ctx *c)
{
	const struct p9_req *q = c->q;
	uint32_t msize = q->msize < P9_MAX_MSIZE ? q->msize : P9_MAX_MSIZE;
	int ok = q->version.len >= 8 && !memcmp(q->version.s, "9P2000.L", 8);

	p9_server_reset(c->s);
	if (msize < P9_MIN_MSIZE)
		return -EINVAL;
	c->s->msize = msize;
	p9_put_u32(&c->o, msize);
	if (ok)
		p9_put_str(&c->o, "9P2000.L", 8);
	else
		p9_put_str(&c->o, "unknown", 7);
	return 0;
}

static int do_attach(struct ctx *c)
{
	struct stat st;
	struct p9_qid qid;
	char *path = strdup("");
	int fd, rc;

	if (!path)
		return -ENOMEM;
	if (fid_find(c->s, c->q->fid)) {
		free(path);
		return -EEXIST;
	}
	fd = lookup(c->s, "", &st);
	if (fd < 0) {
		free(path);
		return fd;
	}
	rc = fid_add(c->s, c->q->fid, path, fd, P9_QTDIR);
	if (rc)
		return rc;
	qid_of(&st, &qid);
	p9_put_qid(&c->o, &qid);
	return 0;
}

static int do_walk(struct ctx *c)
{
	const struct p9_req *q = c->q;
	struct p9_fid *f;
	struct p9_qid qids[P9_MAXWELEM];
	struct stat st;
	char *path;
	int fd = -1, rc;
	unsigned n = 0;

	if (!(f = get_fid(c, q->fid, &rc)))
		return rc;
	if (q->newfid != q->fid && fid_find(c->s, q->newfid))
		return -EEXIST;
	if (!(path = strdup(f->path)))
		return -ENOMEM;
	st.st_mode = f->qtype == P9_QTDIR ? S_IFDIR : f->qtype == P9_QTSYMLINK ? S_IFLNK : S_IFREG;
	for (n = 0; n < q->nwname; n++) {
		const struct p9_str *w = &q->wnames[n];
		char *np;
		if (w->len == 2 && !memcmp(w->s, "..", 2)) {
			/* at the share's top, ".." is the share itself */
			up(path);
		} else {
			if (!name_ok(w)) {
				rc = -ENOENT;
				break;
			}
			if (!S_ISDIR(st.st_mode)) {
				rc = -ENOTDIR;
				break;
			}
			if (!(np = join(path, w->s, w->len))) {
				rc = -ENAMETOOLONG;
				break;
			}
			free(path);
			path = np;
		}
		if (fd >= 0)
			close(fd);
		fd = lookup(c->s, path, &st);
		if (fd < 0) {
			rc = fd;
			break;
		}
		qid_of(&st, &qids[n]);
	}
	if (n < q->nwname && n == 0) {
		free(path);
		return rc;
	}
	if (n == q->nwname) {
		if (!n) {
			/* a clone: the same file, a fd of its own (the client clones
			 * before every create: a dup, not a lookup) */
			fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0) {
				free(path);
				return -errno;
			}
		}
		if (q->newfid == q->fid) {
			close(f->fd);
			free(f->path);
			f->fd = fd;
			f->path = path;
			if (n)
				f->qtype = qtype_of(st.st_mode);
		} else {
			rc = fid_add(c->s, q->newfid, path, fd,
				     n ? qtype_of(st.st_mode) : f->qtype);
			if (rc)
				return rc;
		}
	} else {
		/* a partial walk: the qids so far, and no new fid */
		free(path);
		if (fd >= 0)
			close(fd);
	}
	p9_put_u16(&c->o, (uint16_t)n);
	for (unsigned i = 0; i < n; i++)
		p9_put_qid(&c->o, &qids[i]);
	return 0;
}

/* Open flags a guest may ask for: access mode and what changes how data
 * moves; never O_CREAT (lcreate does that), never following a link. */
#define OPEN_KEEP (O_ACCMODE | O_TRUNC | O_APPEND | O_DIRECTORY | O_DSYNC | O_SYNC | \
		   O_NOATIME | O_LARGEFILE)

static int writes(uint32_t flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Opens `path` for I/O: only regular files and directories, checked before
 * (no open of a FIFO or device) and after (something swapped in). */
static int open_file(struct p9_server *s, const char *path, uint32_t flags, struct stat *st)
{
	int fd = open_under(s->root, path, (int)(flags & OPEN_KEEP) | O_NONBLOCK, 0);

	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
		close(fd);
		return -EACCES;
	}
	/* back to blocking I/O for a regular file (O_NONBLOCK was for the open) */
	if (fcntl(fd, F_SETFL, (int)(flags & (O_APPEND | O_NOATIME))) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int do_lopen(struct ctx *c)
{
	struct p9_fid *f;
	struct stat st;
	struct p9_qid qid;
	int fd, rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->ofd >= 0)
		return -EBADF;
	if (c->s->readonly && writes(c->q->flags))
		return -EROFS;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return S_ISLNK(st.st_mode) ? -ELOOP : -EACCES;
	fd = open_file(c->s, f->path, c->q->flags, &st);
	if (fd < 0)
		return fd;
	f->ofd = fd;
	f->oflags = c->q->flags & OPEN_KEEP;
	qid_of(&st, &qid);
	p9_put_qid(&c->o, &qid);
	p9_put_u32(&c->o, 0); /* iounit: msize less the header */
	return 0;
}

static int do_lcreate(struct ctx *c)
{
	const struct p9_req *q = c->q;
	struct p9_fid *f;
	struct stat st;
	struct p9_qid qid;
	char *path;
	int dfd, fd, pfd, rc;

	if (!(f = get_fid(c, q->fid, &rc)))
		return rc;
	if (c->s->readonly)
		return -EROFS;
	if (f->ofd >= 0)
		return -EBADF;
	if (!name_ok(&q->name))
		return -EINVAL;
	if ((dfd = parent_dir(c->s, f)) < 0)
		return dfd;
	if (!(path = join(f->path, q->name.s, q->name.len))) {
		close(dfd);
		return -ENAMETOOLONG;
	}
	/* one name under the parent: RESOLVE_* also holds for the last one */
	fd = open_under(dfd, path + strlen(path) - q->name.len,
			(int)(q->flags & (OPEN_KEEP | O_EXCL)) | O_CREAT, q->mode & 07777);
	close(dfd);
	if (fd < 0) {
		free(path);
		return fd;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		free(path);
		return -EACCES;
	}
	/* the fid's own fd: the file just made (a dup: no second lookup) */
	pfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (pfd < 0)
		pfd = -errno;
	if (pfd < 0) {
		close(fd);
		free(path);
		return pfd;
	}
	close(f->fd);
	free(f->path);
	f->fd = pfd;
	f->path = path;
	f->ofd = fd;
	f->oflags = q->flags & OPEN_KEEP;
	f->qtype = P9_QTFILE;
	qid_of(&st, &qid);
	p9_put_qid(&c->o, &qid);
	p9_put_u32(&c->o, 0);
	return 0;
}

static int do_read(struct ctx *c)
{
	struct p9_fid *f;
	uint32_t count = c->q->count;
	size_t room = c->o.cap - c->o.len;
	uint8_t *p;
	ssize_t n;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->ofd < 0 || (f->oflags & O_ACCMODE) == O_WRONLY || f->qtype == P9_QTDIR)
		return -EBADF;
	if (room < 4)
		return -ENOBUFS;
	if (count > room - 4)
		count = (uint32_t)(room - 4);
	if (count > c->s->msize - P9_HDR - 4)
		count = c->s->msize - P9_HDR - 4;
	if (c->q->offset > INT64_MAX)
		return -EINVAL;
	p = p9_reserve(&c->o, 4 + (size_t)count);
	n = pread(f->ofd, p + 4, count, (off_t)c->q->offset);
	if (n < 0)
		return -errno;
	c->o.len -= count - (size_t)n;
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)((uint32_t)n >> (8 * i));
	return 0;
}

static int do_write(struct ctx *c)
{
	struct p9_fid *f;
	ssize_t n;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->ofd < 0 || (f->oflags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if (c->s->readonly)
		return -EROFS;
	if (c->q->offset > INT64_MAX)
		return -EINVAL;
	n = pwrite(f->ofd, c->q->data, c->q->count, (off_t)c->q->offset);
	if (n < 0)
		return -errno;
	p9_put_u32(&c->o, (uint32_t)n);
	return 0;
}

static int do_clunk(struct ctx *c)
{
	if (!fid_find(c->s, c->q->fid))
		return -EBADF;
	fid_remove(c->s, c->q->fid);
	return 0;
}

static int do_getattr(struct ctx *c)
{
	struct p9_fid *f;
	struct stat st;
	struct p9_qid qid;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (fstat(f->ofd >= 0 ? f->ofd : f->fd, &st) < 0)
		return -errno;
	qid_of(&st, &qid);
	p9_put_u64(&c->o, P9_GETATTR_BASIC);
	p9_put_qid(&c->o, &qid);
	p9_put_u32(&c->o, st.st_mode);
	p9_put_u32(&c->o, st.st_uid);
	p9_put_u32(&c->o, st.st_gid);
	p9_put_u64(&c->o, st.st_nlink);
	p9_put_u64(&c->o, st.st_rdev);
	p9_put_u64(&c->o, (uint64_t)st.st_size);
	p9_put_u64(&c->o, (uint64_t)st.st_blksize);
	p9_put_u64(&c->o, (uint64_t)st.st_blocks);
	p9_put_u64(&c->o, (uint64_t)st.st_atim.tv_sec);
	p9_put_u64(&c->o, (uint64_t)st.st_atim.tv_nsec);
	p9_put_u64(&c->o, (uint64_t)st.st_mtim.tv_sec);
	p9_put_u64(&c->o, (uint64_t)st.st_mtim.tv_nsec);
	p9_put_u64(&c->o, (uint64_t)st.st_ctim.tv_sec);
	p9_put_u64(&c->o, (uint64_t)st.st_ctim.tv_nsec);
	for (int i = 0; i < 4; i++)
		p9_put_u64(&c->o, 0); /* btime, gen, data_version: not given */
	return 0;
}

/* The fid's own inode by its pinned fd, for calls that take a path:
 * /proc/self/fd/N (the VMM's own /proc, not the share's). */
static void self_fd(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static struct timespec to_ts(uint32_t valid, uint32_t given, uint32_t set, uint64_t sec,
			     uint64_t nsec)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = UTIME_OMIT };

	if (valid & given) {
		if (valid & set) {
			ts.tv_sec = (time_t)sec;
			ts.tv_nsec = nsec < 1000000000ull ? (long)nsec : 0;
		} else {
			ts.tv_nsec = UTIME_NOW;
		}
	}
	return ts;
}

static int do_setattr(struct ctx *c)
{
	const struct p9_req *q = c->q;
	struct p9_fid *f;
	char self[64];
	int rc;

	if (!(f = get_fid(c, q->fid, &rc)))
		return rc;
	if (c->s->readonly && (q->valid & (P9_SETATTR_MODE | P9_SETATTR_UID | P9_SETATTR_GID |
					   P9_SETATTR_SIZE | P9_SETATTR_ATIME |
					   P9_SETATTR_MTIME)))
		return -EROFS;
	self_fd(f->fd, self, sizeof(self));
	if ((q->valid & P9_SETATTR_MODE)) {
		if (f->qtype == P9_QTSYMLINK)
			return -EOPNOTSUPP;
		if (chmod(self, q->mode & 07777) < 0)
			return -errno;
	}
	if (q->valid & (P9_SETATTR_UID | P9_SETATTR_GID)) {
		uid_t uid = (q->valid & P9_SETATTR_UID) ? q->uid : (uid_t)-1;
		gid_t gid = (q->valid & P9_SETATTR_GID) ? q->gid : (gid_t)-1;
		if (fchownat(f->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (q->valid & P9_SETATTR_SIZE) {
		int fd = f->ofd, own = 0;
		if (f->qtype != P9_QTFILE)
			return f->qtype == P9_QTDIR ? -EISDIR : -EINVAL;
		if (q->size > INT64_MAX)
			return -EFBIG;
		if (fd < 0 || (f->oflags & O_ACCMODE) == O_RDONLY) {
			struct stat st;
			fd = open_file(c->s, f->path, O_WRONLY, &st);
			if (fd < 0)
				return fd;
			own = 1;
		}
		rc = ftruncate(fd, (off_t)q->size) < 0 ? -errno : 0;
		if (own)
			close(fd);
		if (rc)
			return rc;
	}
	if ((q->valid & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) && f->qtype != P9_QTSYMLINK) {
		struct timespec ts[2] = {
			to_ts(q->valid, P9_SETATTR_ATIME, P9_SETATTR_ATIME_SET, q->atime_sec,
			      q->atime_nsec),
			to_ts(q->valid, P9_SETATTR_MTIME, P9_SETATTR_MTIME_SET, q->mtime_sec,
			      q->mtime_nsec),
		};
		if (utimensat(AT_FDCWD, self, ts, 0) < 0)
			return -errno;
	}
	return 0;
}

static int do_readdir(struct ctx *c)
{
	struct p9_fid *f;
	uint8_t *countp;
	size_t start, room = c->o.cap - c->o.len;
	uint32_t count = c->q->count;
	char buf[8192];
	int rc, full = 0;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->ofd < 0 || f->qtype != P9_QTDIR)
		return -EBADF;
	if (room < 4)
		return -ENOBUFS;
	if (count > room - 4)
		count = (uint32_t)(room - 4);
	if (c->q->offset > INT64_MAX)
		return -EINVAL;
	/* from the offset of the last entry the guest took (0: the start) */
	if (lseek(f->ofd, (off_t)c->q->offset, SEEK_SET) < 0)
		return -errno;
	countp = p9_reserve(&c->o, 4);
	start = c->o.len;
	while (!full) {
		long n = syscall(SYS_getdents64, f->ofd, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			size_t nl = strlen(d->d_name);
			struct p9_qid qid = { .path = d->d_ino };
			if (c->o.len - start + P9_QID_SIZE + 8 + 1 + 2 + nl > count) {
				full = 1;
				break;
			}
			qid.type = d->d_type == DT_DIR ? P9_QTDIR
				   : d->d_type == DT_LNK ? P9_QTSYMLINK : P9_QTFILE;
			p9_put_qid(&c->o, &qid);
			p9_put_u64(&c->o, (uint64_t)d->d_off);
			p9_put_u8(&c->o, d->d_type);
			p9_put_str(&c->o, d->d_name, nl);
			off += d->d_reclen;
		}
	}
	for (unsigned i = 0; i < 4; i++)
		countp[i] = (uint8_t)((c->o.len - start) >> (8 * i));
	return 0;
}

static int do_statfs(struct ctx *c)
{
	struct p9_fid *f;
	struct statfs sf;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (fstatfs(f->fd, &sf) < 0)
		return -errno;
	p9_put_u32(&c->o, (uint32_t)sf.f_type);
	p9_put_u32(&c->o, (uint32_t)sf.f_bsize);
	p9_put_u64(&c->o, sf.f_blocks);
	p9_put_u64(&c->o, sf.f_bfree);
	p9_put_u64(&c->o, sf.f_bavail);
	p9_put_u64(&c->o, sf.f_files);
	p9_put_u64(&c->o, sf.f_ffree);
	p9_put_u64(&c->o, (uint64_t)(uint32_t)sf.f_fsid.__val[0] |
			  (uint64_t)(uint32_t)sf.f_fsid.__val[1] << 32);
	p9_put_u32(&c->o, (uint32_t)sf.f_namelen);
	return 0;
}

static int do_fsync(struct ctx *c)
{
	struct p9_fid *f;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->ofd < 0)
		return -EBADF;
	if ((c->q->datasync ? fdatasync(f->ofd) : fsync(f->ofd)) < 0)
		return -errno;
	return 0;
}

/* The directory fid `dfid` and a valid new name in it: the parent opened. */
static int dir_and_name(struct ctx *c, uint32_t dfid, const struct p9_str *name,
			struct p9_fid **d)
{
	int rc;

	if (!(*d = get_fid(c, dfid, &rc)))
		return rc;
	if (c->s->readonly)
		return -EROFS;
	if (!name_ok(name))
		return -EINVAL;
	return parent_dir(c->s, *d);
}

static int reply_qid_at(struct ctx *c, int dfd, const struct p9_str *name)
{
	char nm[NAME_MAX + 1];
	struct stat st;
	struct p9_qid qid;

	memcpy(nm, name->s, name->len);
	nm[name->len] = 0;
	if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	qid_of(&st, &qid);
	p9_put_qid(&c->o, &qid);
	return 0;
}

static void cname(const struct p9_str *n, char *buf)
{
	memcpy(buf, n->s, n->len);
	buf[n->len] = 0;
}

static int do_mkdir(struct ctx *c)
{
	struct p9_fid *d;
	char nm[NAME_MAX + 1];
	int dfd = dir_and_name(c, c->q->dfid, &c->q->name, &d), rc;

	if (dfd < 0)
		return dfd;
	cname(&c->q->name, nm);
	rc = mkdirat(dfd, nm, c->q->mode & 07777) < 0 ? -errno : reply_qid_at(c, dfd, &c->q->name);
	close(dfd);
	return rc;
}

static int do_symlink(struct ctx *c)
{
	struct p9_fid *d;
	char nm[NAME_MAX + 1], *target;
	int dfd = dir_and_name(c, c->q->fid, &c->q->name, &d), rc;

	if (dfd < 0)
		return dfd;
	/* the target is the guest's text, never followed on the host */
	if (!c->q->target.len || c->q->target.len >= PATH_MAX ||
	    !(target = strndup(c->q->target.s, c->q->target.len))) {
		close(dfd);
		return c->q->target.len ? -ENAMETOOLONG : -ENOENT;
	}
	cname(&c->q->name, nm);
	rc = symlinkat(target, dfd, nm) < 0 ? -errno : reply_qid_at(c, dfd, &c->q->name);
	free(target);
	close(dfd);
	return rc;
}

static int do_readlink(struct ctx *c)
{
	struct p9_fid *f;
	char buf[PATH_MAX];
	ssize_t n;
	int rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (f->qtype != P9_QTSYMLINK)
		return -EINVAL;
	n = readlinkat(f->fd, "", buf, sizeof(buf));
	if (n < 0)
		return -errno;
	p9_put_str(&c->o, buf, (size_t)n);
	return 0;
}

/* The parent of a fid's file, opened, and its last name. */
static int split_fid(struct ctx *c, struct p9_fid *f, char **base)
{
	char *slash, *dir;
	int dfd;

	if (!f->path[0])
		return -EBUSY; /* the share itself */
	if (!(dir = strdup(f->path)))
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		*base = f->path + (slash - dir) + 1;
	} else {
		dir[0] = 0;
		*base = f->path;
	}
	dfd = open_under(c->s->root, dir, O_PATH | O_DIRECTORY, 0);
	free(dir);
	return dfd;
}

static int rename_common(struct ctx *c, int sdfd, const char *sname, const char *from,
			 uint32_t ddfid, const struct p9_str *dname)
{
	struct p9_fid *d;
	char nm[NAME_MAX + 1], *to;
	int ddfd = dir_and_name(c, ddfid, dname, &d), rc;

	if (ddfd < 0)
		return ddfd;
	cname(dname, nm);
	if (!(to = join(d->path, dname->s, dname->len))) {
		close(ddfd);
		return -ENAMETOOLONG;
	}
	rc = renameat(sdfd, sname, ddfd, nm) < 0 ? -errno : 0;
	close(ddfd);
	if (!rc)
		rename_fids(c->s, from, to);
	free(to);
	return rc;
}

static int do_rename(struct ctx *c)
{
	struct p9_fid *f;
	char *base, *from;
	int sdfd, rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (c->s->readonly)
		return -EROFS;
	if ((sdfd = split_fid(c, f, &base)) < 0)
		return sdfd;
	if (!(from = strdup(f->path))) {
		close(sdfd);
		return -ENOMEM;
	}
	rc = rename_common(c, sdfd, from + (base - f->path), from, c->q->dfid, &c->q->name);
	free(from);
	close(sdfd);
	return rc;
}

static int do_renameat(struct ctx *c)
{
	struct p9_fid *d;
	char nm[NAME_MAX + 1], *from;
	int sdfd = dir_and_name(c, c->q->fid, &c->q->name, &d), rc;

	if (sdfd < 0)
		return sdfd;
	cname(&c->q->name, nm);
	if (!(from = join(d->path, c->q->name.s, c->q->name.len))) {
		close(sdfd);
		return -ENAMETOOLONG;
	}
	rc = rename_common(c, sdfd, nm, from, c->q->dfid, &c->q->name2);
	free(from);
	close(sdfd);
	return rc;
}

static int do_unlinkat(struct ctx *c)
{
	struct p9_fid *d;
	char nm[NAME_MAX + 1];
	int dfd = dir_and_name(c, c->q->dfid, &c->q->name, &d), rc;

	if (dfd < 0)
		return dfd;
	cname(&c->q->name, nm);
	rc = unlinkat(dfd, nm, c->q->flags & AT_REMOVEDIR) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

static int do_remove(struct ctx *c)
{
	struct p9_fid *f;
	char *base;
	int dfd, rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if (c->s->readonly)
		rc = -EROFS;
	else if ((dfd = split_fid(c, f, &base)) < 0)
		rc = dfd;
	else {
		rc = unlinkat(dfd, base, f->qtype == P9_QTDIR ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
		close(dfd);
	}
	fid_remove(c->s, c->q->fid); /* clunked whatever the outcome */
	return rc;
}

static int do_link(struct ctx *c)
{
	struct p9_fid *f, *d;
	char nm[NAME_MAX + 1], *base;
	int sdfd, ddfd, rc;

	if (!(f = get_fid(c, c->q->fid, &rc)))
		return rc;
	if ((ddfd = dir_and_name(c, c->q->dfid, &c->q->name, &d)) < 0)
		return ddfd;
	if ((sdfd = split_fid(c, f, &base)) < 0) {
		close(ddfd);
		return sdfd;
	}
	cname(&c->q->name, nm);
	/* flags 0: a link to the name itself, never to where a link points */
	rc = linkat(sdfd, base, ddfd, nm, 0) < 0 ? -errno : 0;
	close(sdfd);
	close(ddfd);
	return rc;
}

static int do_lock(struct ctx *c)
{
	int rc;

	/* Locks stay in the guest (one client): always granted. */
	if (!get_fid(c, c->q->fid, &rc))
		return rc;
	p9_put_u8(&c->o, 0); /* P9_LOCK_SUCCESS */
	return 0;
}

static int do_getlock(struct ctx *c)
{
	int rc;

	if (!get_fid(c, c->q->fid, &rc))
		return rc;
	p9_put_u8(&c->o, 2); /* F_UNLCK: nothing else holds it */
	p9_put_u64(&c->o, c->q->start);
	p9_put_u64(&c->o, c->q->length);
	p9_put_u32(&c->o, c->q->proc_id);
	p9_put_str(&c->o, c->q->client_id.s, c->q->client_id.len);
	return 0;
}

static int dispatch(struct ctx *c)
{
	switch (c->q->type) {
	case P9_TVERSION: return do_version(c);
	case P9_TATTACH: return do_attach(c);
	case P9_TWALK: return do_walk(c);
	case P9_TLOPEN: return do_lopen(c);
	case P9_TLCREATE: return do_lcreate(c);
	case P9_TREAD: return do_read(c);
	case P9_TWRITE: return do_write(c);
	case P9_TCLUNK: return do_clunk(c);
	case P9_TREMOVE: return do_remove(c);
	case P9_TGETATTR: return do_getattr(c);
	case P9_TSETATTR: return do_setattr(c);
	case P9_TREADDIR: return do_readdir(c);
	case P9_TSTATFS: return do_statfs(c);
	case P9_TFSYNC: return do_fsync(c);
	case P9_TMKDIR: return do_mkdir(c);
	case P9_TSYMLINK: return do_symlink(c);
	case P9_TREADLINK: return do_readlink(c);
	case P9_TRENAME: return do_rename(c);
	case P9_TRENAMEAT: return do_renameat(c);
	case P9_TUNLINKAT: return do_unlinkat(c);
	case P9_TLINK: return do_link(c);
	case P9_TLOCK: return do_lock(c);
	case P9_TGETLOCK: return do_getlock(c);
	case P9_TFLUSH: return 0; /* requests are answered in order: nothing pending */
	case P9_TMKNOD: return c->s->readonly ? -EROFS : -EPERM; /* no device files */
	case P9_TAUTH: return -EOPNOTSUPP;
	case P9_TXATTRWALK:
	case P9_TXATTRCREATE: return -EOPNOTSUPP;
	default: return -EOPNOTSUPP;
	}
}

size_t p9_server_handle(struct p9_server *s, const uint8_t *in, size_t inlen, uint8_t *out,
			size_t outcap)
{
	struct p9_req q;
	struct ctx c = { .s = s, .q = &q };
	int rc = p9_decode(in, inlen, &q);
	size_t len;

	if (rc)
		return p9_error(out, outcap, q.tag, (uint32_t)(rc == -EBADMSG ? EINVAL : -rc));
	p9_begin(&c.o, out, outcap, (uint8_t)(q.type + 1), q.tag);
	rc = dispatch(&c);
	if (rc)
		return p9_error(out, outcap, q.tag, (uint32_t)-rc);
	len = p9_end(&c.o);
	return len ? len : p9_error(out, outcap, q.tag, ENOBUFS);
}

/* ---- snapshots ---------------------------------------------------------------- */

int p9_server_each_fid(struct p9_server *s,
		       int (*fn)(void *opaque, uint32_t fid, const char *path, uint32_t oflags,
				 int open),
		       void *opaque)
{
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct p9_fid *f = s->buckets[i]; f; f = f->next) {
			int rc = fn(opaque, f->fid, f->path, f->oflags, f->ofd >= 0);
			if (rc)
				return rc;
		}
	return 0;
}

int p9_server_restore_fid(struct p9_server *s, uint32_t fid, const char *path,
			  uint32_t oflags, int open)
{
	struct p9_fid *f;
	struct stat st;
	char *p;
	int fd, rc;

	if (!p9_path_ok(path) || (oflags & ~(uint32_t)OPEN_KEEP))
		return -EINVAL;
	if (s->readonly && open && writes(oflags))
		return -EROFS;
	if (!(p = strdup(path)))
		return -ENOMEM;
	fd = lookup(s, path, &st);
	rc = fid_add(s, fid, p, fd < 0 ? -1 : fd, fd < 0 ? P9_QTFILE : qtype_of(st.st_mode));
	if (rc)
		return rc;
	if (fd < 0)
		return fd; /* kept, stale */
	f = fid_find(s, fid);
	if (open) {
		/* never truncate again what the guest wrote since */
		int ofd = open_file(s, path, oflags & ~(uint32_t)O_TRUNC, &st);
		if (ofd < 0) {
			close(f->fd);
			f->fd = -1;
			return ofd;
		}
		f->ofd = ofd;
		f->oflags = oflags;
	}
	return 0;
}
