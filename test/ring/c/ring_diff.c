/*
 * Differential reference for src/ring/ring.ts: applies a script of ring operations to a page
 * using Xen's own io/ring.h macros (via blkif.h's DEFINE_RING_TYPES, plus a 64-byte test entry)
 * and prints, after every step, one line:
 *
 *   <result> | <private indexes and queries> | <hex of the whole ring memory>
 *
 * test/ring/ring-diff.test.ts runs the same script on the TypeScript ring and compares the lines.
 *
 * Script: one operation per line on stdin, numbers in decimal or 0x hex.
 *   reset <blkif|t64> <pages>   fresh memory filled with a pattern; both ends attached at 0
 *   init                        XEN_FRONT_RING_INIT (SHARED_RING_INIT + FRONT_RING_INIT)
 *   shared_init                 SHARED_RING_INIT only
 *   front_attach <i>            FRONT_RING_ATTACH at index i
 *   back_attach <i>             BACK_RING_ATTACH at index i
 *   set <field> <v>             raw store to req_prod|req_event|rsp_prod|rsp_event (a peer's write)
 *   pvt <field> <v>             set req_prod_pvt|rsp_cons|rsp_prod_pvt|req_cons
 *   req <id>                    front fills RING_GET_REQUEST(req_prod_pvt) from id, req_prod_pvt++
 *   rsp <id> <status>           back fills RING_GET_RESPONSE(rsp_prod_pvt), rsp_prod_pvt++
 *   push_req | push_rsp         RING_PUSH_REQUESTS / RING_PUSH_RESPONSES
 *   push_req_notify | push_rsp_notify   ..._AND_CHECK_NOTIFY, prints notify=0|1
 *   take_req                    RING_COPY_REQUEST(req_cons), prints it, req_cons++
 *   take_rsp                    RING_COPY_RESPONSE(rsp_cons), prints it, rsp_cons++
 *   get_req <i> | get_rsp <i>   prints RING_GET_REQUEST/RESPONSE(i) in place
 *   final_req | final_rsp       RING_FINAL_CHECK_FOR_REQUESTS/RESPONSES, prints work=0|1
 *
 * Request contents are derived from the id with uint32/uint64 wrap-around so that both sides
 * compute identical bytes; fields are assigned one by one so padding bytes stay untouched.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * ring.h uses xen_mb()/xen_wmb() and leaves them to the includer (Xen's tools get them from
 * xenctrl.h); below interface version 0x00030208 it maps them to mb()/wmb() instead. Ask for the
 * latest interface and supply the barriers as C11 fences.
 */
#define __XEN_TOOLS__ 1
#define xen_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <xen/io/blkif.h>

struct t64_request {
    uint8_t b[64];
};
struct t64_response {
    uint8_t b[24];
};
DEFINE_RING_TYPES(t64, struct t64_request, struct t64_response);

enum kind { K_BLKIF, K_T64 };

static enum kind kind = K_BLKIF;
static unsigned char *mem;
static size_t mem_bytes;
static blkif_front_ring_t bf;
static blkif_back_ring_t bb;
static t64_front_ring_t tf;
static t64_back_ring_t tb;
static char result[4096];

/* Runs `body` with F and B bound to the front and back rings of the current kind. */
#define WITH_RING(...)                                                   \
    do {                                                                 \
        if (kind == K_BLKIF) {                                           \
            blkif_front_ring_t *F = &bf;                                 \
            blkif_back_ring_t *B = &bb;                                  \
            (void)F;                                                     \
            (void)B;                                                     \
            __VA_ARGS__;                                                 \
        } else {                                                         \
            t64_front_ring_t *F = &tf;                                   \
            t64_back_ring_t *B = &tb;                                    \
            (void)F;                                                     \
            (void)B;                                                     \
            __VA_ARGS__;                                                 \
        }                                                                \
    } while (0)

static void fill_blkif_req(struct blkif_request *r, uint32_t id)
{
    unsigned nr = id % 12, s;
    r->operation = (uint8_t)(id % 7);
    r->nr_segments = (uint8_t)nr;
    r->handle = (uint16_t)(id * 7u);
    r->id = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
    r->sector_number = (uint64_t)id << 9;
    for (s = 0; s < nr && s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++) {
        r->seg[s].gref = id * 1000u + s;
        r->seg[s].first_sect = (uint8_t)(s & 7);
        r->seg[s].last_sect = (uint8_t)(7 - (s & 7));
    }
}

static void fill_t64_req(struct t64_request *r, uint32_t id)
{
    unsigned i;
    for (i = 0; i < sizeof(r->b); i++)
        r->b[i] = (uint8_t)(id + i * 7u);
}

static void fill_blkif_rsp(struct blkif_response *r, uint32_t id, uint32_t status)
{
    r->id = id;
    r->operation = (uint8_t)id;
    r->status = (int16_t)status;
}

