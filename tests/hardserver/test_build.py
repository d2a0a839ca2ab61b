"""The client library is generated from native/functions.txt: every function is forwarded (or is
local / hands out tables), 3.2 lines need no hand work, and the library carries no Python."""

from __future__ import annotations

import re
import subprocess

import pytest

from pkcs11_shim.build import CFunction, read_functions
from pkcs11_shim.constants import CKM_RSA_AES_KEY_WRAP, Mechanism
from pkcs11_shim.client_build import LOCAL, UNSUPPORTED_ALLOWED, classify, mechanism_kinds, plans
from pkcs11_shim.hardserver import layouts
from hsenv import CLIENT_SO

#: The PKCS#11 3.2 additions as the spec declares them (functions.txt gains these lines).
PKCS11_3_2 = {
    "C_EncapsulateKey": ("CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hPublicKey, "
                         "CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, "
                         "CK_ULONG_PTR pulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey",
                         ["ulong", "mechanism", "ulong", "template", "out_bytes", "out_ulong"]),
    "C_DecapsulateKey": ("CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hPrivateKey, "
                         "CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, "
                         "CK_ULONG ulCiphertextLen, CK_OBJECT_HANDLE_PTR phKey",
                         ["ulong", "mechanism", "ulong", "template", "in_bytes", "out_ulong"]),
    "C_VerifySignatureInit": ("CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey, "
                              "CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen",
                              ["ulong", "mechanism", "ulong", "in_bytes"]),
    "C_VerifySignature": ("CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen", ["ulong", "in_bytes"]),
    "C_VerifySignatureUpdate": ("CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen",
                                ["ulong", "in_bytes"]),
    "C_VerifySignatureFinal": ("CK_SESSION_HANDLE hSession", ["ulong"]),
    "C_GetSessionValidationFlags": ("CK_SESSION_HANDLE hSession, CK_SESSION_VALIDATION_FLAGS_TYPE type, "
                                    "CK_FLAGS_PTR pFlags", ["ulong", "ulong", "out_ulong"]),
    "C_WrapKeyAuthenticated": ("CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, "
                               "CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen, "
                               "CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen",
                               ["ulong", "mechanism", "ulong", "ulong", "in_bytes", "out_bytes"]),
    "C_UnwrapKeyAuthenticated": ("CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, "
                                 "CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, "
                                 "CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pAssociatedData, "
                                 "CK_ULONG ulAssociatedDataLen, CK_OBJECT_HANDLE_PTR phKey",
                                 ["ulong", "mechanism", "ulong", "in_bytes", "template", "in_bytes", "out_ulong"]),
    "C_AsyncComplete": ("CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName, CK_ASYNC_DATA_PTR pResult", None),
    "C_AsyncGetID": ("CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG_PTR pulID", None),
    "C_AsyncJoin": ("CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFunctionName, CK_ULONG ulID, CK_BYTE_PTR pData, "
                    "CK_ULONG ulData", None),
}


def test_every_function_is_carried() -> None:
    functions = read_functions()
    forwarded = {p.name for p in plans(functions) if p.ops is not None}
    unsupported = {p.name for p in plans(functions) if p.ops is None}
    assert unsupported <= UNSUPPORTED_ALLOWED
    for f in functions:
        assert f.in_c or f.name in LOCAL or f.name in forwarded or f.name in unsupported, f.name


@pytest.mark.parametrize("name", list(PKCS11_3_2))
def test_pkcs11_3_2_lines_classify_without_hand_work(name) -> None:
    params, kinds = PKCS11_3_2[name]
    ops = classify(CFunction("3.2", False, name, params))
    assert (None if ops is None else [op.kind for op in ops]) == kinds
    if ops is None:
        assert name in UNSUPPORTED_ALLOWED


def test_known_classifications() -> None:
    by_name = {p.name: [op.kind for op in p.ops] for p in plans() if p.ops is not None}
    assert by_name["C_GetAttributeValue"] == ["ulong", "ulong", "template_io"]
    assert by_name["C_FindObjects"] == ["ulong", "out_handles"]
    assert by_name["C_GenerateRandom"] == ["ulong", "out_fixed"]
    assert by_name["C_OpenSession"] == ["ulong", "ulong", "never", "never", "out_ulong"]
    assert by_name["C_EncryptMessage"] == ["ulong", "msg_param", "in_bytes", "in_bytes", "out_bytes"]
    assert by_name["C_GetMechanismList"] == ["ulong", "out_ulongs"]


def test_pointer_parameters_have_layouts() -> None:
    kinds = dict(mechanism_kinds())
    assert kinds[Mechanism.RSA_PKCS_OAEP] == "oaep"
    assert kinds[Mechanism.AES_GCM] == "gcm"
    assert kinds[CKM_RSA_AES_KEY_WRAP] == "rsa_aes_key_wrap"
    assert kinds[Mechanism.ECDH1_DERIVE] == "ecdh1"
    missing = {k for k in kinds.values() if k not in layouts.BY_KIND and k not in ("pss", "aes_ctr")}
    assert not missing, f"parameter kinds with pointers but no layout: {missing}"


def test_client_library_exports_the_api_and_carries_no_python() -> None:
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(CLIENT_SO)], capture_output=True, text=True,
                             check=True).stdout
    exported = set(re.findall(r" T (C_\w+)", symbols))
    assert {f.name for f in read_functions()} <= exported
    assert not re.search(r" T ss_", symbols)  # the runtime stays private
    needed = subprocess.run(["readelf", "-d", str(CLIENT_SO)], capture_output=True, text=True, check=True).stdout
    assert "libpython" not in needed and "NEEDED" in needed


def test_layouts_match_the_structs() -> None:
    """Every layout names real pointer and CK_ULONG length members of its struct, and the client
    library's generated tables are the same table the server checks parameters against."""
    from pkcs11_shim.hardserver.codec import load_module
    from hsenv import SERVER_SO

    ffi, _lib = load_module(SERVER_SO)
    for layout in layouts.LAYOUTS + layouts.MESSAGE_LAYOUTS:
        fields = dict(ffi.typeof(layout.struct).fields)
        for f in layout.fields:
            assert fields[f.pointer].type.kind == "pointer", (layout.struct, f.pointer)
            if f.length:
                assert fields[f.length].type.cname == "unsigned long", (layout.struct, f.length)
            assert (f.sub != "") == (f.unit in (layouts.STRUCT, layouts.ARRAY))
    generated = (CLIENT_SO.parent / "client_gen.c").read_text()
    for layout in layouts.LAYOUTS:
        assert f'static const ss_layout ss_layout_{layout.kind} = {{"{layout.kind}", sizeof({layout.struct})' in generated


def test_c_sources_take_every_number_from_the_python_table() -> None:
    """No return code or flag is typed in C: the build generates them from pkcs11_shim.constants."""
    from pkcs11_shim.build import NATIVE, c_constants
    from pkcs11_shim.constants import CKR

    typed = [f"{path.relative_to(NATIVE)}: {line.strip()}" for path in NATIVE.rglob("*.[ch]")
             for line in path.read_text().splitlines() if re.match(r"\s*#\s*define\s+CK[RF]?_", line)]
    assert typed == []
    generated = c_constants()
    assert f"#define CKR_DEVICE_REMOVED 0x{CKR.DEVICE_REMOVED.value:x}UL" in generated
    assert all(f"#define CKR_{rv.name} " in generated for rv in CKR)
