/* smolvm-agent: the guest side of the agent protocol (docs/agent-protocol.md).
 *
 *   smolvm-agent                      listen on vsock port SMOLVM_AGENT_PORT
 *   smolvm-agent --listen-unix PATH   listen on a Unix socket (host tests)
 *   smolvm-agent --dry-sync           SYNC is checked and acknowledged but
 *                                     touches neither the clock nor the RNG
 *
 * One process, one poll() loop, many connections, each with its own
 * decoder and state. Commands are started with a vfork-style clone (the
 * child shares our memory until its execve, which is how a failed exec
 * reports its errno) and never with a fork of this process's memory.
 *
 * Where the guest kernel is emulated every system call costs, so the loop
 * does what it can with few: one read per readable pipe, one send per
 * pass, no syscall to learn what is already known.
 *
 * Flow control: the child's output and GET's file are read only while the
 * connection's output queue is under QHIGH; the connection is read only
 * while that holds and the command's stdin has taken the last STDIN frame
 * (the frame stays in the decoder until it has: no copy, no growth). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/random.h>
#include <net/if.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <smolvm/agent.h>

#define AGENT_NAME "smolvm-agent"
#define FRAME_MAX (SMOLVM_AGENT_HEADER + SMOLVM_AGENT_MAX_PAYLOAD)
/* Stop producing output for a connection above this much queued. */
#define QHIGH (256u * 1024)
/* Room for one data frame past QHIGH and the control frames after it. */
#define OQ_CAP (QHIGH + FRAME_MAX + 16384)
#define RX_CAP 65536
#define MAX_CONNS 64
#define MSG_MAX 1024 /* ERROR messages we write */
#define CHILD_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define CHILD_HOME "HOME=/root"

enum cstate {
	C_HELLO,       /* waiting for the host's HELLO */
	C_IDLE,        /* between requests */
	C_EXEC,        /* a command runs: STDIN, SIGNAL; EXIT ends it */
	C_PUT,         /* receiving a file's DATA */
	C_PUT_DISCARD, /* a PUT failed: skipping DATA up to the empty one */
	C_GET,         /* sending a file */
};

struct conn {
	int fd;
	enum cstate st;
	int closing; /* send what is queued, then close */
	int dead;
	int pi;      /* poll index of fd, -1 = not polled this round */

	struct smolvm_agent_decoder dec;
	uint8_t rx[RX_CAP];
	size_t rx_off, rx_len;

	uint8_t *oq; /* frames to send: oq[oq_off .. oq_off + oq_len) */
	size_t oq_off, oq_len;

	/* C_EXEC */
	pid_t pid; /* also its process group */
	int reaped, status;
	int in_fd, out_fd, err_fd;
	int pi_in, pi_out, pi_err;
	const uint8_t *in_ptr; /* the rest of the last STDIN frame (in dec) */
	size_t in_left;

	/* C_PUT */
	int put_fd;
	uint32_t put_perm;
	char put_path[PATH_MAX], put_tmp[PATH_MAX];

	/* C_GET */
	int get_fd;
};

static struct conn *conns[MAX_CONNS];
static int nconns;
static int lfd = -1, sfd = -1, urandom_fd = -1;
static int dry_sync;
static int background; /* --background: fork once listening */
static const char *unix_path;
/* --busybox and --applets: a command not found on PATH that busybox
 * provides runs as that applet, so the initramfs needs no link per applet
 * (each costs the emulated guest kernel ~35 ms at boot on slow hosts) */
static const char *busybox_exe;
static char *applets; /* "\nname\nname\n...", from the --applets file */
static const char *tunables; /* "GLIBC_TUNABLES=..." from our environment */
static mode_t our_umask;
static unsigned put_seq;

