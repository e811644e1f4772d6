"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

The compose file is validated against the compose-spec JSON Schema, then cross-checked
against the repository: services, build contexts, Dockerfiles, console scripts, env names.
tests/compose/ builds and runs the stack on a real engine (scripts/compose-test.sh).
"""

from __future__ import annotations

import copy
import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from jsonschema import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DEPS_SCRIPT = REPO_ROOT / "docker" / "deps.py"

ASTRA_ENV_NAME = re.compile(r"ASTRA_(SYNTH|ENVHOST|ROLLOUT|TRAINER|DATABASE|GATEWAY)_[A-Z_]+")
# Settings every service has (astra_common ServiceSettings), under its own prefix.
COMMON_SETTINGS = ("HOST", "PORT", "ENVIRONMENT", "API_TOKEN", "LOG_LEVEL")
# Executables shipped by the third-party images the compose file runs.
IMAGE_BINARIES = {
    "redis": {"redis-server", "redis-cli"},
    "postgres": {"postgres", "pg_isready"},
    "vllm/vllm-openai": {"vllm", "python3"},
}
SCALABLE_SERVICES = ("synth-worker", "envhost", "rollout")
# Base images: a build argument or variable whose default is the upstream name users pull.
UPSTREAM_IMAGES = {
    "ASTRA_PYTHON_IMAGE": "python:3.11-slim",
    "ASTRA_REDIS_IMAGE": "redis:7-alpine",
    "ASTRA_POSTGRES_IMAGE": "postgres:16-alpine",
}
# Images of this repository that hold no service package (their own entrypoint and port).
OTHER_DOCKERFILES = {"docker/vllm-cpu/Dockerfile"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --- loading -------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    """The compose file as plain data (YAML anchors resolved)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    """Compose services by name."""
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


@cache
def compose_validator() -> Validator:
    """A validator for the compose-spec schema, of the draft the schema declares."""
    schema = get_builtin_schema("vendor.compose-spec")
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    validator: Validator = validator_class(schema)
    return validator


@dataclass(frozen=True)
class Pyproject:
    """The parts of a repository pyproject.toml these checks use."""

    directory: Path
    name: str
    dependencies: tuple[str, ...]
    scripts: frozenset[str]


@cache
def pyprojects() -> dict[Path, Pyproject]:
    """Every pyproject of the repository, keyed by its directory relative to the root."""
    found: dict[Path, Pyproject] = {}
    patterns = ("pyproject.toml", "proto/pyproject.toml", "libs/*/pyproject.toml")
    paths = [path for pattern in patterns for path in REPO_ROOT.glob(pattern)]
    for path in sorted([*paths, *REPO_ROOT.glob("services/*/pyproject.toml")]):
        relative = path.parent.relative_to(REPO_ROOT)
        project = tomllib.loads(path.read_text())["project"]
        found[relative] = Pyproject(
            directory=relative,
            name=project["name"],
            dependencies=tuple(project.get("dependencies", ())),
            scripts=frozenset(project.get("scripts", {})),
        )
    return found


