#include "session/syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
	/* sockets (the families are checked below) */
	"connect", "accept", "accept4", "bind", "listen", "shutdown", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "getsockname", "getpeername",
	"getsockopt", "setsockopt", "socketpair",
};

/* Names of syscall numbers, made before the filter (the handler must not
 * allocate). */
#define NR_NAMES 512
static const char *names[NR_NAMES];

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[200];
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < NR_NAMES && names[nr] ? names[nr] : "?";
	int n;

	(void)sig;
	(void)uc;
	n = snprintf(msg, sizeof(msg), "\r\nsmolvm: forbidden system call %s (%d): stopped; "
		     "smolvm's syscall filter allows only what a running VMM needs "
		     "(docs/security.md)\r\n", name, nr);
	if (n > 0)
		(void)!write(STDERR_FILENO, msg, (size_t)n);
	_exit(1);
}

int syscalls_restrict(struct err *e)
{
	const char *off = getenv("SMOLVM_SECCOMP");
	struct sigaction sa;
	scmp_filter_ctx f;
	int rc = 0;

	static int installed;

	if ((off && !strcmp(off, "off")) || installed)
		return 0;
	for (int i = 0; i < NR_NAMES; i++)
		if (!names[i])
			names[i] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return err_set(e, -errno, "syscall filter: sigaction: %s", strerror(errno));
	f = seccomp_init(SCMP_ACT_TRAP);
	if (!f)
		return err_set(e, -ENOMEM, "syscall filter: out of memory");
	for (size_t i = 0; !rc && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr != __NR_SCMP_ERROR)
			rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0);
	}
	/* threads, never processes: clone only with CLONE_THREAD; clone3's
	 * flags sit in memory a filter cannot read, so it says ENOSYS and
	 * the C library falls back to clone */
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (!rc)
		rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* sockets: local and IP only (no raw, netlink, packet ...) */
	for (int fam = 0; !rc && fam < 3; fam++) {
		static const int fams[] = { AF_UNIX, AF_INET, AF_INET6 };
		rc = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				      SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fams[fam]));
	}
	if (!rc)
		rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!rc)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc)
		return err_set(e, rc, "syscall filter: %s", strerror(-rc));
	installed = 1;
	return 0;
}
