/* One Check runner for every unit suite. CK_FORK=no runs the tests in
 * this process (for gdb); CK_RUN_SUITE / CK_RUN_CASE select a subset. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

char *unit_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *dir;

	if (!base || !*base)
		base = "/tmp";
	ck_assert(asprintf(&dir, "%s/smolvm-unit-XXXXXX", base) > 0);
	ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	return dir;
}

void unit_rmdir(char *dir)
{
	DIR *d;
	struct dirent *de;

	if (!dir)
		return;
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			char *p;
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (asprintf(&p, "%s/%s", dir, de->d_name) > 0) {
				unlink(p);
				free(p);
			}
		}
		closedir(d);
	}
	rmdir(dir);
	free(dir);
}

char *unit_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert(fseek(f, 0, SEEK_END) == 0);
	n = ftell(f);
	ck_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return buf;
}

char *unit_write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char *path;
	int fd;

	ck_assert(asprintf(&path, "%s/%s", dir, name) > 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_msg(write(fd, buf, len) == (ssize_t)len, "%s: short write", path);
	close(fd);
	return path;
}

int unit_run_isolated(int (*fn)(void *), void *arg, unsigned timeout_s,
		      char *why, size_t why_len)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Check's fork mode leaves its own SIGALRM handler here, which
		 * would kill the whole test: time out on our own. */
		signal(SIGALRM, SIG_DFL);
		alarm(timeout_s);
		_exit(fn(arg) & 0xff);
	}
	ck_assert(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status)) {
		snprintf(why, why_len, "exited with %d", WEXITSTATUS(status));
		return WEXITSTATUS(status);
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		snprintf(why, why_len, "still running after %u s", timeout_s);
	else
		snprintf(why, why_len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	return -1;
}

int main(void)
{
	Suite *(*const suites[])(void) = {
		plugin_suite, script_suite, x86_boot_suite, quirks_suite,
		state_suite,  uart_suite,   console_suite,  machine_suite,
		blk_suite,    agent_suite,    bundle_suite,   snapshot_suite,
		rootfs_suite,   bringup_suite,  dirs_suite,     options_suite,
		host_api_suite, lineage_suite, p9_suite, volumes_suite,
	};
	SRunner *sr = srunner_create(NULL);
	int failed;

	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