static void logx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logx(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), AGENT_NAME ": ");

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(2, buf, (size_t)n) < 0) {
		/* nowhere else to say it */
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* ---- output queue --------------------------------------------------------- */

/* Room for `need` bytes at the tail, or NULL (a bug: the caller drops the
 * connection rather than overflow). */
static uint8_t *oq_tail(struct conn *c, size_t need)
{
	if (c->oq_off + c->oq_len + need > OQ_CAP) {
		if (c->oq_len + need > OQ_CAP)
			return NULL;
		memmove(c->oq, c->oq + c->oq_off, c->oq_len);
		c->oq_off = 0;
	}
	return c->oq + c->oq_off + c->oq_len;
}

static void conn_fail(struct conn *c);

/* Adds a frame that `call`, an encoder, writes into the tail: buf_ with
 * room_ bytes. */
#define QUEUE(c, room, call)                                                   \
	do {                                                                   \
		size_t room_ = (room);                                         \
		uint8_t *buf_ = oq_tail((c), room_);                           \
		long rc_ = buf_ ? (call) : -ENOBUFS;                           \
		if (rc_ < 0) {                                                 \
			logx("cannot queue a frame (%ld): dropping a connection", \
			     rc_);                                             \
			conn_fail(c);                                          \
		} else {                                                       \
			(c)->oq_len += (size_t)rc_;                            \
		}                                                              \
	} while (0)

static void send_ok(struct conn *c)
{
	QUEUE(c, SMOLVM_AGENT_HEADER,
	      smolvm_agent_build_data(buf_, room_, SMOLVM_AGENT_OK, NULL, 0));
}

static void send_error(struct conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void send_error(struct conn *c, int err, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err < 1 || err > 4095)
		err = EIO;
	QUEUE(c, SMOLVM_AGENT_HEADER + 4 + MSG_MAX,
	      smolvm_agent_build_error(buf_, room_, (uint32_t)err, msg));
}

static void send_u32(struct conn *c, uint8_t type, uint32_t v)
{
	QUEUE(c, SMOLVM_AGENT_HEADER + 4, smolvm_agent_build_u32(buf_, room_, type, v));
}

/* One read of `fd` into a data frame of `type` at the tail. Returns the
 * bytes read (0 = end of file: an empty frame was queued), or -errno
 * (-EAGAIN: nothing now; nothing queued). */
static ssize_t queue_read(struct conn *c, uint8_t type, int fd)
{
	uint8_t *t = oq_tail(c, FRAME_MAX);
	ssize_t n;

	if (!t)
		return -ENOBUFS;
	do
		n = read(fd, t + SMOLVM_AGENT_HEADER, SMOLVM_AGENT_MAX_PAYLOAD);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	smolvm_agent_header(t, type, (uint32_t)n);
	c->oq_len += SMOLVM_AGENT_HEADER + (size_t)n;
	return n;
}

/* One send of what is queued. */
static void flush(struct conn *c)
{
	ssize_t n;

	if (!c->oq_len || c->dead)
		return;
	do
		n = send(c->fd, c->oq + c->oq_off, c->oq_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			conn_fail(c);
		return;
	}
	c->oq_off += (size_t)n;
	c->oq_len -= (size_t)n;
	if (!c->oq_len)
		c->oq_off = 0;
}

/* ---- connection lifetime -------------------------------------------------- */

static void put_abort(struct conn *c)
{
	if (c->put_fd >= 0) {
		close_fd(&c->put_fd);
		unlink(c->put_tmp);
	}
}

/* Ends what the connection was doing: the command's process group is
 * killed (it is reaped by the SIGCHLD handling, which no longer finds it
 * here), a PUT's temporary file removed. */
static void conn_stop(struct conn *c)
{
	if (c->st == C_EXEC && c->pid > 0)
		kill(-c->pid, SIGKILL);
	c->pid = 0;
	close_fd(&c->in_fd);
	close_fd(&c->out_fd);
	close_fd(&c->err_fd);
	c->in_left = 0;
	put_abort(c);
	close_fd(&c->get_fd);
	c->st = C_IDLE;
}

/* Closes at once (the peer is gone, or the connection broke). */
static void conn_fail(struct conn *c)
{
	if (c->dead)
		return;
	conn_stop(c);
	close_fd(&c->fd);
	c->dead = 1;
}

/* A protocol violation: ERROR, then close once it has been sent. */
static void proto_error(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void proto_error(struct conn *c, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_stop(c);
	send_error(c, EPROTO, "protocol error: %s", msg);
	c->closing = 1;
}

static void conn_new(int fd)
{
	struct conn *c;

	if (nconns == MAX_CONNS) {
		uint8_t f[128];
		long n = smolvm_agent_build_error(f, sizeof(f), EAGAIN, "too many connections");
		if (n > 0 && send(fd, f, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* it was a courtesy */
		}
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->oq = malloc(OQ_CAP);
	if (!c || !c->oq) {
		logx("out of memory for a connection");
		if (c)
			free(c);
		close(fd);
		return;
	}
	c->fd = fd;
	c->st = C_HELLO;
	c->pi = c->pi_in = c->pi_out = c->pi_err = -1;
	c->in_fd = c->out_fd = c->err_fd = c->put_fd = c->get_fd = -1;
	smolvm_agent_decoder_init(&c->dec);
	conns[nconns++] = c;
}

static void conns_sweep(void)
{
	int j = 0;

	for (int i = 0; i < nconns; i++) {
		struct conn *c = conns[i];
		if (c->dead) {
			free(c->oq);
			free(c);
		} else {
			conns[j++] = c;
		}
	}
	nconns = j;
}

/* ---- commands ------------------------------------------------------------- */

struct spawn {
	const char *file;
	char *const *argv;
	char *const *envp;
	const char *cwd;  /* NULL: stay in / */
	const char *path; /* the child's PATH, for a file without '/' */
	const char *applet_exe; /* run this with argv when PATH has no file */
	int fds[3];       /* become the child's 0, 1, 2 */
	volatile int err;
	volatile int chdir_failed;
};

/* Runs in the child, on its own stack, in our memory, while we wait
 * (CLONE_VM | CLONE_VFORK): only system calls, no allocation, no locks. */
static int child_main(void *arg)
{
	struct spawn *s = arg;
	sigset_t none;
	char buf[PATH_MAX];
	int err = ENOENT, saw_eacces = 0;

	if (setsid() < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (dup2(s->fds[i], i) < 0)
			goto fail;
	if (s->cwd && chdir(s->cwd) < 0) {
		s->chdir_failed = 1;
		goto fail;
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (strchr(s->file, '/')) {
		execve(s->file, s->argv, s->envp);
		goto fail;
	}
	/* execvpe's search, with the child's PATH (glibc's uses ours) */
	for (const char *p = s->path; p;) {
		const char *colon = strchr(p, ':');
		size_t dl = colon ? (size_t)(colon - p) : strlen(p);
		size_t fl = strlen(s->file);
		if (dl + 1 + fl + 1 <= sizeof(buf)) {
			if (dl) {
				memcpy(buf, p, dl);
				buf[dl] = '/';
				memcpy(buf + dl + 1, s->file, fl + 1);
			} else {
				memcpy(buf, s->file, fl + 1); /* "" = the current directory */
			}
			execve(buf, s->argv, s->envp);
			switch (errno) {
			case EACCES:
				saw_eacces = 1;
				/* fall through */
			case ENOENT:
			case ENOTDIR:
			case ESTALE:
			case ENODEV:
			case ETIMEDOUT:
				break;
			default:
				err = errno;
				goto report;
			}
		}
		p = colon ? colon + 1 : NULL;
	}
	err = saw_eacces ? EACCES : ENOENT;
	if (err == ENOENT && s->applet_exe) {
		/* busybox picks the applet by argv[0]'s name */
		execve(s->applet_exe, s->argv, s->envp);
		err = errno;
	}
report:
	s->err = err;
	_exit(127);
fail:
	s->err = errno ? errno : EIO;
	_exit(127);
}

/* Starts a command with pipes for its stdio; 0 or -errno (the child's
 * own errno when its chdir or execve failed: *chdir_failed says which). */
static int spawn(struct conn *c, struct spawn *s, int *chdir_failed)
{
	static char stack[64 * 1024] __attribute__((aligned(64)));
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int rc = 0, status;
	pid_t pid;

	*chdir_failed = 0;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    fcntl(in[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(err[0], F_SETFL, O_NONBLOCK) < 0) {
		rc = -errno;
		goto out;
	}
	s->fds[0] = in[0];
	s->fds[1] = out[1];
	s->fds[2] = err[1];
	s->err = 0;
	s->chdir_failed = 0;
	pid = clone(child_main, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, s);
	if (pid < 0) {
		rc = -errno;
		goto out;
	}
	if (s->err) {
		rc = -s->err;
		*chdir_failed = s->chdir_failed;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		goto out;
	}
	c->pid = pid;
	c->reaped = 0;
	c->in_fd = in[1];
	c->out_fd = out[0];
	c->err_fd = err[0];
	in[1] = out[0] = err[0] = -1;
out:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
	}
	return rc;
}

/* The environment: ours GLIBC_TUNABLES, PATH, HOME, then the request's
 * entries, which replace one of the same name. */
static const char **child_env(const struct smolvm_agent_exec *ex, const char **path)
{
	static const char *env[3 + SMOLVM_AGENT_MAX_ARGS + 1];
	size_t n = 0;

	if (tunables)
		env[n++] = tunables;
	env[n++] = CHILD_PATH;
	env[n++] = CHILD_HOME;
	for (uint32_t i = 0; i < ex->envc; i++) {
		const char *e = ex->envp[i];
		size_t k = (size_t)(strchr(e, '=') - e) + 1, j;
		for (j = 0; j < n; j++)
			if (!strncmp(env[j], e, k))
				break;
		env[j] = e;
		if (j == n)
			n++;
	}
	env[n] = NULL;
	*path = NULL;
	for (size_t j = 0; j < n; j++)
		if (!strncmp(env[j], "PATH=", 5))
			*path = env[j] + 5;
	return env;
}

/* Reads the --applets file (one name a line) into `applets`, between
 * newlines, so that a lookup is one strstr of "\nNAME\n". */
static int load_applets(const char *file)
{
	FILE *f = fopen(file, "re");
	long size = 0;
	size_t n;
	int rc = 0;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		rc = -errno;
	else if (!(applets = malloc((size_t)size + 3)))
		rc = -ENOMEM;
	if (!rc) {
		n = fread(applets + 1, 1, (size_t)size, f);
		applets[0] = '\n';
		applets[n + 1] = '\n';
		applets[n + 2] = '\0';
	}
	fclose(f);
	return rc;
}

static int is_applet(const char *name)
{
	char key[258];
	size_t n = strlen(name);

	if (!applets || !n || n > 255 || strchr(name, '/') || strchr(name, '\n'))
		return 0;
	key[0] = '\n';
	memcpy(key + 1, name, n);
	key[n + 1] = '\n';
	key[n + 2] = '\0';
	return strstr(applets, key) != NULL;
}

static void do_exec(struct conn *c, const struct smolvm_agent_msg *m)
{
	static struct smolvm_agent_exec ex;
	struct spawn s;
	int rc, chdir_failed;

	if (smolvm_agent_parse_exec(m, &ex)) {
		proto_error(c, "malformed EXEC");
		return;
	}
	if (ex.flags) {
		send_error(c, EINVAL, "EXEC: unknown flags 0x%x", ex.flags);
		return;
	}
	memset(&s, 0, sizeof(s));
	s.file = ex.argv[0];
	s.argv = (char *const *)ex.argv;
	s.envp = (char *const *)child_env(&ex, &s.path);
	s.cwd = ex.cwd[0] && strcmp(ex.cwd, "/") ? ex.cwd : NULL;
	s.applet_exe = busybox_exe && is_applet(s.file) ? busybox_exe : NULL;
	rc = spawn(c, &s, &chdir_failed);
	if (rc == 0) {
		c->st = C_EXEC;
		send_u32(c, SMOLVM_AGENT_STARTED, (uint32_t)c->pid);
	} else if (chdir_failed) {
		send_error(c, -rc, "cannot change to directory %s: %s", ex.cwd, strerror(-rc));
	} else {
		send_error(c, -rc, "cannot execute %s: %s", ex.argv[0], strerror(-rc));
	}
}

/* EXIT once the command was reaped and both its outputs ended. */
static void exec_maybe_done(struct conn *c)
{
	uint32_t how, value;

	if (c->st != C_EXEC || !c->reaped || c->out_fd >= 0 || c->err_fd >= 0)
		return;
	if (WIFSIGNALED(c->status)) {
		how = SMOLVM_AGENT_SIGNALED;
		value = (uint32_t)WTERMSIG(c->status);
	} else {
		how = SMOLVM_AGENT_EXITED;
		value = (uint32_t)WEXITSTATUS(c->status);
	}
	close_fd(&c->in_fd);
	c->in_left = 0;
	c->pid = 0;
	c->st = C_IDLE;
	QUEUE(c, SMOLVM_AGENT_HEADER + 8, smolvm_agent_build_exit(buf_, room_, how, value));
}

/* Writes what it can of the pending STDIN bytes. */
static void stdin_write(struct conn *c)
{
	while (c->in_left) {
		ssize_t n = write(c->in_fd, c->in_ptr, c->in_left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			/* EPIPE: nobody reads it any more; drop the rest */
			close_fd(&c->in_fd);
			c->in_left = 0;
			return;
		}
		c->in_ptr += n;
		c->in_left -= (size_t)n;
	}
}

static void do_stdin(struct conn *c, const struct smolvm_agent_msg *m)
{
	if (c->in_fd < 0)
		return; /* closed already, or the command is gone */
	if (!m->len) {
		close_fd(&c->in_fd);
		return;
	}
	c->in_ptr = m->payload;
	c->in_left = m->len;
	stdin_write(c);
}

static void do_signal(struct conn *c, const struct smolvm_agent_msg *m)
{
	uint32_t sig;

	if (smolvm_agent_parse_u32(m, SMOLVM_AGENT_SIGNAL, &sig)) {
		proto_error(c, "malformed SIGNAL");
		return;
	}
	/* No reply: a bad number or a group that is gone changes nothing. */
	if (c->st == C_EXEC && c->pid > 0 && sig >= 1 && sig < (uint32_t)_NSIG)
		kill(-c->pid, (int)sig);
}

/* Reads every pending exit; SIGCHLD may stand for several. */
static void reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			if (!c->dead && c->st == C_EXEC && c->pid == pid && !c->reaped) {
				c->reaped = 1;
				c->status = status;
				exec_maybe_done(c);
				break;
			}
		}
	}
}

/* ---- SYNC ----------------------------------------------------------------- */

static void do_sync(struct conn *c, const struct smolvm_agent_msg *m)
{
	struct {
		int entropy_count, buf_size;
		uint8_t buf[SMOLVM_AGENT_SEED_BYTES];
	} pool;
	uint64_t ns;
	const uint8_t *seed;
	struct timespec ts;
	const char *what = NULL;
	int err = 0;

	if (smolvm_agent_parse_sync(m, &ns, &seed)) {
		proto_error(c, "malformed SYNC");
		return;
	}
	ts.tv_sec = (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	if (dry_sync) {
		send_ok(c);
		return;
	}
	if (urandom_fd < 0)
		urandom_fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (urandom_fd < 0) {
		err = errno;
		what = "open /dev/urandom";
	} else {
		pool.entropy_count = SMOLVM_AGENT_SEED_BYTES * 8;
		pool.buf_size = SMOLVM_AGENT_SEED_BYTES;
		memcpy(pool.buf, seed, SMOLVM_AGENT_SEED_BYTES);
		if (ioctl(urandom_fd, RNDADDENTROPY, &pool) < 0) {
			err = errno;
			what = "RNDADDENTROPY";
		} else if (ioctl(urandom_fd, RNDRESEEDCRNG) < 0) {
			err = errno;
			what = "RNDRESEEDCRNG";
		}
		memset(pool.buf, 0, sizeof(pool.buf));
	}
	/* the clock even if the RNG failed; the first failure is reported */
	if (clock_settime(CLOCK_REALTIME, &ts) < 0 && !err) {
		err = errno;
		what = "clock_settime";
	}
	if (err)
		send_error(c, err, "SYNC: %s: %s", what, strerror(err));
	else
		send_ok(c);
}

/* ---- PUT / GET ------------------------------------------------------------ */

static void do_put(struct conn *c, const struct smolvm_agent_msg *m)
{
	uint32_t mode;
	const char *path, *slash;
	size_t dirlen;
	struct stat st;
	int n;

	if (smolvm_agent_parse_put(m, &mode, &path)) {
		proto_error(c, "malformed PUT");
		return;
	}
	if ((mode & S_IFMT) == S_IFDIR) {
		if (mkdir(path, mode & 07777) == 0) {
			if ((mode & (our_umask | 06000)) && chmod(path, mode & 07777) < 0) {
				send_error(c, errno, "chmod %s: %s", path, strerror(errno));
				return;
			}
			send_ok(c);
			return;
		}
		n = errno;
		if (n == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			send_ok(c);
		else if (n == ENOENT)
			send_error(c, ENOENT, "mkdir %s: no such parent directory", path);
		else
			send_error(c, n, "mkdir %s: %s", path, strerror(n));
		return;
	}
	/* a file: written to .NAME.smolvm-N next to it, renamed at the end */
	c->st = C_PUT_DISCARD;
	slash = strrchr(path, '/');
	dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	if (!path[dirlen]) {
		send_error(c, EISDIR, "PUT %s: not a file name", path);
		return;
	}
	n = snprintf(c->put_tmp, sizeof(c->put_tmp), "%.*s.%s.smolvm-%u", (int)dirlen, path,
		     path + dirlen, put_seq++);
	if (n < 0 || (size_t)n >= sizeof(c->put_tmp) || strlen(path) >= sizeof(c->put_path)) {
		send_error(c, ENAMETOOLONG, "PUT %s: %s", path, strerror(ENAMETOOLONG));
		return;
	}
	strcpy(c->put_path, path);
	c->put_perm = mode & 07777;
	c->put_fd = open(c->put_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (c->put_fd < 0) {
		if (errno == ENOENT)
			send_error(c, ENOENT, "PUT %s: no such directory %.*s", path,
				   dirlen > 1 ? (int)dirlen - 1 : (int)dirlen, path);
		else
			send_error(c, errno, "PUT %s: %s", path, strerror(errno));
		return;
	}
	c->st = C_PUT;
}

static void put_data(struct conn *c, const struct smolvm_agent_msg *m)
{
	const char *what;
	int err;

	if (c->st == C_PUT_DISCARD) {
		if (!m->len)
			c->st = C_IDLE;
		return;
	}
	for (size_t off = 0; off < m->len;) {
		ssize_t n = write(c->put_fd, m->payload + off, m->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			what = "write";
			goto fail;
		}
		off += (size_t)n;
	}
	if (m->len)
		return;
	/* the end: mode, data on disk, then the name */
	what = "chmod";
	if (fchmod(c->put_fd, c->put_perm) < 0)
		goto fail;
	what = "fsync";
	if (fsync(c->put_fd) < 0 && errno != EINVAL)
		goto fail;
	what = "close";
	err = close(c->put_fd);
	c->put_fd = -1;
	if (err < 0) {
		err = errno;
		unlink(c->put_tmp);
		send_error(c, err, "PUT %s: %s: %s", c->put_path, what, strerror(err));
		c->st = C_IDLE;
		return;
	}
	if (rename(c->put_tmp, c->put_path) < 0) {
		err = errno;
		unlink(c->put_tmp);
		send_error(c, err, "PUT %s: rename: %s", c->put_path, strerror(err));
		c->st = C_IDLE;
		return;
	}
	c->st = C_IDLE;
	send_ok(c);
	return;
fail:
	err = errno;
	put_abort(c);
	send_error(c, err, "PUT %s: %s: %s", c->put_path, what, strerror(err));
	c->st = m->len ? C_PUT_DISCARD : C_IDLE;
}

/* A symbolic link, made beside its name and renamed over it (a file or a
 * link there is replaced, a directory is not). */
static void do_link(struct conn *c, const struct smolvm_agent_msg *m)
{
	const char *path, *target, *slash;
	char tmp[sizeof(c->put_tmp)];
	size_t dirlen;
	int n;

	if (smolvm_agent_parse_link(m, &path, &target)) {
		proto_error(c, "malformed LINK");
		return;
	}
	slash = strrchr(path, '/');
	dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	if (!path[dirlen]) {
		send_error(c, EISDIR, "LINK %s: not a file name", path);
		return;
	}
	n = snprintf(tmp, sizeof(tmp), "%.*s.%s.smolvm-%u", (int)dirlen, path, path + dirlen,
		     put_seq++);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		send_error(c, ENAMETOOLONG, "LINK %s: %s", path, strerror(ENAMETOOLONG));
		return;
	}
	if (symlink(target, tmp) < 0) {
		n = errno;
		send_error(c, n, "LINK %s: %s", path, strerror(n));
		return;
	}
	if (rename(tmp, path) < 0) {
		n = errno;
		unlink(tmp);
		send_error(c, n, "LINK %s: %s", path, strerror(n));
		return;
	}
	send_ok(c);
}

static void do_get(struct conn *c, const struct smolvm_agent_msg *m)
{
	const char *path;
	struct stat st;
	int fd;

	if (smolvm_agent_parse_path(m, SMOLVM_AGENT_GET, &path)) {
		proto_error(c, "malformed GET");
		return;
	}
	/* O_NONBLOCK: a FIFO must not hang us before the check below */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		send_error(c, errno, "GET %s: %s", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fstat(fd, &st) < 0)
			send_error(c, errno, "GET %s: %s", path, strerror(errno));
		else if (S_ISDIR(st.st_mode))
			send_error(c, EISDIR, "GET %s: %s", path, strerror(EISDIR));
		else
			send_error(c, EINVAL, "GET %s: not a regular file", path);
		close(fd);
		return;
	}
	c->get_fd = fd;
	c->st = C_GET;
}

/* Sends the file while the queue has room. */
static void get_pump(struct conn *c)
{
	while (c->st == C_GET && c->oq_len < QHIGH && !c->dead) {
		ssize_t n = queue_read(c, SMOLVM_AGENT_DATA, c->get_fd);
		if (n > 0)
			continue;
		close_fd(&c->get_fd);
		c->st = C_IDLE;
		if (n < 0)
			send_error(c, (int)-n, "GET: read: %s", strerror((int)-n));
	}
}

/* ---- frames --------------------------------------------------------------- */

static void do_hello(struct conn *c, const struct smolvm_agent_msg *m)
{
	uint32_t version;
	const char *name;

	if (m->type != SMOLVM_AGENT_HELLO) {
		proto_error(c, "expected HELLO, got %s", smolvm_agent_type_name(m->type));
		return;
	}
	if (smolvm_agent_parse_hello(m, &version, &name)) {
		proto_error(c, "malformed HELLO");
		return;
	}
	QUEUE(c, SMOLVM_AGENT_HEADER + 4 + sizeof(AGENT_NAME),
	      smolvm_agent_build_hello(buf_, room_, AGENT_NAME));
	if (version < 1) {
		send_error(c, EPROTONOSUPPORT, "protocol version %u is not supported (agent: %d)",
			   version, SMOLVM_AGENT_VERSION);
		c->closing = 1;
		return;
	}
	c->st = C_IDLE;
}

static void handle(struct conn *c, const struct smolvm_agent_msg *m)
{
	const char *name = smolvm_agent_type_name(m->type);

	switch (c->st) {
	case C_HELLO:
		do_hello(c, m);
		return;
	case C_IDLE:
		switch (m->type) {
		case SMOLVM_AGENT_SYNC:
			do_sync(c, m);
			return;
		case SMOLVM_AGENT_EXEC:
			do_exec(c, m);
			return;
		case SMOLVM_AGENT_PUT:
			do_put(c, m);
			return;
		case SMOLVM_AGENT_GET:
			do_get(c, m);
			return;
		case SMOLVM_AGENT_LINK:
			do_link(c, m);
			return;
		case SMOLVM_AGENT_STDIN:
		case SMOLVM_AGENT_SIGNAL:
			/* for a command that has ended: the host sent it
			 * before it saw the EXIT */
			return;
		default:
			if (m->type > SMOLVM_AGENT_TYPE_MAX) {
				send_error(c, ENOSYS, "unknown request type %u", m->type);
				return;
			}
			proto_error(c, "unexpected %s", name);
			return;
		}
	case C_EXEC:
		if (m->type == SMOLVM_AGENT_STDIN)
			do_stdin(c, m);
		else if (m->type == SMOLVM_AGENT_SIGNAL)
			do_signal(c, m);
		else
			proto_error(c, "%s while a command runs", name);
		return;
	case C_PUT:
	case C_PUT_DISCARD:
		if (m->type == SMOLVM_AGENT_DATA)
			put_data(c, m);
		else
			proto_error(c, "%s during a PUT", name);
		return;
	case C_GET:
		proto_error(c, "%s during a GET", name);
		return;
	}
}

/* Decodes and handles what has been received, as long as the command's
 * stdin keeps up and the output queue has room. */
static void process_rx(struct conn *c)
{
	while (!c->dead && !c->closing && !c->in_left && c->oq_len < QHIGH &&
	       c->rx_off < c->rx_len) {
		struct smolvm_agent_msg m;
		size_t used;
		int rc = smolvm_agent_feed(&c->dec, c->rx + c->rx_off, c->rx_len - c->rx_off,
					   &used, &m);
		c->rx_off += used;
		if (rc < 0)
			proto_error(c, "malformed frame header");
		else if (rc > 0)
			handle(c, &m);
	}
	if (c->rx_off == c->rx_len)
		c->rx_off = c->rx_len = 0;
}

static int want_read(const struct conn *c)
{
	return !c->closing && c->rx_len == 0 && !c->in_left && c->oq_len < QHIGH;
}

static void conn_recv(struct conn *c)
{
	ssize_t n;

	do
		n = recv(c->fd, c->rx, sizeof(c->rx), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		conn_fail(c); /* the host went away */
		return;
	}
	c->rx_off = 0;
	c->rx_len = (size_t)n;
}

/* A child's output pipe is readable. */
static void pipe_event(struct conn *c, int *fd, uint8_t type)
{
	ssize_t n;

	if (c->oq_len >= QHIGH)
		return;
	n = queue_read(c, type, *fd);
	if (n == -EAGAIN || n > 0)
		return;
	if (n < 0) /* an error ends the stream like an end of file */
		QUEUE(c, SMOLVM_AGENT_HEADER,
		      smolvm_agent_build_data(buf_, room_, type, NULL, 0));
	close_fd(fd);
	exec_maybe_done(c);
}

/* ---- main loop ------------------------------------------------------------ */

static volatile int quit;

static void on_signals(void)
{
	struct signalfd_siginfo si[16];
	ssize_t n = read(sfd, si, sizeof(si));
	int child = 0;

	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(si[0]); i++) {
		if (si[i].ssi_signo == SIGCHLD)
			child = 1;
		else if (si[i].ssi_signo == SIGTERM || si[i].ssi_signo == SIGINT)
			quit = 1;
	}
	if (child)
		reap();
}

static void on_accept(void)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd >= 0)
		conn_new(fd);
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		 errno != ECONNABORTED)
		logx("accept: %s", strerror(errno));
}

