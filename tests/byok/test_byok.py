"""BYOK end to end across two worlds, each step a separate process; then every refusal the issue
names, each with its exact reason. The `.byok` format is checked with plain `cryptography`."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from byokenv import SO, Env, public_pem
from emulator import attestation, paths
from emulator.acl import Action
from emulator.errors import AclDenied, EmulatorError
from emulator.module import Module
from pkcs11_shim.constants import CKR


def kek_hash(flow, region: str) -> str:
    return json.loads((flow.packages / f"BYOK-KEK-pkg-{region}-1").read_text())["kek"]["key_hash"]


def root_hash(root_store) -> str:
    return "".join((root_store / "root_hash").read_text().split())


# --- the target side: KEK and packages -------------------------------------------------------------
def test_export_kek_prints_pinned_root_and_writes_both_packages(flow):
    out = flow.outputs["export-EU"]
    assert (flow.packages / "BYOK-KEK-pkg-EU-1").is_file() and (flow.packages / "BYOK-SecurityWorld-pkg-EU-1").is_file()
    grouped = (flow.env.root_store / "root_hash").read_text().strip()
    assert f"warrant by KWARN-EMU-1 (EMULATED), root key hash: {grouped}" in out
    assert "permits: Destroy, DigestKey, GetAppData, ReduceACL, UnwrapKey (no export)" in out
    assert out.rstrip().endswith("Result: SUCCESS")


def test_root_private_key_stays_out_of_every_world(flow):
    pem = (flow.env.root_store / "root_key.pem").read_bytes()
    for world in (flow.source, flow.target):
        for f in world.rglob("*"):
            assert not f.is_file() or pem not in f.read_bytes(), f


@pytest.mark.parametrize("region", ["EU", "TEST"])
def test_verifykeypackage_success(flow, region):
    kek, world = flow.pkg(region)
    r = flow.env.run(flow.source, "verifykeypackage", "-k", kek, "-w", world)
    assert r.stdout.splitlines()[-1] == "Result: SUCCESS"
    assert f"Key Exchange Key hash: {kek_hash(flow, region)}: non-exportable, import (unwrap) only" in r.stdout


def _verify(flow, kek_doc: dict, env: Env | None = None):
    forged = flow.env.work / "forged-kek"
    forged.write_text(json.dumps(kek_doc))
    return (env or flow.env).run(flow.source, "verifykeypackage", "-k", str(forged), "-w", flow.pkg("EU")[1],
                                 check=False)


def test_edited_byte_in_kek_package_fails(flow):
    text = (flow.packages / "BYOK-KEK-pkg-EU-1").read_text()
    edited = text.replace('"label": "BYOK-KEK-EU"', '"label": "BYOK-KEK-EV"')
    assert edited != text
    r = _verify(flow, json.loads(edited))
    esn = json.loads(text)["module_esn"]
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == (f"Result: FAILED: KEK package (signed by module {esn}): signature does "
                                         "not verify: edited or forged")


def test_package_signed_by_unpinned_root_fails(flow, tmp_path):
    rogue = Env(tmp_path / "rogue-root", flow.env.work)
    rogue.run(tmp_path / "rogue-target", "byok", "export-kek", "--name", "EU", "--out-dir", str(tmp_path / "pk"))
    r = flow.env.run(flow.source, "verifykeypackage", "-k", str(tmp_path / "pk" / "BYOK-KEK-pkg-EU-1"),
                     "-w", str(tmp_path / "pk" / "BYOK-SecurityWorld-pkg-EU-1"), check=False)
    rogue_hash = (tmp_path / "rogue-root" / "root_hash").read_text().strip()
    pinned = (flow.env.root_store / "root_hash").read_text().strip()
    assert rogue_hash != pinned and r.returncode == 1
    assert r.stdout.splitlines()[-1] == (f"Result: FAILED: signer chain ends at root key hash {rogue_hash}, "
                                         f"not the pinned root {pinned}")


def test_exportable_kek_fails_even_when_the_module_signed_it(flow, monkeypatch):
    """A module that signs an exportable KEK (a tampered tool) is still refused by verifykeypackage."""
    monkeypatch.setenv("SOFTSHIELD_ROOT_STORE", str(flow.env.root_store))
    doc = json.loads((flow.packages / "BYOK-KEK-pkg-EU-1").read_text())
    body = {k: v for k, v in doc.items() if k not in ("signature", "warrant", "module_esn")}
    body["kek"]["exportable"] = True
    body["kek"]["acl"]["groups"][0]["actions"].append("ExportAsBlob")
    signed = attestation.ModuleSigner(flow.target, doc["module_esn"]).sign_package(body)
    r = _verify(flow, signed)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == "Result: FAILED: KEK is exportable: its ACL permits ExportAsBlob"


# --- the source side: ModifyAcls ---------------------------------------------------------------------
def test_modify_acls_writes_the_reduced_copy(flow):
    h = kek_hash(flow, "EU")
    out = flow.outputs["modify"]
    assert "ACS quorum: 2 cards read; logged in as the accelerator's SO" in out
    assert (f"Reduced copy of key_simple_contosokey written: {flow.source / 'local' / 'key_xferacld_contosokey'}\n"
            f"Permission group 1:\n  Actions: ExportAsBlob\n  ExportAsBlob only under wrapping key hash {h}\n"
            "Result: SUCCESS") in out


def test_aclprint_and_kmfile_dump_show_only_the_wrap_by_kek(flow):
    h = kek_hash(flow, "EU")
    r = flow.env.run(flow.source, "aclprint", "-A", "xferacld", "-K", "contosokey")
    assert r.stdout == (f"ACL of key_xferacld_contosokey:\n Permission group 1:\n   Actions: ExportAsBlob\n"
                        f"   ExportAsBlob only under wrapping key hash {h}\n")
    dump = flow.env.run(flow.source, "kmfile-dump", str(flow.source / "local" / "key_xferacld_contosokey")).stdout
    assert f"     Actions: ExportAsBlob\n     ExportAsBlob only under wrapping key hash {h}\n" in dump
    copy = Module.open(flow.source).load_key_file(flow.source / "local" / "key_xferacld_contosokey")
    assert copy.acl.to_dict() == {"format": 1, "groups": [{"actions": ["ExportAsBlob"], "wrap_key_hash": h}]}


def test_reduced_copy_cannot_sign_or_export_in_the_module(flow):
    module = Module.open(flow.source)
    copy = module.load_key_file(flow.source / "local" / "key_xferacld_contosokey")
    for action, limit in ((Action.SIGN, None), (Action.DECRYPT, None), (Action.EXPORT_PLAIN, None),
                          (Action.DUPLICATE, None), (Action.EXPORT_AS_BLOB, None), (Action.EXPORT_AS_BLOB, "ab" * 20)):
        with pytest.raises(AclDenied):
            module.use(copy, action, wrap_key_hash=limit)
    assert module.use(copy, Action.EXPORT_AS_BLOB, wrap_key_hash=kek_hash(flow, "EU")) is not None


def test_reduced_copy_cannot_sign_or_be_wrapped_by_another_key_over_pkcs11(flow):
    out = flow.env.python(flow.source, f"""
        import pkcs11
        from pkcs11 import Attribute as A, KeyType, Mechanism, ObjectClass
        from softshield_cli import p11client
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open(rw=True, attribute_mapper=p11client.mapper()) as s:
            [copy] = [k for k in s.get_objects({{A.CLASS: ObjectClass.PRIVATE_KEY}})
                      if k[p11client.CKA_NFKM_APPNAME] == "xferacld" and k[A.LABEL].startswith("contosokey")]
            print("attrs", copy[A.SIGN], copy[A.DECRYPT], copy[A.EXTRACTABLE], copy[A.WRAP_WITH_TRUSTED],
                  copy[A.SENSITIVE])
            # python-pkcs11 offers .sign only on keys whose CKA_SIGN is true: call C_SignInit itself.
            import ctypes
            from p11ctypes import CK_MECHANISM
            so = ctypes.CDLL({str(SO)!r})
            so.C_SignInit.argtypes = [ctypes.c_ulong, ctypes.POINTER(CK_MECHANISM), ctypes.c_ulong]
            rv = so.C_SignInit(s.handle, ctypes.byref(CK_MECHANISM(Mechanism.SHA256_RSA_PKCS, None, 0)), copy.handle)
            print("sign", hex(rv))
            for what, call in (
                               ("wrap", lambda: s.generate_key(KeyType.AES, 256, template={{A.WRAP: True, A.PRIVATE: False}})
                                .wrap_key(copy, mechanism=Mechanism.AES_KEY_WRAP_PAD)),
                               ("read", lambda: copy[A.PRIVATE_EXPONENT])):
                try:
                    call()
                    print(what, "ALLOWED")
                except pkcs11.exceptions.PKCS11Error as exc:
                    print(what, type(exc).__name__)
    """)
    assert out.splitlines() == ["attrs False False True True True", f"sign {CKR.KEY_FUNCTION_NOT_PERMITTED:#x}",
                                "wrap KeyNotWrappable", "read AttributeSensitive"]


def test_modify_acls_with_one_card_fails(flow):
    r = flow.env.run(flow.source, "keytransfer", "-ModifyAcls", "-KeyIdentifier", "plainkey",
                     *flow.transfer_args("EU"), "--pin-file", flow.env.pin_file("pins-1", [2]), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "softshield keytransfer: the ACS quorum is 2 of 3 cards; only 1 presented (--pin-file)"
    assert not (flow.source / "local" / "key_xferacld_plainkey").exists()


def test_modify_acls_with_a_wrong_pin_fails(flow):
    pins = flow.env.pin_file("pins-bad", [1, 2], {1: "1111", 2: "9999"})
    r = flow.env.run(flow.source, "keytransfer", "-ModifyAcls", "-KeyIdentifier", "plainkey",
                     *flow.transfer_args("EU"), "--pin-file", pins, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("softshield keytransfer: ACS card 2 of 2 (C_LoginNext): CKR_PIN_INCORRECT "
                                f"(0x{CKR.PIN_INCORRECT:08X})")
    assert not (flow.source / "local" / "key_xferacld_plainkey").exists()


def test_transfer_copy_and_trusted_kek_need_the_so_over_pkcs11(flow):
    """Without the ACS login, neither CKA_TRUSTED nor the transfer copy can be had."""
    h = kek_hash(flow, "EU")
    out = flow.env.python(flow.source, f"""
        import pkcs11
        from pkcs11 import Attribute as A, KeyType, ObjectClass
        from pkcs11_shim.constants import CKA_SOFTSHIELD_WRAP_KEY_HASH
        from softshield_cli import p11client
        m = p11client.mapper()
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open(rw=True, attribute_mapper=m) as s:
            [key] = [k for k in s.get_objects({{A.CLASS: ObjectClass.PRIVATE_KEY}})
                     if bytes(k[p11client.CKA_NFKM_ID]) == b"plainkey"]
            for what, call in (
                    ("trusted", lambda: s.create_object({{A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA,
                                                        A.MODULUS: b"\\xc1" * 256, A.PUBLIC_EXPONENT: b"\\x01\\x00\\x01",
                                                        A.TRUSTED: True}})),
                    ("copy", lambda: key.copy({{A.WRAP_WITH_TRUSTED: True, A.SIGN: False,
                                               CKA_SOFTSHIELD_WRAP_KEY_HASH: bytes.fromhex({h!r})}}))):
                try:
                    call()
                    print(what, "ALLOWED")
                except pkcs11.exceptions.PKCS11Error as exc:
                    print(what, type(exc).__name__)
    """)
    assert out.splitlines() == ["trusted AttributeReadOnly", "copy UserNotLoggedIn"]


# --- Package -----------------------------------------------------------------------------------------
def test_package_writes_the_vendor_neutral_byok(flow):
    doc = json.loads((flow.env.work / "TransferPackage-Contoso.byok").read_text())
    assert sorted(doc) == ["ciphertext", "generator", "header", "schema_version"]
    assert doc["schema_version"] == "1.0.0"
    kek = json.loads((flow.packages / "BYOK-KEK-pkg-EU-1").read_text())["kek"]
    assert doc["header"] == {"kid": kek["kid"], "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    assert "EMULATED" in doc["generator"]
    raw = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    assert "=" not in doc["ciphertext"] and len(raw) > 256 and (len(raw) - 256) % 8 == 0
    assert "OAEP SHA-1" in flow.outputs["package"] and flow.outputs["package"].rstrip().endswith("Result: SUCCESS")


def test_package_writes_the_legacy_package(flow):
    neutral = json.loads((flow.env.work / "TransferPackage-Contoso.byok").read_text())
    legacy = json.loads((flow.env.work / "KeyTransferPackage-Contoso.internal.json").read_text())
    assert legacy["format"] == "softshield-legacy-byok" and legacy["subscription_id"] == "sub-1"
    assert legacy["target"]["kek_hash"] == kek_hash(flow, "EU")
    assert legacy["source"]["key_file"] == "key_xferacld_contosokey"
    assert base64.b64decode(legacy["wrapped_key"]) == base64.urlsafe_b64decode(
        neutral["ciphertext"] + "=" * (-len(neutral["ciphertext"]) % 4))


def _decode_byok(doc: dict, kek_pem: bytes, oaep_hash) -> bytes:
    """The .byok opened with plain `cryptography` (S4): RSA-OAEP(AES key) || AES-KWP(PKCS#8 key)."""
    kek = serialization.load_pem_private_key(kek_pem, password=None)
    raw = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    n = kek.key_size // 8
    aes_key = kek.decrypt(raw[:n], padding.OAEP(mgf=padding.MGF1(oaep_hash), algorithm=oaep_hash, label=None))
    assert len(aes_key) == 32
    return aes_key_unwrap_with_padding(aes_key, raw[n:])


@pytest.mark.parametrize("name, oaep_hash, header_extra", [("Fmt1", hashes.SHA1(), {}),
                                                           ("Fmt256", hashes.SHA256(), {"oaep_hash": "SHA-256"})])
def test_byok_decrypts_with_plain_cryptography(flow, name, oaep_hash, header_extra):
    doc = json.loads((flow.env.work / f"TransferPackage-{name}.byok").read_text())
    kid = json.loads((flow.packages / "BYOK-KEK-pkg-TEST-1").read_text())["kek"]["kid"]
    assert doc["header"] == {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP", **header_extra}
    pkcs8 = _decode_byok(doc, flow.kek_pem, oaep_hash)
    key = serialization.load_der_private_key(pkcs8, password=None)
    expected = serialization.load_pem_public_key(public_pem(flow.env, flow.source, "fmtkey"))
    assert key.public_key().public_numbers() == expected.public_numbers()
    other = hashes.SHA256() if isinstance(oaep_hash, hashes.SHA1) else hashes.SHA1()
    with pytest.raises(ValueError):
        _decode_byok(doc, flow.kek_pem, other)


def test_package_of_a_key_never_reduced_is_refused(flow):
    r = flow.env.run(flow.source, "keytransfer", "-Package", "-KeyIdentifier", "plainkey", *flow.transfer_args("EU"),
                     "-SubscriptionId", "s", "-KeyFriendlyName", "Plain", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("softshield keytransfer: no key_xferacld_plainkey: key plainkey has not been prepared "
                                "with -ModifyAcls (a key that was never ACL-reduced is never packaged)")
    assert not (flow.env.work / "TransferPackage-Plain.byok").exists()


def test_package_for_another_kek_than_the_copy_was_reduced_for_is_refused(flow):
    r = flow.env.run(flow.source, "keytransfer", "-Package", "-KeyIdentifier", "contosokey",
                     *flow.transfer_args("TEST"), "-SubscriptionId", "s", "-KeyFriendlyName", "Other", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"softshield keytransfer: key_xferacld_contosokey is not a copy reduced for this KEK "
                                f"({kek_hash(flow, 'TEST')}): run `softshield keytransfer -ModifyAcls` with these "
                                "packages first")


# --- import in the target ------------------------------------------------------------------------------
def _imported(flow, name="contoso"):
    module = Module.open(flow.target)
    keys, _ = module.load_keys(None)
    [key] = [k for k in keys if k.plainname == name]
    return module, key


def test_imported_key_signs_and_verifies_under_the_generated_public_key(flow):
    out = flow.outputs["import"]
    assert out.startswith("Imported RSA key `contoso' (neutral package) under KEK " + kek_hash(flow, "EU"))
    (flow.env.work / "msg").write_bytes(b"bring your own key")
    flow.env.run(flow.target, "sign", "--key", "pkcs11:token=loadshared%20accelerator;object=contoso;type=private",
                 "--in", "msg", "--out", "msg.sig", "--mechanism", "SHA256_RSA_PKCS")
    public = serialization.load_pem_public_key(flow.source_public)
    public.verify((flow.env.work / "msg.sig").read_bytes(), b"bring your own key", padding.PKCS1v15(), hashes.SHA256())


def test_imported_key_is_non_exportable(flow):
    module, key = _imported(flow)
    assert not {Action.EXPORT_AS_BLOB, Action.EXPORT_PLAIN, Action.DUPLICATE} & key.acl.actions()
    assert Action.SIGN in key.acl.actions()
    with pytest.raises(AclDenied):
        module.use(key, Action.EXPORT_PLAIN)
    assert f"Key hash: {key.key_hash}" in flow.outputs["import"]


def test_imported_key_fails_to_load_in_another_world(flow, tmp_path):
    _module, key = _imported(flow)
    other = tmp_path / "other"
    Module.open(other)
    shutil.copy(key.file_path, other / "local" / key.file_path.name)
    with pytest.raises(EmulatorError):
        Module.open(other).load_key_file(other / "local" / key.file_path.name)


def test_import_into_a_third_world_fails(flow, tmp_path):
    third = tmp_path / "third"
    r = flow.env.run(third, "byok", "import", "--file", "TransferPackage-Contoso.byok", "--name", "x", check=False)
    target_world = Module.open(flow.target).world.hknso
    assert r.returncode == 1
    assert r.stderr.strip() == (f"softshield byok: TransferPackage-Contoso.byok is for Security World {target_world}; "
                                f"this world is {Module.open(third).world.hknso}: import it where its KEK lives")


def test_replay_of_a_byok_for_another_kek_fails(flow):
    doc = json.loads((flow.env.work / "TransferPackage-Contoso.byok").read_text())
    test_kid = json.loads((flow.packages / "BYOK-KEK-pkg-TEST-1").read_text())["kek"]["kid"]
    doc["header"]["kid"] = test_kid
    (flow.env.work / "Replay.byok").write_text(json.dumps(doc))
    r = flow.env.run(flow.target, "byok", "import", "--file", "Replay.byok", "--name", "replay", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"softshield byok: C_UnwrapKey under KEK {kek_hash(flow, 'TEST')} failed "
                                "(WrappedKeyInvalid): the package was not made for this KEK, was damaged, or does not "
                                "hold an RSA, EC or AES key")


def test_edited_byok_fails_the_unwrap(flow):
    doc = json.loads((flow.env.work / "TransferPackage-Contoso.byok").read_text())
    raw = bytearray(base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4)))
    raw[-1] ^= 1
    doc["ciphertext"] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    (flow.env.work / "Edited.byok").write_text(json.dumps(doc))
    r = flow.env.run(flow.target, "byok", "import", "--file", "Edited.byok", "--name", "edited", check=False)
    assert r.returncode == 1 and "failed (WrappedKeyInvalid)" in r.stderr


def test_legacy_package_imports_too(flow):
    r = flow.env.run(flow.target, "byok", "import", "--file", "KeyTransferPackage-Contoso.internal.json", "--name",
                     "contoso-legacy")
    assert r.stdout.startswith("Imported RSA key `contoso-legacy' (legacy package) under KEK " + kek_hash(flow, "EU"))
    _module, key = _imported(flow, "contoso-legacy")
    assert key.key_hash == _imported(flow)[1].key_hash


def test_byok_with_wrong_schema_is_refused(flow):
    doc = json.loads((flow.env.work / "TransferPackage-Contoso.byok").read_text())
    doc["header"]["enc"] = "CKM_AES_KEY_WRAP"
    (flow.env.work / "Enc.byok").write_text(json.dumps(doc))
    r = flow.env.run(flow.target, "byok", "import", "--file", "Enc.byok", "--name", "enc", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("softshield byok: Enc.byok: header alg/enc dir/CKM_AES_KEY_WRAP is not "
                                "dir/CKM_RSA_AES_KEY_WRAP")


def test_packages_name_the_files_as_the_seed(flow):
    assert paths.key_file("xferacld", "contosokey") == "key_xferacld_contosokey"
    assert (flow.env.work / "TransferPackage-Contoso.byok").is_file()


def test_source_key_still_signs_beside_its_transfer_copy(flow):
    """key_simple_X and key_xferacld_X share the ident X: both stay distinct objects."""
    (flow.env.work / "src-msg").write_bytes(b"still mine")
    flow.env.run(flow.source, "sign", "--key", "pkcs11:token=loadshared%20accelerator;object=contosokey;type=private",
                 "--in", "src-msg", "--out", "src-msg.sig", "--mechanism", "SHA256_RSA_PKCS")
    serialization.load_pem_public_key(flow.source_public).verify(
        (flow.env.work / "src-msg.sig").read_bytes(), b"still mine", padding.PKCS1v15(), hashes.SHA256())


def test_imported_key_decrypts_in_the_target_world(flow):
    public = serialization.load_pem_public_key(flow.source_public)
    ciphertext = public.encrypt(b"for the target only", padding.OAEP(mgf=padding.MGF1(hashes.SHA1()),
                                                                     algorithm=hashes.SHA1(), label=None))
    out = flow.env.python(flow.target, f"""
        import pkcs11
        from pkcs11 import Attribute as A, Mechanism, ObjectClass
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [key] = list(s.get_objects({{A.CLASS: ObjectClass.PRIVATE_KEY, A.LABEL: "contoso"}}))
            print(key[A.EXTRACTABLE], key[A.SENSITIVE], key[A.COPYABLE])
            print(key.decrypt({ciphertext!r}, mechanism=Mechanism.RSA_PKCS_OAEP).decode())
    """)
    assert out.splitlines() == ["False True False", "for the target only"]


def test_modify_acls_in_a_world_without_acs_is_refused(flow):
    r = flow.env.run(flow.target, "keytransfer", "-ModifyAcls", "-KeyIdentifier", "contosokey",
                     *flow.transfer_args("EU"), "--pin-file", flow.env.pin_file("pins-x", [1]), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("softshield keytransfer: this Security World has no Administrator Card Set (make one "
                                "with `softshield new-world --initialize --acs-quorum=K/N`): no quorum can authorise "
                                "the transfer")


# --- byok import: every type -Package makes, found by the unwrap; names are unique ---------------------
@pytest.mark.parametrize("package, name, kind", [("TransferPackage-Aes.byok", "imported-aes", "AES"),
                                                 ("TransferPackage-Ec.byok", "imported-ec", "EC")])
def test_import_detects_the_key_type(flow, package, name, kind):
    r = flow.env.run(flow.target, "byok", "import", "--file", package, "--name", name)
    assert r.stdout.startswith(f"Imported {kind} key `{name}' (neutral package) under KEK {kek_hash(flow, 'EU')}")
    _module, key = _imported(flow, name)
    assert key.kind == {"AES": "secret:AES", "EC": "private:EC"}[kind]
    assert not {Action.EXPORT_AS_BLOB, Action.EXPORT_PLAIN} & key.acl.actions()


def test_imported_aes_key_decrypts_what_the_source_key_encrypted(flow):
    flow.env.run(flow.target, "byok", "import", "--file", "TransferPackage-Aes.byok", "--name", "aes-roundtrip")
    code = """
        import pkcs11
        from pkcs11 import Attribute as A, Mechanism, ObjectClass
        token = pkcs11.lib({so!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [key] = list(s.get_objects({{A.CLASS: ObjectClass.SECRET_KEY, A.LABEL: {label!r}}}))
            print(key.{op}(bytes.fromhex({data!r}), mechanism=Mechanism.AES_CBC_PAD, mechanism_param=bytes(16)).hex())
    """
    ciphertext = flow.env.python(flow.source, code.format(so=str(SO), label="aeskey", op="encrypt",
                                                         data=b"across worlds".hex())).strip()
    plain = flow.env.python(flow.target, code.format(so=str(SO), label="aes-roundtrip", op="decrypt", data=ciphertext))
    assert bytes.fromhex(plain.strip()) == b"across worlds"


def test_import_under_a_taken_name_is_refused_unless_replace(flow):
    r = flow.env.run(flow.target, "byok", "import", "--file", "TransferPackage-Contoso.byok", "--name", "contoso",
                     check=False)
    assert (r.returncode, r.stderr) == (1, "softshield byok: a key named `contoso' already exists in this world: "
                                           "choose another --name, or --replace it\n")
    flow.env.run(flow.target, "byok", "import", "--file", "TransferPackage-Ec.byok", "--name", "twice")
    before = _imported(flow, "twice")[1].key_hash
    flow.env.run(flow.target, "byok", "import", "--file", "TransferPackage-Aes.byok", "--name", "twice", "--replace")
    module = Module.open(flow.target)
    keys, _ = module.load_keys(None)
    named = [k for k in keys if k.plainname == "twice"]
    assert [k.kind for k in named] == ["secret:AES"] and named[0].key_hash != before
