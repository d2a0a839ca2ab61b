"""Known-answer tests from the `cryptography-vectors` package, driven through the mechanism registry
and (test_through_so) through the built library.

The session summary prints how many vectors ran per family (the test module's name).
"""

from __future__ import annotations

import collections

import pytest

_COUNTS: collections.Counter[str] = collections.Counter()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__ if item.module else ""
        if module.startswith("test_") and module.endswith("_vectors") and "vectors" in str(item.path.parent):
            _COUNTS[module[len("test_"):-len("_vectors")] + ":" + item.originalname] += 1
        elif module == "test_through_so":
            # Through the .so: the family is the first word of the test name (test_aes_ccm -> so-aes).
            _COUNTS["so-" + item.originalname[len("test_"):].split("_")[0] + ":" + item.originalname] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not _COUNTS:
        return
    terminalreporter.section("known-answer vectors per family")
    families: collections.Counter[str] = collections.Counter()
    for name, count in sorted(_COUNTS.items()):
        terminalreporter.write_line(f"  {name:<48} {count:>6}")
        families[name.split(":")[0]] += count
    terminalreporter.write_line("  " + ", ".join(f"{f}={n}" for f, n in sorted(families.items()))
                                + f"; total={sum(families.values())}")
