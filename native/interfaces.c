/* The table-handing entry points. They need no Python: a host may call them before anything else,
 * and they must work even when the embedded interpreter cannot start. Appended to the generated
 * entry code by pkcs11_shim/build.py, after the three function tables. */

static CK_CHAR softshield_interface_name[] = "PKCS 11";

/* Newest first: hosts that take the first entry get the newest interface (PKCS#11 3.0 §5.4.2). */
static CK_INTERFACE softshield_interfaces[] = {
    {softshield_interface_name, &softshield_functions_3_2, 0},
    {softshield_interface_name, &softshield_functions_3_0, 0},
    {softshield_interface_name, &softshield_functions_2_40, 0},
};
#define SOFTSHIELD_INTERFACE_COUNT (sizeof(softshield_interfaces) / sizeof(softshield_interfaces[0]))

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

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &softshield_functions_2_40;
    softshield_record_version(&softshield_functions_2_40.version);
    return CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    CK_ULONG i;
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList == NULL) {
        *pulCount = SOFTSHIELD_INTERFACE_COUNT;
        return CKR_OK;
    }
    if (*pulCount < SOFTSHIELD_INTERFACE_COUNT) {
        *pulCount = SOFTSHIELD_INTERFACE_COUNT;
        return CKR_BUFFER_TOO_SMALL;
    }
    for (i = 0; i < SOFTSHIELD_INTERFACE_COUNT; i++)
        pInterfacesList[i] = softshield_interfaces[i];
    *pulCount = SOFTSHIELD_INTERFACE_COUNT;
    return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    CK_ULONG i;
    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < SOFTSHIELD_INTERFACE_COUNT; i++) {
        CK_INTERFACE *candidate = &softshield_interfaces[i];
        CK_VERSION *offered = (CK_VERSION *)candidate->pFunctionList;
        if (pInterfaceName != NULL &&
            strcmp((const char *)pInterfaceName, (const char *)candidate->pInterfaceName) != 0)
            continue;
        if (pVersion != NULL &&
            (pVersion->major != offered->major || pVersion->minor != offered->minor))
            continue;
        if ((candidate->flags & flags) != flags)
            continue;
        *ppInterface = candidate;
        softshield_record_version(offered);
        return CKR_OK;
    }
    *ppInterface = NULL;
    return CKR_ARGUMENTS_BAD;
}
