"""What a process imports before its first answer (start-up is part of the product: a test suite
starts a tool per test). A host loads the real .so and makes the calls `pkcs11-tool -L` makes;
the interpreter it runs in must not hold the build script, the x509/ASN.1 parsers, python-pkcs11's
util modules or any mechanism family by then. Not timed: the rule is which modules, not how fast.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pkcs11_shim.abi import entry
from pkcs11_shim.constants import Attribute, ObjectClass, SessionFlag, UserType
from pkcs11_shim.mechanisms.registry import FAMILIES

#: Modules that must stay out of a process that only listed slots and tokens, with why.
NOT_AT_START: dict[str, str] = {
    "pkcs11_shim.build": "the cffi build script",
    "cffi": "cffi's build-time package (the embedded module needs only _cffi_backend)",
    "cryptography.x509": "x509 (its name parser compiles regexes): EC parameters import it when used",
    "cryptography.hazmat.primitives.serialization": "key parsing: imported where a key is parsed",
    "asn1crypto": "python-pkcs11's util modules' ASN.1 library",
    "pkcs11.util": "python-pkcs11's util modules (its package __init__ runs on first use)",
    "pkcs11._pkcs11": "python-pkcs11's own PKCS#11 client",
    "pkcs11_shim.abi.crypto_ops": "the crypto chapter: loaded on its first call",
    "pkcs11_shim.abi.keys": "the key management chapter",
    "pkcs11_shim.abi.objects": "the object chapter",
    "pkcs11_shim.abi.messages": "the message-based chapter",
    "pkcs11_shim.abi.pqc": "the PKCS#11 3.2 chapter",
    "pkcs11_shim.abi.vendor": "nShield's login functions",
    "pkcs11_shim.abi.mechanism_params": "mechanism parameter readers",
    "pkcs11_shim.mechanisms.registry": "the mechanism registry: the first mechanism question imports it",
    "pkcs11_shim.keymgmt": "key generation, wrapping and derivation",
    "pkcs11_shim.kem": "key encapsulation",
    "pkcs11_shim.attributes.keyparts": "key components <-> material",
    "pkcs11_shim.attributes.templates": "object templates",
    "emulator.crypto.components": "key component parsing",
    "Crypto": "pycryptodome's secret sharing: only a quorum split or combined needs it",
    "emulator.crypto.keygen": "key generation (a new world only)",
    "emulator.attestation": "attestation",
    "emulator.nvram": "NVRAM-held keys: the module makes its NVRAM view when a key is first loaded",
    "emulator.transfer": "key transfer packages",
    **{f"pkcs11_shim.mechanisms.{family}": "a mechanism family: loaded with its first mechanism" for family in FAMILIES},
}

#: A Python host that makes the calls `pkcs11-tool -L` makes (C_Initialize, C_GetSlotList twice,
#: C_GetSlotInfo and C_GetTokenInfo per slot) and prints what it got and what it imported.
HOST = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
rvs = [lib.C_Initialize(None)]
count = ctypes.c_ulong(0)
rvs.append(lib.C_GetSlotList(1, None, ctypes.byref(count)))
slots = (ctypes.c_ulong * count.value)()
rvs.append(lib.C_GetSlotList(1, slots, ctypes.byref(count)))
info = ctypes.create_string_buffer(512)  # larger than CK_SLOT_INFO and CK_TOKEN_INFO
for slot in slots:
    rvs.append(lib.C_GetSlotInfo(ctypes.c_ulong(slot), info))
    rvs.append(lib.C_GetTokenInfo(ctypes.c_ulong(slot), info))
mechanisms = 0
if "--mechanisms" in sys.argv:
    # What `pkcs11-tool -M` asks: the list, then CK_MECHANISM_INFO of each.
    rvs.append(lib.C_GetMechanismList(ctypes.c_ulong(slots[0]), None, ctypes.byref(count)))
    listed = (ctypes.c_ulong * count.value)()
    rvs.append(lib.C_GetMechanismList(ctypes.c_ulong(slots[0]), listed, ctypes.byref(count)))
    for mechanism in listed:
        rvs.append(lib.C_GetMechanismInfo(ctypes.c_ulong(slots[0]), ctypes.c_ulong(mechanism), info))
    mechanisms = len(listed)
modules = sorted(sys.modules)
if "--then-pkcs11" in sys.argv:
    # The package python-pkcs11 imports later is the whole package, with the same enums.
    import pkcs11
    from pkcs11_shim import constants
    rvs.append(0 if callable(pkcs11.lib) and pkcs11.Attribute is constants.Attribute
               and pkcs11.mechanisms.Mechanism is constants.Mechanism and "pkcs11.util.dh" in sys.modules else -1)
rvs.append(lib.C_Finalize(None))
print(json.dumps({"rvs": rvs, "slots": len(slots), "mechanisms": mechanisms, "modules": modules}))
"""


