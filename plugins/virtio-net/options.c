/* virtio-net option parsing: strict, one message per mistake. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "options.h"

/* `key "value": why`, through the host; -EINVAL. */
static int fail(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		const char *msg, const char *s)
{
	api->set_error(ctx, "%s \"%s\": %s", key, s, msg);
	return -EINVAL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int net_parse_mac(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		  const char *s, uint8_t mac[6])
{
	static const char want[] = "expected a MAC address such as 52:54:00:12:34:56";
	const char *p = s;

	for (int i = 0; i < 6; i++) {
		int hi = hexval(p[0]), lo = hi < 0 ? -1 : hexval(p[1]);
		if (lo < 0)
			return fail(api, ctx, key, want, s);
		mac[i] = (uint8_t)(hi << 4 | lo);
		p += 2;
		if (i < 5 && *p++ != ':')
			return fail(api, ctx, key, want, s);
	}
	if (*p)
		return fail(api, ctx, key, want, s);
	if (mac[0] & 1)
		return fail(api, ctx, key, "a multicast address (the first byte is odd)", s);
	if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return fail(api, ctx, key, "the all-zero address", s);
	return 0;
}

/* A decimal number in [lo, hi], the whole of [s, end). */
static int parse_uint(const char *s, const char *end, unsigned long lo, unsigned long hi,
		      unsigned long *out)
{
	unsigned long v = 0;

	if (s == end || end - s > 5)
		return -EINVAL;
	for (; s < end; s++) {
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* An IPv4 address in [s, end); empty gives 0.0.0.0 when allowed. */
static int parse_ip(const char *s, const char *end, struct in_addr *a)
{
	char buf[INET_ADDRSTRLEN];

	if (s == end) {
		a->s_addr = 0;
		return 0;
	}
	if ((size_t)(end - s) >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, (size_t)(end - s));
	buf[end - s] = 0;
	return inet_pton(AF_INET, buf, a) == 1 ? 0 : -EINVAL;
}

int net_parse_network(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		      const char *s, struct net_addrs *a)
{
	static const char want[] = "expected a network such as 10.0.2.0/24 (prefix 8 to 27)";
	const char *slash = strchr(s, '/');
	unsigned long prefix;
	uint32_t net, mask;

	if (!slash || !slash[1] || parse_ip(s, slash, &a->net) || slash == s ||
	    parse_uint(slash + 1, slash + strlen(slash), 8, 27, &prefix))
		return fail(api, ctx, key, want, s);
	mask = ~0u << (32 - prefix);
	net = ntohl(a->net.s_addr);
	if (net & ~mask)
		return fail(api, ctx, key, "host bits are set after the prefix", s);
	a->prefix = (uint32_t)prefix;
	a->mask.s_addr = htonl(mask);
	a->host.s_addr = htonl(net + 2);
	a->dns.s_addr = htonl(net + 3);
	a->dhcp.s_addr = htonl(net + 15);
	return 0;
}

int net_parse_forward(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		      const char *s, const struct net_addrs *a, struct net_forward *f)
{
	static const char want[] =
		"expected \"tcp|udp:[host address]:host port-[guest address]:guest port\", "
		"e.g. \"tcp:127.0.0.1:8080-:80\"";
	const char *p = s, *colon, *dash;
	unsigned long port;

	memset(f, 0, sizeof(*f));
	if (!strncmp(p, "tcp:", 4))
		f->udp = 0;
	else if (!strncmp(p, "udp:", 4))
		f->udp = 1;
	else
		return fail(api, ctx, key, want, s);
	p += 4;
	/* host side: [addr]:port- */
	dash = strchr(p, '-');
	if (!dash)
		return fail(api, ctx, key, want, s);
	colon = memrchr(p, ':', (size_t)(dash - p));
	if (!colon || parse_ip(p, colon, &f->host_addr))
		return fail(api, ctx, key, want, s);
	if (parse_uint(colon + 1, dash, 1, 65535, &port))
		return fail(api, ctx, key, "the host port must be 1 to 65535", s);
	f->host_port = (uint16_t)port;
	/* guest side: [addr]:port */
	p = dash + 1;
	colon = strrchr(p, ':');
	if (!colon || parse_ip(p, colon, &f->guest_addr))
		return fail(api, ctx, key, want, s);
	if (parse_uint(colon + 1, colon + strlen(colon), 1, 65535, &port))
		return fail(api, ctx, key, "the guest port must be 1 to 65535", s);
	f->guest_port = (uint16_t)port;
	if (f->guest_addr.s_addr &&
	    ((f->guest_addr.s_addr & a->mask.s_addr) != a->net.s_addr ||
	     f->guest_addr.s_addr == a->host.s_addr || f->guest_addr.s_addr == a->dns.s_addr))
		return fail(api, ctx, key, "the guest address is not a guest's address in net", s);
	return 0;
}
