"""The project as shipped: lint clean, the wheel carries the catalogs, the Dockerfile matches pyproject."""

from __future__ import annotations

import asyncio
import importlib.abc
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


# The project's own code: a virtual environment or build output in the clone, whatever its name, is not linted.
SOURCES = ("bot", "adapters", "tests", "bench")


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    return subprocess.run(
        [exe, *args, "--no-cache", *SOURCES], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )


def test_ruff_lint_is_clean() -> None:
    out = ruff("check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean() -> None:
    out = ruff("format", "--check")
    assert out.returncode == 0, out.stdout + out.stderr


def test_test_tools_are_bounded() -> None:
    """A test tool's next major release (ruff's next minor) must not change a verdict on a fresh machine."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    unbounded = [req for req in (*extras["test"], *extras["typing"]) if "<" not in req]
    assert not unbounded, f"test tools without an upper bound: {unbounded}"


def test_ci_installs_exact_versions_and_checks_types() -> None:
    """CI's verdicts (mypy's follows every library's type hints) cannot move with a release: it installs the
    exact versions of .ci/constraints.txt, which pins every package the test and typing extras bring."""
    pins = [line for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    pinned = {pin.split("==")[0].lower().replace("_", "-") for pin in pins}
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = [*PYPROJECT["project"]["dependencies"], *extras["test"], *extras["typing"]]
    names = {re.split(r"[<>=\[ ]", req, maxsplit=1)[0].lower().replace("_", "-") for req in wanted}
    assert names <= pinned, names - pinned
    run = (ROOT / ".ci" / "run").read_text()
    assert "-c .ci/constraints.txt" in run and '".[test,typing]"' in run and "\nmypy\n" in run


def test_wheel_contains_the_compiled_catalogs(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("sdbot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for lang in ("en", "zh"):
        assert f"bot/_locales/{lang}/LC_MESSAGES/sdbot.mo" in names
    assert "bot/cli/main.py" in names and "adapters/__init__.py" in names
    assert not any(name.startswith("tests/") for name in names)


def test_dockerfile_matches_pyproject() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert f"FROM python:{minimum}-slim" in dockerfile
    for package in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile
    assert "COPY locales ./locales" in dockerfile
    assert "USER sdbot" in dockerfile and 'CMD ["sdbot", "run"]' in dockerfile
    assert PYPROJECT["project"]["scripts"]["sdbot"] == "bot.cli.main:main"


def test_readme_quick_start_has_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest -q' in readme
    assert 'pip install --quiet -c .ci/constraints.txt -e ".[test,typing]"' in ci and "python -m pytest -q" in ci
    assert "pip install . && sdbot draw" in readme


def test_every_error_code_is_documented() -> None:
    from babel.messages.pofile import read_po

    readme = (ROOT / "README.md").read_text()
    with open(ROOT / "locales" / "en" / "LC_MESSAGES" / "sdbot.po", "rb") as fh:
        ids = [m.id[0] if m.pluralizable else m.id for m in read_po(fh) if m.id]
    codes = [key.removeprefix("error.") for key in ids if key.startswith("error.")]
    missing = [code for code in codes if f"`{code}`" not in readme]
    assert not missing, f"error codes missing from README.md: {missing}"


def test_httpcore_finds_sniffio_without_searching_for_it() -> None:
    """httpcore asks for sniffio in every lock and event of every request; absent, each ask searches sys.path
    (encode/httpcore#1103), which is why it is one of our dependencies."""
    from httpcore._synchronization import current_async_library

    searched: list[str] = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            searched.append(name)

    async def ask() -> str:
        return current_async_library()

    spy = Spy()
    sys.meta_path.insert(0, spy)
    try:
        assert asyncio.run(ask()) == "asyncio"
    finally:
        sys.meta_path.remove(spy)
    assert "sniffio" not in searched
