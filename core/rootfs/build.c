/* Building a root filesystem image: the source unpacked into a work
 * directory by its own tool, the copy and run steps, a check for /bin/sh,
 * then mke2fs -d, and the image renamed into the cache only once whole.
 * Each step's tool runs with its output in a log (and on stderr with -v);
 * a failed step shows its last lines. */
#include "rootfs/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/cache_size.h"
#include "lib/dirs.h"

#define TAIL_LINES 12
#define DEFAULT_MIRROR "http://deb.debian.org/debian"

struct build {
	const struct rootfs_spec *r;
	const struct rootfs_opts *o;
	char dir[PATH_MAX];   /* <cache>/rootfs */
	char work[PATH_MAX];  /* dir/build-<id>-XXXXXX */
	char root[PATH_MAX + 8];
	char log[PATH_MAX + 40];
	int logfd;
	int step, steps;
	char tail[TAIL_LINES][160];
	int ntail;
	int tty;
};

static void say(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct build *b, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%ssmolvm: rootfs [%d/%d] ", b->tty ? "\r\033[K" : "", b->step, b->steps);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void keep_line(struct build *b, const char *line)
{
	if (!*line)
		return;
	if (b->ntail == TAIL_LINES) {
		memmove(b->tail[0], b->tail[1], sizeof(b->tail[0]) * (TAIL_LINES - 1));
		b->ntail--;
	}
	snprintf(b->tail[b->ntail++], sizeof(b->tail[0]), "%s", line);
	if (b->o->verbose)
		fprintf(stderr, "    %s\n", line);
	else if (b->tty) /* one status line, rewritten: the step is alive */
		fprintf(stderr, "\r\033[K    %.70s", line);
}

/* The last lines a tool printed, for an error message. */
static void tail_text(struct build *b, char *out, size_t len)
{
	size_t off = 0;

	out[0] = 0;
	for (int i = 0; i < b->ntail && off < len; i++)
		off += (size_t)snprintf(out + off, len - off, "\n    %s", b->tail[i]);
}

/* Runs argv with its output in the log; 0, or -EIO with the message. */
static int run_tool(struct build *b, const char *what, char *const argv[], struct err *e)
{
	int pfd[2], status;
	char buf[4096], line[1024];
	size_t ll = 0;
	pid_t pid;

	b->ntail = 0;
	if (pipe2(pfd, O_CLOEXEC))
		return err_set(e, -errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return err_set(e, -errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (b->logfd >= 0 && write(b->logfd, buf, (size_t)n) < 0)
			b->logfd = -1;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c == '\n' || c == '\r' || ll == sizeof(line) - 1) {
				line[ll] = 0;
				keep_line(b, line);
				ll = 0;
			} else {
				line[ll++] = c;
			}
		}
	}
	line[ll] = 0;
	keep_line(b, line);
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (b->tty && !b->o->verbose)
		fprintf(stderr, "\r\033[K");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char t[TAIL_LINES * 170];
	tail_text(b, t, sizeof(t));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && b->ntail == 1)
		return err_set(e, -ENOENT, "%s: %s", what, b->tail[0]);
	if (WIFEXITED(status))
		return err_set(e, -EIO, "%s failed (exit status %d); its last lines:%s\n  (the whole output: %s)",
			       what, WEXITSTATUS(status), t, b->log);
	return err_set(e, -EIO, "%s was killed by signal %d; its last lines:%s", what,
		       WTERMSIG(status), t);
}

static int need_tool(const char *tool, const char *pkg, struct err *e)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path && *path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, tool);
		if (!access(buf, X_OK))
			return 0;
		path += n + (path[n] == ':');
	}
	return err_set(e, -ENOENT, "%s not found: install it with apt-get install %s", tool, pkg);
}

static int need_root(const char *what, struct err *e)
{
	if (geteuid() == 0)
		return 0;
	return err_set(e, -EPERM,
		       "%s needs root on the host (files owned by the guest's users); run smolvm pack "
		       "as root, or build the tree yourself and name it with rootfs.dir or rootfs.image",
		       what);
}

