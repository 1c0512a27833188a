"""The README and every page in ``docs/`` are checked like code.

What can be checked without heavy work is: every ``make`` target a ```bash block names exists in
the Makefile; every ``sweepflow`` command exists and uses only options its ``--help`` lists; every
``.venv/bin/`` tool is installed; every ``CONFIG='{...}'`` is a valid sweep config; every relative
link, every repo path in backticks (``flows/sweep/flow.py:sweep``, ``test_x.py::test_y``) and every
dotted name (``churnml.scoring.ScoreConfig``) exists; the README's annotated tree matches the
files; every environment variable the code reads is documented. Cheap commands (``--help``,
``generate-data``, ``history`` on an empty store) really run, through the console script, in a
temporary folder with a temporary store. The whole file takes about 15 s.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12_000
README_SECTIONS = ["Quick start", "What a sweep does", "Layout", "Where to read on"]
# Folders and files of this repo: a backticked path starting with one of them must exist.
REPO_DIRS = {
    ".ci",
    "bench",
    "churnml",
    "cli",
    "docs",
    "flows",
    "serving",
    "studies",
    "sweepflow",
    "tests",
    "tracking",
}
REPO_FILES = {"Makefile", "README.md", "prefect.yaml", "pyproject.toml"}
PACKAGES = ("churnml", "cli", "flows", "serving", "studies", "sweepflow", "tracking")
# Dotted names checked as modules; `sweepflow.` also starts tag and event names, so not it.
MODULE_PACKAGES = ("churnml", "cli", "flows", "serving", "studies", "tracking")
SHARED = ROOT.parent / "shared"
CONSOLE_SCRIPT = Path(sys.executable).parent / "sweepflow"
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Command:
    """One shell command from a ```bash block."""

    page: str
    text: str
    argv: tuple[str, ...]


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks of one language, in order."""
    pattern = re.compile(rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
    return [match.group(1) for match in pattern.finditer(text)]


def shell_commands(page: Path) -> Iterator[Command]:
    """Each command of the page's bash blocks, split like a shell would, without assignments."""
    for block in fenced_blocks(page.read_text(encoding="utf-8"), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\s*(?:;|&&)\s*", line):
                argv = shlex.split(part, comments=True)
                while argv and ENV_ASSIGNMENT.match(argv[0]):
                    argv = argv[1:]
                if argv:
                    yield Command(_id(page), line.strip(), tuple(argv))


ALL_COMMANDS = [command for page in PAGES for command in shell_commands(page)]
MAKE_COMMANDS = [c for c in ALL_COMMANDS if c.argv[0] == "make"]
SWEEPFLOW_COMMANDS = [c for c in ALL_COMMANDS if Path(c.argv[0]).name == "sweepflow"]
VENV_TOOLS = [c for c in ALL_COMMANDS if c.argv[0].startswith(".venv/bin/")]


def _ids(commands: list[Command]) -> list[str]:
    return [f"{c.page}: {c.text}" for c in commands]


@cache
def make_targets() -> frozenset[str]:
    """The targets the Makefile defines (``a b: deps`` defines both)."""
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-][A-Za-z0-9_. -]*?)\s*:(?!=)", line)
        if match and not line.startswith((".", "\t")):
            targets.update(match.group(1).split())
    return frozenset(targets)


@cache
def cli_app() -> object:
    """The Typer app behind the console script, wherever its package lives."""
    assert CONSOLE_SCRIPT.is_file(), f"no console script at {CONSOLE_SCRIPT}; run make install"
    script = CONSOLE_SCRIPT.read_text(encoding="utf-8")
    match = re.search(r"^from ([\w.]+) import (\w+)", script, re.M)
    assert match, f"{CONSOLE_SCRIPT} does not name its entry point"
    # The entry point (cli.entry.main) caps the allocator, then runs the app of its package.
    package = match.group(1).rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.main").app


@cache
def cli_options() -> dict[str, frozenset[str]]:
    """Each command's name and the option strings its --help lists (checked against the text)."""
    import typer
    from typer.testing import CliRunner

    group = typer.main.get_command(cli_app())
    runner = CliRunner()
    options: dict[str, frozenset[str]] = {}
    for name, command in group.commands.items():
        result = runner.invoke(cli_app(), [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        declared = {
            flag
            for param in command.params
            if not getattr(param, "hidden", False)
            for flag in (*param.opts, *param.secondary_opts)
        }
        # Only what the help text shows counts as listed.
        options[name] = frozenset(f for f in declared | {"--help"} if f in result.output)
    return options


def test_the_pages_have_commands_to_check() -> None:
    assert MAKE_COMMANDS and SWEEPFLOW_COMMANDS and VENV_TOOLS


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=_ids(MAKE_COMMANDS))
def test_every_make_target_exists(command: Command) -> None:
    targets = [arg for arg in command.argv[1:] if "=" not in arg and not arg.startswith("-")]
    assert targets, f"{command.page}: `{command.text}` names no target"
    missing = [target for target in targets if target not in make_targets()]
    assert not missing, f"{command.page}: `{command.text}`: no Makefile target {missing}"


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=_ids(MAKE_COMMANDS))
def test_every_config_given_to_make_is_a_valid_sweep_config(command: Command) -> None:
    from churnml.config import SweepConfig

    for arg in command.argv[1:]:
        if arg.startswith("CONFIG="):
            SweepConfig.model_validate(json.loads(arg.removeprefix("CONFIG=")))


@pytest.mark.parametrize("command", SWEEPFLOW_COMMANDS, ids=_ids(SWEEPFLOW_COMMANDS))
def test_every_sweepflow_command_and_option_exists(command: Command) -> None:
    args = command.argv[1:]
    if args == ("--help",):
        return
    assert args and not args[0].startswith("-"), f"{command.page}: `{command.text}`: no command"
    options = cli_options()
    assert args[0] in options, f"{command.page}: `{command.text}`: no command {args[0]!r}"
    used = {arg.split("=", 1)[0] for arg in args[1:] if arg.startswith("-")}
    unknown = sorted(used - options[args[0]])
    assert not unknown, (
        f"{command.page}: `{command.text}`: `sweepflow {args[0]} --help` does not list {unknown}"
    )


@pytest.mark.parametrize("command", VENV_TOOLS, ids=_ids(VENV_TOOLS))
def test_every_venv_tool_is_installed(command: Command) -> None:
    tool = Path(sys.executable).parent / Path(command.argv[0]).name
    assert tool.is_file(), f"{command.page}: `{command.text}`: {tool} is not installed"


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CONSOLE_SCRIPT), *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_cheap_commands_run(tmp_path: Path) -> None:
    """``--help``, every documented ``generate-data``, and ``history`` on an empty store run for
    real, through the console script, at once (each pays the imports)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OPTUNA_STORAGE"}
        and not key.startswith("PREFECT_API")
    }
    env |= {"SWEEPFLOW_MLRUNS": str(tmp_path / "mlruns"), "COLUMNS": "200"}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    generate = sorted({c.argv[1:] for c in SWEEPFLOW_COMMANDS if c.argv[1] == "generate-data"})
    assert generate, "no page shows generate-data"
    running: dict[tuple[str, ...], subprocess.Popen[str]] = {}
    for n, argv in enumerate(generate):
        folder = tmp_path / f"generate-{n}"
        folder.mkdir()
        running[argv] = _run(list(argv), folder, env)
    running[("--help",)] = _run(["--help"], tmp_path, env)
    running[("history",)] = _run(["history"], tmp_path, env)
    results = {}
    for argv, process in running.items():
        output, _ = process.communicate(timeout=120)
        results[argv] = (process.returncode, output)

    code, output = results[("--help",)]
    assert code == 0, output
    for command in {c.argv[1] for c in SWEEPFLOW_COMMANDS if c.argv[1] != "--help"}:
        assert command in output, f"`sweepflow --help` does not list {command}"
    code, output = results[("history",)]
    assert code == 2, output
    assert "no registered model 'bank-churn-classifier'" in output, output
    for n, argv in enumerate(generate):
        code, output = results[argv]
        assert code == 0, f"sweepflow {' '.join(argv)}: {output}"
        out = tmp_path / f"generate-{n}" / argv[argv.index("--out") + 1]
        rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 20_000
        with out.open(encoding="utf-8") as lines:
            assert sum(1 for _ in lines) == rows + 1


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_relative_link_exists(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{_id(page)}: link {target} leads nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{_id(page)}: no heading for {target}"


def _defines(file: Path, name: str) -> bool:
    """Whether a Python file defines ``name`` at its top level (function, class or variable)."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _test_file(name: str) -> Path | None:
    if "/" in name:
        return ROOT / name if (ROOT / name).is_file() else None
    return next(iter(sorted((ROOT / "tests").rglob(name))), None)


def check_backticked(page: Path, text: str) -> str | None:
    """What is wrong with one backticked span, if it names something of this repo."""
    if " " in text or "<" in text:
        return None
    if "::" in text:  # a test id: test_x.py::test_y
        file_name, test = text.split("::", 1)
        file = _test_file(file_name)
        if file is None:
            return f"no test file {file_name}"
        return None if _defines(file, test) else f"{file_name} has no {test}"
    if re.fullmatch(r"test_\w+\.py", text):
        return None if _test_file(text) else f"no test file {text}"
    path, _, name = text.partition(":")
    first = path.split("/", 1)[0]
    if path.startswith("../shared/"):
        if SHARED.is_dir() and not (ROOT / path).exists():
            return f"{path} does not exist"
        return None
    if first in REPO_FILES or (first in REPO_DIRS and "/" in path):
        if not (ROOT / path).exists():
            return f"{path} does not exist"
        if name and path.endswith(".py") and not _defines(ROOT / path, name):
            return f"{path} does not define {name}"
        return None
    dotted = re.fullmatch(rf"(?:{'|'.join(MODULE_PACKAGES)})(?:\.\w+)+", text)
    if dotted:
        parts = text.split(".")
        for cut in range(len(parts), 0, -1):
            module = ROOT.joinpath(*parts[:cut]).with_suffix(".py")
            if module.is_file():
                rest = parts[cut:]
                if rest and not _defines(module, rest[0]):
                    return f"{module.relative_to(ROOT)} does not define {rest[0]}"
                return None
        return f"no module for {text}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_repo_path_and_name_in_backticks_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    problems = sorted(
        {
            f"`{span}`: {problem}"
            for span in re.findall(r"`([^`\n]+)`", text)
            if (problem := check_backticked(page, span))
        }
    )
    assert not problems, f"{_id(page)}:\n" + "\n".join(problems)


