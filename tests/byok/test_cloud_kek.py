"""The vendor-neutral flow with a KEK made outside softshield, as a cloud vault hands it out: plain
`cryptography` RSA-3072, its PEM (az keyvault key download) and its JSON Web Key with a vault-URL kid
(az keyvault key show). The .byok decodes with plain `cryptography` to the source key; every bad KEK
input is refused with one line, exit 1, and nothing written."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from byokenv import SO, Env

KID = "https://contosovault.vault.azure.net/keys/KEK-BYOK/0123456789abcdef0123456789abcdef"


def b64url_int(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def jwk_document(public: rsa.RSAPublicKey, kid: str = KID, kty: str = "RSA-HSM", ops=("import",)) -> dict:
    """`az keyvault key show` output: the JWK in `key`, plus attributes and tags."""
    numbers = public.public_numbers()
    return {"attributes": {"enabled": True, "exportable": False, "recoveryLevel": "Recoverable+Purgeable"},
            "key": {"kid": kid, "kty": kty, "key_ops": list(ops), "n": b64url_int(numbers.n), "e": b64url_int(numbers.e)},
            "managed": None, "tags": None}


@dataclass
class Cloud:
    env: Env
    source: Path
    kek: rsa.RSAPrivateKey
    quorum: str


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> Cloud:
    assert SO.exists(), "build the library first: make"
    base = tmp_path_factory.mktemp("cloudkek")
    env = Env(base / "vendor-root", base / "work")
    env.work.mkdir()
    source = base / "source"
    kek = rsa.generate_private_key(65537, 3072)
    public = kek.public_key()
    (env.work / "KEK.publickey.pem").write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (env.work / "KEK.json").write_text(json.dumps(jwk_document(public)))
    (env.work / "KEK.jwk").write_text(json.dumps(jwk_document(public)["key"]))
    env.run(source, "new-world", "--initialize", "-Q", "2/3", "--pin-file", env.pin_file("pins-3", [1, 2, 3]))
    for ident, spec in (("rsakey", ["type=RSA", "size=2048"]), ("eckey", ["type=ECDSA", "curve=NISTP256"]),
                        ("aeskey", ["type=AES", "size=256"]), ("twostep", ["type=RSA", "size=2048"]),
                        ("refused", ["type=RSA", "size=2048"])):
        env.run(source, "generatekey", "--batch", "simple", *spec, "protect=module", f"ident={ident}",
                f"plainname={ident}")
    return Cloud(env, source, kek, env.pin_file("pins-1-3", [1, 3]))


def decode(doc: dict, kek: rsa.RSAPrivateKey) -> bytes:
    """The .byok opened with plain `cryptography` (S4): RSA-OAEP-SHA1(AES key) || AES-KWP(key)."""
    raw = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    n = kek.key_size // 8
    aes = kek.decrypt(raw[:n], padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    return aes_key_unwrap_with_padding(aes, raw[n:])


def package(cloud: Cloud, key: str, out: str, *kek_args: str, check: bool = True):
    return cloud.env.run(cloud.source, "byok", "package", *kek_args, "--key", key, "--out", out,
                         "--pin-file", cloud.quorum, check=check)


def sign_in_source(cloud: Cloud, label: str, mechanism: str, data: bytes) -> bytes:
    (cloud.env.work / "msg").write_bytes(data)
    cloud.env.run(cloud.source, "sign", "--key", f"pkcs11:token=loadshared%20accelerator;object={label};type=private",
                  "--in", "msg", "--out", "msg.sig", "--mechanism", mechanism)
    return (cloud.env.work / "msg.sig").read_bytes()


def test_pem_and_kid_package_an_rsa_key_that_decodes_to_the_source_key(cloud):
    r = package(cloud, "simple:rsakey", "rsakey.byok", "--kek", "KEK.publickey.pem", "--kek-kid", KID)
    assert "(PEM, RSA-3072) with CKM_RSA_AES_KEY_WRAP, OAEP SHA-1" in r.stdout
    assert r.stdout.rstrip().endswith("Result: SUCCESS")
    doc = json.loads((cloud.env.work / "rsakey.byok").read_text())
    assert doc["schema_version"] == "1.0.0"
    assert doc["header"] == {"kid": KID, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    key = serialization.load_der_private_key(decode(doc, cloud.kek), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    signature = sign_in_source(cloud, "rsakey", "SHA256_RSA_PKCS", b"moved to the vault")
    key.public_key().verify(signature, b"moved to the vault", padding.PKCS1v15(), hashes.SHA256())


def test_whole_az_show_document_packages_an_ec_key_through_a_uri(cloud):
    r = package(cloud, "pkcs11:token=loadshared%20accelerator;object=eckey;type=private", "eckey.byok",
                "--kek", "KEK.json")
    assert "(JWK, RSA-3072)" in r.stdout
    doc = json.loads((cloud.env.work / "eckey.byok").read_text())
    assert doc["header"]["kid"] == KID
    key = serialization.load_der_private_key(decode(doc, cloud.kek), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    signature = sign_in_source(cloud, "eckey", "ECDSA_SHA256", b"ec to the vault")
    half = len(signature) // 2  # PKCS#11 ECDSA signatures are r || s (§2.3.1), not DER
    der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
    key.public_key().verify(der, b"ec to the vault", ec.ECDSA(hashes.SHA256()))


def test_jwk_key_object_packages_an_aes_key_whose_ciphertext_decrypts(cloud):
    package(cloud, "simple:aeskey", "aeskey.byok", "--kek", "KEK.jwk")
    doc = json.loads((cloud.env.work / "aeskey.byok").read_text())
    value = decode(doc, cloud.kek)
    assert doc["header"]["kid"] == KID and len(value) == 32
    iv = bytes(range(16))
    out = cloud.env.python(cloud.source, f"""
        import pkcs11
        from pkcs11 import Attribute as A, Mechanism, ObjectClass
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [key] = list(s.get_objects({{A.CLASS: ObjectClass.SECRET_KEY, A.LABEL: "aeskey"}}))
            print(key.encrypt(b"sixteen byte msg", mechanism=Mechanism.AES_CBC, mechanism_param={iv!r}).hex())
    """)
    decryptor = Cipher(algorithms.AES(value), modes.CBC(iv)).decryptor()
    assert decryptor.update(bytes.fromhex(out.strip())) + decryptor.finalize() == b"sixteen byte msg"


def test_keytransfer_two_steps_with_a_kek_file(cloud):
    """KeyTransferRemote -ModifyAcls / -Package with -KekFile: the nShield user's two steps."""
    modify = cloud.env.run(cloud.source, "keytransfer", "-ModifyAcls", "-KeyIdentifier",
                           "pkcs11:token=loadshared%20accelerator;object=twostep;type=private", "-KekFile", "KEK.publickey.pem", "-KekKid", KID, "--pin-file", cloud.quorum)
    kek_hash = __import__("hashlib").sha1(cloud.kek.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    assert f"ExportAsBlob only under wrapping key hash {kek_hash}\nResult: SUCCESS" in modify.stdout
    cloud.env.run(cloud.source, "keytransfer", "-Package", "-KeyIdentifier", "twostep", "-KekFile", "KEK.json",
                  "-SubscriptionId", "sub-1", "-KeyFriendlyName", "TwoStep")
    made = sorted(p.name for p in cloud.env.work.glob("*TwoStep*"))
    assert made == ["TransferPackage-TwoStep.byok"]  # one .byok, no second file to confuse it with
    doc = json.loads((cloud.env.work / "TransferPackage-TwoStep.byok").read_text())
    assert doc["header"]["kid"] == KID
    key = serialization.load_der_private_key(decode(doc, cloud.kek), password=None)
    signature = sign_in_source(cloud, "twostep", "SHA256_RSA_PKCS", b"two steps")
    key.public_key().verify(signature, b"two steps", padding.PKCS1v15(), hashes.SHA256())


def _bad_inputs(tmp: Path, kek: rsa.RSAPrivateKey) -> dict[str, tuple[list[str], str]]:
    public = kek.public_key()
    no_import = jwk_document(public, ops=("wrapKey", "unwrapKey"))
    ec_pem = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    short = rsa.generate_private_key(65537, 1024).public_key()
    odd = rsa.generate_private_key(65537, 2560).public_key()
    ec_jwk = {"kid": KID, "kty": "EC-HSM", "crv": "P-256", "x": "AA", "y": "AA", "key_ops": ["import"]}
    files = {"noimport.json": json.dumps(no_import), "ec.pem": ec_pem.decode(),
             "short.json": json.dumps(jwk_document(short)), "odd.pem": odd.public_bytes(
                 serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
             "ec.json": json.dumps(ec_jwk), "broken.json": '{"key": {"kid": "x", "kty": "RSA"',
             "badn.json": json.dumps({**jwk_document(public)["key"], "n": "not base64!"}),
             "nokid.json": json.dumps({k: v for k, v in jwk_document(public)["key"].items() if k != "kid"}),
             "private.pem": kek.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode(),
             "pub.json": json.dumps(jwk_document(public)),
             "pub.pem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()}
    for name, text in files.items():
        (tmp / name).write_text(text)
    what = lambda name: f"softshield byok: KEK file {tmp / name}"  # noqa: E731
    return {
        "key_ops without import": ([f"{tmp}/noimport.json"], f"{what('noimport.json')}: key_ops ['wrapKey', "
                                   "'unwrapKey'] lacks \"import\": not a Key Exchange Key (az keyvault key create ... "
                                   "--ops import)"),
        "EC PEM": ([f"{tmp}/ec.pem", "--kek-kid", KID], f"{what('ec.pem')}: an EC key, not RSA"),
        "EC JWK": ([f"{tmp}/ec.json"], f"{what('ec.json')}: kty 'EC-HSM' is not a KEK key type (RSA or RSA-HSM)"),
        "RSA-1024": ([f"{tmp}/short.json"], f"{what('short.json')}: RSA-1024 is not a KEK size (2048/3072/4096 bits)"),
        "RSA-2560": ([f"{tmp}/odd.pem", "--kek-kid", KID], f"{what('odd.pem')}: RSA-2560 is not a KEK size "
                     "(2048/3072/4096 bits)"),
        "truncated JSON": ([f"{tmp}/broken.json"], f"{what('broken.json')}: neither a PEM public key nor a JSON Web Key"),
        "n not base64url": ([f"{tmp}/badn.json"], f"{what('badn.json')}: JWK member `n' is not base64url"),
        "JWK without kid": ([f"{tmp}/nokid.json"], f"{what('nokid.json')}: the JWK has no kid: give it with --kek-kid"),
        "PEM without kid": ([f"{tmp}/pub.pem"], f"{what('pub.pem')}: a PEM key carries no identifier: give the KEK's "
                            "kid (--kek-kid, the `kid` of `az keyvault key show`)"),
        "a private key": ([f"{tmp}/private.pem", "--kek-kid", KID], f"{what('private.pem')}: a private key: give the "
                          "KEK's public key (az keyvault key download)"),
        "kid disagrees": ([f"{tmp}/pub.json", "--kek-kid", "other"], f"{what('pub.json')}: --kek-kid other differs from the JWK's kid {KID}"),
    }


def test_each_bad_kek_is_refused_with_one_line_and_nothing_written(cloud, tmp_path):
    before = sorted(p.name for p in (cloud.source / "local").iterdir())
    for case, (kek_args, message) in _bad_inputs(tmp_path, cloud.kek).items():
        r = package(cloud, "simple:refused", "refused.byok", "--kek", *kek_args, check=False)
        assert (r.returncode, r.stderr, r.stdout) == (1, message + "\n", ""), case
        assert not (cloud.env.work / "refused.byok").exists(), case
    assert sorted(p.name for p in (cloud.source / "local").iterdir()) == before


def test_keytransfer_kek_file_refusals_match(cloud, tmp_path):
    (tmp_path / "short.pem").write_bytes(rsa.generate_private_key(65537, 1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = cloud.env.run(cloud.source, "keytransfer", "-ModifyAcls", "-KeyIdentifier", "refused", "-KekFile",
                      str(tmp_path / "short.pem"), "-KekKid", KID, "--pin-file", cloud.quorum, check=False)
    assert (r.returncode, r.stderr) == (1, f"softshield keytransfer: KEK file {tmp_path / 'short.pem'}: RSA-1024 is "
                                           "not a KEK size (2048/3072/4096 bits)\n")
    assert not (cloud.source / "local" / "key_xferacld_refused").exists()


def test_existing_out_file_is_never_overwritten(cloud):
    (cloud.env.work / "taken.byok").write_text("mine")
    r = package(cloud, "simple:refused", "taken.byok", "--kek", "KEK.json", check=False)
    assert (r.returncode, r.stderr) == (1, "softshield byok: --out taken.byok: already exists (a .byok is never "
                                           "overwritten)\n")
    assert (cloud.env.work / "taken.byok").read_text() == "mine"


def test_export_kek_with_a_public_key_says_where_it_goes(cloud, tmp_path):
    target = tmp_path / "target"
    r = cloud.env.run(target, "byok", "export-kek", "--name", "EU", "--import-key", "KEK.publickey.pem",
                      "--out-dir", str(tmp_path / "pk"), check=False)
    assert (r.returncode, r.stderr) == (1, "softshield byok: --import-key takes the KEK's private key (PEM); a vault's "
                                           "KEK public key goes to `softshield byok package --kek FILE` or "
                                           "`keytransfer -KekFile FILE`\n")
    assert not target.exists() and not (tmp_path / "pk").exists()


def test_a_card_given_twice_says_so(cloud):
    twice = cloud.env.work / "pins-twice"
    twice.write_text("acs-1.card 1111\nacs-1.card 1111\n")
    r = cloud.env.run(cloud.source, "byok", "package", "--kek", "KEK.json", "--key", "simple:refused", "--out",
                      "twice.byok", "--pin-file", str(twice), check=False)
    assert (r.returncode, r.stderr) == (1, "softshield byok: the PIN file names card acs-1.card twice: present each "
                                           "card of the quorum once\n")
    assert not (cloud.env.work / "twice.byok").exists()
    assert not (cloud.source / "local" / "key_xferacld_refused").exists()
