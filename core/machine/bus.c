#include "machine/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_add(struct bus *b, uint64_t base, uint64_t len,
	    const struct smolvm_io_ops *ops, void *opaque, const char *owner,
	    struct err *e)
{
	size_t i;

	if (!len || base + len < base)
		return err_set(e, -EINVAL, "empty or wrapping region at 0x%llx",
			       (unsigned long long)base);
	if (!ops || ops->struct_size < sizeof(uint32_t))
		return err_set(e, -EINVAL, "region at 0x%llx has no ops",
			       (unsigned long long)base);
	for (i = 0; i < b->n && b->r[i].base < base; i++)
		;
	if ((i > 0 && b->r[i - 1].base + b->r[i - 1].len > base) ||
	    (i < b->n && base + len > b->r[i].base)) {
		const struct bus_region *o = (i > 0 && b->r[i - 1].base + b->r[i - 1].len > base)
						     ? &b->r[i - 1] : &b->r[i];
		return err_set(e, -EBUSY, "region 0x%llx+0x%llx overlaps %s's 0x%llx+0x%llx",
			       (unsigned long long)base, (unsigned long long)len, o->owner,
			       (unsigned long long)o->base, (unsigned long long)o->len);
	}
	struct bus_region *nv = realloc(b->r, (b->n + 1) * sizeof(*nv));
	if (!nv)
		return err_set(e, -ENOMEM, "out of memory");
	b->r = nv;
	memmove(&b->r[i + 1], &b->r[i], (b->n - i) * sizeof(*nv));
	memset(&b->r[i], 0, sizeof(b->r[i]));
	b->r[i].base = base;
	b->r[i].len = len;
	memcpy(&b->r[i].ops, ops,
	       ops->struct_size < sizeof(b->r[i].ops) ? ops->struct_size : sizeof(b->r[i].ops));
	b->r[i].opaque = opaque;
	b->r[i].owner = owner;
	b->n++;
	return 0;
}

int bus_access(const struct bus *b, uint64_t addr, void *data, uint32_t size,
	       int is_write)
{
	size_t lo = 0, hi = b->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct bus_region *r = &b->r[mid];
		if (addr < r->base) {
			hi = mid;
		} else if (addr - r->base >= r->len) {
			lo = mid + 1;
		} else {
			if (is_write) {
				if (r->ops.write)
					r->ops.write(r->opaque, addr - r->base, data, size);
			} else {
				memset(data, 0, size);
				if (r->ops.read)
					r->ops.read(r->opaque, addr - r->base, data, size);
			}
			return 0;
		}
	}
	return -ENOENT;
}

void bus_free(struct bus *b)
{
	free(b->r);
	b->r = NULL;
	b->n = 0;
}
