"""Errors raised by the module emulator.

Each kind of failure is its own class so that callers (the PKCS#11 shim, the CLI) can map it to their
own vocabulary in one table; the message is always one clear line for a human.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Base class of every error the emulator raises on purpose."""


class AclDenied(EmulatorError):
    """The key's ACL does not permit the requested action."""


class BlobInvalid(EmulatorError):
    """A key blob or kmdata file failed authentication, is truncated, or belongs elsewhere."""


class KeyNotFound(EmulatorError):
    """No key with that app and ident exists in kmdata."""


class AuthenticationFailed(EmulatorError):
    """A PIN or passphrase was wrong."""


class CardLocked(EmulatorError):
    """Too many wrong PINs: the card (or token PIN) is locked."""


class QuorumNotMet(EmulatorError):
    """Fewer distinct valid cards than the quorum were presented."""


class WorldStateError(EmulatorError):
    """The Security World is missing, already exists, or is in the wrong state for the request."""


class InvalidKeyMaterial(EmulatorError):
    """Key material that cannot form a key of the named kind (wrong length, bad encoding, off-curve)."""


class CryptoFailure(EmulatorError):
    """An operation's input was rejected by the primitive (bad padding, failed tag, bad signature)."""


class PinNotInitialized(EmulatorError):
    """The token's user PIN has not been set yet (C_InitPIN has not run)."""


class TokenNotFound(EmulatorError):
    """No logical token with that hash exists in kmdata."""


class AclInvalid(EmulatorError):
    """An ACL's stored form names an unknown action or is malformed."""


class KeyNameInvalid(EmulatorError):
    """A key's app or ident is malformed, or its ident names another owner than the key's token."""
