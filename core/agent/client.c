#include "agent/client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"

#define FRAME_MAX (SMOLVM_AGENT_HEADER + SMOLVM_AGENT_MAX_PAYLOAD)
#define STR_(x) #x
#define STR(x) STR_(x)
/* Stop reading our stdin while this much is waiting to go out. */
#define OBUF_HIGH (4 * FRAME_MAX)
/* How long a killed command may take to report its exit. */
#define KILL_GRACE_MS 10000

static long long now_ms(void)
{
	return (long long)clock_ms();
}

static int left_ms(long long deadline)
{
	long long d;

	if (deadline <= 0)
		return -1;
	d = deadline - now_ms();
	return d < 0 ? 0 : d > 1000000 ? 1000000 : (int)d;
}

static int cancelled(struct err *e)
{
	return err_set(e, -ECANCELED, "the machine stopped");
}

/* Appends a frame built by an encoder into the output queue. */
static int queue(struct agent_conn *a, const void *frame, size_t n, struct err *e)
{
	if (a->olen + n > a->ocap) {
		size_t cap = a->ocap ? a->ocap : FRAME_MAX;
		while (cap < a->olen + n)
			cap *= 2;
		uint8_t *p = realloc(a->obuf, cap);
		if (!p)
			return err_set(e, -ENOMEM, "out of memory");
		a->obuf = p;
		a->ocap = cap;
	}
	memcpy(a->obuf + a->olen, frame, n);
	a->olen += n;
	return 0;
}

static int flush_some(struct agent_conn *a, struct err *e)
{
	while (a->olen) {
		ssize_t n = send(a->fd, a->obuf, a->olen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return err_set(e, -errno, "guest agent connection: %s", strerror(errno));
		}
		memmove(a->obuf, a->obuf + n, a->olen - (size_t)n);
		a->olen -= (size_t)n;
	}
	return 0;
}

/* Waits for `events` on the connection, or the cancel fd, until the
 * deadline; returns the connection's revents, or an error (`late` says
 * what did not come in time). */
static int wait_conn(struct agent_conn *a, short events, long long deadline, const char *late,
		     struct err *e)
{
	for (;;) {
		struct pollfd p[2] = { { a->fd, events, 0 }, { a->cancel_fd, POLLIN, 0 } };
		int n = poll(p, a->cancel_fd >= 0 ? 2 : 1, left_ms(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(e, -errno, "poll: %s", strerror(errno));
		if (n == 0)
			return err_set(e, -ETIMEDOUT, "%s", late);
		if (p[1].revents)
			return cancelled(e);
		return p[0].revents;
	}
}

/* Next frame from the guest, sending queued output meanwhile. Returns 1
 * with a frame, or an error (timeout, cancel, EOF, protocol). */
static int next_msg(struct agent_conn *a, struct smolvm_agent_msg *m, long long deadline,
		    struct err *e)
{
	for (;;) {
		if (a->roff < a->rlen) {
			size_t used;
			int rc = smolvm_agent_feed(a->dec, a->rbuf + a->roff, a->rlen - a->roff,
						   &used, m);
			a->roff += used;
			if (rc < 0)
				return err_set(e, rc, "guest agent sent a malformed frame");
			if (rc == 1)
				return 1;
			continue;
		}
		int rev = wait_conn(a, POLLIN | (a->olen ? POLLOUT : 0), deadline,
				    "the guest agent did not answer in time", e);
		if (rev < 0)
			return rev;
		if ((rev & POLLOUT) && flush_some(a, e))
			return -EIO;
		if (rev & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(a->fd, a->rbuf, sizeof(a->rbuf), MSG_DONTWAIT);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0)
				return err_set(e, -ECONNRESET, "the guest agent closed the connection");
			a->rlen = (size_t)r;
			a->roff = 0;
		}
	}
}

/* Sends everything queued. */
static int drain(struct agent_conn *a, long long deadline, struct err *e)
{
	while (a->olen) {
		int rev = wait_conn(a, POLLOUT, deadline,
				    "the guest agent did not take our data in time", e);
		if (rev < 0)
			return rev;
		if (flush_some(a, e))
			return -EIO;
	}
	return 0;
}

static int guest_error(const struct smolvm_agent_msg *m, const char *what, int *gerr,
		       struct err *e)
{
	uint32_t code;
	const char *msg;

