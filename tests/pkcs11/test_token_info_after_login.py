"""C_GetTokenInfo after C_Login shows the PIN counter the login left in the token record: a wrong
user PIN sets CKF_USER_PIN_COUNT_LOW (nShield softcards count failures), the right one clears it.
The slot re-reads only its own token's record after a login (not a listing of every token)."""

from __future__ import annotations

import pkcs11
import pytest
from p11env import USER_PIN, init_token

from pkcs11_shim.constants import TokenFlag


def _flags(lib, label: str) -> int:
    return int(lib.get_token(token_label=label).flags)


def test_wrong_then_right_pin_flags(lib) -> None:
    label = init_token()
    assert _flags(lib, label) & TokenFlag.USER_PIN_COUNT_LOW == 0
    with pytest.raises(pkcs11.exceptions.PinIncorrect):
        lib.get_token(token_label=label).open(user_pin="9999")
    assert _flags(lib, label) & (TokenFlag.USER_PIN_COUNT_LOW | TokenFlag.USER_PIN_FINAL_TRY) == \
        TokenFlag.USER_PIN_COUNT_LOW
    with lib.get_token(token_label=label).open(user_pin=USER_PIN):
        pass
    assert _flags(lib, label) & TokenFlag.USER_PIN_COUNT_LOW == 0
