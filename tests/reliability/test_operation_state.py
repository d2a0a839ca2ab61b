"""The operation state model (pkcs11_shim/operations.py, docs/library.md, "Operation state") through the real
.so, in a child process per test (opstate_machine.py) with fd 2 checked after every C call.

- The four digest sequences an outside fuzzer found: after a final-phase answer (a length query or
  CKR_BUFFER_TOO_SMALL of C_DigestFinal / C_Digest) the digest stays active in its final phase, the
  next C_DigestUpdate gets CKR_OPERATION_ACTIVE (never CKR_GENERAL_ERROR from a finalized context),
  which ends it; the same call again collects the held digest.
- The 3.x session calls: C_SessionCancel(CKF_DIGEST) then a new digest, multi-part
  C_VerifySignatureInit/Update/Final, C_GetSessionValidationFlags.
- Message-based AES-GCM: the calls that take the message parameter refuse a NULL one.
- The stateful property test: every operation kind against the model, derandomized and bounded here
  (SOFTSHIELD_OPSTATE_STEPS steps per kind, default 200); `make fuzz` runs 2,000 per kind at random.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relenv import HERE, child_env
from pkcs11_shim.constants import CKR

STEPS = int(os.environ.get("SOFTSHIELD_OPSTATE_STEPS", "200"))
OK, ACTIVE, NOT_INIT, TOO_SMALL = CKR.OK, CKR.OPERATION_ACTIVE, CKR.OPERATION_NOT_INITIALIZED, CKR.BUFFER_TOO_SMALL


def _child(kmdata: Path, *args: str, timeout: float = 300) -> dict:
    result = subprocess.run([sys.executable, str(HERE / "opstate_machine.py"), *args, "--kmdata", str(kmdata)],
                            capture_output=True, text=True, env=child_env(kmdata), timeout=timeout)
    assert result.returncode == 0, f"opstate_machine {args} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> dict:
    kmdata = tmp_path_factory.mktemp("opstate") / "kmdata"
    kmdata.mkdir(mode=0o700)
    return _child(kmdata, "sequences")


@pytest.mark.parametrize("name, codes", [
    # C_DigestInit, C_DigestUpdate, C_DigestFinal(NULL) -> 0, C_DigestUpdate -> OPERATION_ACTIVE (ends it),
    # C_DigestUpdate -> OPERATION_NOT_INITIALIZED
    ("final_length_query", [OK, OK, OK, ACTIVE, NOT_INIT]),
    ("final_short_buffer", [OK, OK, TOO_SMALL, ACTIVE, NOT_INIT]),
    ("digest_length_query", [OK, OK, ACTIVE, NOT_INIT]),
    ("digest_short_buffer", [OK, TOO_SMALL, ACTIVE, NOT_INIT]),
])
def test_a_digest_in_its_final_phase_refuses_an_update(sequences: dict, name: str, codes: list[int]) -> None:
    assert sequences[name] == codes


@pytest.mark.parametrize("name, codes", [
    ("final_length_query_then_collect", [OK, OK, OK, OK, 1]),
    ("final_short_buffer_then_collect", [OK, OK, TOO_SMALL, OK, 1]),
    ("digest_length_query_then_collect", [OK, OK, OK, 1]),
    ("digest_short_buffer_then_collect", [OK, TOO_SMALL, OK, 1]),
])
def test_the_same_call_collects_the_held_digest(sequences: dict, name: str, codes: list[int]) -> None:
    """The last 1: the bytes delivered are SHA-256(b"abc"), computed once."""
    assert sequences[name] == codes


def test_a_cancelled_digest_can_be_started_again(sequences: dict) -> None:
    # Init, Update, C_SessionCancel(CKF_DIGEST), Init, Final
    assert sequences["cancel_digest"] == [OK, OK, OK, OK, OK]


def test_multi_part_verify_signature(sequences: dict) -> None:
    assert sequences["verify_signature_multipart"] == [
        OK, OK, OK, OK,  # Init(sig over "hello world"), Update("hello "), Update("world"), Final
        OK, OK, CKR.SIGNATURE_INVALID, NOT_INIT,  # Update("hello") only: invalid, and the operation ended
        OK, OK]  # Init, C_VerifySignature("hello world")


def test_session_validation_flags(sequences: dict) -> None:
    # CKS_LAST_VALIDATION_OK -> OK with flags 0; an unknown type and a NULL pFlags are bad arguments
    assert sequences["session_validation_flags"] == [OK, 0, CKR.ARGUMENTS_BAD, CKR.ARGUMENTS_BAD]


def test_message_calls_refuse_a_null_parameter(sequences: dict) -> None:
    invalid = CKR.MECHANISM_PARAM_INVALID
    one_side = [CKR.ARGUMENTS_BAD,  # C_Message*Init(NULL mechanism)
                OK,  # C_Message*Init(CKM_AES_GCM, no parameter): each message brings its own (3.0)
                invalid,  # C_{En,De}cryptMessage with a NULL message parameter
                invalid,  # C_*MessageBegin with a NULL one
                OK,  # C_*MessageBegin with a CK_GCM_MESSAGE_PARAMS
                invalid,  # C_*MessageNext with a NULL one: refused, and the message begun ends
                NOT_INIT,  # so the last part finds no message
                OK]  # C_Message*Final
    assert sequences["message_null_parameter"] == one_side + one_side


def test_session_cancel_ends_a_message_based_operation(sequences: dict) -> None:
    # Init, C_SessionCancel(CKF_MESSAGE_ENCRYPT), Init again, Final, Final
    assert sequences["cancel_message"] == [OK, OK, OK, OK, NOT_INIT]


def test_no_state_is_saved_while_a_digest_result_is_held(sequences: dict) -> None:
    # Init, Update, C_GetOperationState(NULL), C_DigestFinal(NULL), C_GetOperationState(NULL), C_DigestFinal
    assert sequences["state_while_held"] == [OK, OK, OK, OK, CKR.STATE_UNSAVEABLE, OK]


def test_an_empty_update_output_is_neither_fed_twice_nor_held(sequences: dict) -> None:
    assert sequences["empty_update_output"] == [
        OK,  # C_EncryptInit(CKM_AES_ECB)
        OK, 0, OK,  # C_EncryptUpdate(5 bytes, NULL) -> 0 bytes; the same call with a buffer
        OK, 1,  # C_EncryptUpdate(11 bytes) -> ECB(16 bytes): the first 5 were fed once
        OK, 0,  # C_EncryptUpdate(5 bytes, NULL) -> 0 bytes, and no second call
        OK, 1,  # C_EncryptUpdate(11 bytes) is not refused, and the 5 bytes count once
        OK]  # C_EncryptFinal


def test_every_operation_kind_holds_to_the_model(kmdata: Path) -> None:
    report = _child(kmdata, "run", "--kind", "all", "--steps", str(STEPS), "--derandomize")
    kinds = ("digest", "encrypt", "decrypt", "sign", "verify", "sign_recover", "verify_recover", "verify_signature",
             "dual", "message_encrypt", "message_decrypt", "message_sign", "message_verify", "find")
    assert set(report["focused"]) == set(kinds), report
    assert all(report["focused"][kind] >= STEPS // 2 for kind in kinds), report
