"""The operator's guide and the GDPR page stay true to the code: settings, commands and tests they name."""

from __future__ import annotations

import ast
import re
from enum import Enum
from pathlib import Path

import pytest
import typer
from pydantic import SecretStr

from access.audit.tasks import schedule_checkpoints
from enclave.cli import app
from enclave.components import import_wiring
from infra.settings import Settings
from infra.tasks import PERIODIC_JOBS

ROOT = Path(__file__).resolve().parents[1]
OPERATORS = ROOT / "docs" / "operators.md"
GDPR = ROOT / "docs" / "gdpr.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
COMMAND = re.compile(r"`enclave ([a-z][a-z0-9 -]*)")


def _documented_default(name: str) -> str:
    """The default as the guide writes it: `value`, or a word for empty and placeholder values."""
    value = Settings.model_fields[name].default
    if isinstance(value, SecretStr):
        return "development placeholder" if value.get_secret_value() else "—"
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `ENCLAVE_") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_the_operators_guide_lists_every_setting_with_its_default(name):
    rows = _rows(OPERATORS.read_text(encoding="utf-8"))
    variable = f"ENCLAVE_{name.upper()}"

    assert variable in rows, f"add {variable} to a settings table in docs/operators.md"
    assert rows[variable][1] == _documented_default(name), variable


def test_the_operators_guide_lists_every_periodic_job():
    import_wiring()
    schedule_checkpoints(3600)
    text = OPERATORS.read_text(encoding="utf-8")

    missing = [name for name in sorted(PERIODIC_JOBS) if f"| `{name}` |" not in text]
    assert missing == [], "add these jobs to the periodic jobs table of docs/operators.md"


@pytest.mark.parametrize("path", ["docker-compose.yml", "infra/deploy/env.example"])
def test_every_enclave_variable_of_the_deployment_files_is_a_setting(path):
    named = set(re.findall(r"\b(ENCLAVE_[A-Z0-9_]*[A-Z0-9])\b", (ROOT / path).read_text(encoding="utf-8")))
    known = {f"ENCLAVE_{name.upper()}" for name in Settings.model_fields}

    assert named
    assert sorted(named - known) == []


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_test_the_gdpr_page_names_exists():
    references = TEST_REFERENCE.findall(GDPR.read_text(encoding="utf-8"))
    assert len(references) > 40

    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).exists() or name not in _test_functions(ROOT / file)
    ]
    assert missing == []


def _command_exists(words: list[str]) -> bool:
    command = typer.main.get_command(app)
    for word in words:
        subcommands = getattr(command, "commands", None)
        if word.startswith("-") or subcommands is None:
            return True  # the rest are options and arguments
        found = subcommands.get(word)
        if found is None:
            return False
        command = found
    return True


@pytest.mark.parametrize("page", [OPERATORS, GDPR], ids=lambda p: p.name)
def test_every_command_the_pages_name_exists(page):
    mentioned = {m.strip() for m in COMMAND.findall(page.read_text(encoding="utf-8"))}
    assert mentioned

    unknown = [m for m in sorted(mentioned) if not _command_exists(m.split())]
    assert unknown == []
