"""One process of the load test: THREADS threads, each with its own session on token LABEL, create,
use, find and destroy keys until DURATION seconds have passed, checking every answer.

    python load_worker.py VARIANT DURATION THREADS LABEL STALL_SECONDS

VARIANT is how C_Initialize is called: `null` (NULL, as python-pkcs11 does), `oslocking`
(CK_C_INITIALIZE_ARGS with CKF_OS_LOCKING_OK) or `mutex` (the application's CreateMutex /
DestroyMutex / LockMutex / UnlockMutex, no flag: PKCS#11 3.0 §5.4.1 says the library must use them).
Prints one JSON line: operation counts, every error, the labels of the keys kept (not destroyed),
and, for `mutex`, how often the library called the callbacks. A watchdog dumps every thread's stack
and exits 2 when a thread makes no progress for STALL_SECONDS.
"""

from __future__ import annotations

import ctypes
import faulthandler
import itertools
import json
import os
import sys
import threading
import time
from ctypes import POINTER, c_void_p

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import Attribute, CKR, InitFlag, KeyType, Mechanism, UserType  # noqa: E402

USER_PIN = b"1234"
KEEP_EVERY = 4  # every 4th token key stays, so the end can check that nothing kept was lost


class AppMutexes:
    """Application mutex callbacks (threading.Lock underneath), counting every call."""

    def __init__(self) -> None:
        self._locks: dict[int, threading.Lock] = {}
        self._ids = itertools.count(1)
        self.calls = {"create": 0, "destroy": 0, "lock": 0, "unlock": 0}
        self._count_lock = threading.Lock()
        self.create = ck.CREATE_MUTEX(self._create)
        self.destroy = ck.MUTEX_FN(self._destroy)
        self.lock = ck.MUTEX_FN(self._lock)
        self.unlock = ck.MUTEX_FN(self._unlock)

    def _count(self, name: str) -> None:
        with self._count_lock:
            self.calls[name] += 1

    def _create(self, pp: POINTER(c_void_p)) -> int:  # type: ignore[valid-type]
        handle = next(self._ids)
        self._locks[handle] = threading.Lock()
        pp[0] = handle
        self._count("create")
        return CKR.OK

    def _destroy(self, handle: int) -> int:
        self._count("destroy")
        return CKR.OK if self._locks.pop(handle, None) is not None else CKR.MUTEX_BAD

    def _lock(self, handle: int) -> int:
        self._locks[handle].acquire()
        self._count("lock")
        return CKR.OK

    def _unlock(self, handle: int) -> int:
        self._count("unlock")
        lock = self._locks[handle]
        if not lock.locked():
            return CKR.MUTEX_NOT_LOCKED
        lock.release()
        return CKR.OK


def init_args(variant: str, mutexes: AppMutexes) -> ck.CK_C_INITIALIZE_ARGS | None:
    if variant == "null":
        return None
    args = ck.CK_C_INITIALIZE_ARGS()
    if variant == "oslocking":
        args.flags = InitFlag.OS_LOCKING_OK
    elif variant == "mutex":
        args.CreateMutex, args.DestroyMutex = mutexes.create, mutexes.destroy
        args.LockMutex, args.UnlockMutex = mutexes.lock, mutexes.unlock
    else:
        raise SystemExit(f"unknown variant {variant}")
    return args


