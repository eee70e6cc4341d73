"""Static checks of docker-compose.yaml, Dockerfile and .dockerignore.

No Docker engine runs on the development machines, so the deployment files are kept right by
review and by this test, which reads them as text / with PyYAML and never runs Docker.

Every check is a function that raises AssertionError; the tests run each one on the real files, and
``test_checks_catch_breakage`` runs them on deliberately broken copies (a wrong executor, a missing
service, a literal GUID, ...) to prove that the checks would fail when they should.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

COMMON = "x-airflow-common"
# The Airflow services of the official Airflow 3 file and the command each one runs.
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
    "airflow-init": None,  # a bash script: migrate, create the admin user and the state DB
}
LONG_RUNNING = [name for name, command in AIRFLOW_SERVICES.items() if command]
REQUIRED_SERVICES = {"postgres", "redis", *AIRFLOW_SERVICES, "icbridge-sim"}
# Environment keys the init job may set differently from the common block (as the official file does).
INIT_OVERRIDES = {"_PIP_ADDITIONAL_REQUIREMENTS"}

MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./plugins": "/opt/airflow/plugins",
    "./include": "/opt/airflow/include",
    "./logs": "/opt/airflow/logs",
    "./config": "/opt/airflow/config",
}
# 0.0.0.0 inside the simulator's container only: the compose file publishes none of its ports.
SIM_COMMAND = [
    "python", "-m", "icbsim", "--host", "0.0.0.0", "--state-dir", "/opt/airflow/sim-state",  # noqa: S104
    "--public-host", "icbridge-sim", "--env-file", "/opt/airflow/sim-state/connections.env",
]

# The only secret-looking literals allowed: the official file's local-development defaults.
ALLOWED_SECRET_VALUES = {"", "airflow", "airflow_jwt_secret"}
SECRET_KEY_RE = re.compile(r"PASSWORD|PASSWD|SECRET|KEY|TOKEN|GUID|CREDENTIAL", re.IGNORECASE)
GUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
# An Invoice Cloud / biller credential written as `Name: value` or `Name=value`.
IC_CREDENTIAL_RE = re.compile(
    r"(web_?service_?key|biller_?guid|biller_?key|api_?key|ic_?key)\s*[:=]\s*['\"]?[^\s'\"$]", re.IGNORECASE
)
URL_USERINFO_RE = re.compile(r"[a-z][a-z0-9+.-]*://([^:@/\s]*):([^@/\s]*)@", re.IGNORECASE)
TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
INTERPOLATION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: object) -> object:
    """What compose makes of a value when no variable is set: `${X:-d}` -> d, `${X}` -> ''."""
    if not isinstance(value, str):
        return value
    return INTERPOLATION_RE.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


def env_dict(env: object) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or as KEY=VALUE items."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)


class Compose:
    """docker-compose.yaml as data (merge keys resolved) and as a node graph (merge keys visible)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.doc = yaml.safe_load(text)
        self.root = yaml.compose(text)

    @property
    def services(self) -> dict:
        return self.doc["services"]

    @property
    def common(self) -> dict:
        return self.doc[COMMON]

    def env(self, service: str) -> dict[str, str]:
        return env_dict(self.services[service].get("environment"))

    def _node(self, mapping: yaml.MappingNode, key: str) -> yaml.Node:
        for key_node, value_node in mapping.value:
            if key_node.value == key:
                return value_node
        raise AssertionError(f"no key {key!r} in the YAML mapping")

    def merges_common(self, service: str) -> bool:
        """Whether the service's mapping has `<<: *airflow-common` (the very anchored node)."""
        common_node = self._node(self.root, COMMON)
        service_node = self._node(self._node(self.root, "services"), service)
        return any(key.tag == "tag:yaml.org,2002:merge" and value is common_node for key, value in service_node.value)

    def airflow_services(self) -> list[str]:
        return sorted(set(AIRFLOW_SERVICES) | {s for s in self.services if self.merges_common(s)})


# --------------------------------------------------------------------------------------- checks


def check_required_services(c: Compose) -> None:
    missing = REQUIRED_SERVICES - set(c.services)
    assert not missing, f"services missing from docker-compose.yaml: {sorted(missing)}"


