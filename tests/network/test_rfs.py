"""A hardserver as the RFS of its world: client hosts pull and commit kmdata with `softshield rfs-sync` over the
mutual-TLS channel; a stale commit is refused whole (one line, exit 1) and loses nothing, commits of
different files made at once both land, and a local change that met a newer RFS version is kept aside."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from netenv import ROOT, new_client, pkcs11_tool, softshield, start_server

from pkcs11_shim.hardserver import netconfig


@pytest.fixture(scope="module")
def rfs(workdir):
    server = start_server(workdir, "rfs", workers=2, rfs=True)
    yield server
    server.stop()


def _host(rfs, workdir, name: str, *options: str):
    host = new_client(workdir, rfs, name)
    host.enroll(*options)
    rfs.permit(host.key_hash, *options)
    host.run("rfs-sync", "--setup", rfs.address)
    return host


def _generate(kmdata, ident: str) -> None:
    softshield("generatekey", "--batch", "simple", "type=AES", "size=256", "protect=module", f"ident={ident}",
               f"plainname={ident}", env={**os.environ, "NFAST_KMDATA": str(kmdata), "SOFTSHIELD_MODE": "embedded"})


def _key(host, ident: str) -> bytes:
    """A new key blob of the RFS's world as a local change on `host`. rfs-sync never carries a module
    file (it holds the module key), so a client host has no module of its own here: the key is made
    by the RFS host's module on a copy of that host's world and module file (one copy per client host,
    out of band) and the blob is placed in the client's local/, as a host with a module would have
    written it."""
    maker = host.kmdata.parent / f"maker-{host.kmdata.name}"
    if not maker.exists():
        (maker / "local").mkdir(parents=True, mode=0o700)
        for source in (host.server.kmdata / "local").iterdir():
            if source.name == "world" or source.name.startswith("module_"):
                shutil.copy2(source, maker / "local" / source.name)
    _generate(maker, ident)
    blob = (maker / "local" / f"key_simple_{ident}").read_bytes()
    (host.kmdata / "local" / f"key_simple_{ident}").write_bytes(blob)
    return blob


def _rfs_file(rfs, name: str) -> bytes | None:
    path = rfs.kmdata / "local" / name
    return path.read_bytes() if path.exists() else None


def test_setup_update_and_commit(rfs, workdir):
    host = new_client(workdir, rfs, "alpha")
    host.enroll()
    rfs.permit(host.key_hash)
    esn, _kneti = rfs.identity()
    setup = host.run("rfs-sync", "--setup", rfs.address).stdout
    assert re.fullmatch(rf"RFS {re.escape(rfs.address)} \(module {esn}, world [0-9a-f]{{40}}\): 1 file\(s\); "
                        r"rfs-sync --update pulls them\n", setup)
    assert netconfig.read(host.kmdata / "config" / "config").entries("rfs_sync_client") == [
        {"remote_ip": "127.0.0.1", "remote_port": str(rfs.port), "remote_esn": esn, "use_kneti": "yes"}]
    assert host.run("rfs-sync", "--update").stdout == \
        "rfs-sync: 1 file(s) updated, 0 deleted, 0 local change(s) to commit\n"
    assert (host.kmdata / "local" / "world").read_bytes() == _rfs_file(rfs, "world")
    assert host.run("rfs-sync", "--commit").stdout == "rfs-sync: nothing to commit\n"

    mine = _key(host, "fromalpha")
    assert host.run("rfs-sync", "--commit").stdout == "rfs-sync: committed 1 file(s): key_simple_fromalpha\n"
    assert _rfs_file(rfs, "key_simple_fromalpha") == mine
    assert not [p for p in (rfs.kmdata / "local").iterdir() if p.name.startswith(".tmp-")]
    rfs.wait_for_log(rf"INFO rfs commit from 127\.0\.0\.1 \(client key {host.key_hash}\): key_simple_fromalpha$")
    # The running module serves the committed key to the same client over TLS.
    assert "label:      fromalpha" in pkcs11_tool(host, "--slot-index", "0", "-O").stdout.decode()
    # Another host pulls it.
    other = _host(rfs, workdir, "beta")
    other.run("rfs-sync", "--update")
    assert (other.kmdata / "local" / "key_simple_fromalpha").read_bytes() == mine


def test_a_stale_commit_is_refused_whole_and_nothing_is_lost(rfs, workdir):
    first, second = _host(rfs, workdir, "first"), _host(rfs, workdir, "second")
    for host in (first, second):
        host.run("rfs-sync", "--update")
    theirs = _key(first, "shared")
    mine = _key(second, "shared")
    only_mine = _key(second, "secondonly")
    assert theirs != mine
    assert first.run("rfs-sync", "--commit").returncode == 0

    stale = second.run("rfs-sync", "--commit", check=False)
    assert stale.returncode == 1 and stale.stdout == ""
    assert stale.stderr == ("softshield rfs-sync: stale commit: key_simple_shared changed on the RFS since your last "
                            "update (run rfs-sync --update, then commit again); nothing was written\n")
    assert _rfs_file(rfs, "key_simple_shared") == theirs  # the first commit stands
    assert _rfs_file(rfs, "key_simple_secondonly") is None  # all or nothing
    rfs.wait_for_log(rf"WARNING refused a commit from 127\.0\.0\.1 \(client key {second.key_hash}\): stale commit: "
                     r"key_simple_shared changed on the RFS")

    update = second.run("rfs-sync", "--update").stdout.splitlines()
    kept = second.kmdata / "config" / "rfs-conflicts"
    [saved] = list(kept.iterdir())
    assert update == [f"changed here and on the RFS: took the RFS's version; yours is kept as {saved}",
                      "rfs-sync: 1 file(s) updated, 0 deleted, 1 local change(s) to commit"]
    assert saved.read_bytes() == mine and saved.name.startswith("key_simple_shared.")
    assert (second.kmdata / "local" / "key_simple_shared").read_bytes() == theirs
    assert second.run("rfs-sync", "--commit").stdout == "rfs-sync: committed 1 file(s): key_simple_secondonly\n"
    assert _rfs_file(rfs, "key_simple_secondonly") == only_mine
    assert _rfs_file(rfs, "key_simple_shared") == theirs


def test_commits_of_different_files_made_at_once_both_land(rfs, workdir):
    hosts = [_host(rfs, workdir, "left"), _host(rfs, workdir, "right")]
    for round_ in range(3):
        for host in hosts:
            host.run("rfs-sync", "--update")
        made = {f"key_simple_r{round_}h{i}": _key(host, f"r{round_}h{i}") for i, host in enumerate(hosts)}
        procs = [subprocess.Popen([sys.executable, "-m", "softshield_cli.main", "rfs-sync", "--commit"], cwd=ROOT,
                                  env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for host in hosts]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        for name, data in made.items():
            assert _rfs_file(rfs, name) == data
    hosts[0].run("rfs-sync", "--update")
    for round_ in range(3):
        assert (hosts[0].kmdata / "local" / f"key_simple_r{round_}h1").is_file()


def test_committing_world_files_needs_a_privileged_client(rfs, workdir):
    host = _host(rfs, workdir, "unprivileged")
    host.run("rfs-sync", "--update")
    cards = "cards_" + "ab" * 20
    (host.kmdata / "local" / cards).write_bytes(b"a card set of our own")
    refused = host.run("rfs-sync", "--commit", check=False)
    assert refused.returncode == 1
    assert refused.stderr == (f"softshield rfs-sync: committing {cards} is world administration: it needs "
                              "a privileged client (clientperm=priv)\n")
    assert _rfs_file(rfs, cards) is None


def test_an_update_into_another_world_is_refused(rfs, workdir):
    host = _host(rfs, workdir, "elsewhere")
    _generate(host.kmdata, "ownworld")  # the first use makes a world of its own
    refused = host.run("rfs-sync", "--update", check=False)
    assert refused.returncode == 1
    assert re.fullmatch(rf"softshield rfs-sync: {re.escape(str(host.kmdata))} holds world [0-9a-f]{{40}}, the RFS "
                        r"world [0-9a-f]{40}: refused \(sync into an empty kmdata, or one of the same world\)\n",
                        refused.stderr)