static void loop(void)
{
	static struct pollfd pfd[2 + MAX_CONNS * 4];

	while (!quit) {
		int n = 0;

		pfd[n++] = (struct pollfd){ sfd, POLLIN, 0 };
		pfd[n++] = (struct pollfd){ lfd, POLLIN, 0 };
		for (int i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			short ev = POLLRDHUP;
			if (want_read(c))
				ev |= POLLIN;
			/* (a GET whose queue the last flush emptied has more to
			 * read: the socket's room wakes us to read it; waiting
			 * for input instead would wait forever) */
			if (c->oq_len || (c->st == C_GET && c->oq_len < QHIGH))
				ev |= POLLOUT;
			c->pi = n;
			pfd[n++] = (struct pollfd){ c->fd, ev, 0 };
			c->pi_out = c->pi_err = c->pi_in = -1;
			if (c->oq_len < QHIGH && c->out_fd >= 0) {
				c->pi_out = n;
				pfd[n++] = (struct pollfd){ c->out_fd, POLLIN, 0 };
			}
			if (c->oq_len < QHIGH && c->err_fd >= 0) {
				c->pi_err = n;
				pfd[n++] = (struct pollfd){ c->err_fd, POLLIN, 0 };
			}
			if (c->in_left && c->in_fd >= 0) {
				c->pi_in = n;
				pfd[n++] = (struct pollfd){ c->in_fd, POLLOUT, 0 };
			}
		}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			logx("poll: %s", strerror(errno));
			exit(1);
		}
		if (pfd[0].revents)
			on_signals();
		for (int i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			short re = c->pi >= 0 ? pfd[c->pi].revents : 0;
			int tried = 0;
			if (c->dead)
				continue;
			if (re & POLLOUT) {
				flush(c);
				tried = c->oq_len != 0; /* still full: no second try */
			}
			if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR | POLLRDHUP))) {
				if (want_read(c))
					conn_recv(c);
				else if (re & (POLLHUP | POLLERR | POLLRDHUP))
					conn_fail(c);
			}
			if (!c->dead && c->pi_in >= 0 && pfd[c->pi_in].revents) {
				stdin_write(c);
			}
			if (!c->dead && c->pi_out >= 0 && pfd[c->pi_out].revents && c->out_fd >= 0)
				pipe_event(c, &c->out_fd, SMOLVM_AGENT_STDOUT);
			if (!c->dead && c->pi_err >= 0 && pfd[c->pi_err].revents && c->err_fd >= 0)
				pipe_event(c, &c->err_fd, SMOLVM_AGENT_STDERR);
			if (c->dead)
				continue;
			process_rx(c);
			get_pump(c);
			if (!tried)
				flush(c);
			if (!c->dead && c->closing && !c->oq_len)
				conn_fail(c);
		}
		/* new connections after the others: they have no poll slots */
		if (pfd[1].revents)
			on_accept();
		conns_sweep();
	}
}

