"""The Dockerfile's promises, read statically (no Docker engine here)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tests.deploy.helm import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
# The contract: gunicorn with the project's config module serving service.wsgi:app.
COMMAND = ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|build-essential|make)\b")


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def stages() -> list[Stage]:
    """The build stages: base image and (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    found: list[Stage] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.strip().partition(" ")
        if name.upper() == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], value.split()[0])
            found.append(Stage(base))
        elif found:
            found[-1].instructions.append((name.upper(), value.strip()))
    return found


def env(stage: Stage) -> dict[str, str]:
    pairs = " ".join(stage.values("ENV"))
    return dict(re.findall(r"(\w+)=(\S+)", pairs))


def test_multi_stage_on_slim_python_311() -> None:
    found = stages()
    assert len(found) >= 2
    assert all(re.match(r"^python:3\.11-slim", stage.base) for stage in found)
    assert any("--from=" in copy for copy in found[-1].values("COPY"))


def test_runtime_runs_gunicorn_as_numeric_non_root_user() -> None:
    runtime = stages()[-1]
    assert runtime.values("USER")[-1] in {"10001", "10001:10001"}
    assert runtime.values("WORKDIR")[-1] == "/app"
    assert json.loads(runtime.values("CMD")[-1]) == COMMAND
    assert runtime.values("EXPOSE") == ["8000"]


def test_runtime_environment() -> None:
    variables = env(stages()[-1])
    assert variables["PYTHONUNBUFFERED"] == "1"
    assert variables["PYTHONDONTWRITEBYTECODE"] == "1"


def test_no_build_tools_or_caches_in_the_runtime_stage() -> None:
    runtime = stages()[-1]
    for command in runtime.values("RUN"):
        assert not BUILD_TOOLS.search(command), command
        assert "pip install" not in command, command
    for stage in stages():
        for command in stage.values("RUN"):
            assert "pip install" not in command or "--no-cache-dir" in command, command


def test_dockerignore_sends_only_the_service() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!requirements.txt", "!service/"} <= set(lines)
    assert "**/__pycache__" in lines
