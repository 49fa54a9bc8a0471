/*
 * Differential reference for src/drivers/blk/blkif.ts: builds blkif requests and responses with Xen's own
 * structs from io/blkif.h (Debian libxen-dev) and prints their bytes in hex, one line per input
 * line, so test/blk/blkif-diff.test.ts can compare them with the TypeScript codec byte for byte.
 *
 * First line printed: the layout, as "name=value" pairs (sizeof and offsetof of every field).
 * Then one line per input line (numbers in decimal; 64-bit values unsigned):
 *   rw <op> <nseg> <handle> <id> <sector> [<gref> <first> <last>]...   struct blkif_request
 *   discard <flag> <handle> <id> <sector> <nr_sectors>                    struct blkif_request_discard
 *   indirect <indirect_op> <nseg> <handle> <id> <sector> <gref0..7>       struct blkif_request_indirect
 *   rsp <id> <op> <status>                                                struct blkif_response
 *   seg <gref> <first> <last>                                             struct blkif_request_segment
 * Each struct is zeroed, then assigned field by field; requests print as the whole 112-byte ring
 * entry (union blkif_sring_entry), responses as 16 bytes.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define __XEN_TOOLS__ 1
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <xen/io/blkif.h>

static void hex(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

#define F(s, f) printf(" " #s "." #f "=%zu", offsetof(struct s, f))

int main(void) {
    printf("entry=%zu request=%zu discard=%zu indirect=%zu response=%zu segment=%zu",
           sizeof(union blkif_sring_entry), sizeof(struct blkif_request),
           sizeof(struct blkif_request_discard), sizeof(struct blkif_request_indirect),
           sizeof(struct blkif_response), sizeof(struct blkif_request_segment));
    F(blkif_request, operation); F(blkif_request, nr_segments); F(blkif_request, handle);
    F(blkif_request, id); F(blkif_request, sector_number); F(blkif_request, seg);
    F(blkif_request_discard, flag); F(blkif_request_discard, handle); F(blkif_request_discard, id);
    F(blkif_request_discard, sector_number); F(blkif_request_discard, nr_sectors);
    F(blkif_request_indirect, indirect_op); F(blkif_request_indirect, nr_segments);
    F(blkif_request_indirect, id); F(blkif_request_indirect, sector_number);
    F(blkif_request_indirect, handle); F(blkif_request_indirect, indirect_grefs);
    F(blkif_response, id); F(blkif_response, operation); F(blkif_response, status);
    F(blkif_request_segment, gref); F(blkif_request_segment, first_sect); F(blkif_request_segment, last_sect);
    printf(" max_segments=%d max_indirect_pages=%d rsp_okay=%d rsp_error=%d rsp_eopnotsupp=%d"
           " op_read=%d op_write=%d op_barrier=%d op_flush=%d op_discard=%d op_indirect=%d"
           " vdisk_cdrom=%d vdisk_removable=%d vdisk_readonly=%d discard_secure=%d ring_32=%zu ring_16=%zu\n",
           BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_RSP_OKAY,
           BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
           BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, VDISK_CDROM, VDISK_REMOVABLE,
           VDISK_READONLY, BLKIF_DISCARD_SECURE, (size_t)__CONST_RING_SIZE(blkif, 4096),
           (size_t)__CONST_RING_SIZE(blkif, 4096 * 16));
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        char kind[16];
        int used = 0;
        if (sscanf(line, "%15s%n", kind, &used) != 1) continue;
        char *p = line + used;
        union blkif_sring_entry e;
        memset(&e, 0, sizeof e);
        if (strcmp(kind, "rw") == 0) {
            struct blkif_request *r = &e.req;
            unsigned op, nseg, handle, n;
            uint64_t id, sector;
            sscanf(p, "%u %u %u %" SCNu64 " %" SCNu64 "%n", &op, &nseg, &handle, &id, &sector, &used);
            p += used;
            r->operation = op; r->nr_segments = nseg; r->handle = handle; r->id = id; r->sector_number = sector;
            for (n = 0; n < BLKIF_MAX_SEGMENTS_PER_REQUEST; n++) {
                unsigned g, f, l;
                if (sscanf(p, "%u %u %u%n", &g, &f, &l, &used) != 3) break;
                p += used;
                r->seg[n].gref = g; r->seg[n].first_sect = f; r->seg[n].last_sect = l;
            }
            hex(&e, sizeof e);
        } else if (strcmp(kind, "discard") == 0) {
            struct blkif_request_discard *r = (struct blkif_request_discard *)&e.req;
            unsigned flag, handle;
            uint64_t id, sector, nr;
            sscanf(p, "%u %u %" SCNu64 " %" SCNu64 " %" SCNu64, &flag, &handle, &id, &sector, &nr);
            r->operation = BLKIF_OP_DISCARD; r->flag = flag; r->handle = handle; r->id = id;
            r->sector_number = sector; r->nr_sectors = nr;
            hex(&e, sizeof e);
        } else if (strcmp(kind, "indirect") == 0) {
            struct blkif_request_indirect *r = (struct blkif_request_indirect *)&e.req;
            unsigned iop, nseg, handle, g[8];
            uint64_t id, sector;
            sscanf(p, "%u %u %u %" SCNu64 " %" SCNu64 " %u %u %u %u %u %u %u %u", &iop, &nseg, &handle, &id,
                   &sector, &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], &g[6], &g[7]);
            r->operation = BLKIF_OP_INDIRECT; r->indirect_op = iop; r->nr_segments = nseg; r->id = id;
            r->sector_number = sector; r->handle = handle;
            for (int i = 0; i < 8; i++) r->indirect_grefs[i] = g[i];
            hex(&e, sizeof e);
        } else if (strcmp(kind, "rsp") == 0) {
            struct blkif_response r;
            uint64_t id;
            unsigned op;
            int status;
            memset(&r, 0, sizeof r);
            sscanf(p, "%" SCNu64 " %u %d", &id, &op, &status);
            r.id = id; r.operation = op; r.status = status;
            hex(&r, sizeof r);
        } else if (strcmp(kind, "seg") == 0) {
            struct blkif_request_segment s;
            unsigned g, f, l;
            memset(&s, 0, sizeof s);
            sscanf(p, "%u %u %u", &g, &f, &l);
            s.gref = g; s.first_sect = f; s.last_sect = l;
            hex(&s, sizeof s);
        } else {
            fprintf(stderr, "unknown line: %s", line);
            return 2;
        }
    }
    return 0;
}
