"""The p11-kit module file: `make` writes it with the library's real path, `softshield p11-kit
install --user` puts it where p11-kit reads it, and `p11-kit list-modules`, run by an ordinary user,
then lists softshield's token.

p11-kit reads user module files for non-root users only. Run as root (CI on a fresh Debian), the test
makes a throw-away user (useradd) and runs its commands under that uid (setpriv). That user may not
be able to read the checkout (under /root, mode 0700, say) or reach the base interpreter, so as root
the test runs from a copy in a temp folder open to every user: the library, the project's packages
and data, and the virtual environment (hard links where the file system allows, its python binary
copied in). The user owns only its home and its kmdata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecoenv import P11_KIT_PROXY, ROOT, SO, SO_PIN, USER_PIN, run, softshield

MAKE_MODULE = ROOT / "build" / "p11-kit" / "softshield.module"
#: What the library and the CLI read at run time (packages, the function list, the template).
PROJECT = ("pkcs11_shim", "emulator", "softshield_cli", "native", "data")


@dataclass
class User:
    """An ordinary user's view: who runs, from which copy of the project, with which home."""

    prefix: list[str]  # what runs a command as that user ([] when the tests already run as one)
    root: Path  # the project as this user sees it (ROOT, or the copy)
    python: str
    home: Path
    kmdata: Path

    @property
    def library(self) -> Path:
        return self.root / "build" / "libsoftshield-pkcs11.so"

    def env(self) -> dict[str, str]:
        # A clean environment: none of the caller's softshield, XDG or p11-kit settings leak in.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "NFAST_KMDATA": str(self.kmdata), "LANG": "C.UTF-8"}
        if self.root != ROOT:
            env |= {"SOFTSHIELD_PYTHON": self.python, "SOFTSHIELD_PYTHONPATH": str(self.root)}
        return env

    def run(self, *argv: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=120,
                                env={**self.env(), **(env or {})}, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def softshield(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(self.python, "-m", "softshield_cli.main", *args, check=check)

    def pkcs11_tool(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.run("pkcs11-tool", "--module", str(self.library), *args, env=env).stdout


def copy_project(dest: Path) -> tuple[Path, str]:
    """The library, the packages and the venv under `dest`, readable by every user."""
    root = dest / "softshield"
    (root / "build").mkdir(parents=True)
    for library in (SO, SO.with_name("libsoftshield-embedded.so")):  # the front end loads the module beside it
        shutil.copy2(library, root / "build" / library.name)
    for name in PROJECT:
        shutil.copytree(ROOT / name, root / name)
    venv = dest / "venv"
    if subprocess.run(["cp", "-al", sys.prefix, str(venv)], capture_output=True).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.copytree(sys.prefix, venv, symlinks=True)  # another file system: no hard links
    # The venv's python is a link to the base interpreter, which the user may not reach (pyenv under
    # /root): a copy of the binary runs from the venv folder and finds the venv by its pyvenv.cfg.
    for link in (venv / "bin").iterdir():
        if link.name.startswith("python") and link.is_symlink():
            link.unlink()
            shutil.copy2(os.path.realpath(sys.executable), link)
    for path in (dest, *dest.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o755)
    return root, str(venv / "bin" / "python")


@pytest.fixture()
def user() -> Iterator[User]:
    base = Path(tempfile.mkdtemp(prefix="softshield-p11kit-"))
    base.chmod(0o755)
    home, kmdata = base / "home", base / "kmdata"
    home.mkdir()
    kmdata.mkdir()
    name = None
    try:
        if os.geteuid() != 0:
            yield User([], ROOT, sys.executable, home, kmdata)
            return
        for tool in ("useradd", "userdel", "setpriv"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is missing: Debian's passwd and util-linux packages provide it")
        name = f"ssp11kit{uuid.uuid4().hex[:8]}"
        run("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
            "--user-group", name)
        uid, gid = (int(run("id", flag, name).stdout) for flag in ("-u", "-g"))
        for path in (home, kmdata):
            os.chown(path, uid, gid)
        root, python = copy_project(base)
        yield User(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"], root, python,
                   home, kmdata)
    finally:
        if name is not None:
            run("userdel", name, check=False)
        shutil.rmtree(base, ignore_errors=True)


def module_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("module:"))


def test_make_writes_the_module_file_with_the_real_path():
    run("make", "--no-print-directory", "-s", str(MAKE_MODULE.relative_to(ROOT)), cwd=ROOT)
    text = MAKE_MODULE.read_text()
    assert module_line(text) == f"module: {SO.resolve()}"
    assert "critical: no" in text.splitlines()
    # `softshield p11-kit show` fills the same template: the two files are one.
    assert softshield("p11-kit", "show").stdout == text


def test_checked_in_file_is_a_template_naming_no_checkout():
    template = (ROOT / "data" / "p11-kit" / "softshield.module.in").read_text()
    assert module_line(template) == "module: @LIBRARY@"
    assert not (ROOT / "data" / "p11-kit" / "softshield.module").exists()


def test_install_refuses_a_user_file_for_root_and_writes_a_folder(tmp_path: Path):
    if os.geteuid() == 0:
        refused = softshield("p11-kit", "install", "--user", check=False)
        assert refused.returncode == 1
        assert refused.stderr == ("softshield p11-kit: p11-kit does not read user module files for root: "
                                  "use --system (or --dir)\n")
    target = tmp_path / "modules"
    assert softshield("p11-kit", "install", "--dir", str(target)).stdout == f"wrote {target}/softshield.module\n"
    assert module_line((target / "softshield.module").read_text()) == f"module: {SO.resolve()}"
    assert (target / "softshield.module").stat().st_mode & 0o777 == 0o644
    assert softshield("p11-kit", "remove", "--dir", str(target)).stdout == f"removed {target}/softshield.module\n"
    assert list(target.iterdir()) == []
    missing = softshield("p11-kit", "install", "--library", str(tmp_path / "none.so"), "--dir", str(target),
                         check=False)
    assert missing.returncode == 1
    assert missing.stderr == f"softshield p11-kit: no PKCS#11 library at {tmp_path / 'none.so'}: build it with `make`\n"


def test_p11kit_lists_the_token_for_an_ordinary_user(user: User):
    assert user.run("id", "-u").stdout.strip() != "0"
    # The user's own token, made the way SoftHSM2 users make one.
    user.pkcs11_tool("--init-token", "--slot", "1", "--label", "p11kit-user", "--so-pin", SO_PIN)
    user.pkcs11_tool("--init-pin", "--token-label", "p11kit-user", "--login", "--login-type", "so",
                     "--so-pin", SO_PIN, "--pin", USER_PIN)
    assert "softshield" not in user.run("p11-kit", "list-modules").stdout  # not registered yet

    installed = user.softshield("p11-kit", "install", "--user")
    module_file = user.home / ".config" / "pkcs11" / "modules" / "softshield.module"
    assert installed.stdout == f"wrote {module_file}\n"
    assert module_line(module_file.read_text()) == f"module: {user.library.resolve()}"

    listed = user.run("p11-kit", "list-modules").stdout
    assert f"softshield: {user.library.resolve()}" in listed
    assert "    library-manufacturer: softshield" in listed
    assert "    token: p11kit-user" in listed
    # Every p11-kit client finds it: pkcs11-tool through p11-kit's proxy module.
    proxied = user.run("pkcs11-tool", "--module", str(P11_KIT_PROXY), "-L").stdout
    assert "token label        : p11kit-user" in proxied

    assert user.softshield("p11-kit", "remove", "--user").stdout == f"removed {module_file}\n"
    assert "softshield" not in user.run("p11-kit", "list-modules").stdout


def test_a_home_the_user_cannot_search_is_no_configuration(user: User):
    """A service run as another user often keeps HOME naming the caller's home (setpriv, runuser,
    sudo -E): the library finds no configuration there and starts, rather than failing C_Initialize."""
    locked = user.home.parent / "locked-home"
    (locked / ".config" / "softshield").mkdir(parents=True)
    (locked / ".config" / "softshield" / "cknfastrc").write_text("CKNFAST_NO_ACCELERATOR_SLOTS=1\n")
    locked.chmod(0o000 if user.prefix == [] else 0o700)  # root's 0700 folder, or not even its owner's
    try:
        slots = user.pkcs11_tool("--list-slots", env={"HOME": str(locked)})
    finally:
        locked.chmod(0o700)
    assert "token label        : loadshared accelerator" in slots  # the locked cknfastrc was not read
