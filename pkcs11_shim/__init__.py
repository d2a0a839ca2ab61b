"""PKCS#11 semantics of softshield: library state, slots, sessions, objects, attributes, mechanisms.

Everything below `pkcs11_shim.abi` speaks Python values; only `abi` touches C pointers.
"""
