"""Profile one hot path of our .so through python-pkcs11: a loop of one case under cProfile, sorted
by own time, plus the plain per-call time without the profiler (and SoftHSM2's, where it has the
case, from the same process).

    .venv/bin/python bench/profile_hotpath.py CASE [count] [sha1|sha256]

CASE: wrap | unwrap (RSA_AES_KEY_WRAP RSA-2048), sign-ec (ECDSA P-256 prehashed), keypair-ec
(C_GenerateKeyPair P-256 + two C_DestroyObject), genkey (session AES-256 C_GenerateKey +
C_DestroyObject), random (C_GenerateRandom of 32 bytes), unwrap-kw | unwrap-kwp (AES_KEY_WRAP /
AES_KEY_WRAP_KWP of an AES-256 session key + C_DestroyObject).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import wrapcases  # noqa: E402


def make_case(name: str, session, sha: str, impl: str = "ours"):
    from pkcs11 import KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    if name in ("wrap", "unwrap"):
        keys = wrapcases.make_keys("ours", session)
        case = wrapcases.rsa_aes_wrap if name == "wrap" else wrapcases.rsa_aes_unwrap
        return case(keys, 2048, sha)[0]
    if name in ("unwrap-kw", "unwrap-kwp"):
        return wrapcases.aes_unwrap(wrapcases.make_keys(impl, session), name[len("unwrap-"):])[0]  # SoftHSM2: KWP is _PAD
    if name in ("sign-ec", "keypair-ec"):
        params = session.create_domain_parameters(KeyType.EC, {0x180: encode_named_curve_parameters("secp256r1")},
                                                  local=True)
        if name == "keypair-ec":
            def run() -> None:
                pub, priv = params.generate_keypair(store=False)
                pub.destroy()
                priv.destroy()
            return run
        _pub, priv = params.generate_keypair(store=False, label="sign-ec")
        digest = bytes(range(32))
        return lambda: priv.sign(digest, mechanism=Mechanism.ECDSA)
    if name == "genkey":
        return lambda: session.generate_key(KeyType.AES, 256, store=False).destroy()
    if name == "random":
        return lambda: session.generate_random(256)
    raise SystemExit(f"unknown case {name!r}")


def _per_call(fn, n: int) -> float:
    for _ in range(min(50, n)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(name: str = "wrap", count: str = "2000", sha: str = "sha256") -> None:
    n = int(count)
    session = backends.OURS.token("main").open(user_pin=backends.USER_PIN, rw=True)
    fn = make_case(name, session, sha)
    plain = _per_call(fn, n)
    if name not in ("wrap", "unwrap"):
        theirs = backends.SOFTHSM.token("main").open(user_pin=backends.USER_PIN, rw=True)
        soft = _per_call(make_case(name, theirs, sha, "softhsm"), n)
        print(f"{name}: SoftHSM2 {soft * 1e6:.1f} us per call")
        theirs.close()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        fn()
    profile.disable()
    print(f"{name}: {plain * 1e6:.1f} us per call without the profiler; load {os.getloadavg()[0]:.2f}")
    pstats.Stats(profile).sort_stats("tottime").print_stats(int(os.environ.get("PROFILE_LINES", "30")))
    session.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