/* ---- setup ---------------------------------------------------------------- */

/* Signals the shell that started us ignores (a background job of a
 * non-interactive shell ignores SIGINT and SIGQUIT) would stay ignored in
 * every command: back to their defaults, once. */
static void reset_ignored_signals(void)
{
	char buf[2048], *p;
	ssize_t n = 0;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	unsigned long long ign = ~0ull;

	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	if (n > 0) {
		buf[n] = 0;
		p = strstr(buf, "\nSigIgn:");
		if (p)
			ign = strtoull(p + 8, NULL, 16);
	}
	for (int sig = 1; sig < _NSIG && sig <= 64; sig++) {
		if (!(ign & (1ull << (sig - 1))) || sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (ign == ~0ull) {
			/* no /proc: ask, and only reset an ignored one */
			struct sigaction old;
			if (sigaction(sig, NULL, &old) < 0 || old.sa_handler != SIG_IGN)
				continue;
		}
		/* glibc refuses its own signals (32, 33) to sigaction(): the
		 * kernel does not, and commands must not inherit them ignored. */
		if (signal(sig, SIG_DFL) == SIG_ERR) {
			struct { void *handler; unsigned long flags; void *restorer; uint64_t mask; }
				ksa = { 0 };
			syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof(ksa.mask));
		}
	}
}

