/*
 * Differential reference for the console ring (src/ring/byte-ring.ts ConsoleInterface,
 * src/kernel/hvc.ts): applies a script of console operations to a page through Xen's own
 * io/console.h (struct xencons_interface, MASK_XENCONS_IDX), with the ring code of the two real
 * ends: Linux hvc_xen's __write_console and domU_read_console (the guest), xenconsoled's
 * buffer_append and handle_tty_read (the backend). After every step it prints one line:
 *
 *   <result> | in_cons in_prod out_cons out_prod | <hex of the first 3088 bytes of the page>
 *
 * test/console/console-diff.test.ts runs the same script through the TypeScript side.
 *
 * Script: one operation per line on stdin, numbers in decimal.
 *   layout                  prints offsetof/sizeof of xencons_interface (no page line)
 *   reset <byte>            the page filled with <byte>, indexes 0
 *   set <field> <v>         raw store to in_cons|in_prod|out_cons|out_prod (a peer's write)
 *   gwrite <n> <seed>       guest: __write_console of n bytes (byte i = seed + 7i), prints sent=
 *   gread                   guest: domU_read_console into a 1024-byte buffer, prints the bytes
 *   bread                   backend: buffer_append, prints the bytes it took
 *   bwrite <n> <seed>       backend: handle_tty_read of n typed bytes, prints sent=
 *
 * Where Linux has BUG_ON for corrupt indexes, this prints "corrupt" and changes nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xen/io/console.h>

static unsigned char page[4096];
#define INTF ((struct xencons_interface *)page)
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

static void hexbytes(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
}

static unsigned char gen(unsigned seed, unsigned i)
{
    return (unsigned char)(seed + 7u * i);
}

/* hvc_xen.c __write_console, with BUG_ON turned into a report. */
static int guest_write(unsigned n, unsigned seed)
{
    struct xencons_interface *intf = INTF;
    XENCONS_RING_IDX cons = intf->out_cons, prod = intf->out_prod;
    unsigned sent = 0;
    mb();
    if ((prod - cons) > sizeof(intf->out))
        return -1;
    while (sent < n && (prod - cons) < sizeof(intf->out)) {
        intf->out[MASK_XENCONS_IDX(prod++, intf->out)] = gen(seed, sent);
        sent++;
    }
    wmb();
    intf->out_prod = prod;
    return (int)sent;
}

/* hvc_xen.c domU_read_console. */
static int guest_read(unsigned char *buf, unsigned len)
{
    struct xencons_interface *intf = INTF;
    XENCONS_RING_IDX cons = intf->in_cons, prod = intf->in_prod;
    unsigned recv = 0;
    mb();
    if ((prod - cons) > sizeof(intf->in))
        return -1;
    while (cons != prod && recv < len)
        buf[recv++] = intf->in[MASK_XENCONS_IDX(cons++, intf->in)];
    mb();
    intf->in_cons = cons;
    return (int)recv;
}

/* xenconsoled io.c buffer_append (the ring half). */
static int backend_read(unsigned char *buf)
{
    struct xencons_interface *intf = INTF;
    XENCONS_RING_IDX cons = intf->out_cons, prod = intf->out_prod, size;
    int n = 0;
    mb();
    size = prod - cons;
    if (size == 0 || size > sizeof(intf->out))
        return size == 0 ? 0 : -1;
    while (cons != prod)
        buf[n++] = intf->out[MASK_XENCONS_IDX(cons++, intf->out)];
    mb();
    intf->out_cons = cons;
    return n;
}

/* xenconsoled io.c ring_free_bytes + handle_tty_read (the ring half). */
static int backend_write(unsigned n, unsigned seed)
{
    struct xencons_interface *intf = INTF;
    XENCONS_RING_IDX cons = intf->in_cons, prod = intf->in_prod, space;
    unsigned len;
    mb();
    space = prod - cons;
    if (space > sizeof(intf->in))
        len = 0; /* ring is screwed: ignore it */
    else
        len = sizeof(intf->in) - space;
    if (len > n)
        len = n;
    prod = intf->in_prod;
    for (unsigned i = 0; i < len; i++)
        intf->in[MASK_XENCONS_IDX(prod++, intf->in)] = gen(seed, i);
    wmb();
    intf->in_prod = prod;
    return (int)len;
}

int main(void)
{
    char line[256];
    unsigned char buf[4096];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char op[32] = "", field[32] = "";
        unsigned a = 0, b = 0;
        if (sscanf(line, "%31s", op) != 1)
            continue;
        if (strcmp(op, "layout") == 0) {
            printf("in %zu in_size %zu out %zu out_size %zu in_cons %zu in_prod %zu out_cons %zu "
                   "out_prod %zu size %zu\n",
                   offsetof(struct xencons_interface, in), sizeof(INTF->in),
                   offsetof(struct xencons_interface, out), sizeof(INTF->out),
                   offsetof(struct xencons_interface, in_cons),
                   offsetof(struct xencons_interface, in_prod),
                   offsetof(struct xencons_interface, out_cons),
                   offsetof(struct xencons_interface, out_prod), sizeof(struct xencons_interface));
            continue;
        } else if (strcmp(op, "reset") == 0) {
            sscanf(line, "%*s %u", &a);
            memset(page, (int)a, sizeof(page));
            INTF->in_cons = INTF->in_prod = INTF->out_cons = INTF->out_prod = 0;
            printf("ok");
        } else if (strcmp(op, "set") == 0) {
            sscanf(line, "%*s %31s %u", field, &a);
            if (strcmp(field, "in_cons") == 0)
                INTF->in_cons = a;
            else if (strcmp(field, "in_prod") == 0)
                INTF->in_prod = a;
            else if (strcmp(field, "out_cons") == 0)
                INTF->out_cons = a;
            else if (strcmp(field, "out_prod") == 0)
                INTF->out_prod = a;
            else
                return 2;
            printf("ok");
        } else if (strcmp(op, "gwrite") == 0) {
            sscanf(line, "%*s %u %u", &a, &b);
            int r = guest_write(a, b);
            if (r < 0)
                printf("corrupt");
            else
                printf("sent=%d", r);
        } else if (strcmp(op, "bwrite") == 0) {
            sscanf(line, "%*s %u %u", &a, &b);
            printf("sent=%d", backend_write(a, b));
        } else if (strcmp(op, "gread") == 0 || strcmp(op, "bread") == 0) {
            int r = op[0] == 'g' ? guest_read(buf, 1024) : backend_read(buf);
            if (r < 0) {
                printf("corrupt");
            } else {
                printf("got=");
                hexbytes(buf, (size_t)r);
            }
        } else {
            return 2;
        }
        printf(" | %u %u %u %u | ", INTF->in_cons, INTF->in_prod, INTF->out_cons, INTF->out_prod);
        hexbytes(page, offsetof(struct xencons_interface, in_cons));
        printf("\n");
    }
    return 0;
}
