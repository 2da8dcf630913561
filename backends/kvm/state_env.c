/* Errors and capabilities for the KVM backend's snapshot files (see
 * state_env.h). */
#include "state_env.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

void kvm_state_prefix(const struct kvm_state_env *e, struct kvm_state_prefix *p)
{
	if (e->vcpu_fd >= 0)
		snprintf(p->text, sizeof(p->text), "vcpu %u state: ", e->vcpu_index);
	else
		snprintf(p->text, sizeof(p->text), "VM state: ");
}

int kvm_state_fail(const struct kvm_state_env *e, int rc, const char *fmt, ...)
{
	struct kvm_state_prefix p;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kvm_state_prefix(e, &p);
	e->api->set_error(e->ctx, "%s%s", p.text, msg);
	return rc;
}

int kvm_state_fail_ioctl(const struct kvm_state_env *e, const char *what)
{
	int code = errno ? errno : EIO;

	return kvm_state_fail(e, -code, "%s: %s", what, strerror(code));
}

int kvm_state_has_cap(const struct kvm_state_env *e, long cap)
{
	int r = ioctl(e->vm_fd, KVM_CHECK_EXTENSION, cap);

	return r > 0 ? r : 0;
}

void kvm_state_out_init(const struct kvm_state_env *e, struct kvm_state_prefix *p,
			struct smolvm_state_out *o, struct smolvm_state_writer *w)
{
	kvm_state_prefix(e, p);
	smolvm_state_out_init(o, e->api, e->ctx, w);
	o->prefix = p->text;
}

void kvm_state_in_init(const struct kvm_state_env *e, struct kvm_state_prefix *p,
		       struct smolvm_state_in *in, struct smolvm_state_reader *r)
{
	kvm_state_prefix(e, p);
	smolvm_state_in_init(in, e->api, e->ctx, r);
	in->prefix = p->text;
}
