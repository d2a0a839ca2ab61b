"""C_FindObjects by label among 100 .. 100,000 token objects, and C_Initialize time and resident
memory with 10,000 token keys (a fresh process per figure).

The objects are token AES-256 keys labelled obj-<i>. Ours are made in bulk through the emulator
API (`Module.store_keys`: the blob of one key made by C_CreateObject, cloned with new labels,
idents and unique ids, all durable through one sync), about 100x faster than C_CreateObject with
its two fsyncs per key. SoftHSM2's are made with C_CreateObject in a loop, capped at
SOFTSHIELD_BENCH_SOFTHSM_MAX (default 10,000) objects because its find time grows linearly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

import backends
from backends import SMOKE
from report import record

COUNTS = [100] if SMOKE else [100, 1_000, 10_000, 100_000]
INIT_AT = 100 if SMOKE else 10_000
SOFTHSM_MAX = int(os.environ.get("SOFTSHIELD_BENCH_SOFTHSM_MAX", "10000"))
VALUE = bytes(range(32))


def _template(i: int) -> dict:
    return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: VALUE,
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: f"obj-{i}",
            Attribute.ID: i.to_bytes(4, "big")}


class OurBulk:
    """Token objects for our library through the emulator's Python API."""

    def __init__(self, session, label: str) -> None:
        from emulator.module import Module

        self.module = Module.open(backends.KMDATA)
        info = next(t for t in self.module.list_tokens() if t.label == label)
        self.token = info.hash
        self.auth = self.module.login(self.token, "user", backends.USER_PIN.encode())
        session.create_object(_template(0))
        keys, _ = self.module.load_keys(self.token, self.auth)
        self.prototype = keys[0]

    def add(self, start: int, stop: int) -> None:
        from emulator.keys import Key
        from pkcs11_shim.attributes import codecs

        base = codecs.deserialize(self.prototype.appdata)
        batch = []
        for i in range(start, stop):
            attrs = dict(base)
            attrs[Attribute.LABEL] = f"obj-{i}"
            attrs[Attribute.ID] = i.to_bytes(4, "big")
            if Attribute.UNIQUE_ID in attrs:
                attrs[Attribute.UNIQUE_ID] = str(uuid.uuid4())
            batch.append(Key(self.prototype.material, self.prototype.acl, app="pkcs11",
                             protection=self.prototype.protection, token=self.token,
                             appdata=codecs.serialize(attrs)))
            if len(batch) == 5000:
                self.module.store_keys(batch, self.auth)
                batch = []
        if batch:
            self.module.store_keys(batch, self.auth)


def _find_once(session, label: str) -> int:
    return len(list(session.get_objects({Attribute.LABEL: label})))


def _time_find(session, label: str) -> float:
    """Best of a few batches; each batch runs for about 0.2 s (at least 3 finds)."""
    assert _find_once(session, label) == 1  # the first look after a change loads the new objects
    budget = 0.01 if SMOKE else 0.2
    best = float("inf")
    for _ in range(1 if SMOKE else 3):
        rounds, start = 0, time.perf_counter()
        while rounds < 3 or time.perf_counter() - start < budget:
            assert _find_once(session, label) == 1
            rounds += 1
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def _probe(impl: str, label: str, find_label: str) -> dict:
    so = backends.BACKENDS[impl].so
    # Our row is the library in the process, whatever hardserver the environment names.
    env = {**os.environ, "SOFTSHIELD_MODE": "embedded"}
    runs = []
    for _ in range(1 if SMOKE else 3):
        out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "initprobe.py"), so, label,
                              backends.USER_PIN, find_label], capture_output=True, text=True, timeout=600,
                             env=env)
        if out.returncode:
            raise RuntimeError(out.stderr)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["init_s"])


@pytest.mark.parametrize("impl", ["ours", "softhsm"])
def test_find_by_label_scaling(impl: str) -> None:
    backend = backends.BACKENDS[impl]
    label = None
    session = backend.token("find").open(user_pin=backends.USER_PIN, rw=True)
    label = backend.labels["find"]
    try:
        bulk = OurBulk(session, label) if impl == "ours" else None
        have = 1 if impl == "ours" else 0
        for count in COUNTS:
            if impl == "softhsm" and count > SOFTHSM_MAX:
                record(f"C_FindObjects by label, {count:,} objects", impl, float("nan"), unit="us",
                       higher_better=False, note=f"capped at {SOFTHSM_MAX:,}", group="find", x=count)
                continue
            start = time.perf_counter()
            if bulk is not None:
                bulk.add(have, count)
            else:
                for i in range(have, count):
                    session.create_object(_template(i))
            created = count - have
            if created:
                rate = created / (time.perf_counter() - start)
                print(f"{impl}: {created} objects at {rate:,.0f}/s")
            have = count
            seconds = _time_find(session, f"obj-{count // 2}")
            record(f"C_FindObjects by label, {count:,} objects", impl, seconds * 1e6, unit="us",
                   higher_better=False, group="find", x=count)
            if count == INIT_AT:
                probe = _probe(impl, label, f"obj-{count // 2}")
                record(f"C_Initialize, {count:,} token keys", impl, probe["init_s"] * 1e3, unit="ms",
                       higher_better=False, group="init")
                record(f"login + first find, {count:,} token keys", impl, probe["login_first_find_s"] * 1e3,
                       unit="ms", higher_better=False, group="init")
                record(f"resident memory after login, {count:,} token keys", impl, probe["rss_mb"], unit="MB",
                       higher_better=False, group="init")
    finally:
        session.close()