def requirement_name(requirement: str) -> str:
    """Normalized project name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    arguments: str

    def words(self) -> list[str]:
        """Arguments in JSON (exec) form or shell form, without --flags."""
        text = self.arguments.strip()
        words = yaml.safe_load(text) if text.startswith("[") else shlex.split(text)
        assert isinstance(words, list)
        return [str(word) for word in words if not str(word).startswith("--")]


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile, comments dropped and continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def built_services() -> Iterator[tuple[str, Path, Path]]:
    """(service, build context, Dockerfile) for every service built from this repository."""
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (REPO_ROOT / build.get("context", ".")).resolve()
        yield name, context, context / build.get("dockerfile", "Dockerfile")


def all_dockerfiles() -> list[Path]:
    """Every Dockerfile the compose file builds, each once."""
    return sorted({dockerfile for _, _, dockerfile in built_services()})


def dockerfiles() -> list[Path]:
    """The Dockerfiles of the service packages (services/*/Dockerfile)."""
    return [path for path in all_dockerfiles() if path.parent.parent == REPO_ROOT / "services"]


def image_default(reference: str) -> str:
    """``${VAR:-default}`` as compose resolves it when VAR is unset; other text unchanged."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", reference)


def local_installs(instructions: list[Instruction]) -> list[Path]:
    """Directories a Dockerfile installs with ``pip install --no-deps``."""
    found: list[Path] = []
    for instruction in instructions:
        if instruction.keyword == "RUN" and "--no-deps" in instruction.arguments:
            words = shlex.split(instruction.arguments)
            found += [Path(word) for word in words if word.startswith("./")]
    return [Path(path.as_posix().removeprefix("./")) for path in found]


def image_scripts(dockerfile: Path) -> set[str]:
    """Console scripts of the local packages an image installs."""
    projects = pyprojects()
    return {
        script
        for directory in local_installs(parse_dockerfile(dockerfile))
        for script in projects[directory].scripts
    }


def executable(service: dict[str, Any]) -> str | None:
    """The program a service runs: entrypoint, else command; what ``sh -c`` execs."""
    argv = service.get("entrypoint") or service.get("command")
    if argv is None:
        return None
    words = shlex.split(argv) if isinstance(argv, str) else [str(word) for word in argv]
    if words[:2] == ["sh", "-c"]:
        match = re.search(r"\bexec\s+(\S+)", words[2])
        assert match is not None, f"a sh -c command must exec the service: {words[2]!r}"
        return match.group(1)
    return words[0]


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's dependencies in long form."""
    found = service.get("depends_on", {})
    if isinstance(found, list):
        return {name: {"condition": "service_started"} for name in found}
    assert isinstance(found, dict)
    return found


# --- (1) schema ----------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema() -> None:
    document = load_compose()
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in compose_validator().iter_errors(document)
    ]
    assert errors == []
    assert "version" not in document, "the compose spec dropped the version key"


def _unknown_service_key(document: dict[str, Any]) -> None:
    document["services"]["redis"]["restart_policy"] = "always"


def _bad_condition(document: dict[str, Any]) -> None:
    document["services"]["migrate"]["depends_on"]["postgres"]["condition"] = "service_ready"


def _bad_healthcheck(document: dict[str, Any]) -> None:
    document["services"]["redis"]["healthcheck"]["every"] = "5s"


def _unknown_top_level_key(document: dict[str, Any]) -> None:
    document["service"] = document.pop("services")


@pytest.mark.parametrize(
    "breakage",
    [_unknown_service_key, _bad_condition, _bad_healthcheck, _unknown_top_level_key],
)
def test_schema_validation_rejects_a_broken_document(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    document = copy.deepcopy(load_compose())
    breakage(document)
    with pytest.raises(ValidationError):
        compose_validator().validate(document)


# --- (2) dependencies ----------------------------------------------------------------


def test_depends_on_names_defined_services_with_valid_conditions() -> None:
    defined = services()
    for name, service in defined.items():
        for dependency, options in depends_on(service).items():
            assert dependency in defined, f"{name} depends on undefined {dependency}"
            assert dependency != name, f"{name} depends on itself"
            assert options.get("condition") in CONDITIONS, f"{name} -> {dependency}"


def test_dependency_graph_is_acyclic() -> None:
    graph = {name: set(depends_on(service)) for name, service in services().items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dependency in graph.get(name, set()):
            visit(dependency, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


# --- (3) build contexts --------------------------------------------------------------


def test_build_contexts_and_dockerfiles_exist() -> None:
    built = list(built_services())
    assert built, "no service is built from this repository"
    for name, context, dockerfile in built:
        assert context.is_dir(), f"{name}: missing build context {context}"
        assert dockerfile.is_file(), f"{name}: missing Dockerfile {dockerfile}"


def test_every_service_folder_has_a_dockerfile_that_compose_builds() -> None:
    expected = {path.parent / "Dockerfile" for path in REPO_ROOT.glob("services/*/pyproject.toml")}
    assert expected <= set(dockerfiles())


# --- (4) commands --------------------------------------------------------------------


def image_dockerfiles() -> dict[str, Path]:
    """The Dockerfile behind each image name the compose file builds."""
    found: dict[str, Path] = {}
    for name, _, dockerfile in built_services():
        found[image_default(str(services()[name]["image"]))] = dockerfile
    return found


def test_commands_are_console_scripts_of_the_image() -> None:
    by_image = image_dockerfiles()
    for name, service in services().items():
        program = executable(service)
        image = image_default(str(service["image"]))
        dockerfile = by_image.get(image)
        if dockerfile is None:
            assert not image.startswith("astra/"), f"{name}: no service builds {image}"
            bare = image.rpartition(":")[0] or image
            assert bare in IMAGE_BINARIES, f"{name}: unknown image {service['image']}"
            assert program is None or program in IMAGE_BINARIES[bare], f"{name}: {program}"
        elif dockerfile in dockerfiles():
            scripts = image_scripts(dockerfile)
            if program is None:  # the image's own CMD
                cmd = [i for i in parse_dockerfile(dockerfile) if i.keyword == "CMD"]
                program = cmd[-1].words()[0]
            assert program in scripts, f"{name} runs {program}, not one of {sorted(scripts)}"
        else:  # an image of ours without a service package: its ENTRYPOINT runs
            assert service.get("entrypoint") is None, name
            assert any(i.keyword == "ENTRYPOINT" for i in parse_dockerfile(dockerfile)), name


def test_dockerfile_cmd_is_the_service_console_script() -> None:
    for dockerfile in dockerfiles():
        service_dir = dockerfile.parent.relative_to(REPO_ROOT)
        cmd = [i for i in parse_dockerfile(dockerfile) if i.keyword == "CMD"]
        assert cmd, f"{dockerfile}: no CMD"
        program = cmd[-1].words()[0]
        assert program in pyprojects()[service_dir].scripts, f"{dockerfile}: CMD {program}"


# --- (5) Dockerfiles -----------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``relative`` out of the context: as Docker reads it, the
    last pattern matching the path or a folder above it decides, ``!`` re-including."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").rstrip("/")
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            name = prefix.rpartition("/")[2]
            if fnmatch.fnmatch(prefix, pattern) or (
                bare != pattern and fnmatch.fnmatch(name, bare)
            ):
                verdict = not negated
                break
    return verdict


