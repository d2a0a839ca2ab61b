"""The only package that imports `cryptography`: key material and the primitives over it."""