def check_airflow_services_use_common_anchor(c: Compose) -> None:
    check_required_services(c)
    for service in AIRFLOW_SERVICES:
        assert c.merges_common(service), f"{service} does not merge the common block (<<: *airflow-common)"


def check_common_environment(c: Compose) -> None:
    env = env_dict(c.common.get("environment"))
    assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", env.get("AIRFLOW__CORE__EXECUTOR")
    assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false", "LOAD_EXAMPLES must be false"
    assert env.get("AIRFLOW__CORE__AUTH_MANAGER", "").startswith("airflow."), "auth manager not set"

    db = urlsplit(interpolate(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")))
    assert db.scheme.startswith("postgresql") and db.hostname == "postgres", f"metadata DB not on postgres: {db}"
    result = urlsplit(interpolate(env.get("AIRFLOW__CELERY__RESULT_BACKEND", "")))
    assert result.scheme.startswith("db+postgresql") and result.hostname == "postgres", result
    broker = urlsplit(interpolate(env.get("AIRFLOW__CELERY__BROKER_URL", "")))
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379), f"broker: {broker}"
    for host in {db.hostname, result.hostname, broker.hostname}:
        assert host in c.services, f"{host} is not a service"


def check_every_airflow_service_has_common_environment(c: Compose) -> None:
    check_common_environment(c)
    common = env_dict(c.common.get("environment"))
    for service in c.airflow_services():
        env = c.env(service)
        allowed = INIT_OVERRIDES if service == "airflow-init" else set()
        wrong = {k for k, v in common.items() if k not in allowed and env.get(k) != v}
        assert not wrong, f"{service} lacks or overrides common environment keys {sorted(wrong)}"


def check_execution_api(c: Compose) -> None:
    url = urlsplit(env_dict(c.common.get("environment")).get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ""))
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "http",
        "airflow-apiserver",
        8080,
        "/execution/",
    ), f"execution API URL must be http://airflow-apiserver:8080/execution/, is {url.geturl()}"
    api = c.services["airflow-apiserver"]
    assert api.get("command") == "api-server"
    assert any(str(p).split(":")[-1] == "8080" for p in api.get("ports", [])), "api-server port 8080"


def check_commands(c: Compose) -> None:
    for service, command in AIRFLOW_SERVICES.items():
        if command:
            assert c.services[service].get("command") == command, f"{service} must run `{command}`"


def _healthcheck_test(c: Compose, service: str) -> str:
    health = c.services[service].get("healthcheck") or {}
    assert not health.get("disable"), f"{service} healthcheck disabled"
    test = health.get("test")
    assert test, f"{service} has no healthcheck"
    return " ".join(test) if isinstance(test, list) else str(test)


def check_healthchecks(c: Compose) -> None:
    assert "pg_isready" in _healthcheck_test(c, "postgres")
    assert "redis-cli" in _healthcheck_test(c, "redis")
    assert "localhost:8080" in _healthcheck_test(c, "airflow-apiserver")
    assert "localhost:8974/health" in _healthcheck_test(c, "airflow-scheduler")
    scheduler_env = c.env("airflow-scheduler")
    assert scheduler_env.get("AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK", "").lower() == "true"


def check_depends_on(c: Compose) -> None:
    def conditions(service: str) -> dict[str, str]:
        deps = c.services[service].get("depends_on") or {}
        assert isinstance(deps, dict), f"{service}: depends_on must use conditions"
        return {name: (spec or {}).get("condition", "") for name, spec in deps.items()}

    base = {"postgres": "service_healthy", "redis": "service_healthy"}
    for service in AIRFLOW_SERVICES:
        got = conditions(service)
        for dep, cond in base.items():
            assert got.get(dep) == cond, f"{service} must wait for {dep} ({cond}), has {got.get(dep)!r}"
    for service in LONG_RUNNING:
        got = conditions(service)
        assert got.get("airflow-init") == "service_completed_successfully", f"{service} vs airflow-init"
    assert conditions("airflow-worker").get("airflow-apiserver") == "service_healthy", (
        "airflow-worker must wait for a healthy airflow-apiserver (official file)"
    )
    for service in c.services:
        for dep, cond in conditions(service).items():
            assert dep in c.services, f"{service} depends on unknown service {dep}"
            if cond == "service_healthy":
                _healthcheck_test(c, dep)