/* ---- the steps --------------------------------------------------------------- */

static int step_debian(struct build *b, struct err *e)
{
	const struct rootfs_spec *r = b->r;
	char include[8192] = "--include=", *argv[12];
	size_t off = strlen(include);
	int n = 0;

	if (need_root("rootfs.debian", e) || need_tool("mmdebstrap", "mmdebstrap", e))
		return -EPERM;
	for (size_t i = 0; i < r->npackages; i++)
		off += (size_t)snprintf(include + off, off < sizeof(include) ? sizeof(include) - off : 0,
					"%s%s", i ? "," : "", r->packages[i]);
	if (off >= sizeof(include))
		return err_set(e, -E2BIG, "rootfs.packages: the list is too long");
	say(b, "debian %s%s%zu package%s (mmdebstrap)...", r->source, r->npackages ? " + " : "",
	    r->npackages, r->npackages == 1 ? "" : "s");
	argv[n++] = "mmdebstrap";
	argv[n++] = "--mode=root";
	argv[n++] = "--variant=apt";
	argv[n++] = "--format=directory";
	if (r->npackages)
		argv[n++] = include;
	argv[n++] = r->source;
	argv[n++] = b->root;
	argv[n++] = r->mirror ? r->mirror : DEFAULT_MIRROR;
	argv[n] = NULL;
	return run_tool(b, "mmdebstrap", argv, e);
}

static int split_oci(const char *src, char *path, size_t plen, char *tag, size_t tlen)
{
	const char *colon = strrchr(src, ':');

	if (colon && !strchr(colon, '/')) {
		snprintf(path, plen, "%.*s", (int)(colon - src), src);
		snprintf(tag, tlen, "%s", colon + 1);
	} else {
		snprintf(path, plen, "%s", src);
		snprintf(tag, tlen, "latest");
	}
	return 0;
}

static int umoci_unpack(struct build *b, const char *layout, const char *tag, struct err *e)
{
	char image[PATH_MAX + 300];
	char *argv[] = { "umoci", "raw", "unpack", "--image", image, b->root, NULL };

	if (need_tool("umoci", "umoci", e))
		return -ENOENT;
	snprintf(image, sizeof(image), "%s:%s", layout, tag);
	return run_tool(b, "umoci raw unpack", argv, e);
}

static int step_oci(struct build *b, struct err *e)
{
	char path[PATH_MAX], tag[256];

	split_oci(b->r->source, path, sizeof(path), tag, sizeof(tag));
	if (need_root("rootfs.oci", e))
		return -EPERM;
	say(b, "OCI image %s, tag %s (umoci)...", path, tag);
	return umoci_unpack(b, path, tag, e);
}

static int step_docker_archive(struct build *b, struct err *e)
{
	char src[PATH_MAX + 20], dst[PATH_MAX + 20], layout[PATH_MAX];
	char *argv[] = { "skopeo", "copy", "--quiet", src, dst, NULL };
	int rc;

	if (need_root("rootfs.docker_archive", e) || need_tool("skopeo", "skopeo", e))
		return -EPERM;
	snprintf(layout, sizeof(layout), "%s/oci", b->work);
	snprintf(src, sizeof(src), "docker-archive:%s", b->r->source);
	snprintf(dst, sizeof(dst), "oci:%s:image", layout);
	say(b, "docker archive %s (skopeo, umoci)...", b->r->source);
	rc = run_tool(b, "skopeo copy", argv, e);
	return rc ? rc : umoci_unpack(b, layout, "image", e);
}

static int step_dir(struct build *b, struct err *e)
{
	char src[PATH_MAX + 4];
	char *argv[] = { "cp", "-a", "--reflink=auto", src, b->root, NULL };

	snprintf(src, sizeof(src), "%s/.", b->r->source);
	say(b, "directory %s...", b->r->source);
	if (mkdir(b->root, 0755))
		return err_set(e, -errno, "%s: %s", b->root, strerror(errno));
	return run_tool(b, "cp", argv, e);
}

