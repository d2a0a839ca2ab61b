"""`KmStore.scan_and_names`: one directory read gives exactly what `scan(prefix)` and
`names(other, exclude)` give separately (a login lists a token's pkcs11 blobs and the other apps'
blobs of the same directory)."""

from __future__ import annotations

import os
from pathlib import Path

from emulator.kmdata import KmStore

TOKEN = "key_pkcs11_uc" + "ab" * 20 + "-"
FILES = [TOKEN + "k1", TOKEN + "k2", "key_pkcs11_ua-k3", "key_pkcs11_uc" + "cd" * 20 + "-k4",
         "key_simple_s1", "key_simple_s2", "key_xferacld_x1", "softcard_" + "ab" * 20, "world", ".tmp-key_simple_s9"]


def test_one_read_matches_two(tmp_path: Path) -> None:
    for name in FILES:
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "key_simple_dir").mkdir()  # a directory is not a key file
    os.symlink(tmp_path / "missing", tmp_path / "key_simple_dangling")  # neither is a dangling link
    store = KmStore(tmp_path)
    listing, named = store.scan_and_names(TOKEN, "key_", "key_pkcs11_")
    assert listing == store.scan(TOKEN)
    assert [name for name, _stamp in listing] == [TOKEN + "k1", TOKEN + "k2"]
    assert named == store.names("key_", exclude="key_pkcs11_")
    assert named == ["key_simple_s1", "key_simple_s2", "key_xferacld_x1"]


def test_missing_directory(tmp_path: Path) -> None:
    store = KmStore(tmp_path)
    store.local = tmp_path / "gone"
    assert store.scan_and_names(TOKEN, "key_", "key_pkcs11_") == ([], [])
