"""PKCS#11 attributes: value codecs (`codecs`), per-class rule tables with named flags (`rules`),
functions over templates (`templates`) and the mapping between key-component attributes and key
material (`keyparts`).

Importing the package imports none of them: the C boundary needs only `codecs` before a session
exists, and `keyparts` brings in key parsing (`cryptography`'s serialization and x509)."""
