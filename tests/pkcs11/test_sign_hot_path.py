"""C_SignInit (and every *Init with a key) keeps the checks it passed per session
(`operations._KeyChecks`): a later *Init may reuse them only while the key object, its attribute
dict, its emulator key and ACL and the login state are the ones they were made against, and the
parameter is the same. Each test changes one of those and expects the exact code."""

from __future__ import annotations

import pytest
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from emulator.errors import EmulatorError
from pkcs11_shim import library, operations
from pkcs11_shim.abi.entry import rv_for
from pkcs11_shim.constants import CKR, MGF, UserType
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms.params import PssParams

DIGEST = bytes(range(32))


def _shim(session):
    return library.state().sessions.get(session.handle)


def _sign(session, handle: int, mechanism: int = Mechanism.ECDSA, param=None, data: bytes = DIGEST) -> bytes:
    shim = _shim(session)
    operations.begin(shim, "sign", mechanism, param, handle)
    return operations.run(shim, "sign", "oneshot", data, 4096)


def _refused(session, handle: int, code: int, **kwargs) -> None:
    """The call fails with `code` as the C boundary maps it (the ACL refusal is the module's own)."""
    with pytest.raises((PKCS11Error, EmulatorError)) as caught:
        _sign(session, handle, **kwargs)
    assert rv_for(caught.value) == code


@pytest.fixture
def ec_pair(session):
    params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                                              local=True)
    return params.generate_keypair(store=False, label="sign-hot")


def test_usage_removed_after_a_sign(session, ec_pair) -> None:
    pub, priv = ec_pair
    for _ in range(2):  # the second one from the kept checks
        assert pub.verify(DIGEST, _sign(session, priv.handle), mechanism=Mechanism.ECDSA)
    priv[Attribute.SIGN] = False
    _refused(session, priv.handle, CKR.KEY_FUNCTION_NOT_PERMITTED)


def test_allowed_mechanisms_narrowed_after_a_sign(session, ec_pair) -> None:
    _pub, priv = ec_pair
    _sign(session, priv.handle)
    shim = _shim(session)
    obj = shim.token.objects.get(priv.handle)
    # C_SetAttributeValue replaces the attribute dict; so does this (CKA_ALLOWED_MECHANISMS is fixed
    # after creation, so the test replaces the dict as a re-load from kmdata would).
    obj.attrs = {**obj.attrs, Attribute.ALLOWED_MECHANISMS: (Mechanism.ECDSA_SHA256,)}
    _refused(session, priv.handle, CKR.MECHANISM_INVALID)


def test_acl_reduced_after_a_sign(session, ec_pair) -> None:
    """The module's ACL check is made by every *Init, kept checks or not."""
    from emulator.acl import Action

    _pub, priv = ec_pair
    _sign(session, priv.handle)
    key = _shim(session).token.objects.get(priv.handle).key
    key.acl = key.acl.reduce({Action.VERIFY})
    _refused(session, priv.handle, CKR.KEY_FUNCTION_NOT_PERMITTED)


def test_logout_after_a_sign(token) -> None:
    with token.open(user_pin=USER_PIN, rw=True) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        _pub, priv = params.generate_keypair(store=False, label="sign-logout", private_template={Attribute.PRIVATE: True})
        _sign(session, priv.handle)
        shim = _shim(session)
        library.state().sessions.logout(shim)  # C_Logout as its handler makes it
        _refused(session, priv.handle, CKR.KEY_HANDLE_INVALID)
        library.state().sessions.login(shim, UserType.USER, USER_PIN.encode())  # python-pkcs11 logs out on close


def test_parameter_checked_when_it_changes(session) -> None:
    _pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False, label="sign-pss")
    good = PssParams(Mechanism.SHA256, MGF.SHA256, 32)
    assert len(_sign(session, priv.handle, Mechanism.SHA256_RSA_PKCS_PSS, good, b"message")) == 256
    bad = PssParams(Mechanism.SHA_1, MGF.SHA256, 32)  # hashAlg must name the mechanism's hash
    _refused(session, priv.handle, CKR.MECHANISM_PARAM_INVALID, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, param=bad,
             data=b"message")
    assert len(_sign(session, priv.handle, Mechanism.SHA256_RSA_PKCS_PSS, good, b"message")) == 256


def test_stateful_operations_are_never_shared(session, ec_pair) -> None:
    """Single-part operation objects are reused with the kept checks (they hold no state of one
    operation); a hashing sign operation is made afresh every time, or one message's data would
    run into the next one's signature."""
    pub, priv = ec_pair
    shim = _shim(session)
    ops = []
    for _ in range(2):
        operations.begin(shim, "sign", Mechanism.ECDSA, None, priv.handle)
        ops.append(shim.ops["sign"].op)
        operations.run(shim, "sign", "oneshot", DIGEST, 4096)
    assert ops[0] is ops[1]
    signatures = []
    for part in (b"first message", b"second message"):
        operations.begin(shim, "sign", Mechanism.ECDSA_SHA256, None, priv.handle)
        ops.append(shim.ops["sign"].op)
        operations.absorb(shim, "sign", part)
        signatures.append((part, operations.run(shim, "sign", "final", b"", 4096)))
    assert ops[2] is not ops[3]
    for part, signature in signatures:
        assert pub.verify(part, signature, mechanism=Mechanism.ECDSA_SHA256)
