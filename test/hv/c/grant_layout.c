/*
 * Prints the layout of Xen's grant table ABI as the installed header (Debian libxen-dev,
 * /usr/include/xen/grant_table.h) defines it: one "name value" line each, compared by
 * test/hv/grant-layout.test.ts with the constants of src/hv/grant-table.ts.
 *
 * The public headers need an interface version in user space; __XEN_TOOLS__ asks for the latest
 * (grant_entry_v1 is the struct's own name from 0x0003020a on).
 */
#define __XEN_TOOLS__ 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/grant_table.h>

#define SZ(s) printf("sizeof.%s %zu\n", #s, sizeof(struct s))
#define OFF(s, f) printf("offsetof.%s.%s %zu\n", #s, #f, offsetof(struct s, f))
#define C(n) printf("%s %ld\n", #n, (long)(n))

int main(void)
{
    SZ(grant_entry_v1);
    OFF(grant_entry_v1, flags);
    OFF(grant_entry_v1, domid);
    OFF(grant_entry_v1, frame);

    SZ(gnttab_map_grant_ref);
    OFF(gnttab_map_grant_ref, host_addr);
    OFF(gnttab_map_grant_ref, flags);
    OFF(gnttab_map_grant_ref, ref);
    OFF(gnttab_map_grant_ref, dom);
    OFF(gnttab_map_grant_ref, status);
    OFF(gnttab_map_grant_ref, handle);
    OFF(gnttab_map_grant_ref, dev_bus_addr);

    SZ(gnttab_unmap_grant_ref);
    OFF(gnttab_unmap_grant_ref, host_addr);
    OFF(gnttab_unmap_grant_ref, dev_bus_addr);
    OFF(gnttab_unmap_grant_ref, handle);
    OFF(gnttab_unmap_grant_ref, status);

    SZ(gnttab_copy);
    SZ(gnttab_copy_ptr);
    OFF(gnttab_copy, source);
    OFF(gnttab_copy, dest);
    OFF(gnttab_copy, len);
    OFF(gnttab_copy, flags);
    OFF(gnttab_copy, status);
    OFF(gnttab_copy_ptr, u);
    OFF(gnttab_copy_ptr, domid);
    OFF(gnttab_copy_ptr, offset);

    C(GNTTAB_NR_RESERVED_ENTRIES);
    C(GNTTAB_RESERVED_CONSOLE);
    C(GNTTAB_RESERVED_XENSTORE);

    C(GTF_invalid);
    C(GTF_permit_access);
    C(GTF_accept_transfer);
    C(GTF_transitive);
    C(GTF_type_mask);
    C(GTF_readonly);
    C(GTF_reading);
    C(GTF_writing);
    C(GTF_PWT);
    C(GTF_PCD);
    C(GTF_PAT);
    C(GTF_sub_page);
    C(GTF_transfer_committed);
    C(GTF_transfer_completed);

    C(GNTMAP_device_map);
    C(GNTMAP_host_map);
    C(GNTMAP_readonly);
    C(GNTMAP_application_map);
    C(GNTMAP_contains_pte);
    C(GNTMAP_guest_avail_mask);

    C(GNTCOPY_source_gref);
    C(GNTCOPY_dest_gref);

    C(GNTTABOP_map_grant_ref);
    C(GNTTABOP_unmap_grant_ref);
    C(GNTTABOP_setup_table);
    C(GNTTABOP_dump_table);
    C(GNTTABOP_transfer);
    C(GNTTABOP_copy);
    C(GNTTABOP_query_size);
    C(GNTTABOP_unmap_and_replace);
    C(GNTTABOP_set_version);
    C(GNTTABOP_get_status_frames);
    C(GNTTABOP_get_version);
    C(GNTTABOP_swap_grant_ref);
    C(GNTTABOP_cache_flush);

    C(GNTST_okay);
    C(GNTST_general_error);
    C(GNTST_bad_domain);
    C(GNTST_bad_gntref);
    C(GNTST_bad_handle);
    C(GNTST_bad_virt_addr);
    C(GNTST_bad_dev_addr);
    C(GNTST_no_device_space);
    C(GNTST_permission_denied);
    C(GNTST_bad_page);
    C(GNTST_bad_copy_arg);
    C(GNTST_address_too_big);
    C(GNTST_eagain);
    C(GNTST_no_space);

    C(DOMID_SELF);

    {
        static const char *const msgs[] = GNTTABOP_error_msgs;
        for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
            printf("msg.%zu %s\n", i, msgs[i]);
    }
    return 0;
}
