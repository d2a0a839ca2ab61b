/* Which mechanism parameters hold pointers, and how long each pointed-to buffer is.
 *
 * One layout per parameter kind of the mechanism registry (pkcs11_shim/abi/mechanism_params.py
 * READERS); the per-mechanism table that names the kind is generated from the registry, so a new
 * mechanism with an existing kind needs nothing here. Kinds without pointers (bytes, ulong, pss,
 * aes_ctr, none) have no layout: their bytes travel as they are. */
#include <string.h>
#include "ss_client.h"

#define BYTES(T, p, l) {offsetof(T, p), offsetof(T, l), SS_LEN_BYTES, 0, NULL, 0}
#define BYTES_OUT(T, p, l) {offsetof(T, p), offsetof(T, l), SS_LEN_BYTES, 0, NULL, 1}
#define BITS_OUT(T, p, l) {offsetof(T, p), offsetof(T, l), SS_LEN_BITS, 0, NULL, 1}
#define STRUCT(T, p, S, layout) {offsetof(T, p), 0, SS_LEN_FIXED, sizeof(S), &layout, 0}
#define ARRAY(T, p, n, E, layout) {offsetof(T, p), offsetof(T, n), SS_LEN_ARRAY, sizeof(E), &layout, 0}
#define LAYOUT(name, kind, T, fields) \
    static const ss_layout name = {kind, sizeof(T), sizeof(fields) / sizeof(fields[0]), fields}

static const ss_field oaep_fields[] = {BYTES(CK_RSA_PKCS_OAEP_PARAMS, pSourceData, ulSourceDataLen)};
LAYOUT(oaep, "oaep", CK_RSA_PKCS_OAEP_PARAMS, oaep_fields);

static const ss_field rsa_aes_fields[] = {
    STRUCT(CK_RSA_AES_KEY_WRAP_PARAMS, pOAEPParams, CK_RSA_PKCS_OAEP_PARAMS, oaep)};
LAYOUT(rsa_aes_key_wrap, "rsa_aes_key_wrap", CK_RSA_AES_KEY_WRAP_PARAMS, rsa_aes_fields);

static const ss_field ecdh1_fields[] = {BYTES(CK_ECDH1_DERIVE_PARAMS, pSharedData, ulSharedDataLen),
                                        BYTES(CK_ECDH1_DERIVE_PARAMS, pPublicData, ulPublicDataLen)};
LAYOUT(ecdh1, "ecdh1", CK_ECDH1_DERIVE_PARAMS, ecdh1_fields);

static const ss_field gcm_fields[] = {BYTES(CK_GCM_PARAMS, pIv, ulIvLen), BYTES(CK_GCM_PARAMS, pAAD, ulAADLen)};
LAYOUT(gcm, "gcm", CK_GCM_PARAMS, gcm_fields);

static const ss_field ccm_fields[] = {BYTES(CK_CCM_PARAMS, pNonce, ulNonceLen), BYTES(CK_CCM_PARAMS, pAAD, ulAADLen)};
LAYOUT(ccm, "ccm", CK_CCM_PARAMS, ccm_fields);

static const ss_field eddsa_fields[] = {BYTES(CK_EDDSA_PARAMS, pContextData, ulContextDataLen)};
LAYOUT(eddsa, "eddsa", CK_EDDSA_PARAMS, eddsa_fields);

static const ss_field kds_fields[] = {BYTES(CK_KEY_DERIVATION_STRING_DATA, pData, ulLen)};
LAYOUT(key_derivation_string, "key_derivation_string", CK_KEY_DERIVATION_STRING_DATA, kds_fields);

static const ss_field cbc_data_fields[] = {BYTES(CK_AES_CBC_ENCRYPT_DATA_PARAMS, pData, length)};
LAYOUT(aes_cbc_encrypt_data, "aes_cbc_encrypt_data", CK_AES_CBC_ENCRYPT_DATA_PARAMS, cbc_data_fields);

static const ss_field hkdf_fields[] = {BYTES(CK_HKDF_PARAMS, pSalt, ulSaltLen), BYTES(CK_HKDF_PARAMS, pInfo, ulInfoLen)};
LAYOUT(hkdf, "hkdf", CK_HKDF_PARAMS, hkdf_fields);