static int step_tar(struct build *b, struct err *e)
{
	char *argv[] = { "tar", "-xpf", b->r->source, "-C", b->root, "--numeric-owner", NULL };

	say(b, "tarball %s...", b->r->source);
	if (mkdir(b->root, 0755))
		return err_set(e, -errno, "%s: %s", b->root, strerror(errno));
	/* GNU tar refuses members with "..", strips a leading "/", and makes
	 * no file through a symbolic link the archive made */
	return run_tool(b, "tar", argv, e);
}

static int step_copy(struct build *b, struct err *e)
{
	int rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	say(b, "copying %zu path%s in...", b->r->ncopy, b->r->ncopy == 1 ? "" : "s");
	if (rootfd < 0)
		return err_set(e, -errno, "%s: %s", b->root, strerror(errno));
	for (size_t i = 0; !rc && i < b->r->ncopy; i++) {
		rc = rootfs_copy_in(rootfd, b->r->copy[i].from, b->r->copy[i].to, e);
		if (rc)
			err_wrap(e, rc, "rootfs.copy (%s -> %s)", b->r->copy[i].from, b->r->copy[i].to);
	}
	close(rootfd);
	return rc;
}

/* run = { ... }: each command by the tree's /bin/sh, inside it (bwrap: its
 * own /proc, a minimal /dev, the host's network and DNS), like a
 * Dockerfile RUN. */
static int step_run(struct build *b, size_t i, struct err *e)
{
	char what[64], resolv[PATH_MAX + 32];
	char *argv[40];
	struct stat st;
	int n = 0;

	if (need_root("rootfs.run", e) || need_tool("bwrap", "bubblewrap", e))
		return -EPERM;
	say(b, "run %.100s%s", b->r->run[i], strlen(b->r->run[i]) > 100 ? "..." : "");
	argv[n++] = "bwrap";
	argv[n++] = "--bind";
	argv[n++] = b->root;
	argv[n++] = "/";
	argv[n++] = "--proc";
	argv[n++] = "/proc";
	argv[n++] = "--dev";
	argv[n++] = "/dev";
	/* shm_open for every user (PostgreSQL's postmaster runs as postgres) */
	argv[n++] = "--perms";
	argv[n++] = "1777";
	argv[n++] = "--tmpfs";
	argv[n++] = "/dev/shm";
	argv[n++] = "--tmpfs";
	argv[n++] = "/run";
	snprintf(resolv, sizeof(resolv), "%s/etc/resolv.conf", b->root);
	if (!lstat(resolv, &st) && S_ISREG(st.st_mode) && !access("/etc/resolv.conf", R_OK)) {
		argv[n++] = "--ro-bind";
		argv[n++] = "/etc/resolv.conf";
		argv[n++] = "/etc/resolv.conf";
	}
	argv[n++] = "--unshare-pid";
	argv[n++] = "--unshare-ipc";
	argv[n++] = "--unshare-uts";
	argv[n++] = "--die-with-parent";
	argv[n++] = "--setenv";
	argv[n++] = "PATH";
	argv[n++] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	argv[n++] = "--setenv";
	argv[n++] = "HOME";
	argv[n++] = "/root";
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = b->r->run[i];
	argv[n] = NULL;
	snprintf(what, sizeof(what), "rootfs.run[%zu]", i + 1);
	return run_tool(b, what, argv, e);
}

/* What the guest's init mounts on: made when the tree lacks it (an OCI
 * image need not have /proc). */