#: A host that signs once as `pkcs11-tool --sign` does: log in, find the private key by label, C_Sign.
#: It imports nothing of ours (that is what it measures): its numbers come in as its first line.
SIGN_HOST = (f"CKF_SERIAL_SESSION, CKU_USER, CKO_PRIVATE_KEY, CKA_CLASS, CKA_LABEL = {int(SessionFlag.SERIAL_SESSION)}, "
             f"{int(UserType.USER)}, {int(ObjectClass.PRIVATE_KEY)}, {int(Attribute.CLASS)}, {int(Attribute.LABEL)}\n") + r"""
import ctypes, json, sys
CK = ctypes.c_ulong
class Attr(ctypes.Structure):
    _fields_ = [("type", CK), ("pValue", ctypes.c_void_p), ("ulValueLen", CK)]
class Mech(ctypes.Structure):
    _fields_ = [("mechanism", CK), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK)]
so, token_label, pin, key_label, ckm = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode(), sys.argv[4].encode(), int(sys.argv[5])
lib = ctypes.CDLL(so)
rvs = [lib.C_Initialize(None)]
count = CK(0)
rvs.append(lib.C_GetSlotList(1, None, ctypes.byref(count)))
slots = (CK * count.value)()
rvs.append(lib.C_GetSlotList(1, slots, ctypes.byref(count)))
info = ctypes.create_string_buffer(512)
slot = None
for s in slots:
    rvs.append(lib.C_GetTokenInfo(CK(s), info))
    if info.raw[:32].rstrip(b" ") == token_label:  # CK_TOKEN_INFO.label comes first
        slot = s
session = CK(0)
rvs.append(lib.C_OpenSession(CK(slot), CK(CKF_SERIAL_SESSION), None, None, ctypes.byref(session)))
rvs.append(lib.C_Login(session, CK(CKU_USER), pin, CK(len(pin))))
klass = CK(CKO_PRIVATE_KEY)
template = (Attr * 2)(Attr(CKA_CLASS, ctypes.cast(ctypes.byref(klass), ctypes.c_void_p), ctypes.sizeof(CK)),
                      Attr(CKA_LABEL, ctypes.cast(ctypes.c_char_p(key_label), ctypes.c_void_p), len(key_label)))
rvs.append(lib.C_FindObjectsInit(session, template, CK(2)))
key, found = CK(0), CK(0)
rvs.append(lib.C_FindObjects(session, ctypes.byref(key), CK(1), ctypes.byref(found)))
rvs.append(lib.C_FindObjectsFinal(session))
mechanism = Mech(ckm, None, 0)
rvs.append(lib.C_SignInit(session, ctypes.byref(mechanism), key))
length = CK(0)
rvs.append(lib.C_Sign(session, b"message", CK(7), None, ctypes.byref(length)))
signature = ctypes.create_string_buffer(length.value)
rvs.append(lib.C_Sign(session, b"message", CK(7), signature, ctypes.byref(length)))
modules = sorted(sys.modules)
rvs.append(lib.C_Finalize(None))
print(json.dumps({"rvs": rvs, "found": found.value, "signature": signature.raw[:length.value].hex(), "modules": modules}))
"""


