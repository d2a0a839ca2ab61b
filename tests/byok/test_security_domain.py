"""World backup with a quorum (security domain, Managed HSM's shape): export to N certificates with
quorum K, restore with any K private keys into an empty kmdata; K-1 keys or a wrong key fail."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from byokenv import holder_certificate
from emulator import paths
from emulator.module import Module


ALTERED = ("the security domain file was altered (an item removed, added, duplicated, reordered or edited, or a "
           "header field changed): nothing restored")


@pytest.fixture(scope="module")
def holders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("holders")
    return [holder_certificate(folder, i) for i in range(4)]  # 3 holders, and a stranger


@pytest.fixture(scope="module")
def sd(flow, holders):
    out = flow.env.work / "sd.json"
    r = flow.env.run(flow.source, "security-domain", "export", "--certificates", *(str(c) for c, _k in holders[:3]),
                     "--quorum", "2", "--out", str(out), extra={"SOFTSHIELD_PROGRESS": "1"})
    return out, r


def _key_hashes(kmdata):
    module = Module.open(kmdata)
    return {p.name: module.load_key_file(p).key_hash for p in sorted((kmdata / "local").glob(paths.KEY_PREFIX + "*"))}


def test_export_holds_shares_for_each_certificate_and_shows_progress(flow, sd):
    path, r = sd
    doc = json.loads(path.read_text())
    assert doc["SharedKeys"]["required"] == 2 and len(doc["SharedKeys"]["enc_shares"]) == 3
    assert {e["alg"] for e in doc["SharedKeys"]["enc_shares"]} == {"RSA-OAEP-256"}
    tags = {item["tag"] for item in doc["EncData"]["data"]}
    assert "world" in tags and "key_simple_contosokey" in tags
    steps = 3 + len(tags)
    assert f"security-domain export: {steps}/{steps} items (100%)" in r.stderr
    assert r.stdout.splitlines()[-1] == "Result: SUCCESS"
    # Nothing of the world is readable in the file: every item is sealed.
    world = (flow.source / "local" / "world").read_bytes()
    assert world[:64].hex() not in path.read_text()


@pytest.mark.parametrize("pair", [(0, 2), (1, 2), (0, 1)])
def test_any_quorum_restores_a_world_where_every_key_loads(flow, sd, holders, tmp_path, pair):
    restored = tmp_path / "restored"
    r = flow.env.run(restored, "security-domain", "restore", "--in", str(sd[0]),
                     "--keys", *(str(holders[i][1]) for i in pair))
    assert r.stdout.splitlines()[-1] == "Result: SUCCESS"
    assert _key_hashes(restored) == _key_hashes(flow.source)
    assert Module.open(restored).world.hknso == Module.open(flow.source).world.hknso


def test_restored_key_signs_under_the_original_public_key(flow, sd, holders, tmp_path):
    restored = tmp_path / "restored"
    flow.env.run(restored, "security-domain", "restore", "--in", str(sd[0]), "--keys", str(holders[2][1]),
                 str(holders[0][1]))
    (flow.env.work / "sd-msg").write_bytes(b"after the disaster")
    flow.env.run(restored, "sign", "--key", "pkcs11:token=loadshared%20accelerator;object=contosokey;type=private",
                 "--in", "sd-msg", "--out", "sd-msg.sig", "--mechanism", "SHA256_RSA_PKCS")
    serialization.load_pem_public_key(flow.source_public).verify(
        (flow.env.work / "sd-msg.sig").read_bytes(), b"after the disaster", padding.PKCS1v15(), hashes.SHA256())


def test_fewer_keys_than_the_quorum_fail(flow, sd, holders, tmp_path):
    r = flow.env.run(tmp_path / "k1", "security-domain", "restore", "--in", str(sd[0]), "--keys", str(holders[1][1]),
                     check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("softshield security-domain: the security domain needs 2 of its 3 keys (quorum); "
                                "1 distinct key(s) given")
    assert not (tmp_path / "k1" / "local" / "world").exists()


def test_the_same_key_twice_is_not_a_quorum(flow, sd, holders, tmp_path):
    r = flow.env.run(tmp_path / "twice", "security-domain", "restore", "--in", str(sd[0]),
                     "--keys", str(holders[0][1]), str(holders[0][1]), check=False)
    assert r.returncode == 1 and "needs 2 of its 3 keys (quorum); 1 distinct key(s) given" in r.stderr


def test_a_wrong_key_fails(flow, sd, holders, tmp_path):
    r = flow.env.run(tmp_path / "wrong", "security-domain", "restore", "--in", str(sd[0]),
                     "--keys", str(holders[0][1]), str(holders[3][1]), check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"softshield security-domain: {holders[3][1]}: matches none of the security "
                                "domain's certificates (wrong key)")


def test_an_edited_item_fails(flow, sd, holders, tmp_path):
    doc = json.loads(sd[0].read_text())
    item = next(i for i in doc["EncData"]["data"] if i["tag"] == "world")
    item["tag"] = "world-renamed"  # sealed with its name as associated data: a rename is an edit
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    r = flow.env.run(tmp_path / "edited", "security-domain", "restore", "--in", str(tmp_path / "edited.json"),
                     "--keys", str(holders[0][1]), str(holders[1][1]), check=False)
    assert r.returncode == 1
    assert r.stderr == f"softshield security-domain: {ALTERED}\n"


def test_restore_into_a_kmdata_with_a_world_is_refused(flow, sd, holders):
    r = flow.env.run(flow.target, "security-domain", "restore", "--in", str(sd[0]),
                     "--keys", str(holders[0][1]), str(holders[1][1]), check=False)
    assert r.returncode == 1 and "restore needs an empty kmdata" in r.stderr


@pytest.mark.parametrize("count, quorum, message", [
    (2, 2, "The number of wrapping keys 2 should be in range [3, 10]."),
    (3, 1, "The quorum of security domain 1 should be in range [2, 3]."),
    (3, 4, "The quorum of security domain 4 should be in range [2, 3]."),
])
def test_export_limits(flow, holders, count, quorum, message):
    r = flow.env.run(flow.source, "security-domain", "export", "--certificates",
                     *(str(c) for c, _k in holders[:count]), "--quorum", str(quorum), "--out", "x.json", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == f"softshield security-domain: {message}"


# --- the Azure CLI's spelling, and encrypted holder keys -------------------------------------------
def test_azure_cli_flags_and_password_protected_keys(flow, holders, tmp_path):
    """az keyvault security-domain download / upload spell the options so; --passwords opens
    encrypted PEM keys, in the order of --sd-wrapping-keys."""
    out = tmp_path / "ContosoMHSM-SD.json"
    r = flow.env.run(flow.source, "security-domain", "export", "--sd-wrapping-keys", *(str(c) for c, _k in holders[:3]),
                     "--sd-quorum", "2", "--security-domain-file", str(out))
    assert r.stdout.splitlines()[-1] == "Result: SUCCESS" and json.loads(out.read_text())["SharedKeys"]["required"] == 2
    encrypted = []
    for index in (0, 2):
        key = serialization.load_pem_private_key(holders[index][1].read_bytes(), None)
        path = tmp_path / f"cert_{index}.enc.key"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(f"pw-{index}".encode())))
        encrypted.append(str(path))
    restored = tmp_path / "restored"
    missing = flow.env.run(restored, "security-domain", "restore", "--sd-file", str(out), "--sd-wrapping-keys",
                           *encrypted, check=False)
    assert (missing.returncode, missing.stderr) == (1, f"softshield security-domain: {encrypted[0]}: an encrypted PEM "
                                                       "private key: give its password (--passwords)\n")
    wrong = flow.env.run(restored, "security-domain", "restore", "--sd-file", str(out), "--sd-wrapping-keys",
                         *encrypted, "--passwords", "pw-0", "pw-9", check=False)
    assert (wrong.returncode, wrong.stderr) == (1, f"softshield security-domain: {encrypted[1]}: the password does not "
                                                   "open this key\n")
    assert not restored.exists()
    ok = flow.env.run(restored, "security-domain", "restore", "--sd-file", str(out), "--sd-wrapping-keys", *encrypted,
                      "--passwords", "pw-0", "pw-2")
    assert ok.stdout.splitlines()[-1] == "Result: SUCCESS"
    assert _key_hashes(restored) == _key_hashes(flow.source)


# --- every tampering refuses the whole restore ------------------------------------------------------
def _items(doc):
    return doc["EncData"]["data"]


def _remove_key_item(doc):
    _items(doc).remove(next(i for i in _items(doc) if i["tag"] == "key_simple_contosokey"))


def _add_item(doc):
    extra = dict(next(i for i in _items(doc) if i["tag"] == "key_simple_contosokey"))
    extra["tag"] = "key_simple_contosokey2"
    _items(doc).append(extra)


def _duplicate_item(doc):
    _items(doc).append(dict(_items(doc)[-1]))


def _reorder_items(doc):
    _items(doc)[0], _items(doc)[1] = _items(doc)[1], _items(doc)[0]


def _edit_item(doc):
    item = _items(doc)[-1]
    raw = bytearray(base64.b64decode(item["sealed"]))
    raw[-1] ^= 1
    item["sealed"] = base64.b64encode(bytes(raw)).decode()


def _set(path, value):
    def edit(doc):
        target = doc
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value
    return edit


def _drop_mac(doc):
    del doc["mac"]


TAMPERINGS = {
    "remove an item": (_remove_key_item, ALTERED),
    "add an item": (_add_item, ALTERED),
    "duplicate an item": (_duplicate_item, ALTERED),
    "reorder items": (_reorder_items, ALTERED),
    "edit an item": (_edit_item, ALTERED),
    "edit world hknso": (_set(["world", "hknso"], "0" * 40), ALTERED),
    "edit cipher suite": (_set(["world", "cipher_suite"], "DLf1024s160mRijndael"), ALTERED),
    "edit EncData alg": (_set(["EncData", "alg"], "A128GCM"), ALTERED),
    "edit EncData kdf": (_set(["EncData", "kdf"], "none"), ALTERED),
    "edit emulated": (_set(["emulated"], "no"), ALTERED),
    "edit required": (_set(["SharedKeys", "required"], 3), ALTERED),
    "add a header field": (_set(["restore_to"], "elsewhere"), ALTERED),
    "drop the mac": (_drop_mac, "the security domain file has no valid authenticator (mac): nothing restored"),
    "edit the mac": (_set(["mac"], base64.b64encode(bytes(32)).decode()), ALTERED),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_security_domain_is_refused_and_nothing_written(flow, sd, holders, tmp_path, case):
    edit, message = TAMPERINGS[case]
    doc = json.loads(sd[0].read_text())
    edit(doc)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    target = tmp_path / "target"
    target.mkdir()
    (target / "marker").write_text("untouched")
    r = flow.env.run(target, "security-domain", "restore", "--sd-file", str(tampered),
                     "--sd-wrapping-keys", *(str(k) for _c, k in holders[:3]), check=False)
    assert (r.returncode, r.stderr, r.stdout) == (1, f"softshield security-domain: {message}\n", "")
    assert sorted(p.name for p in target.rglob("*")) == ["marker"]
