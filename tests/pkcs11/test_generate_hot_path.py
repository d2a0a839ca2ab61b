"""C_GenerateKey / C_GenerateKeyPair check a template once and reuse what it makes
(`keymgmt._generated`): every key made with the same template must still be its own object with
its own CKA_UNIQUE_ID and attribute dict, with exactly the usages (and ACL) its template gives, and
a template that fails must fail the same way every time."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.exceptions import KeySizeRange, TemplateInconsistent
from pkcs11.util.ec import encode_named_curve_parameters

from emulator.crypto import edwards, keygen, mldsa
from pkcs11_shim.attributes import keyparts
from pkcs11_shim.attributes.codecs import CKA_PUBLIC_KEY_INFO
from pkcs11_shim.constants import CKR
from pkcs11_shim.errors import PKCS11Error as ShimError

READABLE = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


def _stored(session, key) -> dict:
    from pkcs11_shim import library

    return library.state().sessions.get(session.handle).object(key.handle)._attrs


def _kcv(value: bytes) -> bytes:
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3]


def test_same_template_gives_separate_objects(session) -> None:
    template = READABLE
    a = session.generate_key(KeyType.AES, 256, store=False, label="gen-same", template=template)
    b = session.generate_key(KeyType.AES, 256, store=False, label="gen-same", template=template)
    assert a.handle != b.handle
    assert a[Attribute.UNIQUE_ID] != b[Attribute.UNIQUE_ID]
    assert a[Attribute.VALUE] != b[Attribute.VALUE]
    # CKA_CHECK_VALUE belongs to each key's own value (computed when first read).
    assert a[Attribute.CHECK_VALUE] == _kcv(a[Attribute.VALUE])
    assert b[Attribute.CHECK_VALUE] == _kcv(b[Attribute.VALUE])
    stored_a, stored_b = _stored(session, a), _stored(session, b)
    assert stored_a is not stored_b
    a[Attribute.LABEL] = "gen-changed"
    assert a[Attribute.LABEL] == "gen-changed" and b[Attribute.LABEL] == "gen-same"
    c = session.generate_key(KeyType.AES, 256, store=False, label="gen-same", template=template)
    assert c[Attribute.LABEL] == "gen-same"


def _encrypt(session, key, data: bytes) -> bytes:
    """C_EncryptInit + C_Encrypt through the shim (python-pkcs11 offers encrypt only on keys with
    CKA_ENCRYPT)."""
    from pkcs11_shim import library, operations

    shim = library.state().sessions.get(session.handle)
    operations.begin(shim, "encrypt", Mechanism.AES_CBC, bytes(16), key.handle)
    return operations.run(shim, "encrypt", "oneshot", data, 1024)


def test_usage_follows_each_template(session) -> None:
    data = bytes(16)
    no_encrypt = session.generate_key(KeyType.AES, 128, store=False, template={Attribute.ENCRYPT: False})
    with pytest.raises(ShimError) as refused:
        _encrypt(session, no_encrypt, data)
    assert refused.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED
    # The same once more (the cached template), then one differing only in CKA_ENCRYPT.
    again = session.generate_key(KeyType.AES, 128, store=False, template={Attribute.ENCRYPT: False})
    with pytest.raises(ShimError) as refused:
        _encrypt(session, again, data)
    assert refused.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED
    allowed = session.generate_key(KeyType.AES, 128, store=False, template={Attribute.ENCRYPT: True})
    assert len(_encrypt(session, allowed, data)) == 16
    # The module's ACL says the same as the attribute (the check that counts).
    from pkcs11_shim import library
    from emulator.acl import Action

    objects = library.state().sessions.get(session.handle).token.objects
    assert not objects.get(again.handle).key.acl.permits(Action.ENCRYPT)
    assert objects.get(allowed.handle).key.acl.permits(Action.ENCRYPT)


def test_failing_template_fails_every_time(session) -> None:
    for _ in range(3):  # CKA_VALUE_LEN of an AES key must be 16, 24 or 32 (nothing may be cached)
        with pytest.raises(KeySizeRange):
            session.generate_key(KeyType.AES, 96, store=False)
    for _ in range(2):  # a private-key attribute on a secret key
        with pytest.raises(TemplateInconsistent):
            session.generate_key(KeyType.AES, 256, store=False, template={Attribute.MODULUS_BITS: 2048})


def test_key_pairs_from_one_template(session) -> None:
    params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                                              local=True)
    pairs = [params.generate_keypair(store=False, label="gen-pair") for _ in range(2)]
    (pub1, priv1), (pub2, priv2) = pairs
    assert pub1[Attribute.EC_POINT] != pub2[Attribute.EC_POINT]
    assert len({k[Attribute.UNIQUE_ID] for pair in pairs for k in pair}) == 4
    for pub, priv in pairs:
        assert _stored(session, priv)[CKA_PUBLIC_KEY_INFO] == _stored(session, pub)[CKA_PUBLIC_KEY_INFO]
        assert priv[Attribute.EC_PARAMS] == pub[Attribute.EC_PARAMS]
        signature = priv.sign(bytes(32), mechanism=Mechanism.ECDSA)
        assert pub.verify(bytes(32), signature, mechanism=Mechanism.ECDSA)
        assert not pub.verify(bytes(31) + b"\1", signature, mechanism=Mechanism.ECDSA)


@pytest.mark.parametrize("make", [
    lambda: keygen.generate_rsa(2048), lambda: keygen.generate_ec("P-256"), lambda: keygen.generate_ec("P-384"),
    lambda: edwards.generate("Ed25519"), lambda: edwards.generate("X25519"),
    lambda: mldsa.generate(sorted(mldsa.PARAMETER_SETS)[0]),
], ids=["rsa", "p256", "p384", "ed25519", "x25519", "ml-dsa"])
def test_pair_public_attributes_are_each_halfs_own(make) -> None:
    private = make()
    public = private.public()
    pub, priv = keyparts.pair_public_attributes(private, public)
    assert pub == keyparts.public_attributes(public)
    assert priv == keyparts.public_attributes(private)


def test_nested_templates_are_copied_per_object() -> None:
    """A CKA_WRAP_TEMPLATE (a dict) is the one mutable value: each object gets its own copy."""
    from pkcs11_shim import keymgmt
    from pkcs11_shim.attributes.templates import Origin
    from pkcs11_shim.constants import ObjectClass
    from pkcs11_shim.mechanisms.registry import REGISTRY

    raw = [(int(Attribute.VALUE_LEN), (32).to_bytes(8, "little")),
           (int(Attribute.WRAP_TEMPLATE), [(int(Attribute.EXTRACTABLE), b"\x00")])]
    made = keymgmt._generated(REGISTRY.get(Mechanism.AES_KEY_GEN), raw, Origin.GENERATE, ObjectClass.SECRET_KEY,
                              Mechanism.AES_KEY_GEN, False)
    assert keymgmt._generated(REGISTRY.get(Mechanism.AES_KEY_GEN), list(raw), Origin.GENERATE,
                              ObjectClass.SECRET_KEY, Mechanism.AES_KEY_GEN, False) is made
    one, two = made.new_stored(), made.new_stored()
    assert one[Attribute.WRAP_TEMPLATE] == two[Attribute.WRAP_TEMPLATE] == {Attribute.EXTRACTABLE: False}
    assert one[Attribute.WRAP_TEMPLATE] is not two[Attribute.WRAP_TEMPLATE]
    assert one[Attribute.WRAP_TEMPLATE] is not made.stored[Attribute.WRAP_TEMPLATE]
    assert one[Attribute.UNIQUE_ID] != two[Attribute.UNIQUE_ID]
