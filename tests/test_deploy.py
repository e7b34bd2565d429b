"""The container deployment (Dockerfile, compose.yaml, .dockerignore) and the `rotator` command
agree with what the README documents, what scripts/ run and what config/settings.py reads.

CI has no Docker engine, so the image is never built: scripts/test lints the Dockerfile with
hadolint, and these tests read the files the build would read.
"""

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app

ROOT = Path(__file__).resolve().parent.parent
ROTATOR_SERVICES = ("migrate", "web", "worker", "beat")
# Read by something other than config/settings.py: compose.yaml itself, and the ASGI server
# command (scripts/serve and the image's CMD).
NOT_SETTINGS = {"POSTGRES_PASSWORD", "WEB_CONCURRENCY"}


def _text(name: str) -> str:
    return (ROOT / name).read_text()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_text("compose.yaml"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def settings_variables() -> set[str]:
    """Every environment variable config/settings.py reads, through its env_* helpers."""
    return set(
        re.findall(
            r"(?:env_(?:str|int|float|bool|time|url|list|secret)|proxy_ssl_header)"
            r"\(\s*\"([A-Z0-9_]+)\"",
            _text("config/settings.py"),
        )
    )


def interpolated(value: str) -> set[str]:
    """The variables compose substitutes into a value (`${NAME}`, `${NAME:?message}`, ...)."""
    return set(re.findall(r"\$\{([A-Z0-9_]+)", value))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", _text("Dockerfile"))
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def image_command() -> list[str]:
    """The final stage's CMD, the `sh -c` script inside it split as the shell would."""
    (cmd,) = [args for name, args in dockerfile_stages()[-1] if name == "CMD"]
    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    assert script.startswith("exec ")
    return shlex.split(script.removeprefix("exec "))


def image_healthcheck() -> list[str]:
    (check,) = [args for name, args in dockerfile_stages()[-1] if name == "HEALTHCHECK"]
    return json.loads(check.split(" CMD ", 1)[1])


def serve_command() -> list[str]:
    """The uvicorn command scripts/serve ends with."""
    script = re.sub(r"\\\n\s*", " ", _text("scripts/serve"))
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    return shlex.split(line.removeprefix("exec "))


def flags(argv: list[str]) -> dict[str, str | None]:
    """--name value / --switch pairs of a command line."""
    found: dict[str, str | None] = {}
    for index, word in enumerate(argv):
        if word.startswith("--"):
            following = argv[index + 1] if index + 1 < len(argv) else "--"
            found[word] = None if following.startswith("--") else following
    return found


def readme_commands(program: str) -> list[list[str]]:
    """The README's command lines that run `program` from .venv (comments dropped)."""
    return [
        shlex.split(line.split("#")[0].replace(".venv/bin/", ""))
        for line in _text("README.md").splitlines()
        if line.startswith(f".venv/bin/{program} ")
    ]


# ------------------------------------------------------------------------------ compose.yaml


def test_compose_runs_the_production_profile_with_named_volumes(compose, services):
    assert set(services) == {*ROTATOR_SERVICES, "postgres", "redis"}
    assert set(compose["volumes"]) == {"postgres-data", "redis-data"}
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    for name in ROTATOR_SERVICES:
        service = services[name]
        assert service["build"] == "."
        assert service["image"] == services["web"]["image"]
        assert service["env_file"] == ".env"
        # No volume over the image's var/: it holds the static files collected at build time.
        assert "volumes" not in service


def test_every_variable_compose_sets_for_rotator_is_one_settings_reads(services):
    read = settings_variables()
    for name in ROTATOR_SERVICES:
        assert set(services[name]["environment"]) <= read, name


def test_every_variable_in_the_env_example_is_read_and_compose_needs_nothing_else(services):
    example = _text(".env.example")
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert listed - NOT_SETTINGS <= settings_variables()
    # What compose substitutes must be uncommented in the example, so `cp .env.example .env`
    # shows the operator every value compose will refuse to start without.
    required = set().union(
        *(interpolated(str(value)) for s in services.values() for value in _values(s))
    )
    uncommented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert required - {"ROTATOR_PORT"} == uncommented


def _values(service: dict) -> list:
    environment = service.get("environment", {})
    return [*environment.values(), *service.get("ports", [])]


def test_rotator_reaches_the_postgres_and_redis_services_compose_defines(services):
    environment = services["web"]["environment"]
    database = urlsplit(re.sub(r"\$\{[^}]*\}", "password", environment["DATABASE_URL"]))
    postgres = services["postgres"]["environment"]
    assert database.scheme == "postgres"
    assert database.hostname == "postgres"
    assert database.username == postgres["POSTGRES_USER"]
    assert database.path == f"/{postgres['POSTGRES_DB']}"
    assert interpolated(environment["DATABASE_URL"]) == interpolated(postgres["POSTGRES_PASSWORD"])
    assert urlsplit(environment["REDIS_URL"]).hostname == "redis"
    for required in ("SECRET_KEY", "ROTATOR_ENCRYPTION_KEY"):
        assert environment[required].startswith(f"${{{required}:?")


def test_migrations_run_once_in_a_one_shot_service_that_the_others_wait_for(services):
    migrate = services["migrate"]
    steps = [shlex.split(step) for step in migrate["command"][2].split("&&")]
    assert migrate["command"][:2] == ["sh", "-c"]
    assert steps[0] == ["rotator", "migrate", "--noinput"]
    assert steps[1][:2] == ["rotator", "firststeps"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat"):
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "migrate" not in " ".join(service.get("command", []))
    assert "migrate" not in image_command()


def test_worker_and_beat_run_the_readmes_celery_commands_on_the_app_that_exists(services):
    documented = readme_commands("celery")
    assert [services["worker"]["command"], services["beat"]["command"]] == [
        ["celery", *argv[1:]] for argv in documented
    ]
    for argv in documented:
        app = find_app(argv[argv.index("-A") + 1])
        assert isinstance(app, Celery)
        assert app.main == "rotator"


def test_web_serves_as_scripts_serve_does_with_one_worker_per_core(services):
    image, serve = image_command(), serve_command()
    assert image[0] == "uvicorn"
    assert serve[0] == ".venv/bin/uvicorn"
    assert image[1] == serve[1] == "config.asgi:application"
    image_flags, serve_flags = flags(image), flags(serve)
    assert set(image_flags) == set(serve_flags)
    assert image_flags["--lifespan"] == serve_flags["--lifespan"] == "on"
    assert "--no-access-log" in image_flags  # rotator.request is the one line per request
    assert image_flags["--workers"] == "${WEB_CONCURRENCY:-$(nproc)}"
    assert serve_flags["--workers"] == "${WEB_CONCURRENCY:-1}"
    assert image_flags["--port"] == "8000"
    assert "command" not in services["web"]  # the image's CMD is the web server


def test_web_has_the_images_healthcheck_and_it_passes_on_a_healthy_server(services, live):
    web = services["web"]["healthcheck"]
    assert web["test"] == ["CMD", *image_healthcheck()]
    assert "http://127.0.0.1:8000/healthz" in web["test"][-1]
    for name in ("migrate", "worker", "beat"):
        assert services[name]["healthcheck"] == {"disable": True}, name
    program, *arguments = image_healthcheck()
    arguments[-1] = arguments[-1].replace("http://127.0.0.1:8000", live)
    assert program == "python"
    result = subprocess.run([sys.executable, *arguments], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_healthcheck_fails_when_nothing_answers():
    _, *arguments = image_healthcheck()
    arguments[-1] = arguments[-1].replace("127.0.0.1:8000", "127.0.0.1:9")
    result = subprocess.run([sys.executable, *arguments], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_every_service_the_readme_names_in_a_compose_command_exists(services):
    named = re.findall(
        r"docker compose (?:exec|run --rm|logs|restart) ([a-z]+)", _text("README.md")
    )
    assert named
    assert set(named) <= set(services)


# ------------------------------------------------------------------------------- Dockerfile


def test_the_image_is_built_in_two_stages_on_one_slim_python_311_base():
    stages = dockerfile_stages()
    assert len(stages) == 2
    bases = [stage[0][1].split()[0] for stage in stages]
    assert bases[0] == bases[1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", bases[0])


def test_the_final_image_runs_as_an_unprivileged_user_without_build_tools():
    final = dockerfile_stages()[-1]
    (user,) = [args for name, args in final if name == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    run = " ".join(args for name, args in final if name == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in run
    copied = [args for name, args in final if name == "COPY"]
    assert all(args.startswith("--from=build") for args in copied)


def test_static_files_are_collected_at_build_time_without_baking_in_a_secret():
    build = " ".join(args for name, args in dockerfile_stages()[0] if name == "RUN")
    assert "rotator collectstatic --noinput" in build
    # Without SECRET_KEY, settings would generate one into var/ and ship it in the image.
    assert "SECRET_KEY=" in build.split("collectstatic")[0]


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret():
    patterns = [
        line.strip()
        for line in _text(".dockerignore").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list: nothing new slips in by default
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/").removeprefix("./")
        for name, args in dockerfile_stages()[0]
        if name == "COPY"
        for source in args.split()[:-1]
    }
    assert copied <= allowed
    for secret in (".env", "var", ".venv", ".git"):
        assert not any(fnmatch.fnmatch(secret, p) for p in allowed), secret


def test_the_readme_says_the_image_is_linted_not_built_in_ci():
    readme = _text("README.md")
    assert "linted, not built" in readme
    assert "hadolint" in _text("scripts/test")


# ------------------------------------------------------------------- pyproject, `rotator`


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(_text("pyproject.toml"))


def test_pyproject_installs_a_rotator_command_from_the_apps_packages(pyproject):
    assert pyproject["project"]["scripts"] == {"rotator": "config.cli:main"}
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for app in ("config", "common", "accounts", "rotator", "stats", "api")
        for init in (ROOT / app).rglob("__init__.py")
    }
    # Every package is listed (a forgotten migrations package would install a broken app),
    # and nothing listed is missing; `templates` is data that settings look for beside them.
    assert listed == on_disk | {"templates"}
    data = pyproject["tool"]["setuptools"]["package-data"]
    for package, globs in data.items():
        for pattern in globs:
            assert list((ROOT / package).glob(pattern)), f"{package}/{pattern} matches nothing"
    dependencies = pyproject["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert dependencies == ["requirements.txt"]


def test_the_rotator_command_runs_djangos_management_commands():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from config.cli import main; sys.argv = ['rotator', 'check']; main()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