static int mount_points(struct build *b, struct err *e)
{
	static const char *const dirs[] = { "proc", "sys", "dev", "run", "tmp" };
	int rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (rootfd < 0)
		return err_set(e, -errno, "%s: %s", b->root, strerror(errno));
	for (size_t i = 0; !rc && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!mkdirat(rootfd, dirs[i], 0755)) {
			/* (the umask would take the sticky bit's company away) */
			if (!strcmp(dirs[i], "tmp"))
				fchmodat(rootfd, dirs[i], 01777, 0);
		} else if (errno != EEXIST) {
			rc = err_set(e, -errno, "/%s in the root filesystem: %s", dirs[i],
				     strerror(errno));
		}
	}
	close(rootfd);
	return rc;
}

/* No /bin/sh, no start, ready or smolvm exec. */
static int check_shell(struct build *b, struct err *e)
{
	int rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	int fd, ok;

	if (rootfd < 0)
		return err_set(e, -errno, "%s: %s", b->root, strerror(errno));
	/* through the tree's own links (/bin -> usr/bin), never out of it */
	fd = rootfs_open_in_root(rootfd, "bin/sh", O_PATH);
	ok = fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode) && (st.st_mode & 0111);
	if (fd >= 0)
		close(fd);
	close(rootfd);
	if (!ok)
		return err_set(e, -ENOENT,
			       "the root filesystem has no /bin/sh: smolvm runs start, ready, run and "
			       "exec commands with it (add a shell, e.g. busybox, to the image)");
	return 0;
}

struct usage {
	uint64_t bytes, inodes;
};

static void tally(int dirfd, int depth, struct usage *u)
{
	DIR *d;
	struct dirent *de;
	int fd = dup(dirfd);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		u->bytes += (uint64_t)st.st_blocks * 512;
		u->inodes++;
		if (S_ISDIR(st.st_mode) && depth < 128) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				tally(sub, depth + 1, u);
				close(sub);
			}
		}
	}
	closedir(d);
}

static int step_mke2fs(struct build *b, const char *image, struct err *e)
{
	const struct rootfs_spec *r = b->r;
	struct usage u = { 0, 0 };
	char size[32], inodes[32];
	int rootfd = open(b->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t bytes, need;

	if (need_tool("mke2fs", "e2fsprogs", e))
		return -ENOENT;
	if (rootfd >= 0) {
		tally(rootfd, 0, &u);
		close(rootfd);
	}
	/* ext4's own metadata: inode tables (256 bytes an inode), bitmaps */
	need = u.bytes + u.bytes / 10 + u.inodes * 512 + (16ull << 20);
	bytes = r->size ? r->size : (need + need / 4 + (512ull << 20) + (64ull << 20) - 1) & ~((64ull << 20) - 1);
	if (bytes < need)
		return err_set(e, -ENOSPC,
			       "rootfs.size: the files take %llu MiB, which does not fit in %llu MiB "
			       "with the file system's own data (make size at least %lluM, or leave it out)",
			       (unsigned long long)(u.bytes >> 20), (unsigned long long)(bytes >> 20),
			       (unsigned long long)((need >> 20) + 1));
	say(b, "ext4 image of %llu MiB (%llu MiB of files, mke2fs)...",
	    (unsigned long long)(bytes >> 20), (unsigned long long)(u.bytes >> 20));
	snprintf(size, sizeof(size), "%lluk", (unsigned long long)(bytes >> 10));
	/* an inode per 16 KiB of disk, and at least twice the files */
	snprintf(inodes, sizeof(inodes), "%llu",
		 (unsigned long long)(bytes / 16384 > u.inodes * 2 ? bytes / 16384 : u.inodes * 2 + 1024));
	/* No journal: every write lands in a copy-on-write overlay that is
	 * thrown away or saved whole; the guest is spared jbd2's work. The
	 * inode tables are zeroed here, not by the guest's ext4lazyinit. */
	char *argv[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
			 "-N", inodes, "-L", "rootfs", "-E",
			 "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0", "-d", b->root,
			 (char *)image, size, NULL };
	int rc = run_tool(b, "mke2fs", argv, e);
	if (rc && strstr(e->msg, "Could not allocate"))
		return err_set(e, -ENOSPC, "rootfs.size: %lluM is too small for these files "
			       "(make it larger, or leave it out)", (unsigned long long)(bytes >> 20));
	return rc;
}

static void remove_tree(const char *path)
{
	char *argv[] = { "rm", "-rf", "--one-file-system", (char *)path, NULL };
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
}

static void remove_stale(const char *dir, const char *id)
{
	char prefix[64], path[PATH_MAX + 300];
	DIR *d = opendir(dir);
	struct dirent *de;

	snprintf(prefix, sizeof(prefix), "build-%s-", id);
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		remove_tree(path);
	}
	if (d)
		closedir(d);
}

