"""Single-thread CPU time per call (`time.thread_time`, min and median of batches) of the key-wrap
rows, ours / SoftHSM2 / `cryptography` interleaved in one process: on a machine other jobs load,
wall-clock ratios move 2x between runs, CPU time per call does not. All three run in this thread
(python-pkcs11 loads both libraries in-process), so the clock sees all of their work.

    .venv/bin/python bench/cpuprobe.py [batches] [calls per batch]
"""
import os, sys, time, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends, wrapcases
batches, per = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (5, 300)
sessions = {"ours": backends.OURS.token("main").open(user_pin=backends.USER_PIN, rw=True),
            "softhsm": backends.SOFTHSM.token("main").open(user_pin=backends.USER_PIN, rw=True), "cryptography": None}
keys = {impl: wrapcases.make_keys(impl, s) for impl, s in sessions.items()}
CASES = {
    "unwrap RSA_AES RSA-2048 SHA256": lambda k: wrapcases.rsa_aes_unwrap(k, 2048, "sha256")[0],
    "wrap RSA_AES RSA-2048 SHA256": lambda k: wrapcases.rsa_aes_wrap(k, 2048, "sha256")[0],
    "unwrap AES_KEY_WRAP": lambda k: wrapcases.aes_unwrap(k, "kw")[0],
    "unwrap AES_KEY_WRAP_KWP": lambda k: wrapcases.aes_unwrap(k, "kwp")[0],
    "wrap AES_KEY_WRAP": lambda k: wrapcases.aes_wrap(k, "kw")[0],
}
tt = time.thread_time
for case, make in CASES.items():
    fns = {impl: make(k) for impl, k in keys.items()}
    if "RSA" in case:
        fns.pop("softhsm")  # a composite, not the same work
    n = per // 5 if "unwrap RSA" in case else per
    res = {impl: [] for impl in fns}
    for impl, fn in fns.items():
        for _ in range(20): fn()
    for _ in range(batches):
        for impl, fn in fns.items():
            t = tt()
            for _ in range(n): fn()
            res[impl].append((tt() - t) / n * 1e6)
    lo = {i: min(v) for i, v in res.items()}; md = {i: statistics.median(v) for i, v in res.items()}
    peer = "softhsm" if "softhsm" in lo else "cryptography"
    print(f"{case}: " + ", ".join(f"{i} {lo[i]:.1f} us (med {md[i]:.1f})" for i in lo)
          + f"; ours/{peer} {lo[peer]/lo['ours']:.2f}x (med {md[peer]/md['ours']:.2f}x)")
import pkcs11_shim
print(f"load {os.getloadavg()[0]:.1f} shim {os.path.dirname(pkcs11_shim.__file__)}")