	if (smolvm_agent_parse_error(m, &code, &msg))
		return err_set(e, -EPROTO, "%s: the guest agent sent a malformed ERROR", what);
	if (gerr)
		*gerr = (int)code;
	return err_set(e, code ? -(int)code : -EIO, "%s: %s", what,
		       *msg ? msg : strerror((int)code));
}

static int expect_ok(struct agent_conn *a, const char *what, long long deadline,
		     struct err *e)
{
	struct smolvm_agent_msg m;
	int rc = next_msg(a, &m, deadline, e);

	if (rc < 0)
		return err_wrap(e, rc, "%s", what);
	if (m.type == SMOLVM_AGENT_OK)
		return 0;
	if (m.type == SMOLVM_AGENT_ERROR)
		return guest_error(&m, what, NULL, e);
	return err_set(e, -EPROTO, "%s: unexpected %s from the guest agent", what,
		       smolvm_agent_type_name(m.type));
}

/* "CONNECT <port>\n" -> "OK <n>\n" (the device's convention). */
static int vsock_handshake(struct agent_conn *a, long long deadline, struct err *e)
{
	char line[64];
	size_t n = 0;
	int len = snprintf(line, sizeof(line), "CONNECT %u\n", SMOLVM_AGENT_PORT);

	if (queue(a, line, (size_t)len, e) || drain(a, deadline, e))
		return -EIO;
	while (n < sizeof(line) - 1) {
		int rev = wait_conn(a, POLLIN, deadline,
				    "the guest did not answer on vsock port " STR(SMOLVM_AGENT_PORT) " in time "
				    "(is its virtio-vsock driver up?)", e);
		if (rev < 0)
			return rev;
		ssize_t got = recv(a->fd, line + n, 1, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got <= 0)
			return err_set(e, -ECONNREFUSED,
				       "no guest agent listens on vsock port %u (the guest refused "
				       "the connection: is smolvm-agent in its initramfs?)",
				       SMOLVM_AGENT_PORT);
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = 0;
	if (strncmp(line, "OK ", 3))
		return err_set(e, -EPROTO, "vsock device: unexpected answer \"%s\"", line);
	return 0;
}

int agent_connect(struct agent_conn *a, const char *uds, int timeout_ms, int cancel_fd,
		  struct err *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long long deadline = now_ms() + timeout_ms;
	uint8_t frame[256];
	struct smolvm_agent_msg m;
	uint32_t version;
	const char *name;
	long n;
	int rc;

	memset(a, 0, sizeof(*a));
	a->cancel_fd = cancel_fd;
	a->fd = -1;
	if (strlen(uds) >= sizeof(sa.sun_path))
		return err_set(e, -ENAMETOOLONG, "%s: socket path too long", uds);
	strcpy(sa.sun_path, uds);
	a->dec = malloc(sizeof(*a->dec));
	if (!a->dec)
		return err_set(e, -ENOMEM, "out of memory");
	smolvm_agent_decoder_init(a->dec);
	a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a->fd < 0)
		return err_set(e, -errno, "socket: %s", strerror(errno));
	if (connect(a->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return err_set(e, -errno, "%s: %s (the machine's virtio-vsock socket)", uds,
			       strerror(errno));
	rc = vsock_handshake(a, deadline, e);
	if (rc)
		return rc;
	n = smolvm_agent_build_hello(frame, sizeof(frame), "smolvm");
	if (n < 0 || queue(a, frame, (size_t)n, e))
		return err_set(e, -ENOMEM, "out of memory");
	rc = next_msg(a, &m, deadline, e);
	if (rc < 0)
		return err_wrap(e, rc, "guest agent hello");
	if (m.type == SMOLVM_AGENT_ERROR)
		return guest_error(&m, "guest agent hello", NULL, e);
	if (smolvm_agent_parse_hello(&m, &version, &name))
		return err_set(e, -EPROTO, "guest agent: expected HELLO, got %s",
			       smolvm_agent_type_name(m.type));
	if (version != SMOLVM_AGENT_VERSION)
		return err_set(e, -EPROTO,
			       "the guest agent (%s) speaks protocol version %u, smolvm speaks %u",
			       name, version, SMOLVM_AGENT_VERSION);
	return 0;
}

void agent_close(struct agent_conn *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	free(a->dec);
	free(a->obuf);
	a->dec = NULL;
	a->obuf = NULL;
	a->olen = a->ocap = 0;
}

int agent_sync(struct agent_conn *a, int timeout_ms, struct err *e)
{
	uint8_t seed[SMOLVM_AGENT_SEED_BYTES], frame[128];
	struct timespec ts;
	long n;

	if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		return err_set(e, -EIO, "getrandom: %s", strerror(errno));
	clock_gettime(CLOCK_REALTIME, &ts);
	n = smolvm_agent_build_sync(frame, sizeof(frame),
				    (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, seed);
	if (n < 0 || queue(a, frame, (size_t)n, e))
		return err_set(e, -ENOMEM, "out of memory");
	return expect_ok(a, "guest clock and RNG sync", now_ms() + timeout_ms, e);
}

/* ---- files -------------------------------------------------------------- */

/* A copy-in under way: its connection, deadline and error. */
struct copy_in {
	struct agent_conn *a;
	long long deadline;
	struct err *e;
};

static int put_file(struct copy_in *ci, int fd, const char *host, const char *guest, mode_t mode)
{
	struct agent_conn *a = ci->a;
	uint8_t *frame = malloc(FRAME_MAX);
	int rc = 0;
	long n;

	if (!frame)
		return err_set(ci->e, -ENOMEM, "out of memory");
	n = smolvm_agent_build_put(frame, FRAME_MAX, mode & 07777, guest);
	if (n < 0) {
		rc = err_set(ci->e, -ENAMETOOLONG, "%s: guest path too long", guest);
		goto out;
	}
	rc = queue(a, frame, (size_t)n, ci->e);
	for (;;) {
		ssize_t got;
		if (rc)
			goto out;
		got = read(fd, frame + SMOLVM_AGENT_HEADER, SMOLVM_AGENT_MAX_PAYLOAD);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = err_set(ci->e, -errno, "%s: %s", host, strerror(errno));
			goto out;
		}
		smolvm_agent_header(frame, SMOLVM_AGENT_DATA, (uint32_t)got);
		rc = queue(a, frame, SMOLVM_AGENT_HEADER + (size_t)got, ci->e);
		if (!rc)
			rc = drain(a, ci->deadline, ci->e);
		if (!got || rc)
			break;
	}
	if (!rc) {
		char what[600];
		snprintf(what, sizeof(what), "copy %s to the guest's %s", host, guest);
		rc = expect_ok(a, what, ci->deadline, ci->e);
	}
out:
	free(frame);
	return rc;
}

static int put_dir(struct copy_in *ci, const char *guest, mode_t mode)
{
	uint8_t frame[SMOLVM_AGENT_HEADER + 4 + 4096];
	char what[4200];
	long n = smolvm_agent_build_put(frame, sizeof(frame), S_IFDIR | (mode & 07777), guest);

	if (n < 0)
		return err_set(ci->e, -ENAMETOOLONG, "%s: guest path too long", guest);
	snprintf(what, sizeof(what), "make the guest directory %s", guest);
	return queue(ci->a, frame, (size_t)n, ci->e) ?: expect_ok(ci->a, what, ci->deadline, ci->e);
}

static int put_link(struct copy_in *ci, int at, const char *name, const char *host,
		    const char *guest)
{
	uint8_t frame[SMOLVM_AGENT_HEADER + 2 * 4096];
	char target[4096], what[4200];
	ssize_t len = readlinkat(at, name, target, sizeof(target) - 1);
	long n;

	if (len < 0)
		return err_set(ci->e, -errno, "%s: %s", host, strerror(errno));
	target[len] = 0;
	n = smolvm_agent_build_link(frame, sizeof(frame), guest, target);
	if (n < 0)
		return err_set(ci->e, -ENAMETOOLONG, "%s: guest path too long", guest);
	snprintf(what, sizeof(what), "make the guest link %s", guest);
	n = queue(ci->a, frame, (size_t)n, ci->e) ?: expect_ok(ci->a, what, ci->deadline, ci->e);
	if (n == -ENOSYS)
		return err_set(ci->e, -ENOSYS, "%s is a symbolic link, and the guest's agent is too "
			       "old to make one (links are copied as links, never followed)", host);
	return (int)n;
}

/* One entry of a host tree: name in `at` (the top: a path, followed if
 * it is a link, as the user named it). Below the top nothing is followed:
 * a link goes in as a link (a checkout's `keys -> ~/.ssh` sends the link,
 * not the keys), and the walk holds each directory open, so a link
 * swapped in meanwhile is not followed either. Other kinds of file
 * (sockets, FIFOs, devices) are left out, with a warning. */
static int copy_at(struct copy_in *ci, int at, const char *name, const char *host,
		   const char *guest, int depth)
{
	int nofollow = depth ? O_NOFOLLOW : 0;
	struct stat st;
	DIR *d;
	struct dirent *de;
	int fd, rc = 0;

	if (depth > 64)
		return err_set(ci->e, -ELOOP, "%s: directories nested too deep", host);
	if (fstatat(at, name, &st, depth ? AT_SYMLINK_NOFOLLOW : 0) < 0)
		return err_set(ci->e, -errno, "%s: %s", host, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return put_link(ci, at, name, host, guest);
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "smolvm: copy-in: %s left out: not a file, directory or link\n",
			host);
		return 0;
	}
	fd = openat(at, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | nofollow |
				  (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	if (fd < 0)
		return err_set(ci->e, -errno, "%s: %s", host, strerror(errno));
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
		close(fd);
		return err_set(ci->e, -EAGAIN, "%s: changed while it was copied", host);
	}
	if (S_ISREG(st.st_mode)) {
		rc = put_file(ci, fd, host, guest, st.st_mode);
		close(fd);
		return rc;
	}
	rc = put_dir(ci, guest, st.st_mode);
	if (rc || !(d = fdopendir(fd))) {
		rc = rc ? rc : err_set(ci->e, -errno, "%s: %s", host, strerror(errno));
		close(fd);
		return rc;
	}
	while (!rc && (de = readdir(d))) {
		char *h, *g;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&h, "%s/%s", host, de->d_name) < 0)
			h = NULL;
		if (asprintf(&g, "%s/%s", guest, de->d_name) < 0)
			g = NULL;
		rc = h && g ? copy_at(ci, dirfd(d), de->d_name, h, g, depth + 1)
			    : err_set(ci->e, -ENOMEM, "out of memory");
		free(h);
		free(g);
	}
	closedir(d);
	return rc;
}

int agent_copy_in(struct agent_conn *a, const char *host_path, const char *guest_path,
		  long long deadline, struct err *e)
{
	struct copy_in ci = { a, deadline, e };

	return copy_at(&ci, AT_FDCWD, host_path, host_path, guest_path, 0);
}

int agent_copy_out(struct agent_conn *a, const char *guest_path, const char *host_path,
		   uint64_t max_bytes, long long deadline, struct err *e)
{
	uint8_t frame[SMOLVM_AGENT_HEADER + 4096];
	char *tmp = NULL, what[4200];
	struct smolvm_agent_msg m;
	long n = smolvm_agent_build_path(frame, sizeof(frame), SMOLVM_AGENT_GET, guest_path);
	uint64_t total = 0;
	int fd = -1, rc;

	if (n < 0)
		return err_set(e, -ENAMETOOLONG, "%s: guest path too long", guest_path);
	snprintf(what, sizeof(what), "copy the guest's %s to %s", guest_path, host_path);
	if (asprintf(&tmp, "%s.smolvm-XXXXXX", host_path) < 0)
		return err_set(e, -ENOMEM, "out of memory");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = err_set(e, -errno, "%s: %s", host_path, strerror(errno));
		free(tmp);
		return rc;
	}
	rc = queue(a, frame, (size_t)n, e);
	while (!rc) {
		rc = next_msg(a, &m, deadline, e);
		if (rc == -ETIMEDOUT)
			rc = err_set(e, -ETIMEDOUT, "%s: not done in time (the exec's --timeout, "
				     "else %d s): the guest sent %llu bytes", what,
				     AGENT_COPY_TIMEOUT_S, (unsigned long long)total);
		if (rc < 0)
			break;
		rc = 0;
		if (m.type == SMOLVM_AGENT_ERROR) {
			rc = guest_error(&m, what, NULL, e);
		} else if (m.type != SMOLVM_AGENT_DATA) {
			rc = err_set(e, -EPROTO, "%s: unexpected %s", what,
				     smolvm_agent_type_name(m.type));
		} else if (!m.len) {
			break;
		} else if (m.len > max_bytes - total) {
			rc = err_set(e, -EFBIG, "%s: the guest sent more than %llu bytes "
				     "(--copy-out-max): nothing written", what,
				     (unsigned long long)max_bytes);
		} else {
			total += m.len;
			for (size_t off = 0; !rc && off < m.len;) {
				ssize_t w = write(fd, m.payload + off, m.len - off);
				if (w < 0 && errno != EINTR)
					rc = err_set(e, -errno, "%s: %s", host_path, strerror(errno));
				off += w > 0 ? (size_t)w : 0;
			}
		}
	}
	/* mkostemp made it 0600: give it the mode a new file gets */
	if (!rc) {
		mode_t um = umask(0);
		umask(um);
		fchmod(fd, 0666 & ~um);
	}
	if (!rc && (fsync(fd) < 0 || rename(tmp, host_path) < 0))
		rc = err_set(e, -errno, "%s: %s", host_path, strerror(errno));
	close(fd);
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc < 0 ? rc : 0;
}

