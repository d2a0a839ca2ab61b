/* Mechanism-parameter layouts: the lookup by registry parameter kind.
 *
 * The tables themselves (which struct members are pointers, and which member gives each buffer's
 * length) are generated into client_gen.c from pkcs11_shim/hardserver/layouts.py, the table the
 * hardserver checks every rebuilt parameter against: one table for both sides of the socket. The
 * attributes whose value is a nested template (ss_nested_attrs, sorted) come from the same place. */
#include <string.h>
#include "ss_client.h"

static const ss_layout *ss_find(const ss_layout *const *table, size_t n, const char *kind)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i]->kind, kind) == 0)
            return table[i];
    return NULL;
}

const ss_layout *ss_layout_for_kind(const char *kind)
{
    return ss_find(ss_layouts, ss_layout_count, kind);
}

const ss_layout *ss_message_layout_for_kind(const char *kind)
{
    return ss_find(ss_message_layouts, ss_message_layout_count, kind);
}

int ss_is_nested(CK_ATTRIBUTE_TYPE type)
{
    size_t lo = 0, hi = ss_nested_attr_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ss_nested_attrs[mid] == type)
            return 1;
        if (ss_nested_attrs[mid] < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}
