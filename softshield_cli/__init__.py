"""The `softshield` command line: nShield-style tools as clients of the module and of the .so."""
