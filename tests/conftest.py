"""Puts tests/ on sys.path for every folder's tests: p11ctypes, the one ctypes PKCS#11 caller, lives here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
