/* virtio-net options: parsed and checked before anything is built. Each
 * parser returns 0, or -EINVAL after api->set_error(ctx, ...) with a
 * message for the user that starts with `key` and the value
 * (`mac "01:00:5e:00:00:01": a multicast address ...`). */
#ifndef VIRTIO_NET_OPTIONS_H
#define VIRTIO_NET_OPTIONS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <smolvm/plugin.h>

#define NET_MAX_FORWARDS 64

/* The user-mode network: addresses in network byte order. */
struct net_addrs {
	struct in_addr net, mask;
	uint32_t prefix;
	struct in_addr host;  /* gateway and the host's loopback: .2 */
	struct in_addr dns;   /* slirp's DNS forwarder: .3 */
	struct in_addr dhcp;  /* first DHCP address: .15 */
};

/* "tcp:127.0.0.1:8080-:80": host address and port -> guest address and
 * port. An empty host address is 0.0.0.0 (every interface), an empty
 * guest address (0) the guest's DHCP address. */
struct net_forward {
	int udp;
	struct in_addr host_addr, guest_addr;
	uint16_t host_port, guest_port;
};

/* "52:54:00:12:34:56": a unicast, non-zero address. */
int net_parse_mac(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		  const char *s, uint8_t mac[6]);
/* "10.0.2.0/24": prefix 8..27 (the DHCP range starts at .15), no host bits. */
int net_parse_network(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		      const char *s, struct net_addrs *a);
/* A forward; `a` bounds the guest address. */
int net_parse_forward(const struct smolvm_host_api *api, smolvm_ctx *ctx, const char *key,
		      const char *s, const struct net_addrs *a, struct net_forward *f);

#endif
