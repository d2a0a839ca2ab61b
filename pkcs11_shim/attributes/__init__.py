"""PKCS#11 attributes: value codecs (`codecs`), per-class rule tables with named flags (`rules`),
functions over templates (`templates`) and the mapping between key-component attributes and key
material (`keyparts`)."""

from . import codecs, keyparts, rules, templates  # noqa: F401  (the package's public modules)
from .templates import Origin  # noqa: F401
