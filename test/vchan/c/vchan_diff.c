/*
 * Lockstep reference for src/drivers/vchan: Debian's unmodified libxenvchan.a (server and
 * client in one process) over stub grant, event-channel and XenStore libraries defined here.
 * A "grant" is a MAP_SHARED anonymous region; a map is a second mapping of it (mremap with
 * old_size 0), so either side may unmap, as with gntalloc/gntdev. A third mapping, never
 * unmapped, is what we print from.
 *
 * stdin, one command a line:
 *   server LEFT RIGHT       libxenvchan_server_init(peer 1, PATH, LEFT, RIGHT)
 *   client                  libxenvchan_client_init(peer 0, PATH)
 *   S|C read N | recv N     non-blocking; prints the bytes read
 *   S|C write N SEED | send N SEED   bytes (SEED*7 + i) & 255
 *   S|C ready | space | open | close
 *   poke OFF HEX            writes bytes into the control page
 *   xsset PATH VALUE        puts a key in the stub XenStore (what a server elsewhere wrote)
 *   dump                    prints the page and rings only
 * stdout: what the stubs saw (share/map/notify/xs lines), then "ret N", "data HEX" for reads,
 * "hdr HEX" (the 24-byte header and the grants) and "rings L R" (FNV-1a of each ring).
 *
 * With VCHAN_SHM=FILE the grants are pages of FILE instead (ref r at offset (r - 8) * 4096), so
 * another process can be the peer in lockstep: it reads and writes the same pages of the file
 * between our steps. Each command's output then ends with a line "end" and is flushed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxenvchan.h>
#include <xenstore.h>

#define PATH "/local/domain/0/data/vchan/1/5"
#define PG 4096
#define SRV_PORT 7
#define CLI_PORT 9

struct grant { uint8_t *base; uint32_t count; }; /* ref -> region start, pages in it */
static struct grant grants[1024];
static uint32_t next_ref = 8;
static uint8_t *witness_ctrl;
static int shm_fd = -1;

/* VCHAN_SHM: `count` pages of the file from grant `ref`, a mapping of their own */
static uint8_t *file_map(uint32_t ref, uint32_t count)
{
	void *p = mmap(NULL, (size_t)count * PG, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, (off_t)(ref - 8) * PG);
	if (p == MAP_FAILED) { perror("mmap file"); exit(2); }
	return p;
}

/* Where we print grant `ref` from: its region, or in VCHAN_SHM mode a mapping of its file page. */
static uint8_t *page_of(uint32_t ref)
{
	if (!grants[ref].base && shm_fd >= 0) grants[ref] = (struct grant){ file_map(ref, 1), 1 };
	return grants[ref].base;
}
struct notify { void *addr; uint32_t off; uint32_t port; };
static struct notify notifies[64];
static int nnotifies;

static void *dup_map(uint8_t *base, size_t len)
{
	void *p = mremap(base, 0, len, MREMAP_MAYMOVE);
	if (p == MAP_FAILED) { perror("mremap"); exit(2); }
	return p;
}

static void add_notify(void *addr, uint32_t off, uint32_t port)
{
	notifies[nnotifies++] = (struct notify){ addr, off, port };
}

static void fire_notify(void *addr)
{
	for (int i = 0; i < nnotifies; i++) {
		if (notifies[i].addr != addr) continue;
		((volatile uint8_t *)addr)[notifies[i].off] = 0;
		printf("notify %u\n", notifies[i].port);
		notifies[i] = notifies[--nnotifies];
		return;
	}
}

/* ---- libxengntshr */
xengntshr_handle *xengntshr_open(struct xentoollog_logger *l, unsigned f) { (void)l; (void)f; return (void *)1; }
int xengntshr_close(xengntshr_handle *h) { (void)h; return 0; }

static void *share(int count, uint32_t *refs)
{
	uint8_t *base;
	if (shm_fd >= 0) {
		if (ftruncate(shm_fd, (off_t)(next_ref - 8 + (uint32_t)count) * PG)) { perror("ftruncate"); exit(2); }
		base = file_map(next_ref, (uint32_t)count);
	} else {
		base = mmap(NULL, (size_t)count * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED) { perror("mmap"); exit(2); }
	}
	for (int i = 0; i < count; i++) {
		refs[i] = next_ref++;
		grants[refs[i]] = (struct grant){ base + (size_t)i * PG, (uint32_t)(count - i) };
		printf("share %u\n", refs[i]);
	}
	return dup_map(base, (size_t)count * PG);
}

void *xengntshr_share_pages(xengntshr_handle *h, uint32_t domid, int count, uint32_t *refs, int writable)
{
	(void)h; (void)domid; (void)writable;
	return share(count, refs);
}

void *xengntshr_share_page_notify(xengntshr_handle *h, uint32_t domid, uint32_t *ref, int writable,
                                  uint32_t off, evtchn_port_t port)
{
	(void)h; (void)domid; (void)writable;
	void *p = share(1, ref);
	printf("notify-on-unshare %u byte %u port %u\n", *ref, off, port);
	witness_ctrl = dup_map(grants[*ref].base, PG);
	add_notify(p, off, port);
	return p;
}

