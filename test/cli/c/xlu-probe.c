/*
 * The reference for src/host/xl-cfg.ts: Xen's libxlutil (Debian libxen-dev) parses stdin as
 * `xl create` parses a config file, reporting on stdout, then prints "rc=N" and, for each key
 * named in argv[2..], what xl's getters make of it:
 *   KEY string VALUE | KEY list N [ITEM]... | KEY absent     (quietly)
 *   KEY long N                                              (with the getter's warning)
 */
#include <libxlutil.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, stdin);
    XLU_Config *c = xlu_cfg_init(stdout, argc > 1 ? argv[1] : "guest.cfg");
    int e = xlu_cfg_readdata(c, buf, (int)n);
    printf("rc=%d\n", e);
    for (int i = 2; i < argc && !e; i++) {
        const char *s;
        long l;
        XLU_ConfigList *list;
        int k;
        if (!xlu_cfg_get_string(c, argv[i], &s, 1)) {
            printf("%s string %s\n", argv[i], s);
        } else if (!xlu_cfg_get_list(c, argv[i], &list, &k, 1)) {
            printf("%s list %d", argv[i], k);
            for (int j = 0; j < k; j++) {
                const char *item = xlu_cfg_get_listitem(list, j);
                printf(" [%s]", item ? item : "(null)");
            }
            printf("\n");
        } else {
            printf("%s absent\n", argv[i]);
        }
        fflush(stdout);
        if (!xlu_cfg_get_long(c, argv[i], &l, 0)) printf("%s long %ld\n", argv[i], l);
        fflush(stdout);
    }
    xlu_cfg_destroy(c);
    return 0;
}
