"""The softshield CLI as a native tool: grouped --help, completion, listings with --json and URIs,
sign by URI, doctor, and the config file's mechanism profile enforced by the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from ecoenv import ROOT, USER_PIN, pkcs11_tool, run, softshield


def test_help_groups_commands_and_documents_exit_codes():
    out = softshield("--help").stdout
    for heading in ("PKCS#11 tokens and objects:", "installation and configuration:", "keys:", "exit codes:"):
        assert heading in out
    tokens_block = out.split("PKCS#11 tokens and objects:")[1].split("\n\n")[0]
    assert "list-objects" in tokens_block and "list-tokens" in tokens_block
    assert "  2   bad command line" in out
    assert softshield("no-such-command", check=False).returncode == 2


def test_closed_output_pipe_ends_quietly_with_141():
    # `softshield ... | head`: the reader has gone before the tool writes; no traceback, exit 128+SIGPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "softshield_cli.main", "completion", "bash"], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert "Traceback" not in result.stderr and result.stderr == ""


def test_bash_completion_is_generated_from_the_registry(tmp_path: Path):
    script = softshield("completion", "bash").stdout
    (tmp_path / "c.sh").write_text(script)
    # Source it in bash and ask for completions as bash would.
    probe = ("source c.sh; COMP_WORDS=(softshield list-); COMP_CWORD=1; _softshield; echo ${COMPREPLY[@]};"
             "COMP_WORDS=(softshield sign --i); COMP_CWORD=2; _softshield; echo ${COMPREPLY[@]}")
    out = run("bash", "-c", probe, cwd=tmp_path).stdout.splitlines()
    assert out[0].split() == ["list-objects", "list-tokens"]
    assert out[1].split() == ["--in"]


def test_list_objects_json_filtered_by_uri_and_sign_by_uri(rsa_key: str, token_label: str, tmp_path: Path):
    rows = json.loads(softshield("list-objects", "--json", "--pin", USER_PIN,
                                 f"pkcs11:token={token_label};object=eco-rsa").stdout)
    assert sorted(r["type"] for r in rows) == ["private", "public"]
    private = next(r for r in rows if r["type"] == "private")
    assert private["id"] == "01" and private["key_type"] == "RSA"
    assert private["uri"].endswith(f"token={token_label};id=%01;object=eco-rsa;type=private")
    # Without a PIN only public objects are visible; the table has a header row.
    table = softshield("list-objects", f"pkcs11:token={token_label};object=eco-rsa").stdout.splitlines()
    assert table[0].split()[:3] == ["TOKEN", "TYPE", "LABEL"] and len(table) == 2 and " public " in table[1]

    data = tmp_path / "msg"
    data.write_bytes(b"signed by URI")
    sig = tmp_path / "msg.sig"
    softshield("sign", "--key", private["uri"] + f"?pin-value={USER_PIN}", "--in", str(data), "--out", str(sig))
    der = tmp_path / "pub.der"
    pkcs11_tool("--token-label", token_label, "--read-object", "--type", "pubkey", "--label", "eco-rsa",
                "-o", str(der))
    public = serialization.load_der_public_key(der.read_bytes())
    public.verify(sig.read_bytes(), b"signed by URI", padding.PKCS1v15(), hashes.SHA256())

    missing = softshield("sign", "--key", f"pkcs11:token={token_label};object=nope;type=private", "--pin", USER_PIN,
                         "--in", str(data), "--out", str(sig), check=False)
    assert missing.returncode == 1 and "no private key matches" in missing.stderr


def test_doctor_reports_each_check(tmp_path: Path):
    rows = json.loads(softshield("doctor", "--json").stdout)
    status = {r["check"]: r["status"] for r in rows}
    assert status["library file"] == "ok" and status["C host loads the library"] == "ok", rows
    bad = tmp_path / "bad.toml"
    bad.write_text("kmdata = [unclosed\n")
    broken = softshield("doctor", "--json", env={"SOFTSHIELD_CONFIG": str(bad)}, check=False)
    assert broken.returncode == 1
    row = next(r for r in json.loads(broken.stdout) if r["check"] == "config file")
    assert row["status"] == "FAIL" and "softshield config example" in row["fix"]


def test_config_file_mechanism_profile_is_enforced(tmp_path: Path, rsa_key: str, token_label: str):
    config = tmp_path / "config.toml"
    config.write_text('[slots]\nmechanisms = ["-CKM_RSA_X_509", "-CKM_SHA256_RSA_PKCS"]\n'
                      '[slots.0]\nmechanisms = ["CKM_RSA_PKCS", "CKM_SHA256", "CKM_RSA_X_509"]\n')
    env = {"SOFTSHIELD_CONFIG": str(config)}
    shown = json.loads(softshield("config", "--json", env=env).stdout)
    assert shown["mechanisms"] == {"all": ["-CKM_RSA_X_509", "-CKM_SHA256_RSA_PKCS"],
                                   "0": ["CKM_RSA_PKCS", "CKM_SHA256", "CKM_RSA_X_509"]}
    accel = pkcs11_tool("--slot", "0", "-M", env=env).stdout
    listed = [line.split(",")[0].strip() for line in accel.splitlines()[1:] if line.startswith("  ")]
    assert listed == ["RSA-PKCS", "SHA256"]  # slot 0: only what it allows, minus the global denials
    token_mechs = pkcs11_tool("--token-label", token_label, "-M", env=env).stdout
    assert "RSA-X-509" not in token_mechs and "SHA256-RSA-PKCS," not in token_mechs and "RSA-PKCS," in token_mechs
    # C_SignInit refuses the denied mechanism: CKR_MECHANISM_INVALID.
    data = tmp_path / "d"
    data.write_bytes(b"x")
    refused = pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--sign", "--mechanism",
                          "SHA256-RSA-PKCS", "--label", "eco-rsa", "-i", str(data), "-o", str(tmp_path / "s"),
                          check=False, env=env)
    assert refused.returncode != 0 and "CKR_MECHANISM_INVALID" in refused.stdout + refused.stderr
    pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--sign", "--mechanism",
                "SHA256-RSA-PKCS", "--label", "eco-rsa", "-i", str(data), "-o", str(tmp_path / "s"))
