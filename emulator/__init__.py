"""The softshield module emulator: an nShield-style HSM in Python.

Knows nothing of PKCS#11. Key material leaves this package only as a blob, a public key, or a
wrapped key, and only if the key's ACL allows it.
"""
