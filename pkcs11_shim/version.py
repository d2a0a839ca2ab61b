"""Identity strings the library reports in CK_INFO."""

MANUFACTURER_ID = "softshield"
LIBRARY_DESCRIPTION = "softshield nShield emulator"
LIBRARY_VERSION = (0, 1)
