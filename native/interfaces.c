/* The version a host obtained with the table-handing entry points. They need no Python: a host may
 * call them before anything else, and they must work even when the embedded interpreter cannot
 * start. Appended to the generated entry code by pkcs11_shim/build.py, after the function tables;
 * the interface list and C_GetFunctionList / C_GetInterfaceList / C_GetInterface follow it, made
 * by build.interface_source (shared with the client library). */

/* The version of the table the host last obtained, major << 8 | minor: C_GetInfo reports it
 * (PKCS#11 3.2 §5.4.2: cryptokiVersion is the version of the interface in use). A host that never
 * asked for a table (it calls the exported symbols) is on the newest one. */
static volatile unsigned int softshield_current_version = (3u << 8) | 2u;

static void softshield_record_version(const CK_VERSION *version)
{
    softshield_current_version = ((unsigned int)version->major << 8) | version->minor;
}

/* Declared in the cdef: read by pkcs11_shim.abi.general for C_GetInfo. */
static unsigned int softshield_interface_version(void)
{
    return softshield_current_version;
}