static void fill_t64_rsp(struct t64_response *r, uint32_t id, uint32_t status)
{
    unsigned i;
    for (i = 0; i < sizeof(r->b); i++)
        r->b[i] = (uint8_t)(id ^ status ^ (i * 3u));
}

#define FILL_REQ(p, id) \
    _Generic((p), struct blkif_request *: fill_blkif_req, struct t64_request *: fill_t64_req)(p, id)
#define FILL_RSP(p, id, st) \
    _Generic((p), struct blkif_response *: fill_blkif_rsp, struct t64_response *: fill_t64_rsp)(p, id, st)

static void show_blkif_req(const struct blkif_request *r)
{
    int n = snprintf(result, sizeof(result), "op=%u nr=%u h=%u id=%" PRIu64 " sec=%" PRIu64 " seg=",
                     r->operation, r->nr_segments, r->handle, r->id, r->sector_number);
    for (unsigned s = 0; s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++)
        n += snprintf(result + n, sizeof(result) - n, "%s%" PRIu32 ":%u:%u", s ? "," : "",
                      r->seg[s].gref, r->seg[s].first_sect, r->seg[s].last_sect);
}

static void show_bytes(const uint8_t *b, size_t len)
{
    size_t i;
    int n = snprintf(result, sizeof(result), "bytes=");
    for (i = 0; i < len; i++)
        n += snprintf(result + n, sizeof(result) - n, "%02x", b[i]);
}

static void show_t64_req(const struct t64_request *r) { show_bytes(r->b, sizeof(r->b)); }
static void show_t64_rsp(const struct t64_response *r) { show_bytes(r->b, sizeof(r->b)); }

static void show_blkif_rsp(const struct blkif_response *r)
{
    snprintf(result, sizeof(result), "id=%" PRIu64 " op=%u st=%d", r->id, r->operation, r->status);
}

#define SHOW_REQ(p) \
    _Generic((p), struct blkif_request *: show_blkif_req, struct t64_request *: show_t64_req)(p)
#define SHOW_RSP(p) \
    _Generic((p), struct blkif_response *: show_blkif_rsp, struct t64_response *: show_t64_rsp)(p)

static void print_state(void)
{
    WITH_RING({
        unsigned unc_req = XEN_RING_NR_UNCONSUMED_REQUESTS(B);
        printf("fp=%u fc=%u bp=%u bc=%u size=%u free=%u full=%d urs=%u urq=%u cov=%d pov=%d rov=%d",
               F->req_prod_pvt, F->rsp_cons, B->rsp_prod_pvt, B->req_cons, RING_SIZE(F),
               RING_FREE_REQUESTS(F), RING_FULL(F) ? 1 : 0, XEN_RING_NR_UNCONSUMED_RESPONSES(F),
               unc_req, RING_REQUEST_CONS_OVERFLOW(B, B->req_cons) ? 1 : 0,
               RING_REQUEST_PROD_OVERFLOW(B, B->sring->req_prod) ? 1 : 0,
               RING_RESPONSE_PROD_OVERFLOW(F, F->sring->rsp_prod) ? 1 : 0);
    });
}

static void print_mem(void)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < mem_bytes; i++) {
        putchar(hex[mem[i] >> 4]);
        putchar(hex[mem[i] & 15]);
    }
}

static uint32_t num(const char *s)
{
    if (!s) {
        fprintf(stderr, "ring_diff: missing number\n");
        exit(2);
    }
    return (uint32_t)strtoul(s, NULL, 0);
}

static void reset(const char *k, uint32_t pages)
{
    size_t i;
    kind = strcmp(k, "t64") == 0 ? K_T64 : K_BLKIF;
    free(mem);
    mem_bytes = (size_t)pages * 4096;
    if (posix_memalign((void **)&mem, 4096, mem_bytes)) {
        perror("posix_memalign");
        exit(2);
    }
    for (i = 0; i < mem_bytes; i++)
        mem[i] = (unsigned char)(i * 13 + 0x5a);
    FRONT_RING_ATTACH(&bf, (blkif_sring_t *)mem, 0, mem_bytes);
    BACK_RING_ATTACH(&bb, (blkif_sring_t *)mem, 0, mem_bytes);
    FRONT_RING_ATTACH(&tf, (t64_sring_t *)mem, 0, mem_bytes);
    BACK_RING_ATTACH(&tb, (t64_sring_t *)mem, 0, mem_bytes);
}

static volatile RING_IDX *shared_field(const char *name)
{
    /* The header layout is the same for every ring type. */
    blkif_sring_t *s = (blkif_sring_t *)mem;
    if (!strcmp(name, "req_prod")) return &s->req_prod;
    if (!strcmp(name, "req_event")) return &s->req_event;
    if (!strcmp(name, "rsp_prod")) return &s->rsp_prod;
    if (!strcmp(name, "rsp_event")) return &s->rsp_event;
    fprintf(stderr, "ring_diff: unknown shared field %s\n", name);
    exit(2);
}

