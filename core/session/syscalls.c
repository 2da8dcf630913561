#include "session/syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What a running VMM does: memory, files (saves, the cache, disks), its
 * fds (eventfd, timerfd, epoll, userfaultfd), sockets of the devices,
 * threads, signals, time. */
static const char *const allowed[] = {
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "munlock",
	"membarrier",
	/* files and directories */
	"read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "open", "openat", "openat2", "close", "close_range",
	"dup", "dup2", "dup3", "fcntl", "ioctl", "stat", "fstat", "lstat", "newfstatat",
	"statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink",
	"readlinkat", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
	"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
	"chmod", "fchmod", "fchmodat", "fchown", "umask", "ftruncate", "fallocate",
	"fsync", "fdatasync", "sync_file_range", "utimensat", "futimesat", "flock",
	"getcwd", "copy_file_range", "sendfile", "splice", "memfd_create", "pipe", "pipe2",
	"fchownat", /* virtio-9p: a guest chown, on the fid's O_PATH fd (AT_EMPTY_PATH) */
	/* waiting and events */
	"poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
	"epoll_pwait", "epoll_pwait2", "eventfd2", "timerfd_create", "timerfd_settime",
	"timerfd_gettime", "signalfd", "signalfd4", "futex", "futex_waitv", "nanosleep",
	"clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time", "sched_yield",
	"sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler",
	"getrandom",
	/* threads and signals */
	"set_robust_list", "get_robust_list", "rseq", "set_tid_address", "gettid",
	"getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
	"getresgid", "getrlimit", "prlimit64", "getrusage", "times", "uname", "sysinfo",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigpending",
	"sigaltstack", "tgkill", "tkill", "timer_create", "timer_settime", "timer_gettime",
	"timer_delete", "prctl", "exit", "exit_group", "restart_syscall",
	"seccomp", /* only ever narrows: the vCPU threads stack theirs */
	/* sockets (the families are checked below) */
	"connect", "accept", "accept4", "bind", "listen", "shutdown", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "getsockname", "getpeername",
	"getsockopt", "setsockopt", "socketpair",
};

/* A vCPU thread runs the guest and the devices' register and queue
 * handlers: the code a guest attacks first. Files, sockets and threads
 * are opened or made at setup or on the devices' own threads; this one
 * works on what it was given (reads, writes, sends and receives on
 * descriptors it holds). A second filter on top of the first, on
 * each vCPU thread only (Firecracker's way). */
static const char *const vcpu_allowed[] = {
	"brk", "munmap", "mremap", "madvise", /* mmap, mprotect: below */
	"read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev",
	"preadv2", "pwritev2", "lseek", "fsync", "fdatasync", "fallocate", "sync_file_range",
	"fstat", "newfstatat", "close", "ioctl", "fcntl",
	/* on sockets it holds (a device reset drains and ends connections) */
	"recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown",
	"futex", "poll", "ppoll", "epoll_ctl", "clock_gettime", "clock_nanosleep", "nanosleep",
	"sched_yield", "getrandom", "gettid", "getpid", "timerfd_settime", "timerfd_gettime",
	"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall", "exit",
	"exit_group", "rseq",
};

#define NEW_NAMESPACES                                                                   \
	(CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |       \
	 CLONE_NEWIPC | CLONE_NEWCGROUP)

/* Names of syscall numbers, made before the filter (the handler must not
 * allocate). */
#define NR_NAMES 512
static const char *names[NR_NAMES];

/* Set on a vCPU thread once its own filter is on (for the message). */
static __thread int on_vcpu;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[300];
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < NR_NAMES && names[nr] ? names[nr] : "?";
	int n;

	(void)sig;
	(void)uc;
	n = snprintf(msg, sizeof(msg), "\r\nsmolvm: forbidden system call %s (%d)%s: stopped; "
		     "smolvm's syscall filter allows only what a running VMM needs%s "
		     "(docs/security.md)\r\n", name, nr, on_vcpu ? " on a vCPU thread" : "",
		     on_vcpu ? " (a device's I/O handlers use what was opened at setup)" : "");
	if (n > 0)
		(void)!write(STDERR_FILENO, msg, (size_t)n);
	_exit(1);
}

/* The filter, built on a thread of its own while the machine is set up
 * (libseccomp takes ~1 ms to make it), then installed in one call. */
static struct {
	pthread_t thread;
	int started, rc;
	struct sock_fprog prog, vcpu;
} build;