def _mounts(volumes: list) -> set[tuple[str, str]]:
    pairs = set()
    for volume in volumes or []:
        parts = str(interpolate(volume)).split(":")
        if len(parts) >= 2:
            pairs.add((parts[0], parts[1]))
    return pairs


def check_volumes(c: Compose) -> None:
    wanted = set(MOUNTS.items())
    for service in c.airflow_services():
        missing = wanted - _mounts(c.services[service].get("volumes"))
        assert not missing, f"{service} does not mount {sorted(missing)}"


def _build_context(build: object) -> tuple[str, str]:
    if isinstance(build, str):
        return build, "Dockerfile"
    assert isinstance(build, dict), f"no build section: {build!r}"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def check_build(c: Compose) -> None:
    context, dockerfile = _build_context(c.common.get("build"))
    assert (REPO / context / dockerfile).resolve() == DOCKERFILE, f"build does not use {DOCKERFILE}"
    image = str(interpolate(c.common.get("image", "")))
    assert image.startswith("icbridge-airflow:"), f"image {image!r}"
    for service in c.airflow_services():
        assert c.services[service].get("build") == c.common["build"], f"{service} build"
        assert c.services[service].get("image") == c.common["image"], f"{service} image"


def check_state_db(c: Compose) -> None:
    env = env_dict(c.common.get("environment"))
    assert "ICBRIDGE_STATE_DB_URL" in env, "ICBRIDGE_STATE_DB_URL not set for the Airflow services"
    state = urlsplit(str(interpolate(env["ICBRIDGE_STATE_DB_URL"])))
    meta = urlsplit(str(interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])))
    assert state.scheme.startswith("postgresql") and state.hostname == "postgres", state
    assert state.path == "/icbridge" and state.path != meta.path, "state DB must be its own `icbridge` DB"
    init = c.services["airflow-init"]["command"]
    script = "\n".join(init) if isinstance(init, list) else str(init)
    assert "ICBRIDGE_STATE_DB_URL" in script and "CREATE DATABASE" in script, "init does not create it"
    assert "python -m icbridge pools --create-missing" in script, "init does not create the endpoint pools"
    assert env.get("ICBRIDGE_ENDPOINT_POOLS") == "true", "the deployment bounds shared endpoints by pools"


def check_sim(c: Compose) -> None:
    sim = c.services["icbridge-sim"]
    command = sim.get("command")
    command = command.split() if isinstance(command, str) else command
    assert command == SIM_COMMAND, command
    assert sim.get("image") == c.common["image"], "the simulator runs from the icbridge image"
    assert "env_file" not in sim, "the simulator must not get the real secrets in .env"
    assert "icbridge-sim-state:/opt/airflow/sim-state:ro" in c.common["volumes"], "workers need the sim's CA"
    for port in sim.get("ports", []) or []:
        published = port if isinstance(port, dict) else {"host_ip": str(port).rsplit(":", 2)[0]}
        assert str(published.get("host_ip", "")) == "127.0.0.1", f"simulator port published: {port}"


