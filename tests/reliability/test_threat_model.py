"""docs/THREAT_MODEL.md points at tests: every `file::test` it names must exist, and a test cited for a
refusal must assert that refusal.

The document names each claim's refusal beside the tests, in backticks: a PKCS#11 code
(`CKR_PIN_INCORRECT`), an emulator error class (`BlobInvalid`), or the words of the refusal in quotes
(`"rollback refused"`). A section's opening paragraph names what all its bullets refuse. Every test
cited in a claim (a bullet, or a paragraph outside bullets) must contain one of the claim's refusals
(`CKR_X` also as `CKR.X`, or as python-pkcs11's exception class); a claim in a section about
refusals that names none is an error, unless it is one of the few listed PROPERTY_CLAIMS. The
sections that describe properties (crash safety, concurrency, what is wiped, logs) only need their
tests to exist.
"""

from __future__ import annotations

import re

from relenv import ROOT

#: Sections whose claims are properties, not refusals (their tests show an outcome, not a code).
PROPERTY_SECTIONS = ("Crashes and concurrency", "Secrets in logs and errors", "Plaintext in memory",
                     "What an emulator cannot protect")
#: Claims in refusal sections that state a property (their tests show an outcome, not a code).
PROPERTY_CLAIMS = ("- Key material is never on disk", "- kmdata files are 0600", "- Shamir's scheme itself",
                   "- ACL reduction never widens", "No crash, hang")
CITATION = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")
CKR_NAME = re.compile(r"`(CKR_[A-Z_]+)`")
ERROR_CLASS = re.compile(r"`([A-Z][A-Za-z]+(?:Invalid|Failed|Denied|NotMet|Locked|Found|Error|Initialized))`")
QUOTED = re.compile(r'`"([^"`]+)"`')


def _claims(text: str) -> list[tuple[str, str, str]]:
    """(section title, claim text, the section's opening paragraph): each bullet, and each paragraph
    outside bullets."""
    claims: list[tuple[str, str, str]] = []
    section, intro = "", ""
    for block in re.split(r"\n(?=#)|\n\s*\n", text):
        heading = re.match(r"#+ (.*)", block)
        if heading:
            section, intro = heading.group(1), ""
            block = block[heading.end():]
        for item in re.split(r"\n(?=- )", block):
            if not item.strip():
                continue
            claims.append((section, item, intro))
            if not item.lstrip().startswith("- ") and not intro:
                intro = item.strip()
    return claims


def _python_pkcs11_names(ckr: str) -> set[str]:
    """`CKR_KEY_UNEXTRACTABLE` -> {"CKR_KEY_UNEXTRACTABLE", "CKR.KEY_UNEXTRACTABLE", "KeyUnextractable"}."""
    bare = ckr[len("CKR_"):]
    return {ckr, f"CKR.{bare}", "".join(part.capitalize() for part in bare.split("_"))}


def _refusals(claim: str) -> set[str]:
    names: set[str] = set()
    for ckr in CKR_NAME.findall(claim):
        names |= _python_pkcs11_names(ckr)
    names |= set(ERROR_CLASS.findall(claim)) | set(QUOTED.findall(claim))
    return names


def _test_source(path: str, name: str) -> str | None:
    source = (ROOT / path).read_text()
    found = re.search(rf"^(?:async )?def {name}\(.*?(?=^\S)", source + "\n#", re.M | re.S)
    return found.group(0) if found else None


def test_every_cited_test_exists_and_asserts_its_refusal() -> None:
    text = (ROOT / "docs" / "THREAT_MODEL.md").read_text()
    assert len(CITATION.findall(text)) > 30
    problems = []
    for section, claim, intro in _claims(text):
        cited = CITATION.findall(claim)
        if not cited:
            continue
        refusals = _refusals(claim) | _refusals(intro)
        is_property = any(section.startswith(title) for title in PROPERTY_SECTIONS) or \
            claim.lstrip().startswith(PROPERTY_CLAIMS)
        if not refusals and not is_property and any(name for _path, name in cited):
            problems.append(f"[{section}] names no refusal: {claim.strip()[:80]}")
        for path, name in cited:
            if not (ROOT / path).exists():
                problems.append(f"{path}: no such file")
                continue
            if not name:
                continue
            body = _test_source(path, name)
            if body is None:
                problems.append(f"{path}::{name}: no such test")
            elif refusals and not is_property and not any(r in body for r in refusals):
                problems.append(f"{path}::{name} asserts none of {sorted(refusals)}")
    assert problems == []


def test_the_check_catches_a_test_that_does_not_assert_the_refusal() -> None:
    claim = ("- Edited blobs are refused (`BlobInvalid`): "
             "`tests/reliability/test_threat_model.py::test_the_check_catches_a_test_that_does_not_assert_the_refusal`.")
    assert _refusals(claim) == {"BlobInvalid"}
    body = _test_source("tests/reliability/test_threat_model.py", "_python_pkcs11_names")
    assert body is not None and "BlobInvalid" not in body
    assert _python_pkcs11_names("CKR_KEY_UNEXTRACTABLE") == {"CKR_KEY_UNEXTRACTABLE", "CKR.KEY_UNEXTRACTABLE",
                                                            "KeyUnextractable"}
    assert [(s, i) for s, _c, i in _claims("## A\nintro `BlobInvalid`\n- one\n\n## B\ntext")] == [
        ("A", ""), ("A", "intro `BlobInvalid`"), ("B", "")]
    assert _refusals('`"rollback refused"` and `CardLocked`, not "quoted"') == {"rollback refused", "CardLocked"}