def test_the_dockerignore_reading_follows_docker() -> None:
    patterns = ["*", "!proto/", "**/__pycache__", ".env"]
    assert ignored(".venv/bin/python", patterns)
    assert not ignored("proto/src/astra_proto/__init__.py", patterns)
    assert ignored("proto/src/__pycache__/x.pyc", patterns)
    assert ignored(".env", patterns)


def test_dockerfile_copy_sources_exist_and_are_in_the_context() -> None:
    patterns = dockerignore_patterns()
    for name, context, dockerfile in built_services():
        for instruction in parse_dockerfile(dockerfile):
            if instruction.keyword not in {"COPY", "ADD"}:
                continue
            assert "--from" not in instruction.arguments, "single-stage builds expected"
            *sources, _destination = instruction.words()
            assert sources, f"{dockerfile}: {instruction}"
            for source in sources:
                assert (context / source).exists(), f"{name}: COPY source {source} is missing"
                assert not ignored(source, patterns), f"{name}: .dockerignore drops {source}"


def test_dependencies_are_installed_before_the_sources_are_copied() -> None:
    for dockerfile in dockerfiles():
        instructions = parse_dockerfile(dockerfile)
        first_install = next(
            i
            for i, step in enumerate(instructions)
            if step.keyword == "RUN" and "pip install" in step.arguments
        )
        first_source = next(
            i
            for i, step in enumerate(instructions)
            if step.keyword == "COPY" and any("src" in Path(w).parts for w in step.words())
        )
        assert first_install < first_source, f"{dockerfile}: sources copied before deps"
        assert "--no-deps" not in instructions[first_install].arguments
        assert "deps.py" in instructions[first_install].arguments