def _scalars(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _scalars(value)
    elif isinstance(node, list):
        for item in node:
            yield "", item
            yield from _scalars(item)


def check_no_secret_literals(c: Compose) -> None:
    assert not GUID_RE.search(c.text), f"GUID literal: {GUID_RE.search(c.text).group(0)}"
    assert not IC_CREDENTIAL_RE.search(c.text), f"credential: {IC_CREDENTIAL_RE.search(c.text).group(0)}"
    for match in URL_USERINFO_RE.finditer(c.text):
        assert match.group(2) in ALLOWED_SECRET_VALUES, f"password in URL: {match.group(0)}"
    for token in TOKEN_RE.findall(c.text):
        mixed = any(ch.isdigit() for ch in token) and token.lower() != token and token.upper() != token
        assert not mixed, f"key-like literal: {token}"
    for service, spec in {COMMON: c.common, **c.services}.items():
        env = env_dict(spec.get("environment"))
        conns = [k for k in env if k.startswith("AIRFLOW_CONN_")]
        assert not conns, f"{service}: connections belong in .env or a secrets backend: {conns}"
        for key, value in env.items():
            if SECRET_KEY_RE.search(key):
                assert interpolate(value) in ALLOWED_SECRET_VALUES, f"{service}: literal secret in {key}"
    for key, value in _scalars(c.doc):
        if SECRET_KEY_RE.search(key) and isinstance(value, str):
            assert interpolate(value) in ALLOWED_SECRET_VALUES, f"literal secret in {key}"


COMPOSE_CHECKS: list[Callable[[Compose], None]] = [
    check_required_services,
    check_airflow_services_use_common_anchor,
    check_common_environment,
    check_every_airflow_service_has_common_environment,
    check_execution_api,
    check_commands,
    check_healthchecks,
    check_depends_on,
    check_volumes,
    check_build,
    check_state_db,
    check_sim,
    check_no_secret_literals,
]


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def check_dockerfile(text: str) -> None:
    instructions = _instructions(text)
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms, "no FROM"
    assert re.fullmatch(r"apache/airflow:3\.3\.\d+(-python3\.\d+)?", froms[-1]), f"FROM {froms[-1]}"
    user = "root"  # the official image's USER is airflow, but a Dockerfile must say so before pip
    pip_runs = []
    for keyword, args in instructions:
        if keyword == "USER":
            user = args.split(":")[0]
        elif keyword == "RUN" and "pip install" in args:
            assert user == "airflow", f"pip must run as the airflow user: RUN {args}"
            pip_runs.append(args)
    assert any("-r requirements.txt" in run and "-c constraints/constraints-3.11.txt" in run for run in pip_runs), (
        "requirements are not installed with the constraints file"
    )
    assert any(re.search(r"pip install .*--no-deps\s+\.(\s|$)", run) for run in pip_runs), "project not installed"
    copies = " ".join(args for keyword, args in instructions if keyword in {"COPY", "ADD"})
    for source in ("requirements.txt", "constraints/constraints-3.11.txt", "pyproject.toml", "include/"):
        assert source in copies, f"{source} is not copied into the image"
    assert ".env" not in copies.split(), "never copy .env into the image"


def check_dockerignore(text: str) -> None:
    patterns = {ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}
    for needed in (".venv", ".git", "**/__pycache__", ".env"):
        assert needed in patterns, f".dockerignore does not exclude {needed}"
    for source in ("requirements.txt", "constraints", "pyproject.toml", "include", "include/"):
        assert source not in patterns, f".dockerignore excludes {source}, which the Dockerfile copies"


# ---------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.mark.parametrize("check", COMPOSE_CHECKS, ids=lambda f: f.__name__)
def test_compose(check: Callable[[Compose], None], compose_text: str) -> None:
    check(Compose(compose_text))


def test_dockerfile() -> None:
    check_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerignore() -> None:
    check_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))


def test_no_secret_literals_in_image_files() -> None:
    for path in (DOCKERFILE, DOCKERIGNORE):
        text = path.read_text(encoding="utf-8")
        assert not GUID_RE.search(text), path
        assert not IC_CREDENTIAL_RE.search(text), path


@pytest.mark.parametrize(
    "source", ["pyproject.toml", "include/icbridge", "requirements.txt", "constraints/constraints-3.11.txt"]
)
def test_dockerfile_sources_exist(source: str) -> None:
    if not (REPO / source).exists():
        message = f"{source}, which the Dockerfile copies, does not exist"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + " (yet); CI fails on this")