/* A filter that allows `names` (and what the caller adds). */
static scmp_filter_ctx allow_list(const char *const *list, size_t n, int *rc)
{
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_TRAP);

	*rc = f ? 0 : -ENOMEM;
	for (size_t i = 0; !*rc && i < n; i++) {
		int nr = seccomp_syscall_resolve_name(list[i]);
		if (nr != __NR_SCMP_ERROR)
			*rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);
	}
	return f;
}

/* The BPF program, through a memfd; releases f. */
static int export(scmp_filter_ctx f, int rc, struct sock_fprog *prog)
{
	int fd = -1;
	off_t len;

	if (!f)
		return rc ? rc : -ENOMEM;
	if (!rc && (fd = memfd_create("smolvm-seccomp", MFD_CLOEXEC)) < 0)
		rc = -errno;
	if (!rc)
		rc = seccomp_export_bpf(f, fd);
	if (!rc && ((len = lseek(fd, 0, SEEK_END)) <= 0 || len % sizeof(struct sock_filter) ||
		    len / sizeof(struct sock_filter) > BPF_MAXINSNS))
		rc = -EINVAL;
	if (!rc && !(prog->filter = malloc((size_t)len)))
		rc = -ENOMEM;
	if (!rc && pread(fd, prog->filter, (size_t)len, 0) != len)
		rc = -EIO;
	if (!rc)
		prog->len = (unsigned short)(len / sizeof(struct sock_filter));
	if (fd >= 0)
		close(fd);
	seccomp_release(f);
	return rc;
}

static int make_vcpu_filter(struct sock_fprog *prog)
{
	int rc;
	scmp_filter_ctx f = allow_list(vcpu_allowed, sizeof(vcpu_allowed) / sizeof(vcpu_allowed[0]),
				       &rc);

	/* no executable mappings; signals to this process only (kicks) */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	return export(f, rc, prog);
}

static int make_filter(struct sock_fprog *prog)
{
	int rc;
	scmp_filter_ctx f = allow_list(allowed, sizeof(allowed) / sizeof(allowed[0]), &rc);

	/* threads, and forks that keep this filter (exec's teardown child,
	 * machine/vm.c): clone without new namespaces; clone3's flags sit in
	 * memory a filter cannot read, so it says ENOSYS and the C library
	 * falls back to clone. No exec: a child runs only this code. */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, NEW_NAMESPACES, 0));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* sockets: local and IP only (no raw, netlink, packet ...) */
	for (int fam = 0; !rc && fam < 3; fam++) {
		static const int fams[] = { AF_UNIX, AF_INET, AF_INET6 };
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fams[fam]));
	}
	return export(f, rc, prog);
}

static void *build_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < NR_NAMES; i++)
		names[i] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
	build.rc = make_filter(&build.prog);
	if (!build.rc)
		build.rc = make_vcpu_filter(&build.vcpu);
	return NULL;
}

static int disabled(void)
{
	const char *off = getenv("SMOLVM_SECCOMP");
	return off && !strcmp(off, "off");
}

void syscalls_prepare(void)
{
	if (!disabled() && !build.started && !pthread_create(&build.thread, NULL, build_main, NULL))
		build.started = 1;
}

int syscalls_restrict(struct err *e)
{
	static int installed;
	struct sigaction sa;

	if (disabled() || installed)
		return 0;
	syscalls_prepare();
	if (!build.started)
		return err_set(e, -EAGAIN, "syscall filter: cannot start its builder thread");
	pthread_join(build.thread, NULL);
	build.started = 0;
	if (build.rc)
		return err_set(e, build.rc, "syscall filter: %s", strerror(-build.rc));
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return err_set(e, -errno, "syscall filter: sigaction: %s", strerror(errno));
	/* every thread, with no way back to more privileges */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
		    &build.prog) != 0)
		return err_set(e, -errno, "syscall filter: %s", strerror(errno ? errno : EINVAL));
	free(build.prog.filter);
	build.prog.filter = NULL;
	installed = 1;
	return 0;
}

int syscalls_restrict_vcpu(struct err *e)
{
	/* (the process filter is on: this one stacks on it, this thread only;
	 * the program stays for the other vCPUs and later machines) */
	if (disabled() || !build.vcpu.filter)
		return 0;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &build.vcpu) != 0)
		return err_set(e, -errno, "syscall filter of a vCPU thread: %s", strerror(errno));
	on_vcpu = 1;
	return 0;
}
