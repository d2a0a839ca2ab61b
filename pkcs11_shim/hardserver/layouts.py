"""Mechanism-parameter layouts: which members of a parameter struct are pointers, and which member
says how long each pointed-to buffer is.

One table for both sides of the socket: `pkcs11_shim.client_build` generates the client library's
C tables (`ss_layout`, native/client/ss_client.h) from it, and the hardserver checks every
parameter it rebuilds against it before the module sees it, so a hostile client cannot hand the
module a pointer whose length member promises more bytes than the server holds.

One layout per parameter kind of the mechanism registry that holds pointers (the C structs
pkcs11_shim/abi/mechanism_params.py reads); kinds without pointers (bytes, ulong, pss, aes_ctr,
none) have none: their bytes travel as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How a pointer member's buffer length is given.
BYTES = "bytes"    # the length member counts bytes
BITS = "bits"      # the length member counts bits: (n + 7) / 8 bytes
STRUCT = "struct"  # one struct of the `sub` layout, no length member
ARRAY = "array"    # the length member counts structs of the `sub` layout
DROP = "drop"      # never carried: the server passes NULL (the module refuses a non-zero count)

C_LEN_KIND = {BYTES: "SS_LEN_BYTES", BITS: "SS_LEN_BITS", STRUCT: "SS_LEN_FIXED", ARRAY: "SS_LEN_ARRAY",
              DROP: "SS_LEN_DROP"}


@dataclass(frozen=True)
class Field:
    pointer: str
    length: str = ""  # the CK_ULONG member holding the length (BYTES, BITS, ARRAY)
    unit: str = BYTES
    sub: str = ""  # STRUCT / ARRAY: the layout of the pointed-to struct
    writeback: bool = False  # the module writes into this buffer (a message's generated IV, its tag)


@dataclass(frozen=True)
class Layout:
    kind: str  # the registry's param_kind
    struct: str
    fields: tuple[Field, ...]


#: Operation parameters (CK_MECHANISM.pParameter). A layout named as `sub` comes before its users.
LAYOUTS: tuple[Layout, ...] = (
    Layout("oaep", "CK_RSA_PKCS_OAEP_PARAMS", (Field("pSourceData", "ulSourceDataLen"),)),
    Layout("rsa_aes_key_wrap", "CK_RSA_AES_KEY_WRAP_PARAMS", (Field("pOAEPParams", unit=STRUCT, sub="oaep"),)),
    Layout("ecdh1", "CK_ECDH1_DERIVE_PARAMS",
           (Field("pSharedData", "ulSharedDataLen"), Field("pPublicData", "ulPublicDataLen"))),
    Layout("gcm", "CK_GCM_PARAMS", (Field("pIv", "ulIvLen"), Field("pAAD", "ulAADLen"))),
    Layout("ccm", "CK_CCM_PARAMS", (Field("pNonce", "ulNonceLen"), Field("pAAD", "ulAADLen"))),
    Layout("eddsa", "CK_EDDSA_PARAMS", (Field("pContextData", "ulContextDataLen"),)),
    Layout("key_derivation_string", "CK_KEY_DERIVATION_STRING_DATA", (Field("pData", "ulLen"),)),
    Layout("aes_cbc_encrypt_data", "CK_AES_CBC_ENCRYPT_DATA_PARAMS", (Field("pData", "length"),)),
    Layout("hkdf", "CK_HKDF_PARAMS", (Field("pSalt", "ulSaltLen"), Field("pInfo", "ulInfoLen"))),
    Layout("pbkd2", "CK_PKCS5_PBKD2_PARAMS2", (Field("pSaltSourceData", "ulSaltSourceDataLen"),
                                              Field("pPrfData", "ulPrfDataLen"), Field("pPassword", "ulPasswordLen"))),
    Layout("prf_data_param", "CK_PRF_DATA_PARAM", (Field("pValue", "ulValueLen"),)),
    Layout("sp800_108", "CK_SP800_108_KDF_PARAMS",
           (Field("pDataParams", "ulNumberOfDataParams", ARRAY, "prf_data_param"),
            Field("pAdditionalDerivedKeys", unit=DROP))),
    # PKCS#11 3.2 signature contexts (ML-DSA, SLH-DSA).
    Layout("sign_additional_context", "CK_SIGN_ADDITIONAL_CONTEXT", (Field("pContext", "ulContextLen"),)),
    Layout("hash_sign_additional_context", "CK_HASH_SIGN_ADDITIONAL_CONTEXT", (Field("pContext", "ulContextLen"),)),
)

#: Per-message parameters of the message-based functions (PKCS#11 3.0 §5.11), by the kind of the
#: mechanism given to C_Message*Init: the IV/nonce and tag/MAC buffers are written by the module.
MESSAGE_LAYOUTS: tuple[Layout, ...] = (
    Layout("gcm", "CK_GCM_MESSAGE_PARAMS",
           (Field("pIv", "ulIvLen", writeback=True), Field("pTag", "ulTagBits", BITS, writeback=True))),
    Layout("ccm", "CK_CCM_MESSAGE_PARAMS",
           (Field("pNonce", "ulNonceLen", writeback=True), Field("pMAC", "ulMACLen", writeback=True))),
)

BY_KIND: dict[str, Layout] = {layout.kind: layout for layout in LAYOUTS}
MESSAGE_BY_KIND: dict[str, Layout] = {layout.kind: layout for layout in MESSAGE_LAYOUTS}


def _c_layout(layout: Layout, prefix: str) -> list[str]:
    t = layout.struct
    rows = []
    for f in layout.fields:
        length = f"offsetof({t}, {f.length})" if f.length else "0"
        unit = f"sizeof({BY_KIND[f.sub].struct})" if f.sub else "0"
        sub = f"&ss_layout_{f.sub}" if f.sub else "NULL"
        rows.append(f"    {{offsetof({t}, {f.pointer}), {length}, {C_LEN_KIND[f.unit]}, {unit}, {sub}, {int(f.writeback)}}},")
    name = f"{prefix}{layout.kind}"
    return [f"static const ss_field {name}_fields[] = {{", *rows, "};",
            f'static const ss_layout {name} = {{"{layout.kind}", sizeof({t}), {len(layout.fields)}, {name}_fields}};']


def c_tables() -> list[str]:
    """The C definitions of ss_layouts / ss_message_layouts (declared in native/client/ss_client.h)."""
    out = ["#include <stddef.h>"]
    for layout in LAYOUTS:
        out += _c_layout(layout, "ss_layout_")
    for layout in MESSAGE_LAYOUTS:
        out += _c_layout(layout, "ss_msg_layout_")
    out.append("const ss_layout *const ss_layouts[] = {")
    out += [f"    &ss_layout_{layout.kind}," for layout in LAYOUTS]
    out += ["};", f"const size_t ss_layout_count = {len(LAYOUTS)};"]
    out.append("const ss_layout *const ss_message_layouts[] = {")
    out += [f"    &ss_msg_layout_{layout.kind}," for layout in MESSAGE_LAYOUTS]
    out += ["};", f"const size_t ss_message_layout_count = {len(MESSAGE_LAYOUTS)};", ""]
    return out
