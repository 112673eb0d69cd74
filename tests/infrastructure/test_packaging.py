"""A non-editable install of the project carries every module of the library and the tooling, and the dashboard's
static files (served from the installed package, never fetched).

The package list is found by setuptools, not kept by hand: this test builds the wheel, installs it into a fresh
virtual environment (the dependencies come from the development environment, so nothing is downloaded) and imports
every module there, checking each one is the installed copy and not the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from tests.conftest import REPO

SOURCES = {"opscore": REPO / "layers" / "opscore" / "opscore", "opscore_tools": REPO / "tooling" / "opscore_tools"}


def module_names() -> list[str]:
    names = []
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


def copy_of_the_project(destination: Path) -> Path:
    """The files a build reads, copied: setuptools keeps build/ in the source tree, and a stale one would hide a
    module the package list misses."""
    destination.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    for package, folder in SOURCES.items():
        shutil.copytree(folder, destination / folder.relative_to(REPO), ignore=skip)
        assert package in folder.parts
    return destination


def test_a_wheel_installed_into_a_fresh_environment_imports_every_module(tmp_path: Path) -> None:
    source = copy_of_the_project(tmp_path / "source")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels, source],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("opscore-*.whl")
    environment = tmp_path / "fresh"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies (pydantic, Powertools, boto3, typer...) from the development environment, as a plain path:
    # its .pth files, among them the editable install of this checkout, are not run from there.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True,
        cwd=tmp_path,
    )
    names = module_names()
    assert "opscore.dispatch.delivery.webhook" in names
    check = (
        "import importlib, sys\n"
        f"site = {str(site)!r}\n"
        "for name in sys.argv[1:]:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.startswith(site), (name, module.__file__)\n"
        "print(len(sys.argv) - 1)\n"
    )
    imported = subprocess.run(
        [python, "-c", check, *names], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.strip()
    assert imported == str(len(names))

    # the dashboard's files, byte for byte
    static = SOURCES["opscore_tools"] / "dashboard" / "static"
    shipped = sorted(path.relative_to(static) for path in static.rglob("*") if path.is_file())
    assert {"index.html", "app.js", "app.css"} <= {str(path) for path in shipped}
    for path in shipped:
        installed = site / "opscore_tools" / "dashboard" / "static" / path
        assert installed.read_bytes() == (static / path).read_bytes(), f"the wheel lacks dashboard/static/{path}"
