#include "session/host_config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <smolvm/plugin.h>

#ifndef SMOLVM_LIBDIR
#define SMOLVM_LIBDIR "/usr/local/lib"
#endif

int parse_quirk_mode(const char *s, uint32_t *out)
{
	if (!strcmp(s, "auto"))
		*out = SMOLVM_QUIRKS_AUTO;
	else if (!strcmp(s, "on"))
		*out = SMOLVM_QUIRKS_ON;
	else if (!strcmp(s, "off"))
		*out = SMOLVM_QUIRKS_OFF;
	else
		return -EINVAL;
	return 0;
}

struct ini_ctx {
	struct host_config *hc;
	struct err *e;
	int rc;
};

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *c = user;
	char **dst = NULL;

	if (!strcmp(section, "plugins") && !strcmp(name, "path")) {
		dst = &c->hc->ini_plugin_path;
	} else if (!strcmp(section, "defaults") && !strcmp(name, "backend")) {
		dst = &c->hc->backend;
	} else if (!strcmp(section, "defaults") && !strcmp(name, "guest")) {
		dst = &c->hc->guest_dir;
	} else if (!strcmp(section, "defaults") && !strcmp(name, "host_quirks")) {
		if (parse_quirk_mode(value, &c->hc->quirk_mode)) {
			c->rc = err_set(c->e, -EINVAL, "%s: [defaults] host_quirks: \"%s\" is not auto, on or off",
					c->hc->file, value);
			return 0;
		}
		return 1;
	} else {
		c->rc = err_set(c->e, -EINVAL, "%s: [%s] %s: unknown setting", c->hc->file,
				section, name);
		return 0;
	}
	free(*dst);
	*dst = strdup(value);
	return *dst != NULL;
}