# Each breakage: the file, the text to replace (must be present), its replacement, the check it trips.
BREAKAGES = [
    (
        "wrong executor",
        "AIRFLOW__CORE__EXECUTOR: CeleryExecutor",
        "AIRFLOW__CORE__EXECUTOR: LocalExecutor",
        check_common_environment,
    ),
    (
        "examples loaded",
        "AIRFLOW__CORE__LOAD_EXAMPLES: 'false'",
        "AIRFLOW__CORE__LOAD_EXAMPLES: 'true'",
        check_common_environment,
    ),
    ("broker not redis", "redis://:@redis:6379/0", "amqp://rabbitmq:5672//", check_common_environment),
    (
        "metadata DB on sqlite",
        "postgresql+psycopg2://airflow:airflow@postgres/airflow",
        "sqlite:////opt/airflow/airflow.db",
        check_common_environment,
    ),
    (
        "missing dag-processor",
        "  airflow-dag-processor:\n",
        "  airflow-dag-processr:\n",
        check_required_services,
    ),
    ("missing simulator", "  icbridge-sim:\n", "  ic-sim:\n", check_required_services),
    (
        "triggerer without the anchor",
        "<<: *airflow-common\n    command: triggerer",
        "image: icbridge-airflow:latest\n    command: triggerer",
        check_airflow_services_use_common_anchor,
    ),
    (
        "worker env replaced",
        "      <<: *airflow-common-env\n      # Required to handle warm shutdown",
        "      AIRFLOW__CORE__EXECUTOR: CeleryExecutor\n      # Required to handle warm shutdown",
        check_every_airflow_service_has_common_environment,
    ),
    ("scheduler runs the wrong command", "command: scheduler", "command: standalone", check_commands),
    (
        "execution API elsewhere",
        "http://airflow-apiserver:8080/execution/",
        "http://localhost:8080/execution/",
        check_execution_api,
    ),
    (
        "no scheduler healthcheck",
        'test: ["CMD", "curl", "--fail", "http://localhost:8974/health"]',
        "disable: true",
        check_healthchecks,
    ),
    (
        "worker does not wait for a healthy API server",
        "      airflow-apiserver:\n        condition: service_healthy",
        "      airflow-apiserver:\n        condition: service_started",
        check_depends_on,
    ),
    ("include not mounted", "    - ${AIRFLOW_PROJ_DIR:-.}/include:/opt/airflow/include\n", "", check_volumes),
    ("pulled, not built", "  build: .\n  # `required: false`", "  # `required: false`", check_build),
    (
        "state DB is Airflow's",
        "airflow:airflow@postgres/icbridge}",
        "airflow:airflow@postgres/airflow}",
        check_state_db,
    ),
    (
        "simulator published",
        "    restart: always\n\nvolumes:",
        '    restart: always\n    ports:\n      - "8443:8443"\n\nvolumes:',
        check_sim,
    ),
    (
        "literal biller GUID",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n    IC_BILLER: 0b9c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3\n",
        check_no_secret_literals,
    ),
    (
        "literal WebServiceKey",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n    IC_WebServiceKey: hunter2\n",
        check_no_secret_literals,
    ),
    (
        "literal connection",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n",
        "    AIRFLOW__CORE__LOAD_EXAMPLES: 'false'\n    AIRFLOW_CONN_IC_DEMO: 'invoice-cloud://h'\n",
        check_no_secret_literals,
    ),
    (
        "literal Fernet key",
        "${FERNET_KEY}",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUo=",
        check_no_secret_literals,
    ),
    (
        "real DB password",
        "airflow:airflow@postgres/airflow\n    AIRFLOW__CELERY__RESULT_BACKEND",
        "airflow:Pr0d-pass@postgres/airflow\n    AIRFLOW__CELERY__RESULT_BACKEND",
        check_no_secret_literals,
    ),
]

DOCKERFILE_BREAKAGES = [
    ("Airflow 2 base", "FROM apache/airflow:3.3.2-python3.11", "FROM apache/airflow:2.10.5-python3.11"),
    ("pip as root", "USER airflow", "USER root"),
    ("no constraints", " -c constraints/constraints-3.11.txt", ""),
    ("project not installed", "RUN pip install --no-cache-dir --no-deps .", "RUN true"),
]


@pytest.mark.parametrize(("old", "new", "check"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_checks_catch_breakage(old: str, new: str, check: Callable[[Compose], None], compose_text: str) -> None:
    assert old in compose_text, f"breakage no longer applies, update it: {old!r}"
    broken = Compose(compose_text.replace(old, new, 1))
    with pytest.raises(AssertionError):
        check(broken)


@pytest.mark.parametrize(
    ("old", "new"), [b[1:] for b in DOCKERFILE_BREAKAGES], ids=[b[0] for b in DOCKERFILE_BREAKAGES]
)
def test_dockerfile_checks_catch_breakage(old: str, new: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text, f"breakage no longer applies, update it: {old!r}"
    with pytest.raises(AssertionError):
        check_dockerfile(text.replace(old, new, 1))


def test_dockerignore_check_catches_breakage() -> None:
    text = DOCKERIGNORE.read_text(encoding="utf-8")
    with pytest.raises(AssertionError):
        check_dockerignore(text.replace("\n.venv\n", "\n"))
    with pytest.raises(AssertionError):
        check_dockerignore(text + "\ninclude\n")