def run_host(so_path: str, *extra: str, host: str = HOST) -> dict:
    result = subprocess.run([sys.executable, "-c", host, so_path, *extra], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def loaded(modules: list[str], name: str) -> list[str]:
    return [m for m in modules if m == name or m.startswith(name + ".")]


@pytest.fixture(scope="module")
def listed(so_path: str, token_label: str) -> dict:
    """One host run over a world with a token (the fixture made it with pkcs11-tool)."""
    return run_host(so_path)


def test_listing_answers(listed: dict) -> None:
    assert set(listed["rvs"]) == {0}
    assert listed["slots"] >= 2  # the accelerator and at least the token the fixture made


@pytest.mark.parametrize("module", sorted(NOT_AT_START))
def test_not_imported_before_first_session(listed: dict, module: str) -> None:
    assert loaded(listed["modules"], module) == [], NOT_AT_START[module]


def test_mechanism_list_and_info_import_no_family(so_path: str, token_label: str) -> None:
    from pkcs11_shim.mechanisms.registry import REGISTRY

    result = run_host(so_path, "--mechanisms")
    assert set(result["rvs"]) == {0}
    assert result["mechanisms"] == len(REGISTRY.mechanisms())
    assert [m for m in result["modules"] if m.startswith("pkcs11_shim.mechanisms.")] == [
        "pkcs11_shim.mechanisms.catalogue", "pkcs11_shim.mechanisms.registry"]


def test_rsa_sign_loads_only_the_rsa_family(so_path: str, token_label: str, token) -> None:
    """A signing tool's whole life: one family, still no x509, ASN.1 or python-pkcs11 util modules."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
    from pkcs11 import Attribute, KeyType, Mechanism

    from p11env import USER_PIN

    with token.open(user_pin=USER_PIN, rw=True) as session:
        public, _private = session.generate_keypair(KeyType.RSA, 2048, label="start-sign", store=True)
        numbers = RSAPublicNumbers(int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
                                   int.from_bytes(public[Attribute.MODULUS], "big"))
    result = run_host(so_path, token_label, USER_PIN, "start-sign", str(int(Mechanism.SHA256_RSA_PKCS)),
                      host=SIGN_HOST)
    assert set(result["rvs"]) == {0} and result["found"] == 1
    numbers.public_key().verify(bytes.fromhex(result["signature"]), b"message", padding.PKCS1v15(), hashes.SHA256())
    families = {m.rsplit(".", 1)[1] for m in result["modules"]
                if m.startswith("pkcs11_shim.mechanisms.") and m.rsplit(".", 1)[1] in FAMILIES}
    assert families == {"rsa"}
    for module in ("cryptography.x509", "asn1crypto", "pkcs11.util", "pkcs11_shim.build", "cffi"):
        assert loaded(result["modules"], module) == [], NOT_AT_START[module]


def test_python_pkcs11_imported_afterwards_is_complete(so_path: str, token_label: str) -> None:
    assert set(run_host(so_path, "--then-pkcs11")["rvs"]) == {0}


def test_every_listed_function_has_a_handler_once_all_chapters_load(lib) -> None:
    # bind() attaches most handlers on their first call, so a function the build declares but no
    # chapter answers would only show then (CKR_GENERAL_ERROR): every chapter together must answer
    # every `extern "Python"` declaration of the library this process loaded (the `lib` fixture).
    embedded = sys.modules["_softshield_pkcs11"]
    entry.load_all_chapters()
    declared = set(entry.handler_names(embedded.lib))
    assert len(declared) > 90
    assert sorted(declared - set(entry.HANDLERS)) == []
    assert sorted(set(entry.HANDLERS) - declared) == []
