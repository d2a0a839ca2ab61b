"""python-pkcs11's own test suite against our .so, and against SoftHSM2 on the same machine.

Every upstream test that passes against SoftHSM2 must pass against us, except the ones listed in
EXPECTED_DIFFERENCES with the reason, in each of our two runs (normal slot layout, and the library
named libsofthsm2.so with SoftHSM2's layout) counted on its own: a failure in either fails. The suite comes from the python-pkcs11 release we depend on
(scripts/fetch_upstream_tests.sh puts it in build/upstream/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

from p11env import ROOT, SO, SO_PIN, USER_PIN, init_token

SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")
UPSTREAM = ROOT / "build" / "upstream" / f"python-pkcs11-{metadata.version('python-pkcs11')}"

#: Upstream tests that pass on SoftHSM2 but not here, each with the reason.
EXPECTED_DIFFERENCES: dict[str, str] = {
    "tests.test_dsa.DSATests.test_generate_keypair_and_sign": "DSA is not offered (see docs/compatibility.md)",
    "tests.test_dsa.DSATests.test_generate_keypair_directly": "DSA is not offered (see docs/compatibility.md)",
    "tests.test_dsa.DSATests.test_generate_params": "DSA is not offered (see docs/compatibility.md)",
    "tests.test_x509.X509Tests.test_verify_certificate_dsa": "DSA is not offered (see docs/compatibility.md)",
    "tests.test_dh.DHTests.test_derive_key": "finite-field DH is not offered (see docs/compatibility.md)",
    "tests.test_dh.DHTests.test_generate_params": "finite-field DH is not offered (see docs/compatibility.md)",
    "tests.test_ecc.ECCTests.test_import_key_params": "explicit EC domain parameters are refused "
    "(CKR_DOMAIN_PARAMS_INVALID): named curves only, as nShield",
    "tests.test_des.DESTests.test_encrypt_des2": "two-key DES (CKK_DES2) is not offered (see docs/compatibility.md)",
    "tests.test_des.DESTests.test_generate_des2_key": "two-key DES (CKK_DES2) is not offered (see docs/compatibility.md)",
}

#: Upstream tests SoftHSM2 does not pass either (it skips them) that fail here, each with the reason.
KNOWN_FAILURES: dict[str, str] = {
    "tests.test_ml_kem.MLKEMTests.test_generate_ml_kem_512": "ML-KEM-512 is not offered: `cryptography` "
    "lacks it (CKR_PARAMETER_SET_NOT_SUPPORTED, see docs/compatibility.md)",
}


def run_suite(module: Path, label: str, out: Path, env_extra: dict[str, str],
              python: str | Path = sys.executable) -> dict[str, str]:
    """Run the upstream tests with pytest under `python`; returns test id -> outcome."""
    work = Path(tempfile.mkdtemp(prefix="upstream-"))
    shutil.copytree(UPSTREAM / "tests", work / "tests")
    env = {
        **os.environ,
        "PKCS11_MODULE": str(module),
        "PKCS11_TOKEN_LABEL": label,
        "PKCS11_TOKEN_PIN": USER_PIN,
        "PKCS11_TOKEN_SO_PIN": SO_PIN,
        **env_extra,
    }
    subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
         f"--junitxml={out}", "tests"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1500,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(out).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[name] = (
            "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        )
    return outcomes


def softhsm_token(tmp: Path) -> dict[str, str]:
    tokens = tmp / "tokens"
    tokens.mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "upstream",
                    "--so-pin", SO_PIN, "--pin", USER_PIN], check=True, capture_output=True,
                   env={**os.environ, **env})
    return env


@pytest.mark.skipif(not UPSTREAM.exists(), reason="run scripts/fetch_upstream_tests.sh")
def test_upstream_suite_matches_softhsm(tmp_path: Path) -> None:
    assert SOFTHSM.exists(), "Debian package softhsm2 is required (scripts/setup.sh installs it)"
    ours = run_suite(SO, init_token("upstream"), tmp_path / "ours.xml", {})
    # Upstream runs its @Only.softhsm2 tests only when the file is called libsofthsm2.so; they
    # check SoftHSM2's slot layout (one token and one spare slot), which is ours with the
    # accelerator slot hidden (CKNFAST_NO_ACCELERATOR_SLOTS, as on nShield). Run them too.
    profile = tmp_path / "softhsm-profile"
    profile.mkdir()
    (profile / "libsofthsm2.so").symlink_to(SO)
    profile_env = {"NFAST_KMDATA": str(tmp_path / "profile-kmdata"), "CKNFAST_NO_ACCELERATOR_SLOTS": "1"}
    as_softhsm = run_suite(profile / "libsofthsm2.so", init_token("upstream", env=profile_env),
                           tmp_path / "profile.xml", profile_env)
    softhsm_env = softhsm_token(tmp_path)
    theirs = run_suite(SOFTHSM, "upstream", tmp_path / "softhsm.xml", softhsm_env)
    print(f"upstream python-pkcs11 suite: softhsm2 {_counts(theirs)}, normal layout {_counts(ours)}, "
          f"SoftHSM-named {_counts(as_softhsm)}")
    assert _counts(theirs)["passed"] > 50, f"SoftHSM2 run did not work: {theirs}"
    for name, run in (("normal layout", ours), ("SoftHSM-named", as_softhsm)):
        assert _counts(run)["passed"] > 50, f"{name} run did not work: {_counts(run)}"
    problems = judge(ours, as_softhsm, theirs)
    assert not problems, "\n".join(problems)


def _counts(run: dict[str, str]) -> dict[str, int]:
    return {o: sum(1 for v in run.values() if v == o) for o in ("passed", "failed", "skipped")}


def judge(ours: dict[str, str], as_softhsm: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """What is wrong with our two runs, each judged on its own (a pass in one never hides a failure
    in the other): a test that fails here but not on SoftHSM2, or that SoftHSM2 passes and a run does
    not, unless EXPECTED_DIFFERENCES lists it. The normal layout may skip only the @Only.softhsm2
    tests, which the SoftHSM-named run must then pass."""
    passed_there = {t for t, o in theirs.items() if o == "passed"}
    failed_there = {t for t, o in theirs.items() if o == "failed"}
    problems = []
    for name, run, excused_skips in (
        ("normal layout", ours, {t for t, o in as_softhsm.items() if o == "passed"}),
        ("SoftHSM-named", as_softhsm, set()),
    ):
        for test in sorted(set(run) | passed_there):
            outcome = run.get(test, "absent")
            if test in EXPECTED_DIFFERENCES or test in KNOWN_FAILURES or outcome == "passed":
                continue
            if outcome == "failed" and test not in failed_there:
                problems.append(f"{name}: {test} failed")
            elif test in passed_there and not (outcome == "skipped" and test in excused_skips):
                problems.append(f"{name}: {test} {outcome}, passes on SoftHSM2")
    return problems


def test_each_run_is_judged_on_its_own() -> None:
    theirs = {"t.A.ok": "passed", "t.A.only_softhsm": "passed", "t.A.flaky": "passed", "t.A.both": "failed"}
    fine = {"t.A.ok": "passed", "t.A.only_softhsm": "skipped", "t.A.flaky": "passed", "t.A.both": "failed"}
    named = {"t.A.ok": "passed", "t.A.only_softhsm": "passed", "t.A.flaky": "passed", "t.A.both": "failed"}
    assert judge(fine, named, theirs) == []
    # A failure in the normal layout stays one when the SoftHSM-named run passes the test, and back.
    assert judge({**fine, "t.A.flaky": "failed"}, named, theirs) == ["normal layout: t.A.flaky failed"]
    assert judge(fine, {**named, "t.A.flaky": "failed"}, theirs) == ["SoftHSM-named: t.A.flaky failed"]
    # The normal layout's skip is excused only by a pass in the SoftHSM-named run.
    assert judge(fine, {**named, "t.A.only_softhsm": "skipped"}, theirs) == [
        "normal layout: t.A.only_softhsm skipped, passes on SoftHSM2",
        "SoftHSM-named: t.A.only_softhsm skipped, passes on SoftHSM2"]
    # A failure of ours in a test SoftHSM2 does not run is still a failure.
    assert judge({**fine, "t.B.ours": "failed"}, named, theirs) == ["normal layout: t.B.ours failed"]