static int listen_vsock(void)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = SMOLVM_AGENT_PORT };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0) {
		logx("vsock socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		logx("vsock port %d: %s", SMOLVM_AGENT_PORT, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		logx("%s: path too long for a Unix socket", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		logx("socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		logx("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The guest's loopback up, as every service (a database on localhost, a
 * health check on 127.0.0.1) expects: one ioctl here instead of an
 * `ip link` process in init (each costs seconds where the guest kernel is
 * emulated). */
static void loopback_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	if (!ioctl(s, SIOCGIFFLAGS, &ifr) && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr))
			logx("bringing up lo: %s", strerror(errno));
	}
	close(s);
}

static void usage(void)
{
	fprintf(stderr, "usage: " AGENT_NAME " [--listen-unix PATH] [--dry-sync] [--background]\n"
		"       [--busybox PATH --applets FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	extern char **environ;
	const char *applets_file = NULL;
	sigset_t set;
	int fd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen-unix") && i + 1 < argc)
			unix_path = argv[++i];
		else if (!strcmp(argv[i], "--dry-sync"))
			dry_sync = 1;
		else if (!strcmp(argv[i], "--background"))
			background = 1;
		else if (!strcmp(argv[i], "--busybox") && i + 1 < argc)
			busybox_exe = argv[++i];
		else if (!strcmp(argv[i], "--applets") && i + 1 < argc)
			applets_file = argv[++i];
		else
			usage();
	}
	if (!busybox_exe != !applets_file)
		usage();
	/* without the list every command runs as it would without busybox */
	if (applets_file && (fd = load_applets(applets_file)) < 0) {
		logx("%s: %s (commands not on PATH will not run as applets)", applets_file,
		     strerror(-fd));
		busybox_exe = NULL;
	}
	/* 0, 1 and 2 open, so that no pipe of ours lands there */
	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && fd < 3)
		fcntl(fd, F_SETFD, 0);
	if (fd >= 3)
		close(fd);
	for (char **e = environ; *e; e++)
		if (!strncmp(*e, "GLIBC_TUNABLES=", 15))
			tunables = *e;

	reset_ignored_signals();
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		logx("signalfd: %s", strerror(errno));
		return 1;
	}
	if (!unix_path)
		loopback_up();
	lfd = unix_path ? listen_unix(unix_path) : listen_vsock();
	if (lfd < 0)
		return 1;
	/* --background: return to init only once we listen, so a machine
	 * saved at its prompt always has an agent that answers. */
	if (background) {
		pid_t pid = fork();
		if (pid < 0)
			logx("fork: %s", strerror(errno));
		else if (pid > 0)
			_exit(0);
	}
	if (!unix_path)
		setsid(); /* out of init's session: no console signals */
	if (chdir("/") < 0)
		logx("chdir /: %s", strerror(errno));
	our_umask = umask(022);
	umask(our_umask);

	loop();

	for (int i = 0; i < nconns; i++)
		conn_fail(conns[i]);
	conns_sweep();
	if (unix_path)
		unlink(unix_path);
	return 0;
}