int xengntshr_unshare(xengntshr_handle *h, void *addr, uint32_t count)
{
	(void)h;
	printf("unshare %u\n", count);
	fire_notify(addr);
	munmap(addr, (size_t)count * PG);
	return 0;
}

/* ---- libxengnttab */
xengnttab_handle *xengnttab_open(struct xentoollog_logger *l, unsigned f) { (void)l; (void)f; return (void *)1; }
int xengnttab_close(xengnttab_handle *h) { (void)h; return 0; }

void *xengnttab_map_grant_ref_notify(xengnttab_handle *h, uint32_t domid, uint32_t ref, int prot,
                                     uint32_t off, evtchn_port_t port)
{
	(void)h; (void)domid;
	if (ref >= 1024 || !page_of(ref)) return NULL;
	printf("map %u %s notify byte %u port %u\n", ref, (prot & PROT_WRITE) ? "rw" : "ro", off, port);
	void *p = dup_map(grants[ref].base, PG);
	add_notify(p, off, port);
	return p;
}

void *xengnttab_map_domain_grant_refs(xengnttab_handle *h, uint32_t count, uint32_t domid, uint32_t *refs, int prot)
{
	(void)h; (void)domid;
	if (shm_fd >= 0) {
		/* the file holds consecutive refs side by side */
		for (uint32_t i = 0; i < count; i++) {
			if (refs[i] != refs[0] + i) return NULL;
			printf("map %u %s\n", refs[i], (prot & PROT_WRITE) ? "rw" : "ro");
		}
		return file_map(refs[0], count);
	}
	for (uint32_t i = 0; i < count; i++) {
		if (refs[i] >= 1024 || !grants[refs[i]].base) return NULL;
		/* our shares are contiguous regions: the refs must follow one another in one */
		if (i > 0 && grants[refs[i]].base != grants[refs[0]].base + (size_t)i * PG) return NULL;
		printf("map %u %s\n", refs[i], (prot & PROT_WRITE) ? "rw" : "ro");
	}
	if (grants[refs[0]].count < count) return NULL;
	return dup_map(grants[refs[0]].base, (size_t)count * PG);
}

int xengnttab_unmap(xengnttab_handle *h, void *addr, uint32_t count)
{
	(void)h;
	printf("unmap %u\n", count);
	fire_notify(addr);
	munmap(addr, (size_t)count * PG);
	return 0;
}

/* ---- libxenevtchn */
xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *l, unsigned int f) { (void)l; (void)f; return (void *)1; }
int xenevtchn_close(xenevtchn_handle *h) { (void)h; return 0; }
int xenevtchn_fd(xenevtchn_handle *h) { (void)h; return -1; }
int xenevtchn_notify(xenevtchn_handle *h, evtchn_port_t port) { (void)h; printf("notify %u\n", port); return 0; }
xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *h, uint32_t domid)
{
	(void)h;
	printf("alloc-unbound %u\n", domid);
	return SRV_PORT;
}
xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *h, uint32_t domid, evtchn_port_t remote)
{
	(void)h;
	printf("bind-interdomain %u %u\n", domid, remote);
	return remote == SRV_PORT ? CLI_PORT : -1;
}
int xenevtchn_unbind(xenevtchn_handle *h, evtchn_port_t port) { (void)h; (void)port; return 0; }
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *h) { (void)h; return -1; }
int xenevtchn_unmask(xenevtchn_handle *h, evtchn_port_t port) { (void)h; (void)port; return 0; }

/* ---- libxenstore: a small key/value table */
static char *kv_k[64], *kv_v[64];
static int nkv;

struct xs_handle *xs_open(unsigned long f) { (void)f; return (void *)1; }
void xs_close(struct xs_handle *h) { (void)h; }
xs_transaction_t xs_transaction_start(struct xs_handle *h) { (void)h; return 1; }
bool xs_transaction_end(struct xs_handle *h, xs_transaction_t t, bool abort) { (void)h; (void)t; (void)abort; return true; }

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len)
{
	(void)h; (void)t;
	const char *v = NULL;
	if (!strcmp(path, "domid")) v = "0";
	for (int i = 0; i < nkv && !v; i++)
		if (!strcmp(kv_k[i], path)) v = kv_v[i];
	printf("xs read %s\n", path);
	if (!v) return NULL;
	if (len) *len = (unsigned)strlen(v);
	return strdup(v);
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path, const void *data, unsigned int len)
{
	(void)h;
	kv_k[nkv] = strdup(path);
	kv_v[nkv] = strndup(data, len);
	printf("xs write %s %s tx=%u\n", path, kv_v[nkv], t);
	nkv++;
	return true;
}

bool xs_set_permissions(struct xs_handle *h, xs_transaction_t t, const char *path, struct xs_permissions *p,
                        unsigned int n)
{
	(void)h; (void)t;
	printf("xs perms %s", path);
	for (unsigned i = 0; i < n; i++)
		printf(" %c%u", "nrwb"[p[i].perms & 3], p[i].id);
	printf("\n");
	return true;
}

bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	(void)h; (void)t;
	printf("xs rm %s\n", path);
	return true;
}

/* ---- the driver */
static uint32_t fnv_more(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
	return h;
}

static uint32_t fnv(const uint8_t *p, size_t n) { return fnv_more(2166136261u, p, n); }

static uint32_t ring_hash(int order, uint32_t first_grant)
{
	if (order == 10) return fnv(witness_ctrl + 1024, 1024);
	if (order == 11) return fnv(witness_ctrl + 2048, 2048);
	uint32_t ref, h = 2166136261u;
	memcpy(&ref, witness_ctrl + 24 + 4 * first_grant, 4);
	/* the ring's refs are consecutive (both servers allocate them so) */
	for (uint32_t i = 0; i < 1u << (order - 12); i++) h = fnv_more(h, page_of(ref + i), PG);
	return h;
}

static void dump(void)
{
	if (!witness_ctrl && shm_fd >= 0 && grants[8].base == NULL) {
		struct stat st;
		if (fstat(shm_fd, &st) == 0 && st.st_size >= PG) witness_ctrl = dup_map(page_of(8), PG);
	}
	if (!witness_ctrl) return;
	struct vchan_interface *v = (void *)witness_ctrl;
	int lo = v->left_order, ro = v->right_order;
	uint32_t lp = lo >= 12 ? 1u << (lo - 12) : 0, rp = ro >= 12 ? 1u << (ro - 12) : 0;
	printf("hdr ");
	for (uint32_t i = 0; i < 24 + 4 * (lp + rp); i++) printf("%02x", witness_ctrl[i]);
	printf("\nrings %08x %08x\n", ring_hash(lo, 0), ring_hash(ro, lp));
}

int main(void)
{
	struct libxenvchan *srv = NULL, *cli = NULL;
	char line[4096];
	static uint8_t buf[1 << 21];
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	const char *shm = getenv("VCHAN_SHM");
	if (shm) {
		shm_fd = open(shm, O_RDWR | O_CREAT, 0600);
		if (shm_fd < 0) { perror(shm); return 2; }
	}
	while (fgets(line, sizeof line, stdin)) {
		char who, op[16];
		unsigned long a = 0, b = 0;
		char hex[4000];
		if (sscanf(line, "server %lu %lu", &a, &b) == 2) {
			srv = libxenvchan_server_init(NULL, 1, PATH, a, b);
			if (srv) srv->blocking = 0;
			printf("ret %d\n", srv ? 0 : -1);
		} else if (!strncmp(line, "client", 6)) {
			cli = libxenvchan_client_init(NULL, 0, PATH);
			if (cli) cli->blocking = 0;
			printf("ret %d\n", cli ? 0 : -1);
		} else if (sscanf(line, "xsset %3999s %15s", hex, op) == 2) {
			kv_k[nkv] = strdup(hex);
			kv_v[nkv] = strdup(op);
			nkv++;
		} else if (!strncmp(line, "dump", 4)) {
			/* the page and rings, below */
		} else if (sscanf(line, "poke %lu %3999s", &a, hex) == 2) {
			for (size_t i = 0; hex[2 * i]; i++) {
				unsigned x;
				sscanf(hex + 2 * i, "%2x", &x);
				witness_ctrl[a + i] = (uint8_t)x;
			}
			printf("ret 0\n");
		} else if (sscanf(line, "%c %15s %lu %lu", &who, op, &a, &b) >= 2) {
			struct libxenvchan *c = who == 'S' ? srv : cli;
			int r = 0;
			if (!strcmp(op, "read") || !strcmp(op, "recv")) {
				r = op[2] == 'a' ? libxenvchan_read(c, buf, a) : libxenvchan_recv(c, buf, a);
				printf("ret %d\ndata ", r);
				for (int i = 0; i < r; i++) printf("%02x", buf[i]);
				printf("\n");
			} else if (!strcmp(op, "write") || !strcmp(op, "send")) {
				for (unsigned long i = 0; i < a; i++) buf[i] = (uint8_t)(b * 7 + i);
				r = op[1] == 'r' ? libxenvchan_write(c, buf, a) : libxenvchan_send(c, buf, a);
				printf("ret %d\n", r);
			} else if (!strcmp(op, "ready")) {
				printf("ret %d\n", libxenvchan_data_ready(c));
			} else if (!strcmp(op, "space")) {
				printf("ret %d\n", libxenvchan_buffer_space(c));
			} else if (!strcmp(op, "open")) {
				printf("ret %d\n", libxenvchan_is_open(c));
			} else if (!strcmp(op, "close")) {
				libxenvchan_close(c);
				if (who == 'S') srv = NULL; else cli = NULL;
				printf("ret 0\n");
			} else {
				fprintf(stderr, "bad op %s\n", op);
				return 2;
			}
		} else {
			fprintf(stderr, "bad line %s", line);
			return 2;
		}
		dump();
		if (shm_fd >= 0) {
			printf("end\n");
			fflush(stdout);
		}
	}
	return 0;
}