def test_images_install_every_local_package_the_service_needs() -> None:
    projects = pyprojects()
    by_name = {project.name: project for project in projects.values()}
    for dockerfile in dockerfiles():
        service = projects[dockerfile.parent.relative_to(REPO_ROOT)]
        needed: set[str] = set()
        queue = [service.name]
        while queue:
            name = queue.pop()
            if name not in needed:
                needed.add(name)
                queue += [
                    requirement_name(requirement)
                    for requirement in by_name[name].dependencies
                    if requirement_name(requirement).startswith("astra-")
                ]
        installed = {projects[d].name for d in local_installs(parse_dockerfile(dockerfile))}
        assert needed <= installed, f"{dockerfile}: missing {sorted(needed - installed)}"
        # deps.py must read the pyproject of every local package the image installs.
        deps_run = next(
            step.arguments
            for step in parse_dockerfile(dockerfile)
            if step.keyword == "RUN" and "deps.py" in step.arguments
        )
        for project in installed:
            assert f"{by_name[project].directory.as_posix()}/pyproject.toml" in deps_run


def test_images_run_as_a_non_root_user_and_expose_8080() -> None:
    for dockerfile in dockerfiles():
        instructions = parse_dockerfile(dockerfile)
        # The base image is a build argument whose default is the upstream image.
        assert [i.keyword for i in instructions[:2]] == ["ARG", "FROM"], dockerfile
        assert instructions[0].arguments.strip() == "PYTHON_IMAGE=python:3.11-slim"
        assert instructions[1].arguments.strip() == "${PYTHON_IMAGE}"
        users = [step.arguments.strip() for step in instructions if step.keyword == "USER"]
        assert users, f"{dockerfile}: runs as root"
        assert users[-1] not in {"root", "0"}, f"{dockerfile}: runs as root"
        assert any(s.keyword == "EXPOSE" and s.arguments.strip() == "8080" for s in instructions)


def test_envhost_image_has_bubblewrap() -> None:
    text = (REPO_ROOT / "services" / "envhost" / "Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\bbubblewrap\b", text)


# --- (6) configuration ---------------------------------------------------------------


