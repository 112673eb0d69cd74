"""`sam build` output: what would ship to Lambda (arm64, python3.13), and what must never ship."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opscore_tools.local.template import Template
from tests.conftest import REPO, TEMPLATE_PATH

SAM = REPO / ".venv-sam" / "bin" / "sam"
ELF_MACHINE_AARCH64 = 0xB7


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAM.exists():
        pytest.fail("the SAM CLI is not installed: run `make test` (it installs .venv-sam)")
    out = tmp_path_factory.mktemp("sam-build")
    # sam build needs a python3.13 on PATH: this venv's own interpreter is one.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    result = subprocess.run(  # noqa: S603 - the project's own SAM CLI
        [
            str(SAM),
            "build",
            "--template",
            str(TEMPLATE_PATH),
            "--build-dir",
            str(out),
            "--cache-dir",
            str(out / ".cache"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compiled = subprocess.run(  # noqa: S603 - the same step as `make build`
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return out


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def test_every_native_extension_is_built_for_arm64_and_python313(build_dir: Path) -> None:
    extensions = list(build_dir.rglob("*.so"))
    assert extensions, "pydantic-core at least is native"
    for extension in extensions:
        assert elf_machine(extension) == ELF_MACHINE_AARCH64, extension
        if "cpython-" in extension.name:
            assert "cpython-313-aarch64" in extension.name, extension


def test_the_layer_carries_the_library_and_a_matching_sdk(build_dir: Path) -> None:
    site = build_dir / "OpsCoreLayer" / "python"
    library = REPO / "layers" / "opscore"
    modules = sorted(str(path.relative_to(library)) for path in (library / "opscore").rglob("*.py"))
    assert modules, "the library has modules"
    for module in modules:
        assert (site / module).is_file(), f"{module} is missing from the layer"
    assert (site / "yaml" / "__init__.py").is_file(), "workflow templates may be YAML"
    versions = {
        path.name.split("-")[0]: path.name.split("-")[1].removesuffix(".dist-info") for path in site.glob("*.dist-info")
    }
    assert versions["boto3"][:4] == versions["botocore"][:4], "boto3 and botocore come as the tested pair"


def test_nothing_but_handlers_ships_in_functions_and_no_tooling_anywhere(build_dir: Path, template: Template) -> None:
    for function in template.functions:
        shipped = sorted(str(path.relative_to(build_dir / function)) for path in (build_dir / function).rglob("*"))
        assert shipped == ["__pycache__", "__pycache__/app.cpython-313.pyc", "app.py"], (function, shipped)
    names = {path.name for path in build_dir.rglob("*")}
    for forbidden in ("opscore_tools", "playwright", "moto", "pytest", "typer", "rich"):
        assert forbidden not in names, forbidden


def test_every_module_ships_bytecode_that_a_zip_cannot_make_stale(build_dir: Path) -> None:
    # Lambda unpacks zips with 1980 timestamps and cannot write to /opt: timestamp-checked .pyc files would be
    # recompiled on every cold start. Hash-checked ones stay valid.
    sources = [path for path in build_dir.rglob("*.py") if ".cache" not in path.parts]
    assert len(sources) > 500, "the layer carries its dependencies"
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        assert compiled.is_file(), source
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        assert flags == 0b11, f"{compiled} is not hash-based and checked"
