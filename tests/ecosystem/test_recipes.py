"""Every recipe (docs/recipes/) runs against the real library and does what it says, and the page that
shows it (docs/tools.md; the tour on the README's front page) shows it as it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ecoenv import ROOT, SO, USER_PIN, run

RECIPES = ROOT / "docs" / "recipes"
#: README order: later recipes use what earlier ones made (the key, its PEM, the PKCS#8 file).
ORDER = ("generate.sh", "list.sh", "export-pubkey.sh", "sign.sh", "import-pkcs8.sh", "certificate.sh",
         "wrap_unwrap.py", "wrap-unwrap-pkcs11-tool.sh", "python_pkcs11.py")
#: Recipes that need a server, each run verbatim by its own test: openssh.sh by test_openssh.py.
SERVER_RECIPES = ("openssh.sh",)
#: recipe -> the page that shows it whole (the tour is run by test_tour.py, two-modules.sh by
#: tests/network/test_recipe.py).
PAGES = {**{name: ROOT / "docs" / "tools.md" for name in ORDER + SERVER_RECIPES}, "tour.sh": ROOT / "README.md",
         "two-modules.sh": ROOT / "docs" / "network.md"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recipes")


@pytest.fixture(scope="module")
def env(token_label: str) -> dict:
    return {"SO": str(SO), "TOKEN": token_label, "PIN": USER_PIN}


def test_every_recipe_is_listed():
    assert sorted(p.name for p in RECIPES.iterdir() if p.suffix in (".sh", ".py")) == sorted(PAGES)
    for name, page in PAGES.items():
        # The page shows each script whole, in a block titled with its path: what CI runs is what
        # a reader copies.
        lang = "sh" if name.endswith(".sh") else "python"
        shown = f'```{lang} title="docs/recipes/{name}"\n{(RECIPES / name).read_text()}```'
        assert shown in page.read_text(), f"{page.relative_to(ROOT)} does not show docs/recipes/{name} as it is"


@pytest.mark.parametrize("name", ORDER)
def test_recipe(name: str, env: dict, workdir: Path):
    script = RECIPES / name
    argv = ("sh", "-e", str(script)) if name.endswith(".sh") else (sys.executable, str(script))
    out = run(*argv, env=env, cwd=workdir, timeout=120).stdout
    checks = {
        "generate.sh": lambda: "label:      recipe-rsa" in out,
        "list.sh": lambda: out.count("recipe-rsa") >= 2,
        "export-pubkey.sh": lambda: (workdir / "recipe-rsa.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----"),
        "sign.sh": lambda: "Verified OK" in out,
        "import-pkcs8.sh": lambda: "label:      imported-ec" in out,
        "certificate.sh": lambda: "Certificate Object" in out and "subject:    DN: CN=recipe-rsa" in out,
        "wrap_unwrap.py": lambda: "unwrapped copy decrypts" in out,
        "wrap-unwrap-pkcs11-tool.sh": lambda: "Key wrapped" in out and "Key unwrapped" in out
        and len((workdir / "datakey.wrapped").read_bytes()) == 24
        and "the unwrapped copy decrypts what the original encrypted" in out,
        "python_pkcs11.py": lambda: "recipe-ec" in out and "recipe-rsa" in out,
    }
    assert checks[name](), out