static int add_dir(struct host_config *hc, const char *dir, size_t len)
{
	char **nv;

	if (!len)
		return 0;
	/* The same directory reached two ways (bin/../lib/smolvm and LIBDIR)
	 * would make every plugin in it a duplicate of itself. */
	char want[PATH_MAX], have[PATH_MAX], *d = strndup(dir, len);
	if (!d)
		return -ENOMEM;
	if (realpath(d, want)) {
		for (size_t i = 0; i < hc->nplugin_dirs; i++) {
			if (realpath(hc->plugin_dirs[i], have) && !strcmp(want, have)) {
				free(d);
				return 0;
			}
		}
	}
	free(d);
	nv = realloc(hc->plugin_dirs, (hc->nplugin_dirs + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	hc->plugin_dirs = nv;
	nv[hc->nplugin_dirs] = strndup(dir, len);
	if (!nv[hc->nplugin_dirs])
		return -ENOMEM;
	hc->nplugin_dirs++;
	return 0;
}

static int add_path_list(struct host_config *hc, const char *list)
{
	while (list && *list) {
		const char *colon = strchr(list, ':');
		size_t len = colon ? (size_t)(colon - list) : strlen(list);
		if (add_dir(hc, list, len))
			return -ENOMEM;
		list = colon ? colon + 1 : NULL;
	}
	return 0;
}

static char *config_file_path(void)
{
	const char *env = getenv("SMOLVM_CONFIG"), *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	char buf[PATH_MAX];

	if (env)
		return strdup(env);
	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/smolvm/config.ini", xdg);
	else if (home)
		snprintf(buf, sizeof(buf), "%s/.config/smolvm/config.ini", home);
	else
		return NULL;
	return strdup(buf);
}

/* The default guest (kernel and initramfs): $SMOLVM_GUEST_DIR, [defaults]
 * guest, <dir of the binary>/guest (build tree), <dir of the
 * binary>/../lib/smolvm/guest, LIBDIR/smolvm/guest; the first holding a
 * vmlinux. None found is no error until a script needs it. */
static int find_guest(struct host_config *hc, const char *exe_dir, struct err *e)
{
	char cand[5][PATH_MAX + 32], probe[PATH_MAX + 64];
	const char *env = getenv("SMOLVM_GUEST_DIR");
	int n = 0;

	if (env && *env)
		snprintf(cand[n++], sizeof(cand[0]), "%s", env);
	if (hc->guest_dir)
		snprintf(cand[n++], sizeof(cand[0]), "%s", hc->guest_dir);
	if (exe_dir) {
		snprintf(cand[n++], sizeof(cand[0]), "%s/guest", exe_dir);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../lib/smolvm/guest", exe_dir);
	}
	snprintf(cand[n++], sizeof(cand[0]), "%s/smolvm/guest", SMOLVM_LIBDIR);
	free(hc->guest_dir);
	hc->guest_dir = NULL;
	for (int i = 0; i < n; i++) {
		if (!(hc->guest_dirs[hc->nguest_dirs++] = strdup(cand[i])))
			return err_set(e, -ENOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		snprintf(probe, sizeof(probe), "%s/vmlinux", cand[i]);
		if (access(probe, R_OK) == 0) {
			hc->guest_dir = realpath(cand[i], NULL);
			if (!hc->guest_dir)
				return err_set(e, -ENOMEM, "out of memory");
			break;
		}
	}
	return 0;
}

int host_config_load(struct host_config *hc, struct err *e)
{
	char exe[PATH_MAX], buf[PATH_MAX + 32];
	struct ini_ctx c = { hc, e, 0 };
	ssize_t n;
	FILE *f;

	memset(hc, 0, sizeof(*hc));
	hc->quirk_mode = SMOLVM_QUIRKS_AUTO;
	hc->file = config_file_path();
	f = hc->file ? fopen(hc->file, "r") : NULL;
	if (f) {
		int line = ini_parse_file(f, on_ini, &c);
		fclose(f);
		if (c.rc)
			return c.rc;
		if (line)
			return err_set(e, -EINVAL, "%s:%d: not valid INI", hc->file, line);
	} else if (hc->file && getenv("SMOLVM_CONFIG")) {
		return err_set(e, -errno, "SMOLVM_CONFIG=%s: %s", hc->file, strerror(errno));
	} else {
		free(hc->file);
		hc->file = NULL;
	}
	if (!hc->backend && !(hc->backend = strdup("kvm")))
		return err_set(e, -ENOMEM, "out of memory");

	if (add_path_list(hc, getenv("SMOLVM_PLUGIN_PATH")) ||
	    add_path_list(hc, hc->ini_plugin_path))
		return err_set(e, -ENOMEM, "out of memory");
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		snprintf(buf, sizeof(buf), "%s/plugins", exe);
		if (add_dir(hc, buf, strlen(buf)))
			return err_set(e, -ENOMEM, "out of memory");
		snprintf(buf, sizeof(buf), "%s/../lib/smolvm", exe);
		if (add_dir(hc, buf, strlen(buf)))
			return err_set(e, -ENOMEM, "out of memory");
	}
	if (add_dir(hc, SMOLVM_LIBDIR "/smolvm", strlen(SMOLVM_LIBDIR "/smolvm")))
		return err_set(e, -ENOMEM, "out of memory");
	return find_guest(hc, n > 0 ? exe : NULL, e);
}

void host_config_free(struct host_config *hc)
{
	for (size_t i = 0; i < hc->nplugin_dirs; i++)
		free(hc->plugin_dirs[i]);
	free(hc->plugin_dirs);
	free(hc->file);
	free(hc->ini_plugin_path);
	free(hc->backend);
	free(hc->guest_dir);
	for (size_t i = 0; i < hc->nguest_dirs; i++)
		free(hc->guest_dirs[i]);
	memset(hc, 0, sizeof(*hc));
}

int host_guest_file(const struct host_config *hc, const char *path, char **out,
		    struct err *e)
{
	const char *name = path + strlen("guest:");
	char probe[PATH_MAX + 64], where[1024] = "";
	size_t w = 0;

	if (!*name || strchr(name, '/'))
		return err_set(e, -EINVAL, "\"%s\": guest:NAME names a file of a guest "
			       "directory, without a '/'", path);
	for (size_t i = 0; i < hc->nguest_dirs; i++) {
		snprintf(probe, sizeof(probe), "%s/%s", hc->guest_dirs[i], name);
		if (access(probe, R_OK) == 0) {
			*out = realpath(probe, NULL);
			return *out ? 0 : err_set(e, -errno, "%s: %s", probe, strerror(errno));
		}
		if (w < sizeof(where))
			w += (size_t)snprintf(where + w, sizeof(where) - w, "%s%s", i ? ", " : "",
					      hc->guest_dirs[i]);
	}
	return err_set(e, -ENOENT, "\"%s\": no %s in the guest directories (%s): `make guest` "
		       "builds the guests; SMOLVM_GUEST_DIR or [defaults] guest names another "
		       "directory", path, name, where);
}
