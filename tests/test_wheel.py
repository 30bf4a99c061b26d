"""The package as a department installs it: a wheel built from this checkout, installed into a
fresh virtualenv outside it, used from a folder that holds only copies of the schemas and
grants. Nothing may be found through the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.checkout import GRANTS, ROOT, SCHEMAS

SLICES = ("core", "producers", "streams", "consumers", "deploy", "console", "cli")


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XBUS_", "PYTHON"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout's files (what git would commit), so that
    no build folder is left in the checkout and none of an earlier build gets in."""
    source = tmp_path_factory.mktemp("source")
    listed = _run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)], out
    )
    (found,) = out.glob("xbus-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``bin`` folder of a fresh virtualenv with the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], venv)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], venv, 1200)
    yield venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder outside the checkout with copies of the schemas and grants, as a
    department's own repository would hold them."""
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    shutil.copytree(GRANTS, tmp_path / "grants")
    return tmp_path


def test_wheel_holds_one_namespace_and_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"xbus"}, f"top-level names besides xbus in the wheel: {tops - {'xbus'}}"
    assert "xbus/__init__.py" not in names, "xbus is a namespace: no __init__.py"
    in_checkout = {
        str(p.relative_to(ROOT / s))
        for s in SLICES
        for p in (ROOT / s / "xbus").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    missing = sorted(in_checkout - set(names))
    assert not missing, f"files of the checkout missing from the wheel: {missing}"


def test_sdks_and_commands_work_outside_the_checkout(installed: Path, workdir: Path) -> None:
    python = str(installed / "python")
    imported = _run(
        [
            python,
            "-c",
            "import xbus.core.settings, xbus.deploy.kafka as k, xbus.deploy.registry as r\n"
            "from xbus.producers.publisher import Publisher\n"
            "from xbus.consumers.subscriber import Subscription\n"
            "from xbus.consumers.sinks.signing import verify_webhook\n"
            "from xbus.core.catalog import Catalog\n"
            "assert k.KAFKA_POM.is_file() and r.REGISTRY_POM.is_file()\n"
            "print(xbus.core.settings.__file__)\n"
            "print(len(Catalog.load(xbus.core.settings.bus_settings().schemas_dir)))",
        ],
        workdir,
    )
    module_file, datasets = imported.stdout.split()
    assert not Path(module_file).is_relative_to(ROOT), f"imported from the checkout: {module_file}"
    assert int(datasets) == len(list(SCHEMAS.glob("*/*.avsc")))

    assert "publish" in _run([str(installed / "xbus"), "--help"], workdir).stdout

    checked = _run([str(installed / "xbus"), "schemas", "check", "--no-registry"], workdir)
    assert f"{len(list(SCHEMAS.glob('*/*.avsc')))} datasets parse" in checked.stdout

    validated = _run([str(installed / "xbus"), "grants", "validate", "grants"], workdir)
    assert f"{len(list(GRANTS.rglob('*.yaml')))} grant(s) valid" in validated.stdout


def test_files_people_write_are_found_where_they_run_it(
    installed: Path, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("empty")
    result = subprocess.run(
        [str(installed / "xbus"), "schemas", "check", "--no-registry"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert str(elsewhere / "schemas") in result.stdout + result.stderr
