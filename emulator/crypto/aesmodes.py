"""More AES modes PKCS#11 names (3.0 §2.14.x): OFB, CFB8, CFB128, XTS, CTS, CCM, and CBC-MAC.

OFB/CFB/XTS/CCM are `cryptography`'s (OFB and CFB live in its `decrepit` package since v47). Two are assembled here from its AES primitives, because no
library offers them: ciphertext stealing (CKM_AES_CTS, the CS3 variant of SP 800-38A Addendum, as
RFC 3962 and Kryoptic/OpenSSL use), and the CBC-MAC of CKM_AES_MAC (the last CBC block under a zero
IV, the input zero-padded to whole blocks as PKCS#11's general block-cipher MAC says).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers import modes as decrepit_modes
from cryptography.hazmat.primitives.ciphers import Cipher, aead, algorithms, modes

from ..errors import CryptoFailure, InvalidKeyMaterial
from .aes import BLOCK_SIZE, CipherContext, cbc_encrypt, check_key

#: `cryptography`'s AESCCM: nonces of 7..13 bytes, tags of 4..16 even bytes (SP 800-38C).
CCM_NONCE_RANGE = (7, 13)
CCM_TAG_LENGTHS = (4, 6, 8, 10, 12, 14, 16)
XTS_KEY_SIZES = (32, 64)


def ofb(key: bytes, iv: bytes) -> CipherContext:
    check_key(key)
    return CipherContext(Cipher(algorithms.AES(key), decrepit_modes.OFB(iv)).encryptor())


def cfb(key: bytes, iv: bytes, encrypt: bool, segment_bits: int) -> CipherContext:
    """CFB8 (segment_bits 8) or CFB128 (128)."""
    check_key(key)
    mode = decrepit_modes.CFB8(iv) if segment_bits == 8 else decrepit_modes.CFB(iv)
    cipher = Cipher(algorithms.AES(key), mode)
    return CipherContext(cipher.encryptor() if encrypt else cipher.decryptor())


def xts(key: bytes, tweak: bytes, encrypt: bool, data: bytes) -> bytes:
    """IEEE 1619 XTS over one data unit (at least one block); `key` is both AES keys."""
    if len(key) not in XTS_KEY_SIZES:
        raise InvalidKeyMaterial(f"AES-XTS key of {len(key)} bytes")
    if key[: len(key) // 2] == key[len(key) // 2:]:
        raise InvalidKeyMaterial("AES-XTS key halves must differ")
    cipher = Cipher(algorithms.AES(key), modes.XTS(tweak))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def cts_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC-CS3: CBC over the zero-padded input, then the last two blocks swapped and the
    (then) last one truncated to the length of the final partial block. Needs >= 16 bytes."""
    n = len(data)
    if n < BLOCK_SIZE:
        raise CryptoFailure("CTS needs at least one block")
    if n == BLOCK_SIZE:
        return cbc_encrypt(key, iv, data)
    tail = n % BLOCK_SIZE or BLOCK_SIZE
    padded = data + bytes(-n % BLOCK_SIZE)
    c = cbc_encrypt(key, iv, padded)
    head, c_prev, c_last = c[: -2 * BLOCK_SIZE], c[-2 * BLOCK_SIZE: -BLOCK_SIZE], c[-BLOCK_SIZE:]
    return head + c_last + c_prev[:tail]


def cts_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    n = len(data)
    if n < BLOCK_SIZE:
        raise CryptoFailure("CTS needs at least one block")
    check_key(key)
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    if n == BLOCK_SIZE:
        return _xor(dec.update(data), iv)
    tail = n % BLOCK_SIZE or BLOCK_SIZE
    full = n - tail - BLOCK_SIZE  # bytes before the last full block (the swapped C_n)
    head, c_n, c_partial = data[:full], data[full: full + BLOCK_SIZE], data[full + BLOCK_SIZE:]
    prev = head[-BLOCK_SIZE:] if head else iv
    plain_head = b""
    if head:
        cbc = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain_head = cbc.update(head) + cbc.finalize()
    z = dec.update(c_n)  # = P_n(padded) xor C_{n-1}
    c_prev = c_partial + z[tail:]
    p_last = _xor(z[:tail], c_partial)
    p_prev = _xor(dec.update(c_prev), prev)
    return plain_head + p_prev + p_last


def cbc_mac(key: bytes, data: bytes) -> bytes:
    """The last block of CBC encryption under a zero IV of the zero-padded data (one block of
    zeros for empty input)."""
    padded = data + bytes(-len(data) % BLOCK_SIZE) if data else bytes(BLOCK_SIZE)
    return cbc_encrypt(key, bytes(BLOCK_SIZE), padded)[-BLOCK_SIZE:]


def ccm_encrypt(key: bytes, nonce: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    """SP 800-38C; returns ciphertext || tag."""
    check_key(key)
    return aead.AESCCM(key, tag_length=tag_len).encrypt(nonce, data, aad or None)


def ccm_decrypt(key: bytes, nonce: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    check_key(key)
    try:
        return aead.AESCCM(key, tag_length=tag_len).decrypt(nonce, data, aad or None)
    except InvalidTag:
        raise CryptoFailure("CCM tag mismatch") from None


def gcm_encrypt_detached(key: bytes, iv: bytes, aad: bytes, data: bytes, tag_len: int) -> tuple[bytes, bytes]:
    """GCM returning (ciphertext, tag) separately, as the message-based calls need them."""
    check_key(key)
    ctx = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    if aad:
        ctx.authenticate_additional_data(aad)
    out = ctx.update(data) + ctx.finalize()
    return out, ctx.tag[:tag_len]