class Worker(threading.Thread):
    def __init__(self, client: ck.Client, slot: int, index: int, deadline: float) -> None:
        super().__init__(daemon=True, name=f"load-{index}")
        self.client, self.slot, self.index, self.deadline = client, slot, index, deadline
        self.beat = time.monotonic()
        self.ops = {"create": 0, "use": 0, "find": 0, "destroy": 0}
        self.errors: list[str] = []
        self.kept: list[str] = []

    def run(self) -> None:
        try:
            session = self.client.open(self.slot)
            for n in itertools.count():
                if time.monotonic() >= self.deadline:
                    break
                self._round(session, n)
                self.beat = time.monotonic()
            self._check_kept(session)
            self.client.close(session)
        except ck.CkError as exc:
            self.errors.append(f"{exc.name} 0x{exc.code:x}")
        except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.beat = float("inf")

    def _round(self, session: int, n: int) -> None:
        c = self.client
        token = n % 2 == 0
        label = f"p{os.getpid()}-t{self.index}-{n}"
        if n % 3 == 0:
            handle = c.generate_key(session, Mechanism.GENERIC_SECRET_KEY_GEN, [
                (Attribute.TOKEN, token), (Attribute.PRIVATE, True), (Attribute.VALUE_LEN, 32), (Attribute.SIGN, True),
                (Attribute.KEY_TYPE, KeyType.GENERIC_SECRET), (Attribute.LABEL, label)])
            self.ops["create"] += 1
            mac1 = c.sign(session, Mechanism.SHA256_HMAC, handle, label.encode())
            mac2 = c.sign(session, Mechanism.SHA256_HMAC, handle, label.encode())
            if len(mac1) != 32 or mac1 != mac2:
                raise AssertionError(f"{label}: HMAC is not deterministic ({mac1.hex()} / {mac2.hex()})")
        else:
            handle = c.generate_key(session, Mechanism.AES_KEY_GEN, [
                (Attribute.TOKEN, token), (Attribute.PRIVATE, True), (Attribute.VALUE_LEN, 16), (Attribute.ENCRYPT, True),
                (Attribute.LABEL, label)])
            self.ops["create"] += 1
            block = label.encode().ljust(16, b".")[:16]
            out1 = c.encrypt(session, Mechanism.AES_ECB, handle, block)
            out2 = c.encrypt(session, Mechanism.AES_ECB, handle, block)
            if len(out1) != 16 or out1 != out2 or out1 == block:
                raise AssertionError(f"{label}: AES-ECB answers differ ({out1.hex()} / {out2.hex()})")
        self.ops["use"] += 2
        # No handle confusion: the handle we were given is our object, and only ours has our label.
        got = c.get_attribute(session, handle, Attribute.LABEL).decode()
        if got != label:
            raise AssertionError(f"handle {handle} answered label {got!r}, expected {label!r}")
        found = c.find(session, [(Attribute.LABEL, label)])
        self.ops["find"] += 1
        if found != [handle]:
            raise AssertionError(f"{label}: find gave {found}, expected [{handle}]")
        if token and n % (2 * KEEP_EVERY) == 0:
            self.kept.append(label)
            return
        c.destroy(session, handle)
        self.ops["destroy"] += 1
        if c.find(session, [(Attribute.LABEL, label)]):
            raise AssertionError(f"{label}: still found after C_DestroyObject")

    def _check_kept(self, session: int) -> None:
        for label in self.kept:
            found = self.client.find(session, [(Attribute.LABEL, label)])
            if len(found) != 1:
                raise AssertionError(f"kept key {label}: find gave {found}")


def main() -> int:
    variant, duration, threads, label, stall = sys.argv[1:6]
    mutexes = AppMutexes()
    args = init_args(variant, mutexes)
    client = ck.Client(ck.load())
    client.initialize(args)
    if args is not None:
        # The library must have copied what it needs: the application may reuse the struct.
        ctypes.memset(ctypes.addressof(args), 0, ctypes.sizeof(args))
    slot = client.slot_by_label(label)
    session = client.open(slot)
    code = ck.raw(client.lib, "C_Login", ck.CK_ULONG(session), ck.CK_ULONG(UserType.USER), USER_PIN,
                  ck.CK_ULONG(len(USER_PIN)))
    if code not in (CKR.OK, CKR.USER_ALREADY_LOGGED_IN):
        raise SystemExit(f"C_Login -> 0x{code:x}")
    deadline = time.monotonic() + float(duration)
    workers = [Worker(client, slot, i, deadline) for i in range(int(threads))]
    for worker in workers:
        worker.start()
    limit = float(stall)
    while any(w.is_alive() for w in workers):
        time.sleep(0.25)
        now = time.monotonic()
        stuck = [w.name for w in workers if now - w.beat > limit]
        if stuck:
            print(json.dumps({"stall": stuck}), flush=True)
            faulthandler.dump_traceback(all_threads=True)
            os._exit(2)
    client.close(session)
    client.finalize()
    ops = {k: sum(w.ops[k] for w in workers) for k in workers[0].ops}
    print(json.dumps({"ops": ops, "errors": [e for w in workers for e in w.errors],
                      "kept": [k for w in workers for k in w.kept], "mutex_calls": mutexes.calls}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
