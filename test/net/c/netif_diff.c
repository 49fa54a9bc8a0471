/*
 * Differential reference for src/drivers/net/netif.ts: builds netif ring entries with Xen's own structs
 * from io/netif.h (Debian libxen-dev) and prints their bytes in hex, one line per input line, so
 * test/net/netif-diff.test.ts can compare them with the TypeScript codec byte for byte.
 *
 * First line printed: the layout, as "name=value" pairs (sizeof, offsetof, constants, ring sizes).
 * Then one line per input line (numbers in decimal):
 *   txreq <gref> <offset> <flags> <id> <size>          union netif_tx_sring_entry (12 bytes)
 *   txrsp <id> <status>                                union netif_tx_sring_entry (12 bytes)
 *   rxreq <id> <gref>                                  union netif_rx_sring_entry (8 bytes)
 *   rxrsp <id> <offset> <flags> <status>               union netif_rx_sring_entry (8 bytes)
 *   gso <flags> <size> <type> <features>               struct netif_extra_info (8 bytes)
 *   mcast <type> <flags> <a0> .. <a5>                  struct netif_extra_info
 *   hash <flags> <type> <algorithm> <v0> .. <v3>       struct netif_extra_info
 * Each entry is zeroed, then assigned field by field.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define __XEN_TOOLS__ 1
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <xen/io/netif.h>

static void hex(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

#define F(s, f) printf(" " #s "." #f "=%zu", offsetof(struct s, f))

int main(void) {
    printf("tx_entry=%zu rx_entry=%zu tx_request=%zu tx_response=%zu rx_request=%zu rx_response=%zu extra=%zu",
           sizeof(union netif_tx_sring_entry), sizeof(union netif_rx_sring_entry),
           sizeof(struct netif_tx_request), sizeof(struct netif_tx_response), sizeof(struct netif_rx_request),
           sizeof(struct netif_rx_response), sizeof(struct netif_extra_info));
    F(netif_tx_request, gref); F(netif_tx_request, offset); F(netif_tx_request, flags);
    F(netif_tx_request, id); F(netif_tx_request, size);
    F(netif_tx_response, id); F(netif_tx_response, status);
    F(netif_rx_request, id); F(netif_rx_request, pad); F(netif_rx_request, gref);
    F(netif_rx_response, id); F(netif_rx_response, offset); F(netif_rx_response, flags);
    F(netif_rx_response, status);
    F(netif_extra_info, type); F(netif_extra_info, flags); F(netif_extra_info, u);
    F(netif_extra_info, u.gso.size); F(netif_extra_info, u.gso.type); F(netif_extra_info, u.gso.pad);
    F(netif_extra_info, u.gso.features); F(netif_extra_info, u.mcast.addr);
    F(netif_extra_info, u.hash.type); F(netif_extra_info, u.hash.algorithm); F(netif_extra_info, u.hash.value);
    printf(" tx_csum_blank=%u tx_data_validated=%u tx_more_data=%u tx_extra_info=%u"
           " rx_data_validated=%u rx_csum_blank=%u rx_more_data=%u rx_extra_info=%u rx_gso_prefix=%u"
           " extra_gso=%d extra_mcast_add=%d extra_mcast_del=%d extra_hash=%d extra_max=%d extra_more=%u"
           " gso_tcpv4=%d gso_tcpv6=%d rsp_dropped=%d rsp_error=%d rsp_okay=%d rsp_null=%d"
           " max_tx_size=%d slots_min=%d tx_ring=%zu rx_ring=%zu\n",
           NETTXF_csum_blank, NETTXF_data_validated, NETTXF_more_data, NETTXF_extra_info,
           NETRXF_data_validated, NETRXF_csum_blank, NETRXF_more_data, NETRXF_extra_info, NETRXF_gso_prefix,
           XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
           XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_FLAG_MORE,
           XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6, NETIF_RSP_DROPPED, NETIF_RSP_ERROR,
           NETIF_RSP_OKAY, NETIF_RSP_NULL, XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_NR_SLOTS_MIN,
           (size_t)__CONST_RING_SIZE(netif_tx, 4096), (size_t)__CONST_RING_SIZE(netif_rx, 4096));
    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        char kind[16];
        int used = 0;
        if (sscanf(line, "%15s%n", kind, &used) != 1) continue;
        char *p = line + used;
        unsigned a[10] = {0};
        int s = 0;
        if (strcmp(kind, "txreq") == 0) {
            union netif_tx_sring_entry e;
            memset(&e, 0, sizeof e);
            sscanf(p, "%u %u %u %u %u", &a[0], &a[1], &a[2], &a[3], &a[4]);
            e.req.gref = a[0]; e.req.offset = a[1]; e.req.flags = a[2]; e.req.id = a[3]; e.req.size = a[4];
            hex(&e, sizeof e);
        } else if (strcmp(kind, "txrsp") == 0) {
            union netif_tx_sring_entry e;
            memset(&e, 0, sizeof e);
            sscanf(p, "%u %d", &a[0], &s);
            e.rsp.id = a[0]; e.rsp.status = s;
            hex(&e, sizeof e);
        } else if (strcmp(kind, "rxreq") == 0) {
            union netif_rx_sring_entry e;
            memset(&e, 0, sizeof e);
            sscanf(p, "%u %u", &a[0], &a[1]);
            e.req.id = a[0]; e.req.gref = a[1];
            hex(&e, sizeof e);
        } else if (strcmp(kind, "rxrsp") == 0) {
            union netif_rx_sring_entry e;
            memset(&e, 0, sizeof e);
            sscanf(p, "%u %u %u %d", &a[0], &a[1], &a[2], &s);
            e.rsp.id = a[0]; e.rsp.offset = a[1]; e.rsp.flags = a[2]; e.rsp.status = s;
            hex(&e, sizeof e);
        } else if (strcmp(kind, "gso") == 0) {
            struct netif_extra_info x;
            memset(&x, 0, sizeof x);
            sscanf(p, "%u %u %u %u", &a[0], &a[1], &a[2], &a[3]);
            x.type = XEN_NETIF_EXTRA_TYPE_GSO; x.flags = a[0];
            x.u.gso.size = a[1]; x.u.gso.type = a[2]; x.u.gso.features = a[3];
            hex(&x, sizeof x);
        } else if (strcmp(kind, "mcast") == 0) {
            struct netif_extra_info x;
            memset(&x, 0, sizeof x);
            sscanf(p, "%u %u %u %u %u %u %u %u", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], &a[7]);
            x.type = a[0]; x.flags = a[1];
            for (int i = 0; i < 6; i++) x.u.mcast.addr[i] = a[2 + i];
            hex(&x, sizeof x);
        } else if (strcmp(kind, "hash") == 0) {
            struct netif_extra_info x;
            memset(&x, 0, sizeof x);
            sscanf(p, "%u %u %u %u %u %u %u", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6]);
            x.type = XEN_NETIF_EXTRA_TYPE_HASH; x.flags = a[0];
            x.u.hash.type = a[1]; x.u.hash.algorithm = a[2];
            for (int i = 0; i < 4; i++) x.u.hash.value[i] = a[3 + i];
            hex(&x, sizeof x);
        } else {
            fprintf(stderr, "unknown line: %s", line);
            return 2;
        }
    }
    return 0;
}
