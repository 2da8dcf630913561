#include "lib/dirs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int cache_dir(char *buf, size_t len)
{
	const char *env = getenv("SMOLVM_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");

	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/smolvm", xdg);
	else if (home && *home)
		snprintf(buf, len, "%s/.cache/smolvm", home);
	else
		return -ENOENT;
	return 0;
}

int mkdirs(const char *path, mode_t mode)
{
	char tmp[4096];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, mode);
			*p = '/';
		}
	}
	return mkdir(tmp, mode) == 0 || errno == EEXIST ? 0 : -errno;
}