def test_the_readme_is_short_and_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters"
    assert re.findall(r"^## (.+)$", text, re.M) == README_SECTIONS
    intro = text.split("\n## ", 1)[0]
    assert intro.startswith("# ") and len(intro.split("\n\n")) >= 2, "no paragraph on what it is"
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for target in ("make sweep", "make test", "make mlflow-ui", "make prefect-ui"):
        assert target in quick, f"the quick start does not show `{target}`"
    read_on = text.split("## Where to read on", 1)[1]
    for page in PAGES[1:]:
        assert f"]({_id(page)})" in read_on, f"'Where to read on' does not link {_id(page)}"


def _tree() -> list[tuple[str, str]]:
    """(path, annotation) for each entry of the README's annotated tree."""
    block = next(b for b in fenced_blocks(README.read_text(encoding="utf-8"), "text") if "<-" in b)
    entries: list[tuple[str, str]] = []
    stack: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^((?:│   |    )*)[├└]── (\S+)\s*(?:<- (.*))?$", line)
        if not match:
            if entries and "──" not in line:  # an annotation carried onto the next line
                path, note = entries[-1]
                entries[-1] = (path, f"{note} {line.strip('│ ')}")
            continue
        depth = len(match.group(1)) // 4
        stack[depth:] = [match.group(2).rstrip("/")]
        entries.append(("/".join(stack), match.group(3) or ""))
    return entries


