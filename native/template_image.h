/* softshield: the image of a key-making call's template, taken by the C entry point.
 *
 * Clients make keys with the same template over and over (python-pkcs11 packs a fresh CK_ATTRIBUTE
 * array per call, at new addresses, with the same values). Reading it in Python costs a cdata
 * access per field and a copy per value: ~6 us of each C_UnwrapKey. The entry point copies it
 * instead into the calling thread's image area, flat: CK_ULONG length of the rest, then per
 * attribute CK_ULONG type, CK_ULONG ulValueLen, the value's bytes. The shim reads that as one bytes
 * object and looks it up among the images it read before (abi/marshal.read_template_imaged); on a
 * miss, or when there is no image, it reads the template itself, with every check.
 *
 * No image (length 0) unless every attribute is readable as it is: a NULL template, a NULL value
 * with a non-zero length, CK_UNAVAILABLE_INFORMATION, more than SS_IMAGE_MAX_ATTRIBUTES attributes
 * or anything too large for the area is left to Python's reading, which names the error. An attribute array's value is copied as the bytes of its
 * CK_ATTRIBUTE entries (pointers): the shim never keeps an image whose template holds one. The area
 * is emptied again when the handler returns, so a handler called another way never sees a stale one. */
#ifndef SS_TEMPLATE_IMAGE_H
#define SS_TEMPLATE_IMAGE_H

#include <string.h>

#define SOFTSHIELD_IMAGE_AREA_SIZE 2048
/* Never more entries than the shim's read_template would read (it refuses more than 4096 unread). */
#define SS_IMAGE_MAX_ATTRIBUTES 64
static __thread unsigned char ss_image_area[SOFTSHIELD_IMAGE_AREA_SIZE];

static unsigned char *softshield_image_area(void)
{
    return ss_image_area;
}

static void ss_image_clear(void)
{
    memset(ss_image_area, 0, sizeof(CK_ULONG));
}

static void ss_image_take(CK_ATTRIBUTE_PTR template, CK_ULONG count)
{
    const size_t room = SOFTSHIELD_IMAGE_AREA_SIZE;
    size_t used = sizeof(CK_ULONG);
    CK_ULONG i, length;
    ss_image_clear();
    if (template == NULL || count == 0 || count > SS_IMAGE_MAX_ATTRIBUTES)
        return;
    for (i = 0; i < count; i++) {
        length = template[i].ulValueLen;
        if (length > room || used + 2 * sizeof(CK_ULONG) + length > room)
            return;
        if (length > 0 && template[i].pValue == NULL)
            return;
        memcpy(ss_image_area + used, &template[i].type, sizeof(CK_ULONG));
        memcpy(ss_image_area + used + sizeof(CK_ULONG), &length, sizeof(CK_ULONG));
        used += 2 * sizeof(CK_ULONG);
        if (length > 0)
            memcpy(ss_image_area + used, template[i].pValue, length);
        used += length;
    }
    length = (CK_ULONG)(used - sizeof(CK_ULONG));
    memcpy(ss_image_area, &length, sizeof(CK_ULONG));
}

#endif