static void set_pvt(const char *name, uint32_t v)
{
    WITH_RING({
        if (!strcmp(name, "req_prod_pvt")) F->req_prod_pvt = v;
        else if (!strcmp(name, "rsp_cons")) F->rsp_cons = v;
        else if (!strcmp(name, "rsp_prod_pvt")) B->rsp_prod_pvt = v;
        else if (!strcmp(name, "req_cons")) B->req_cons = v;
        else {
            fprintf(stderr, "ring_diff: unknown private field %s\n", name);
            exit(2);
        }
    });
}

int main(void)
{
    char line[512];
    reset("blkif", 1);
    while (fgets(line, sizeof(line), stdin)) {
        char *op = strtok(line, " \t\r\n");
        char *a = strtok(NULL, " \t\r\n");
        char *b = strtok(NULL, " \t\r\n");
        if (!op || op[0] == '#')
            continue;
        snprintf(result, sizeof(result), "ok");
        if (!strcmp(op, "reset")) {
            reset(a ? a : "blkif", b ? num(b) : 1);
        } else if (!strcmp(op, "init")) {
            WITH_RING(XEN_FRONT_RING_INIT(F, F->sring, mem_bytes));
        } else if (!strcmp(op, "shared_init")) {
            WITH_RING(SHARED_RING_INIT(F->sring));
        } else if (!strcmp(op, "front_attach")) {
            WITH_RING(FRONT_RING_ATTACH(F, F->sring, num(a), mem_bytes));
        } else if (!strcmp(op, "back_attach")) {
            WITH_RING(BACK_RING_ATTACH(B, B->sring, num(a), mem_bytes));
        } else if (!strcmp(op, "set")) {
            *shared_field(a) = num(b);
        } else if (!strcmp(op, "pvt")) {
            set_pvt(a, num(b));
        } else if (!strcmp(op, "req")) {
            WITH_RING({
                FILL_REQ(RING_GET_REQUEST(F, F->req_prod_pvt), num(a));
                F->req_prod_pvt++;
            });
        } else if (!strcmp(op, "rsp")) {
            WITH_RING({
                FILL_RSP(RING_GET_RESPONSE(B, B->rsp_prod_pvt), num(a), num(b));
                B->rsp_prod_pvt++;
            });
        } else if (!strcmp(op, "push_req")) {
            WITH_RING(RING_PUSH_REQUESTS(F));
        } else if (!strcmp(op, "push_rsp")) {
            WITH_RING(RING_PUSH_RESPONSES(B));
        } else if (!strcmp(op, "push_req_notify")) {
            int notify;
            WITH_RING(RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(F, notify));
            snprintf(result, sizeof(result), "notify=%d", notify ? 1 : 0);
        } else if (!strcmp(op, "push_rsp_notify")) {
            int notify;
            WITH_RING(RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(B, notify));
            snprintf(result, sizeof(result), "notify=%d", notify ? 1 : 0);
        } else if (!strcmp(op, "take_req")) {
            WITH_RING({
                __typeof__(*RING_GET_REQUEST(B, 0)) copy;
                RING_COPY_REQUEST(B, B->req_cons, &copy);
                B->req_cons++;
                SHOW_REQ(&copy);
            });
        } else if (!strcmp(op, "take_rsp")) {
            WITH_RING({
                __typeof__(*RING_GET_RESPONSE(F, 0)) copy;
                RING_COPY_RESPONSE(F, F->rsp_cons, &copy);
                F->rsp_cons++;
                SHOW_RSP(&copy);
            });
        } else if (!strcmp(op, "get_req")) {
            WITH_RING(SHOW_REQ(RING_GET_REQUEST(B, num(a))));
        } else if (!strcmp(op, "get_rsp")) {
            WITH_RING(SHOW_RSP(RING_GET_RESPONSE(F, num(a))));
        } else if (!strcmp(op, "final_req")) {
            int work;
            WITH_RING(RING_FINAL_CHECK_FOR_REQUESTS(B, work));
            snprintf(result, sizeof(result), "work=%d", work ? 1 : 0);
        } else if (!strcmp(op, "final_rsp")) {
            int work;
            WITH_RING(RING_FINAL_CHECK_FOR_RESPONSES(F, work));
            snprintf(result, sizeof(result), "work=%d", work ? 1 : 0);
        } else {
            fprintf(stderr, "ring_diff: unknown operation %s\n", op);
            return 2;
        }
        fputs(result, stdout);
        fputs(" | ", stdout);
        print_state();
        fputs(" | ", stdout);
        print_mem();
        putchar('\n');
    }
    free(mem);
    return 0;
}
