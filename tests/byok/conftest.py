"""The seed workflow (byok-nshield-legacy.md, nshield-workflow.md §4) run once across two worlds:
the target "cloud" world makes its KEKs and packages, the source world (ACS 2/3) generates keys,
reduces their ACLs with the ACS quorum, packages them, and the target imports one."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from byokenv import SO, Env, public_pem, rsa_pem  # noqa: E402


@dataclass
class Flow:
    env: Env
    source: Path  # kmdata of the source world (ACS 2/3)
    target: Path  # kmdata of the target ("cloud") world
    packages: Path
    kek_pem: bytes  # private key of the TEST KEK, which the test imported itself
    outputs: dict[str, str]
    source_public: bytes  # contosokey's public key, read from the source world at generation

    def pkg(self, region: str) -> tuple[str, str]:
        return (str(self.packages / f"BYOK-KEK-pkg-{region}-1"), str(self.packages / f"BYOK-SecurityWorld-pkg-{region}-1"))

    def transfer_args(self, region: str) -> list[str]:
        kek, world = self.pkg(region)
        return ["-ExchangeKeyPackage", kek, "-NewSecurityWorldPackage", world]


@pytest.fixture(scope="session")
def flow(tmp_path_factory) -> Flow:
    assert SO.exists(), "build the library first: make"
    base = tmp_path_factory.mktemp("byok")
    env = Env(base / "vendor-root", base / "work")
    env.work.mkdir()
    source, target, packages = base / "source", base / "target", base / "packages"
    _key, kek_pem = rsa_pem()
    (env.work / "kek.pem").write_bytes(kek_pem)
    out: dict[str, str] = {}
    out["export-EU"] = env.run(target, "byok", "export-kek", "--name", "EU", "--out-dir", str(packages)).stdout
    out["export-TEST"] = env.run(target, "byok", "export-kek", "--name", "TEST", "--import-key", "kek.pem",
                                 "--out-dir", str(packages)).stdout
    env.run(source, "new-world", "--initialize", "-Q", "2/3", "--pin-file", env.pin_file("pins-3", [1, 2, 3]))
    for ident in ("contosokey", "fmtkey", "plainkey"):
        env.run(source, "generatekey", "--batch", "simple", "type=RSA", "size=2048", "protect=module",
                f"ident={ident}", f"plainname={ident}", "nvram=no")
    for ident, spec in (("aeskey", ["type=AES", "size=256"]), ("eckey", ["type=ECDSA", "curve=NISTP256"])):
        env.run(source, "generatekey", "--batch", "simple", *spec, "protect=module", f"ident={ident}",
                f"plainname={ident}")
    source_public = public_pem(env, source, "contosokey")
    flow = Flow(env, source, target, packages, kek_pem, out, source_public)
    quorum = env.pin_file("pins-1-3", [1, 3])
    out["modify"] = env.run(source, "keytransfer", "-ModifyAcls", "-KeyAppName", "simple", "-KeyIdentifier",
                            "contosokey", *flow.transfer_args("EU"), "--pin-file", quorum).stdout
    env.run(source, "keytransfer", "-ModifyAcls", "-KeyAppName", "simple", "-KeyIdentifier", "fmtkey",
            *flow.transfer_args("TEST"), "--pin-file", env.pin_file("pins-2-3", [3, 2]))
    out["package"] = env.run(source, "keytransfer", "-Package", "-KeyIdentifier", "contosokey",
                             *flow.transfer_args("EU"), "-SubscriptionId", "sub-1", "-KeyFriendlyName",
                             "Contoso", "-InternalPackage").stdout
    for name, oaep in (("Fmt1", []), ("Fmt256", ["-OaepHash", "SHA-256"])):
        env.run(source, "keytransfer", "-Package", "-KeyIdentifier", "fmtkey", *flow.transfer_args("TEST"),
                "-SubscriptionId", "sub-1", "-KeyFriendlyName", name, *oaep)
    for ident, name in (("aeskey", "Aes"), ("eckey", "Ec")):
        env.run(source, "keytransfer", "-ModifyAcls", "-KeyIdentifier", ident, *flow.transfer_args("EU"),
                "--pin-file", quorum)
        env.run(source, "keytransfer", "-Package", "-KeyIdentifier", ident, *flow.transfer_args("EU"),
                "-SubscriptionId", "sub-1", "-KeyFriendlyName", name)
    out["import"] = env.run(target, "byok", "import", "--file", "TransferPackage-Contoso.byok",
                            "--name", "contoso").stdout
    return flow
