"""Readers for the vector files of the `cryptography-vectors` package (NIST CAVP .rsp, RFC text files,
the PKCS#1 v2.1 test vectors), and deterministic sampling so each family stays at a few hundred cases.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator

import cryptography_vectors


def lines(path: str) -> Iterator[str]:
    with cryptography_vectors.open_vector_file(path, "r") as handle:
        yield from handle


def nist_records(path: str, start: str, context_keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Records of a NIST-style file. A record begins at each `start = ...` line and collects the
    `key = value` lines after it; `[...]` headers and `key = value` lines outside a record are context
    copied into every later record (`[ENCRYPT]`-style headers become context["section"]); a bare
    FAIL line sets record["FAIL"] = True. Keys in `context_keys` (an RSA modulus between records)
    always end the current record and become context."""
    context: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in lines(path):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = None
            inner = line[1:-1]
            if "=" in inner:
                key, value = inner.split("=", 1)
                context[key.strip()] = value.strip()
            else:
                context["section"] = inner
            continue
        if line == "FAIL":
            if current is not None:
                current["FAIL"] = True
            continue
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key in context_keys:
            current = None
        if key == start:
            current = dict(context)
            records.append(current)
        if current is None:
            context[key] = value
        else:
            current[key] = value
    return records


def sample(records: list[Any], limit: int) -> list[Any]:
    """At most `limit` records, evenly spread (deterministic)."""
    if len(records) <= limit:
        return list(records)
    step = len(records) / limit
    return [records[int(i * step)] for i in range(limit)]


def unhex(value: str) -> bytes:
    return bytes.fromhex(value.replace(" ", ""))


def pkcs1_vectors(path: str) -> list[dict[str, Any]]:
    """The PKCS#1 v2.1 vector layout (pss-vect.txt, oaep-vect.txt, oaep-custom/*): a list of keys,
    each {"n", "e", "d", "p", "q", "dmp1", "dmq1", "iqmp": int, "examples": [{field: bytes}],
    "alg": header text of the examples}."""
    key_fields = {"# Modulus:": "n", "# Public exponent:": "e", "# Prime 1:": "p", "# Prime 2:": "q",
                  "# Prime exponent 1:": "dmp1", "# Prime exponent 2:": "dmq1", "# Coefficient:": "iqmp"}
    example_fields = {"# Message": "message", "# Salt": "salt", "# Seed": "seed", "# Signature": "signature",
                      "# Encryption": "encryption"}
    keys: list[dict[str, Any]] = []
    key: dict[str, Any] | None = None
    section: str | None = None  # "public" | "private" | "example"
    target: list[str] | None = None
    example: dict[str, list[str]] | None = None

    def close_example() -> None:
        nonlocal example
        if example and key is not None:
            key["examples"].append({k: unhex("".join(v)) for k, v in example.items()})
        example = None

    for raw in lines(path):
        line = raw.rstrip("\n")
        stripped = line.strip()
        if stripped.startswith("# Example") or stripped.startswith("# ====="):
            close_example()
            if stripped.startswith("# Example") or key is None or key.get("examples"):
                key = {"examples": [], "hex": collections.defaultdict(list), "alg": ""}
                keys.append(key)
            section, target = None, None
            continue
        if key is None:
            continue
        if stripped.startswith("# Public key"):
            section, target = "public", None
            continue
        if stripped.startswith("# Private key"):
            section, target = "private", None
            continue
        if stripped.startswith("# PSS Example") or stripped.startswith("# OAEP Example") \
                or stripped.startswith("# PKCS#1 v1.5"):
            close_example()
            example = collections.defaultdict(list)
            key["alg"] = stripped
            section, target = "example", None
            continue
        if stripped.startswith("#"):
            label = stripped.split(":")[0] + (":" if ":" in stripped else "")
            if section == "example":
                name = next((v for k, v in example_fields.items() if stripped.startswith(k)), None)
                target = example[name] if (name and example is not None) else None
            elif section == "private":
                if stripped.startswith("# Exponent:"):
                    target = key["hex"]["d"]
                else:
                    name = key_fields.get(label)
                    # n and e were read from the public key already.
                    target = key["hex"][name] if name and name not in ("n", "e") else None
            elif section == "public":
                if stripped.startswith("# Exponent:"):
                    target = key["hex"]["e"]
                else:
                    name = key_fields.get(label)
                    target = key["hex"][name] if name else None
            else:
                target = None
            continue
        if target is not None and stripped:
            target.append(stripped.replace(" ", ""))
    close_example()
    out = []
    for key in keys:
        hexes = key.pop("hex")
        if "n" not in hexes or not key["examples"]:
            continue
        values = {name: int("".join(parts), 16) for name, parts in hexes.items() if parts}
        key.update(values)
        out.append(key)
    return out
