"""The C ABI fuzzer (fuzz_cabi.py) in a bounded run: SOFTSHIELD_FUZZ_EXAMPLES programs (default 300)
of up to 8 C calls each, the same programs every run (derandomized, so CI is reproducible); `make fuzz`
runs a longer, random one (it found the pending-output bug that tests/pkcs11/test_pending_output.py
now pins)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fuzz_cabi
from relenv import child_env

EXAMPLES = int(os.environ.get("SOFTSHIELD_FUZZ_EXAMPLES", "300"))


def test_c_abi_survives_hostile_calls(kmdata: Path) -> None:
    fuzz_cabi.fuzz_world(kmdata, child_env(kmdata), EXAMPLES, derandomize=True)


@pytest.mark.parametrize("what, caught", [("crash", "crash"), ("hang", "hang"), ("traceback", "Traceback"),
                                          ("ok_on_garbage", "CKR_OK on garbage")])
def test_the_harness_catches_each_kind_of_failure(kmdata: Path, what: str, caught: str) -> None:
    env = child_env(kmdata)
    fuzz_cabi.make_fuzz_world(kmdata, env)
    target = fuzz_cabi.FuzzTarget(kmdata, env, hang_seconds=3)
    try:
        with pytest.raises(AssertionError, match=caught):
            target.check([{"kind": "selftest", "what": what}])
        # And the target recovers: the next program runs in a fresh child if the last one died.
        target.check([{"kind": "get_attr", "session": "rw", "object": "data", "types": [3], "out": [True],
                       "lens": [64]}])
    finally:
        target.stop()