static int build_image(struct build *b, const char *image, struct err *e)
{
	const struct rootfs_spec *r = b->r;
	int rc;

	b->steps = 2 + (r->ncopy > 0) + (int)r->nrun;
	b->step = 1;
	switch (r->kind) {
	case ROOTFS_DEBIAN: rc = step_debian(b, e); break;
	case ROOTFS_OCI: rc = step_oci(b, e); break;
	case ROOTFS_DOCKER_ARCHIVE: rc = step_docker_archive(b, e); break;
	case ROOTFS_DIR: rc = step_dir(b, e); break;
	case ROOTFS_TAR: rc = step_tar(b, e); break;
	default: rc = err_set(e, -EINVAL, "unknown rootfs source");
	}
	if (!rc && r->ncopy) {
		b->step++;
		rc = step_copy(b, e);
	}
	for (size_t i = 0; !rc && i < r->nrun; i++) {
		b->step++;
		rc = step_run(b, i, e);
	}
	if (!rc)
		rc = check_shell(b, e);
	if (!rc)
		rc = mount_points(b, e);
	if (!rc) {
		b->step++;
		rc = step_mke2fs(b, image, e);
	}
	return rc;
}

/* An existing ext4 image: checked, and copied (sparse, or shared by
 * reflink where the file system can) into the cache like a built one, so
 * that a bundle only ever names images in the cache. */
static int step_image(struct build *b, const char *image, struct err *e)
{
	const char *path = b->r->source;
	char *argv[] = { "cp", "--sparse=always", "--reflink=auto", (char *)path, (char *)image, NULL };
	unsigned char magic[2];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ok = fd >= 0 && pread(fd, magic, 2, 1024 + 56) == 2 && magic[0] == 0x53 && magic[1] == 0xef;

	if (fd < 0)
		return err_set(e, -errno, "rootfs.image: %s: %s", path, strerror(errno));
	close(fd);
	if (!ok)
		return err_set(e, -EINVAL, "rootfs.image: %s is not an ext2/3/4 file system image", path);
	b->steps = b->step = 1;
	say(b, "ext4 image %s, into the cache...", path);
	return run_tool(b, "cp", argv, e);
}

/* The source is there and of its kind, said before anything is hashed. */
static int check_source(const struct rootfs_spec *r, struct err *e)
{
	char path[PATH_MAX], tag[256];
	const char *key = r->kind == ROOTFS_OCI ? "oci" : r->kind == ROOTFS_DIR ? "dir"
			  : r->kind == ROOTFS_TAR ? "tar" : r->kind == ROOTFS_IMAGE ? "image"
							  : "docker_archive";
	struct stat st;
	int dir = r->kind == ROOTFS_OCI || r->kind == ROOTFS_DIR;

	if (r->kind == ROOTFS_DEBIAN)
		return 0;
	split_oci(r->source, path, sizeof(path), tag, sizeof(tag));
	if (r->kind == ROOTFS_OCI &&
	    (stat(path, &st) || !S_ISDIR(st.st_mode) || access(path, R_OK | X_OK)))
		return err_set(e, -ENOENT, "rootfs.oci: %s is not an OCI image layout (a directory "
			       "with index.json and blobs/; `skopeo copy docker://IMAGE oci:%s:TAG` "
			       "makes one)", path, path);
	if (r->kind != ROOTFS_OCI && stat(r->source, &st))
		return err_set(e, -errno, "rootfs.%s: %s: %s", key, r->source, strerror(errno));
	if (dir != !!S_ISDIR(st.st_mode))
		return err_set(e, dir ? -ENOTDIR : -EISDIR, "rootfs.%s: %s is %sa directory", key,
			       r->kind == ROOTFS_OCI ? path : r->source, dir ? "not " : "");
	return 0;
}

