"""Security World administration: new-world (initialise, program, recover), the ACS, racs.

A world made here is the real thing: its administrative secrets are KM (the world key that seals
every module-protected blob) and KNSO's private key, both sealed under the ACS's logical token,
which exists only as K-of-N Shamir shares on the ACS cards (cards.py). Each enrolled module also
holds KM sealed under its own module key, so everyday use needs no cards, as on nShield where KM is
loaded into the module; adding a module (`--program`), re-initialising one (`--recover`) and
replacing the ACS (`racs`) need the ACS quorum. The default world `Module.open` makes on first use
has no ACS (nfkminfo says so).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paths, recovery, shamir
from .blobs import canonical_json
from .cards import Card, CardSetRef, Reader, new_set_hash, reader_dir
from .crypto import blobcrypt, suites
from .errors import BlobInvalid, EmulatorError, WorldStateError
from .kmdata import KmStore, VersionLedger, ensure_dir, read_with_stamp, remember_this_module
from .world import _KM_LABEL, ModuleFile, World, WorldFile, new_esn, open_world_key, utc_now, utc_now_ordered

#: The version ledger's MAC key label under KM (the one module.Module uses).
LEDGER_LABEL = b"softshield version ledger"

Say = Callable[[str], None]
Presented = Iterable[tuple[Path, bytes]]
ACS_NAME = "acs"


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True)
class Place:
    """The kmdata directory and its reader."""

    kmdata: Path
    store: KmStore
    reader: Reader

    @classmethod
    def of(cls, kmdata: str | Path | None = None) -> "Place":
        root = paths.resolve_kmdata(kmdata)
        ensure_dir(root)
        store = KmStore(paths.local_dir(root))
        ensure_dir(store.local)
        return cls(root, store, Reader(reader_dir(root), ledger=_enrolled_ledger(store)))

    def world_file(self) -> WorldFile | None:
        if not self.store.exists(paths.WORLD_FILE):
            return None
        return WorldFile.from_bytes(self.store.read(paths.WORLD_FILE))


def module_files(store: KmStore) -> list[ModuleFile]:
    """Module files in module-number order (#1 first: by creation time, then ESN)."""
    found = []
    for name in store.names(paths.MODULE_PREFIX):
        if paths.ESN_RE.match(name[len(paths.MODULE_PREFIX):]):
            found.append(ModuleFile.from_bytes(store.read(name), name))
    return sorted(found, key=lambda m: (m.created, m.esn))


def world_ledger(store: KmStore, world: World, km: bytes) -> VersionLedger:
    """The world's version ledger, the same one `Module` keeps (same file, same MAC key)."""
    return VersionLedger(store.local, blobcrypt.derive_subkey(km, LEDGER_LABEL), world.hknso)


def _enrolled_ledger(store: KmStore) -> VersionLedger | None:
    """The ledger through the first module of this host that opens KM; None if none can."""
    if not store.exists(paths.WORLD_FILE):
        return None
    try:
        world_file = WorldFile.from_bytes(store.read(paths.WORLD_FILE))
        modules = module_files(store)
    except (EmulatorError, OSError, ValueError):
        return None  # the commands that need the world say what is wrong with it
    for module in modules:
        if module.esn not in world_file.module_shares:
            continue
        try:
            return world_ledger(store, world_file.world, open_world_key(world_file, module))
        except EmulatorError:
            continue  # a damaged module file: another module, or the quorum's KM (open_acs)
    return None


def _check_presented_late(place: Place, world: World, km: bytes, presented: list[tuple[Path, bytes]]) -> None:
    """Without a ledger while reading (no module opened KM), the presented cards are checked now."""
    ledger = world_ledger(place.store, world, km)
    for path, _pin in presented:
        try:
            data, stamp = read_with_stamp(path)
        except FileNotFoundError:
            continue
        card = Card.from_bytes(data, path.name)
        _data, _stamp, stale = ledger.verdict(Reader._entry(card.set_hash, card.number), data,
                                              lambda: read_with_stamp(path), stamp)
        if stale:
            raise BlobInvalid(f"{path.name}: {card.label()} {stale}")
    # From here on the reader records and checks as usual (racs writes the new cards with it).
    place.reader.ledger = ledger


def _module_share(module: ModuleFile, world: World, km: bytes) -> bytes:
    from .world import _aad

    key = blobcrypt.derive_subkey(module.module_key, _KM_LABEL, module.esn.encode())
    return blobcrypt.seal(key, km, _aad(world, module.esn))


def _acs_public(acs: dict[str, Any]) -> dict[str, Any]:
    return {k: acs[k] for k in ("name", "hash", "k", "n", "lt_check", "hkm", "created")}


def _acs_aad(world: World, acs: dict[str, Any], what: str) -> bytes:
    return canonical_json(world.facts()) + b"\x00acs\x00" + what.encode() + b"\x00" + canonical_json(_acs_public(acs))


def _acs_of(world_file: WorldFile) -> dict:
    acs = world_file.acs
    if acs is None:
        raise WorldStateError("this world has no Administrator Card Set (it is the default world made on "
                              "first use): make a real one with `softshield new-world --initialize`")
    return acs


def _current_world(place: Place) -> WorldFile:
    """The world file as it is now (re-read under the writer lock): gone means another process removed
    the world after the quorum was read."""
    current = place.world_file()
    if current is None:
        raise WorldStateError(f"the world file in {place.store.local} was removed while the ACS was read")
    return current


def acs_ref(world_file: WorldFile) -> CardSetRef:
    acs = _acs_of(world_file)
    return CardSetRef("ACS", acs["name"], acs["hash"], int(acs["k"]), int(acs["n"]), world_file.world.hknso,
                      acs["lt_check"])


def parse_quorum(text: str) -> tuple[int, int]:
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise WorldStateError(f"quorum {text!r} is not K/N (for example 2/3)") from None
    if not 1 <= k <= n <= shamir.MAX_SHARES:
        raise WorldStateError(f"quorum {text}: K must be 1..N and N at most {shamir.MAX_SHARES}")
    return k, n


def _new_acs(world: World, km: bytes, knso_der: bytes, k: int, n: int, name: str) -> tuple[dict, bytes]:
    lt = shamir.new_secret()
    acs = {"name": name, "hash": new_set_hash(), "k": k, "n": n, "lt_check": blobcrypt.fingerprint(lt),
           "hkm": hashlib.sha1(b"softshield hkm\x00" + km).hexdigest(), "created": utc_now()}
    acs["km"] = base64.b64encode(blobcrypt.seal(blobcrypt.derive_subkey(lt, b"softshield acs km"), km,
                                                _acs_aad(world, acs, "km"))).decode()
    acs["knso"] = base64.b64encode(blobcrypt.seal(blobcrypt.derive_subkey(lt, b"softshield acs knso"), knso_der,
                                                  _acs_aad(world, acs, "knso"))).decode()
    return acs, lt


def open_acs(place: Place, presented: Presented, say: Say = _quiet) -> tuple[WorldFile, bytes, bytes]:
    """(world file, KM, KNSO PKCS#8) after reading the ACS quorum."""
    world_file = place.world_file()
    if world_file is None:
        raise WorldStateError(f"new-world: no existing world to load (no world file in {place.store.local})")
    ref = acs_ref(world_file)
    presented = list(presented)
    checked = place.reader.ledger is not None
    lt = place.reader.read_quorum(ref, presented, say)
    acs = _acs_of(world_file)
    km = blobcrypt.unseal(blobcrypt.derive_subkey(lt, b"softshield acs km"), base64.b64decode(acs["km"]),
                          _acs_aad(world_file.world, acs, "km"), what="world file")
    if not checked:
        _check_presented_late(place, world_file.world, km, presented[:ref.k])
    knso = blobcrypt.unseal(blobcrypt.derive_subkey(lt, b"softshield acs knso"), base64.b64decode(acs["knso"]),
                            _acs_aad(world_file.world, acs, "knso"), what="world file")
    return world_file, km, knso


def initialize(place: Place, *, cipher_suite: str, k: int, n: int, pins: list[bytes], module_number: int = 1,
               force: bool = False, acs_name: str = ACS_NAME, say: Say = _quiet) -> tuple[WorldFile, ModuleFile]:
    """new-world --initialize: erase module #N into a new world whose secrets the new ACS protects."""
    try:
        suites.suite(cipher_suite)
    except ValueError as exc:
        raise WorldStateError(str(exc)) from None
    if len(pins) != n:
        raise WorldStateError(f"an ACS of {n} cards needs {n} PINs, got {len(pins)}")
    with place.store.writer_lock():
        existing = place.world_file()
        if existing is not None and not force and (existing.acs is not None or place.store.names(paths.KEY_PREFIX)):
            raise WorldStateError(f"a Security World already exists in {place.store.local} "
                                  f"(hknso = {existing.world.hknso}): use --force to replace it")
        modules = module_files(place.store)
        if module_number < 1 or module_number > len(modules) + 1:
            raise WorldStateError(f"no module #{module_number} (this host has {len(modules)} module(s))")
        # new-world erases the module: a new module key, the same ESN (as the HSM keeps its serial).
        old = modules[module_number - 1] if module_number <= len(modules) else None
        module = ModuleFile(old.esn if old else new_esn(), old.created if old else utc_now_ordered(), blobcrypt.random_key())
        say("Create Security World:")
        knso_der, spki = suites.generate_knso(cipher_suite)
        world = World(hashlib.sha1(spki).hexdigest(), cipher_suite, utc_now(), spki)
        km = blobcrypt.random_key()
        acs, lt = _new_acs(world, km, knso_der, k, n, acs_name)
        ref = CardSetRef("ACS", acs_name, acs["hash"], k, n, world.hknso, acs["lt_check"])
        # The new world's ledger records the new cards, and checks them from now on.
        place.reader.ledger = world_ledger(place.store, world, km)
        place.reader.write_set(ref, lt, pins, overwrite=force, say=say)
        say("Card writing complete.")
        world_file = WorldFile(world, {module.esn: _module_share(module, world, km)}, b"", acs)
        place.store.write(paths.module_file(module.esn), module.to_bytes())
        recovery.create(place.store, world.hknso, km, knso_der)  # KRE/KRA: keys made with recovery=yes
        # The world file last: its presence is what says "created".
        place.store.write(paths.WORLD_FILE, world_file.to_bytes())
        place.store.bump()
    say("")
    say(f"security world generated on module #{module_number}; hknso = {world.hknso}")
    return world_file, module


def program(place: Place, presented: Presented, say: Say = _quiet) -> tuple[int, ModuleFile]:
    """new-world --program: a new module joins the world (needs the ACS quorum)."""
    world_file, km, _knso = open_acs(place, presented, say)
    with place.store.writer_lock():
        current = _current_world(place)
        module = ModuleFile(new_esn(), utc_now_ordered(), blobcrypt.random_key())
        shares = dict(current.module_shares)
        shares[module.esn] = _module_share(module, current.world, km)
        place.store.write(paths.module_file(module.esn), module.to_bytes())
        place.store.write(paths.WORLD_FILE, replace(current, module_shares=shares).to_bytes())
        place.store.bump()
        remember_this_module(place.kmdata, module.esn)  # the module programmed here is this host's
    number = [m.esn for m in module_files(place.store)].index(module.esn) + 1
    say(f"security world loaded on module #{number}; hknso = {world_file.world.hknso}")
    return number, module


def recover(place: Place, presented: Presented, module_number: int = 1, say: Say = _quiet) -> ModuleFile:
    """new-world --recover: re-initialise module #N (new module key) and load the world into it."""
    world_file, km, _knso = open_acs(place, presented, say)
    with place.store.writer_lock():
        current = _current_world(place)
        modules = module_files(place.store)
        if not 1 <= module_number <= len(modules):
            raise WorldStateError(f"no module #{module_number} (this host has {len(modules)} module(s))")
        old = modules[module_number - 1]
        module = ModuleFile(old.esn, old.created, blobcrypt.random_key())
        shares = dict(current.module_shares)
        shares[module.esn] = _module_share(module, current.world, km)
        place.store.write(paths.module_file(module.esn), module.to_bytes())
        place.store.write(paths.WORLD_FILE, replace(current, module_shares=shares).to_bytes())
        place.store.bump()
    say(f"security world loaded on module #{module_number}; hknso = {world_file.world.hknso}")
    return module


def replace_acs(place: Place, presented: Presented, *, k: int, n: int, pins: list[bytes], name: str | None = None,
                say: Say = _quiet) -> dict:
    """racs: the old quorum opens KM and KNSO, a new ACS (new logical token, new cards) seals them."""
    world_file, km, knso = open_acs(place, presented, say)
    name = name or _acs_of(world_file)["name"]
    with place.store.writer_lock():
        current = _current_world(place)
        acs, lt = _new_acs(current.world, km, knso, k, n, name)
        ref = CardSetRef("ACS", name, acs["hash"], k, n, current.world.hknso, acs["lt_check"])
        # The old cards' files are overwritten when the new set has the same name: they are worthless now.
        place.reader.write_set(ref, lt, pins, overwrite=True, say=say)
        say("Card writing complete.")
        place.store.write(paths.WORLD_FILE, replace(current, acs=acs).to_bytes())
        place.store.bump()
    say(f"Administrator Card Set replaced; new ACS {k}/{n}, hash {acs['hash']}")
    return acs


def module_can_open(place: Place, module: ModuleFile) -> bool:
    world_file = place.world_file()
    if world_file is None:
        return False
    try:
        open_world_key(world_file, module)
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return True
