"""The SDK is a package of its own: it imports without the service's dependencies or the service itself."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

BLOCKED = ["boto3", "botocore", "moto", "aws_lambda_powertools", "aws_xray_sdk", "yaml", "opscore", "opscore_tools"]

PROBE = f"""
import sys
# Any import of these fails, as it would where they are not installed.
for name in {BLOCKED!r}:
    sys.modules[name] = None
import opscore_sdk, opscore_sdk.client, opscore_sdk.webhook, opscore_sdk.models, opscore_sdk.errors
client = opscore_sdk.OpsCore("http://127.0.0.1:1/v1/opscore", "key")
client.close()
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {set(BLOCKED)!r} and sys.modules[name])
print("loaded:", loaded)
"""


def test_the_sdk_imports_without_boto3_moto_powertools_or_the_service() -> None:
    # Given an interpreter where the service's dependencies and the service library cannot be imported
    # When the SDK's modules are imported and a client is made
    done = subprocess.run(  # noqa: S603 - this interpreter, with a fixed probe
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO / "sdk", check=False
    )

    # Then it works, and none of them was loaded
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"


def test_the_package_metadata_names_only_an_http_client_and_pydantic() -> None:
    import tomllib

    project = tomllib.loads((REPO / "sdk" / "python" / "pyproject.toml").read_text())["project"]

    assert project["name"] == "opscore-sdk"
    assert sorted(requirement.split(">")[0].split("=")[0] for requirement in project["dependencies"]) == [
        "httpx",
        "pydantic",
    ]
    assert all("<" in requirement for requirement in project["dependencies"]), "compatible ranges, capped"


def test_the_version_is_kept_in_one_place() -> None:
    import tomllib

    # Given the package's build settings
    settings = tomllib.loads((REPO / "sdk" / "python" / "pyproject.toml").read_text())

    # Then the version is read from opscore_sdk.__version__, not written twice
    assert "version" not in settings["project"]
    assert settings["project"]["dynamic"] == ["version"]
    assert settings["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "opscore_sdk.__version__"}
