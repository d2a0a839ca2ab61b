"""C_WrapKey / C_UnwrapKey of an AES-256 key (and C_WrapKey of an RSA-2048 private key), one thread,
through python-pkcs11, for our .so and SoftHSM2, with the same work done by `cryptography`."""

from __future__ import annotations

import pytest

import wrapcases
from conftest import measure
from report import record

IMPLS = ("ours", "softhsm", "cryptography")

CASES = {
    "wrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA1": lambda k: wrapcases.rsa_aes_wrap(k, 2048, "sha1"),
    "wrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA256": lambda k: wrapcases.rsa_aes_wrap(k, 2048, "sha256"),
    "wrap RSA_AES_KEY_WRAP RSA-3072 OAEP-SHA1": lambda k: wrapcases.rsa_aes_wrap(k, 3072, "sha1"),
    "wrap RSA_AES_KEY_WRAP RSA-3072 OAEP-SHA256": lambda k: wrapcases.rsa_aes_wrap(k, 3072, "sha256"),
    "unwrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA1": lambda k: wrapcases.rsa_aes_unwrap(k, 2048, "sha1"),
    "unwrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA256": lambda k: wrapcases.rsa_aes_unwrap(k, 2048, "sha256"),
    "unwrap RSA_AES_KEY_WRAP RSA-3072 OAEP-SHA1": lambda k: wrapcases.rsa_aes_unwrap(k, 3072, "sha1"),
    "unwrap RSA_AES_KEY_WRAP RSA-3072 OAEP-SHA256": lambda k: wrapcases.rsa_aes_unwrap(k, 3072, "sha256"),
    "wrap RSA-2048 private key RSA_AES_KEY_WRAP RSA-2048": lambda k: wrapcases.rsa_aes_wrap(k, 2048, "sha256",
                                                                                          target="rsa"),
    "wrap RSA_PKCS_OAEP RSA-2048 SHA1": wrapcases.oaep_wrap,
    "unwrap RSA_PKCS_OAEP RSA-2048 SHA1": wrapcases.oaep_unwrap,
    "wrap AES_KEY_WRAP AES-256": lambda k: wrapcases.aes_wrap(k, "kw"),
    "unwrap AES_KEY_WRAP AES-256": lambda k: wrapcases.aes_unwrap(k, "kw"),
    "wrap AES_KEY_WRAP_KWP AES-256": lambda k: wrapcases.aes_wrap(k, "kwp"),
    "unwrap AES_KEY_WRAP_KWP AES-256": lambda k: wrapcases.aes_unwrap(k, "kwp"),
}




@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_wrap_path(benchmark, sessions, case: str, impl: str) -> None:
    benchmark.group = case
    fn, note = CASES[case](wrapcases.keys_for(impl, sessions))
    fn()  # warm: key objects loaded, caches filled
    seconds = measure(benchmark, fn)
    record(case, impl, 1 / seconds, note=note, group="wrap")