/* ---- exec --------------------------------------------------------------- */

static int queue_stdin(struct agent_conn *a, const void *p, size_t n, struct err *e)
{
	uint8_t hdr[SMOLVM_AGENT_HEADER];

	smolvm_agent_header(hdr, SMOLVM_AGENT_STDIN, (uint32_t)n);
	return queue(a, hdr, sizeof(hdr), e) ?: queue(a, p, n, e);
}

int agent_exec(struct agent_conn *a, const char *cwd, const char *const *argv,
	       const char *const *envp, const struct agent_exec_io *io,
	       struct agent_status *st, int *exec_errno, struct err *e)
{
	static const char *const noenv[] = { NULL };
	uint8_t *frame = malloc(FRAME_MAX);
	long long deadline = io->timeout_ms > 0 ? now_ms() + io->timeout_ms : -1;
	size_t in_off = 0;
	int in_open = 1, started = 0, killed = 0, rc = 0;
	long n;

	memset(st, 0, sizeof(*st));
	*exec_errno = 0;
	if (!frame)
		return err_set(e, -ENOMEM, "out of memory");
	n = smolvm_agent_build_exec(frame, FRAME_MAX, cwd ? cwd : "", argv, envp ? envp : noenv);
	if (n < 0) {
		free(frame);
		return err_set(e, -E2BIG, "the command and its environment do not fit in one frame");
	}
	rc = queue(a, frame, (size_t)n, e);
	while (!rc) {
		/* Feed stdin while the queue is short. */
		while (in_open && a->olen < OBUF_HIGH) {
			if (io->in_fd < 0) {
				size_t k = io->in_len - in_off;
				if (k > SMOLVM_AGENT_MAX_PAYLOAD)
					k = SMOLVM_AGENT_MAX_PAYLOAD;
				rc = queue_stdin(a, (const uint8_t *)io->in_buf + in_off, k, e);
				in_off += k;
				in_open = k != 0;
				continue;
			}
			struct pollfd p = { io->in_fd, POLLIN, 0 };
			if (poll(&p, 1, 0) <= 0)
				break;
			ssize_t got = read(io->in_fd, frame, SMOLVM_AGENT_MAX_PAYLOAD);
			if (got < 0 && (errno == EINTR || errno == EAGAIN))
				break;
			if (got < 0)
				got = 0; /* an unreadable stdin ends like an empty one */
			rc = queue_stdin(a, frame, (size_t)got, e);
			in_open = got != 0;
		}
		if (rc)
			break;
		if (a->roff < a->rlen) {
			struct smolvm_agent_msg m;
			size_t used;
			int r = smolvm_agent_feed(a->dec, a->rbuf + a->roff, a->rlen - a->roff, &used, &m);
			a->roff += used;
			if (r < 0) {
				rc = err_set(e, r, "guest agent sent a malformed frame");
				break;
			}
			if (r == 0)
				continue;
			switch (m.type) {
			case SMOLVM_AGENT_STARTED:
				started = 1;
				break;
			case SMOLVM_AGENT_ERROR:
				/* Its errno says why the command did not start, and
				 * only then (exit status 126/127). */
				rc = guest_error(&m, argv[0], started ? NULL : exec_errno, e);
				break;
			case SMOLVM_AGENT_STDOUT:
			case SMOLVM_AGENT_STDERR:
				if (m.len)
					rc = io->out(io->opaque, m.type == SMOLVM_AGENT_STDOUT ? 1 : 2,
						     m.payload, m.len);
				if (rc)
					rc = err_set(e, rc, "writing the command's output: %s",
						     strerror(-rc));
				break;
			case SMOLVM_AGENT_EXIT: {
				uint32_t how, value;
				if (smolvm_agent_parse_exit(&m, &how, &value)) {
					rc = err_set(e, -EPROTO, "guest agent sent a malformed EXIT");
					break;
				}
				st->signaled = how == SMOLVM_AGENT_SIGNALED;
				st->value = (int)(value & 0xff);
				st->timed_out = killed;
				free(frame);
				return 0;
			}
			default:
				rc = err_set(e, -EPROTO, "unexpected %s from the guest agent",
					     smolvm_agent_type_name(m.type));
			}
			continue;
		}
		if (deadline > 0 && !left_ms(deadline)) {
			if (killed) {
				rc = err_set(e, -ETIMEDOUT,
					     "the command was killed but its exit never came");
				break;
			}
			/* The timeout: kill it and wait for its exit. */
			n = smolvm_agent_build_u32(frame, FRAME_MAX, SMOLVM_AGENT_SIGNAL, 9);
			rc = n < 0 ? -EIO : queue(a, frame, (size_t)n, e);
			killed = 1;
			in_open = 0;
			deadline = now_ms() + KILL_GRACE_MS;
			continue;
		}
		struct pollfd p[3] = { { a->fd, POLLIN | (a->olen ? POLLOUT : 0), 0 },
				       { a->cancel_fd, POLLIN, 0 },
				       { in_open && io->in_fd >= 0 && a->olen < OBUF_HIGH ? io->in_fd : -1,
					 POLLIN, 0 } };
		int r = poll(p, 3, left_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = err_set(e, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents) {
			rc = cancelled(e);
			break;
		}
		if ((p[0].revents & POLLOUT) && flush_some(a, e)) {
			rc = -EIO;
			break;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t got = recv(a->fd, a->rbuf, sizeof(a->rbuf), MSG_DONTWAIT);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0) {
				rc = err_set(e, -ECONNRESET, "the guest agent closed the connection%s",
					     started ? " while the command ran" : "");
				break;
			}
			a->rlen = (size_t)got;
			a->roff = 0;
		}
	}
	free(frame);
	return rc;
}