def astra_names(service: dict[str, Any]) -> set[str]:
    """ASTRA_* names a service sets: environment keys and those its command exports."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        names = {entry.partition("=")[0] for entry in environment}
    else:
        names = set(environment)
    command = service.get("command")
    if command is not None:
        text = command if isinstance(command, str) else " ".join(map(str, command))
        names |= set(re.findall(r"\b(ASTRA_[A-Z_]+)=", text))
    return {name for name in names if name.startswith("ASTRA_")}


def settings_prefix(name: str, service: dict[str, Any]) -> str:
    """The env prefix a repository service reads: its package's, or the database CLI's."""
    if executable(service) == "astra-db":
        return "ASTRA_DATABASE_"
    if executable(service) == "astra-envhost-gateway":
        return "ASTRA_GATEWAY_"
    dockerfile = image_dockerfiles()[image_default(str(service["image"]))]
    return f"ASTRA_{dockerfile.parent.name.upper()}_"


def test_env_names_follow_the_settings_prefixes() -> None:
    ours = {
        name
        for name, service in services().items()
        if image_dockerfiles().get(image_default(str(service["image"]))) in dockerfiles()
    }
    for name, service in services().items():
        names = astra_names(service)
        if name not in ours:
            assert not names, f"{name} is not ours but sets {sorted(names)}"
            continue
        prefix = settings_prefix(name, service)
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        for env_name in names:
            assert ASTRA_ENV_NAME.fullmatch(env_name), f"{name}: bad env name {env_name}"
            assert env_name.startswith(prefix), f"{name}: {env_name} is not {prefix}*"
        if prefix in ("ASTRA_DATABASE_", "ASTRA_GATEWAY_") or service.get("restart") == "no":
            continue  # the gateway, migrations and one-shot commands serve no API of their own
        for setting in COMMON_SETTINGS:
            assert prefix + setting in environment, f"{name}: {prefix}{setting} not set"
        assert environment[prefix + "HOST"] == "0.0.0.0"
        assert str(environment[prefix + "PORT"]) == "8080"
        assert environment[prefix + "ENVIRONMENT"] == "production"
        # Secrets come from the caller and compose refuses to start without them.
        assert re.fullmatch(r"\$\{ASTRA_API_TOKEN:\?[^}]*\}", environment[prefix + "API_TOKEN"])


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in ("POSTGRES_PASSWORD", "ASTRA_API_TOKEN"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, f"{secret} unused"
        assert all(use.startswith(":?") for use in uses), f"{secret} must use ${{{secret}:?...}}"


def test_scalable_services_have_no_fixed_name_or_host_port() -> None:
    defined = services()
    for name in SCALABLE_SERVICES:
        assert "container_name" not in defined[name], name
        assert "ports" not in defined[name], f"{name}: a fixed host port blocks --scale"
    published = [
        str(port).rsplit(":", 1)[0] for s in defined.values() for port in s.get("ports", [])
    ]
    assert len(published) == len(set(published)), f"host port published twice: {published}"


# --- (7) health ----------------------------------------------------------------------


def test_long_running_services_have_healthchecks() -> None:
    defined = services()
    one_shot = {
        dependency
        for service in defined.values()
        for dependency, options in depends_on(service).items()
        if options["condition"] == "service_completed_successfully"
    }
    waited_on = {
        dependency
        for service in defined.values()
        for dependency, options in depends_on(service).items()
        if options["condition"] == "service_healthy"
    }
    assert not one_shot & waited_on
    for name, service in defined.items():
        if name in one_shot:
            assert service.get("restart") == "no", f"{name} is one-shot: restart must be no"
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_http_healthchecks_hit_healthz_on_the_service_port() -> None:
    for name, service in services().items():
        if image_dockerfiles().get(image_default(str(service["image"]))) not in dockerfiles():
            continue
        if service.get("restart") == "no" or executable(service) == "astra-synth-worker":
            continue  # one-shot services; the worker serves no HTTP (Celery ping instead)
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        assert "http://127.0.0.1:8080/healthz" in test, name


def test_base_images_default_to_the_upstream_names() -> None:
    text = COMPOSE_FILE.read_text()
    for variable, upstream in UPSTREAM_IMAGES.items():
        uses = re.findall(r"\$\{" + variable + r"(:-[^}]*)\}", text)
        assert uses, f"{variable} unused"
        assert set(uses) == {":-" + upstream}, f"{variable}: {uses}"
    for name, service in services().items():
        image = image_default(str(service["image"]))
        assert (
            image.startswith("astra/")
            or image in UPSTREAM_IMAGES.values()
            or image.startswith("vllm/vllm-openai:")
        ), f"{name}: {service['image']}"


# --- (8) deps.py ---------------------------------------------------------------------


@pytest.mark.parametrize("service", ["synth", "envhost", "rollout", "trainer"])
def test_deps_script_prints_third_party_requirements_only(service: str) -> None:
    files = ["proto/pyproject.toml", "libs/common/pyproject.toml"]
    files.append(f"services/{service}/pyproject.toml")
    result = subprocess.run(
        [sys.executable, str(DEPS_SCRIPT), *files],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    requirements = result.stdout.splitlines()
    assert requirements, "no requirements printed"
    assert all(line.strip() == line and line for line in requirements)
    assert not [line for line in requirements if requirement_name(line).startswith("astra-")]
    assert len(requirements) == len(set(requirements))
    expected = {
        requirement_name(requirement)
        for file in files
        for requirement in pyprojects()[Path(file).parent].dependencies
        if not requirement_name(requirement).startswith("astra-")
    }
    assert {requirement_name(line) for line in requirements} == expected


def test_deps_script_without_arguments_fails() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPS_SCRIPT)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "usage" in result.stderr
