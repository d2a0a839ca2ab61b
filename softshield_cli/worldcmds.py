"""World and card administration: new-world, racs, createocs, ppmk, bulkerase.

These talk to the emulator's Python API directly, as nShield's admin tools talk to the module.
"""

from __future__ import annotations

import argparse
import os

from .main import CommandError, command
from .pins import PinSource, add_pin_file_option, ask_new_secret


def _place():
    from emulator.worldadmin import Place

    return Place.of(os.environ.get("NFAST_KMDATA"))


def _module():
    from emulator.module import Module

    return Module.open(os.environ.get("NFAST_KMDATA"))


@command("new-world", "world", "create a Security World with an ACS, or program / recover a module")
class NewWorld:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        action = p.add_mutually_exclusive_group()
        action.add_argument("-i", "--initialize", action="store_true", help="create a new world on the module")
        action.add_argument("-l", "--program", action="store_true", help="add a module to the existing world")
        action.add_argument("--recover", action="store_true", help="re-initialise a module from the world (ACS)")
        p.add_argument("-c", "--cipher-suite", default="DLf3072s256mAEScSP800131Ar1")
        p.add_argument("-m", "--module", type=int, default=None,
                       help="module number (default 1; with --program, the next free number)")
        p.add_argument("-Q", "--acs-quorum", default="1/1", metavar="K/N")
        p.add_argument("--acs-name", default="acs", help="card file names: <name>-<n>.card")
        p.add_argument("-f", "--force", action="store_true", help="replace an existing world")
        add_pin_file_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import cards, worldadmin

        place = _place()
        pins = PinSource(args.pin_file)
        if args.program or args.recover:
            world_file = place.world_file()
            if world_file is None:
                raise CommandError("no existing world to load")
            if args.program and args.module is not None:
                # The module --program loads is a new one: it takes the next number, as on a host
                # whose modules #1..#M-1 are already in the world. Another number is refused
                # before a card is read (--recover re-initialises an existing module).
                following = len(worldadmin.module_files(place.store)) + 1
                if args.module != following:
                    raise CommandError(f"--module={args.module}: the module --program adds is #{following} "
                                       f"(modules #1..#{following - 1} are programmed; --recover --module=N "
                                       "re-initialises one of them)")
            ref = worldadmin.acs_ref(world_file)
            presented = pins.cards(place.reader, ref.k)
            if args.program:
                worldadmin.program(place, presented, say=print)
            else:
                worldadmin.recover(place, presented, args.module or 1, say=print)
            return 0
        k, n = worldadmin.parse_quorum(args.acs_quorum)
        names = [cards.card_file_name(args.acs_name, i) for i in range(1, n + 1)]
        worldadmin.initialize(place, cipher_suite=args.cipher_suite, k=k, n=n, pins=pins.new_pins(names),
                              module_number=args.module or 1, force=args.force, acs_name=args.acs_name, say=print)
        return 0


@command("racs", "world", "replace the Administrator Card Set (needs the old quorum)")
class Racs:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("-Q", "--acs-quorum", required=True, metavar="K/N", help="quorum of the new ACS")
        p.add_argument("--acs-name", default=None, help="name of the new cards (default: the old name)")
        add_pin_file_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import cards, worldadmin

        place = _place()
        world_file = place.world_file()
        if world_file is None:
            raise CommandError("no existing world")
        ref = worldadmin.acs_ref(world_file)
        k, n = worldadmin.parse_quorum(args.acs_quorum)
        pins = PinSource(args.pin_file)
        # The PIN file holds the old quorum's K lines first, then one line per new card.
        presented = []
        for _ in range(ref.k):
            item = pins.next("Insert a card of the old ACS, then enter its PIN", "PIN: ")
            if item is None:
                break
            presented.append((place.reader.resolve(item[0]), item[1]))
        name = args.acs_name or ref.name
        new = pins.new_pins([cards.card_file_name(name, i) for i in range(1, n + 1)])
        worldadmin.replace_acs(place, presented, k=k, n=n, pins=new, name=name, say=print)
        return 0


@command("createocs", "cards", "create an Operator Card Set (K/N cards)")
class CreateOcs:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("-Q", "--ocs-quorum", default="1/1", metavar="K/N")
        p.add_argument("-N", "--name", required=True)
        p.add_argument("-p", "--persist", action="store_true", help="persistent: stays loaded after removal")
        p.add_argument("-T", "--timeout", type=int, default=0, help="seconds (0: none)")
        add_pin_file_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import cards, worldadmin

        k, n = worldadmin.parse_quorum(args.ocs_quorum)
        module = _module()
        pins = PinSource(args.pin_file).new_pins([cards.card_file_name(args.name, i) for i in range(1, n + 1)])
        module.cardsets.create(args.name, k, n, pins, persistent=args.persist, timeout=args.timeout, say=print)
        return 0


@command("ppmk", "cards", "create a softcard (--new NAME)")
class Ppmk:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("-n", "--new", metavar="NAME", required=True)
        p.add_argument("--recoverable", action="store_true", help="accepted; softcards are replaceable")
        add_pin_file_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import softcards

        pins = PinSource(args.pin_file)
        if pins.interactive:
            passphrase = ask_new_secret(f"Enter new pass phrase for softcard `{args.new}': ",
                                        "Enter new pass phrase again: ", "pass phrases")
        else:
            item = pins.next("", "")
            if item is None or item[0] != args.new:
                raise CommandError(f"PIN file needs a line `{args.new} <passphrase>'")
            passphrase = item[1]
        info = softcards.create(_module(), args.new, passphrase)
        print(f"New softcard created: HKLTU {info.hash}")
        return 0


@command("bulkerase", "cards", "erase emulated cards (their files leave the reader)")
class BulkErase:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("cards", nargs="+", metavar="CARD", help="card file names (in the reader) or paths")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator.cards import Reader, reader_dir
        from emulator import paths

        reader = Reader(reader_dir(paths.resolve_kmdata(os.environ.get("NFAST_KMDATA"))))
        for name in args.cards:
            path = reader.resolve(name)
            card = reader.erase(path)
            what = card.label() if card else "unformatted card"
            print(f" Module 1 slot 0: erasing {path.name} ({what})")
        print("Card erasure complete.")
        return 0