int rootfs_image_path(const char *id, char *out, size_t len, struct err *e)
{
	char dir[PATH_MAX];

	if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
		return err_set(e, -EINVAL, "\"%.40s\" is not a root filesystem id", id);
	int rc = cache_dir_private(dir, sizeof(dir), "rootfs", e);

	if (rc)
		return rc;
	if (snprintf(out, len, "%s/%s.ext4", dir, id) >= (int)len)
		return err_set(e, -ENAMETOOLONG, "%s: path too long", dir);
	return 0;
}

int rootfs_build(const struct rootfs_spec *r, const struct rootfs_opts *o, char **image,
		 char id[33], struct err *e)
{
	struct build b = { .r = r, .o = o, .logfd = -1, .tty = isatty(2) };
	char final[PATH_MAX + 64], tmp[PATH_MAX + 64], lockp[PATH_MAX + 64];
	double t0 = clock_ms();
	int rc, lockfd;

	*image = NULL;
	rc = check_source(r, e);
	if (!rc)
		rc = rootfs_id(r, id, e);
	if (rc)
		return rc;
	if ((rc = cache_dir_private(b.dir, sizeof(b.dir), "rootfs", e)))
		return rc;
	snprintf(final, sizeof(final), "%s/%s.ext4", b.dir, id);
	snprintf(lockp, sizeof(lockp), "%s/%s.lock", b.dir, id);
	/* one build of an image at a time; the second waits, then finds it */
	lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0)
		return err_set(e, -errno, "%s: %s", lockp, strerror(errno));
	if (flock(lockfd, LOCK_EX | LOCK_NB)) {
		fprintf(stderr, "smolvm: rootfs: waiting for another smolvm building the same image\n");
		flock(lockfd, LOCK_EX);
	}
	if (!o->rebuild && !access(final, R_OK)) {
		cache_touch_path(final);
		if (o->verbose)
			fprintf(stderr, "smolvm: rootfs: %s (cached; inputs hashed in %.1f ms)\n",
				final, clock_ms() - t0);
		goto done;
	}
	/* a build of this id that was killed (Ctrl-C) left its work
	 * directory: nobody else builds this id while we hold its lock */
	remove_stale(b.dir, id);
	snprintf(b.work, sizeof(b.work), "%s/build-%s-XXXXXX", b.dir, id);
	if (!mkdtemp(b.work)) {
		rc = err_set(e, -errno, "%s: %s", b.work, strerror(errno));
		goto done;
	}
	snprintf(b.root, sizeof(b.root), "%s/root", b.work);
	snprintf(b.log, sizeof(b.log), "%s/%s.log", b.dir, id);
	b.logfd = open(b.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	snprintf(tmp, sizeof(tmp), "%s/image.ext4", b.work);
	rc = r->kind == ROOTFS_IMAGE ? step_image(&b, tmp, e) : build_image(&b, tmp, e);
	if (!rc && rename(tmp, final))
		rc = err_set(e, -errno, "%s: %s", final, strerror(errno));
	remove_tree(b.work);
	if (b.logfd >= 0)
		close(b.logfd);
	if (!rc) {
		fprintf(stderr, "smolvm: rootfs: built in %.1f s: %s\n", (clock_ms() - t0) / 1000, final);
		cache_added(final);
	}
done:
	close(lockfd);
	if (!rc && !(*image = strdup(final)))
		rc = err_set(e, -ENOMEM, "out of memory");
	return rc;
}