def test_the_readme_tree_matches_the_files() -> None:
    entries = _tree()
    missing = [
        path for path, note in entries if "(being built)" not in note and not (ROOT / path).exists()
    ]
    assert not missing, f"the README's tree names what is not there: {missing}"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {name.split("/", 1)[0] for name in tracked if "/" in name}
    shown = {path.split("/", 1)[0] for path, _ in entries}
    assert top <= shown, f"the README's tree leaves out {sorted(top - shown)}"


def test_every_deployment_entrypoint_is_documented() -> None:
    entrypoints = re.findall(
        r"entrypoint:\s*(\S+)", (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    )
    schedule = (ROOT / "docs" / "schedule.md").read_text(encoding="utf-8")
    assert entrypoints
    for entrypoint in set(entrypoints):
        assert f"`{entrypoint}`" in schedule, f"docs/schedule.md does not name {entrypoint}"


def test_every_environment_variable_is_documented() -> None:
    """Each variable of the settings object, and each ``SWEEPFLOW_*`` name in the code."""
    sources = [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (ROOT / package).is_dir()
    ]
    names = set()
    settings = []
    for path in sources:
        code = path.read_text(encoding="utf-8")
        names |= set(re.findall(r"\bSWEEPFLOW_[A-Z0-9_]+", code))
        for cls in ast.parse(code).body:
            bases = [ast.unparse(b) for b in getattr(cls, "bases", [])]
            if isinstance(cls, ast.ClassDef) and "BaseSettings" in bases:
                settings.append(path)
                names |= {
                    node.target.id.upper()
                    for node in cls.body
                    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                }
    assert settings, "no pydantic-settings class found: where are the environment variables?"
    table = (ROOT / "docs" / "sweeps.md").read_text(encoding="utf-8")
    undocumented = sorted(name for name in names if f"`{name}`" not in table)
    assert not undocumented, f"docs/sweeps.md does not document {undocumented}"
