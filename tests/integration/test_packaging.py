"""The product package and the simulators: icbridge imports no icbsim module, the wheel holds no icbsim.

The simulators (include/icbsim) serve the demo, the tests and docker-compose; they are not
shipped. The product reaches them only inside the development tools that run them (the demo,
``icbridge sample-aus``), imported there when the tool runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import yaml
from setuptools import find_packages

from tests.support.services import REPO

INCLUDE = REPO / "include"


def test_no_icbridge_module_imports_icbsim() -> None:
    """Every icbridge module (``__main__``, which runs the CLI, aside), imported in a fresh
    interpreter where icbsim is importable, leaves no icbsim module loaded."""
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import icbsim  # importable here, so an import of it would succeed and be seen\n"
        "del sys.modules['icbsim']\n"
        "import icbridge\n"
        "names = [m.name for m in pkgutil.walk_packages(icbridge.__path__, 'icbridge.')\n"
        "         if not m.name.endswith('.__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps([len(names), sorted(n for n in sys.modules if n.split('.')[0] == 'icbsim')]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=False, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, loaded = json.loads(done.stdout.splitlines()[-1])
    assert count > 50, done.stdout  # the walk did find the package
    assert loaded == [], f"icbridge imports simulator modules: {loaded}"


def _wheel_packages() -> list[str]:
    """The packages setuptools puts in the wheel, by pyproject's [tool.setuptools.packages.find]."""
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    (where,) = find["where"]
    return find_packages(where=str(REPO / where), include=find["include"], exclude=find.get("exclude", ()))


def test_the_wheel_holds_icbridge_and_no_simulator() -> None:
    packages = _wheel_packages()
    assert not [p for p in packages if p.split(".")[0] == "icbsim"]
    on_disk = {
        ".".join(init.parent.relative_to(INCLUDE).parts) for init in (INCLUDE / "icbridge").rglob("__init__.py")
    }
    assert set(packages) == on_disk  # every icbridge subpackage, nothing else


def test_the_simulator_service_finds_icbsim_on_its_pythonpath() -> None:
    """The image installs the wheel only: compose's simulator imports icbsim from the include/ copy."""
    service = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]["icbridge-sim"]
    assert service["command"][:3] == ["python", "-m", "icbsim"]
    assert "/opt/airflow/include" in service["environment"]["PYTHONPATH"].split(":")
