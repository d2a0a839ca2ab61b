"""The C boundary: one handler per PKCS#11 function, grouped by the spec's chapters.

Handlers read C arguments (`marshal`), call the shim, and write results back. `entry` attaches them
to cffi and is the only place that turns exceptions into CK_RV.
"""