static const ss_field pbkd2_fields[] = {BYTES(CK_PKCS5_PBKD2_PARAMS2, pSaltSourceData, ulSaltSourceDataLen),
                                        BYTES(CK_PKCS5_PBKD2_PARAMS2, pPrfData, ulPrfDataLen),
                                        BYTES(CK_PKCS5_PBKD2_PARAMS2, pPassword, ulPasswordLen)};
LAYOUT(pbkd2, "pbkd2", CK_PKCS5_PBKD2_PARAMS2, pbkd2_fields);

static const ss_field prf_data_fields[] = {BYTES(CK_PRF_DATA_PARAM, pValue, ulValueLen)};
LAYOUT(prf_data_param, "prf_data_param", CK_PRF_DATA_PARAM, prf_data_fields);
/* pAdditionalDerivedKeys is not forwarded (NULL at the server): the module refuses a count > 0. */
static const ss_field sp800_108_fields[] = {
    ARRAY(CK_SP800_108_KDF_PARAMS, pDataParams, ulNumberOfDataParams, CK_PRF_DATA_PARAM, prf_data_param),
    {offsetof(CK_SP800_108_KDF_PARAMS, pAdditionalDerivedKeys), 0, SS_LEN_DROP, 0, NULL, 0}};
LAYOUT(sp800_108, "sp800_108", CK_SP800_108_KDF_PARAMS, sp800_108_fields);

/* PKCS#11 3.2 signature contexts (ML-DSA, SLH-DSA). */
static const ss_field sign_context_fields[] = {BYTES(CK_SIGN_ADDITIONAL_CONTEXT, pContext, ulContextLen)};
LAYOUT(sign_additional_context, "sign_additional_context", CK_SIGN_ADDITIONAL_CONTEXT, sign_context_fields);
static const ss_field hash_sign_context_fields[] = {BYTES(CK_HASH_SIGN_ADDITIONAL_CONTEXT, pContext, ulContextLen)};
LAYOUT(hash_sign_additional_context, "hash_sign_additional_context", CK_HASH_SIGN_ADDITIONAL_CONTEXT,
       hash_sign_context_fields);

static const ss_layout *const ss_layouts[] = {
    &oaep, &rsa_aes_key_wrap, &ecdh1, &gcm, &ccm, &eddsa, &key_derivation_string,
    &aes_cbc_encrypt_data, &hkdf, &pbkd2, &sp800_108, &sign_additional_context, &hash_sign_additional_context,
};

/* Per-message parameters of the message-based functions (PKCS#11 3.0 §5.11): the IV/nonce and
 * tag/MAC buffers are written by the module (generated IVs, computed tags), hence writeback. */
static const ss_field gcm_message_fields[] = {BYTES_OUT(CK_GCM_MESSAGE_PARAMS, pIv, ulIvLen),
                                              BITS_OUT(CK_GCM_MESSAGE_PARAMS, pTag, ulTagBits)};
LAYOUT(gcm_message, "gcm", CK_GCM_MESSAGE_PARAMS, gcm_message_fields);
static const ss_field ccm_message_fields[] = {BYTES_OUT(CK_CCM_MESSAGE_PARAMS, pNonce, ulNonceLen),
                                              BYTES_OUT(CK_CCM_MESSAGE_PARAMS, pMAC, ulMACLen)};
LAYOUT(ccm_message, "ccm", CK_CCM_MESSAGE_PARAMS, ccm_message_fields);

static const ss_layout *const ss_message_layouts[] = {&gcm_message, &ccm_message};

static const ss_layout *ss_find(const ss_layout *const *table, size_t n, const char *kind)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i]->kind, kind) == 0)
            return table[i];
    return NULL;
}

const ss_layout *ss_layout_for_kind(const char *kind)
{
    return ss_find(ss_layouts, sizeof ss_layouts / sizeof ss_layouts[0], kind);
}

const ss_layout *ss_message_layout_for_kind(const char *kind)
{
    return ss_find(ss_message_layouts, sizeof ss_message_layouts / sizeof ss_message_layouts[0], kind);
}
