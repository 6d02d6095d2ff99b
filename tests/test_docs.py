"""The documentation's examples run, so they cannot go stale.

- Every fenced ``python`` block of README.md and docs/*.md runs: each file's blocks in
  order in one namespace, in an empty working directory, with no network (only loopback
  connections are allowed). A block preceded by ``<!-- skip-test -->`` is not run; that is
  for blocks needing real provider credentials only.
- Every fenced ``yaml`` block of docs/configuration.md, deployment.md, drivers/*.md parses; full
  configurations (and fragments of one) pass ``load_config`` with every ``${VAR}`` set to
  a dummy, and their drivers are built, so setting names in the docs are real ones.
- Every ``mailfailover ...`` command in the docs' shell blocks parses with the CLI's own
  argparse parser, and docs/cli.md mentions every subcommand and flag.
"""

from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from mailfailover import ConfigError, registry
from mailfailover.cli import _parser
from mailfailover.config import _TOP_KEYS, build_driver, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- skip-test -->"
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")


@attrs.frozen
class Block:
    path: Path
    line: int  # 1-based line of the first line of code
    language: str
    code: str
    skip: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block in a Markdown file, with the skip marker noted."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2).lower()
        previous = next((ln.strip() for ln in reversed(lines[:index]) if ln.strip()), "")
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(
                lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index]
            )
            index += 1
        start = index - len(body) + 1
        blocks.append(Block(path, start, language, "\n".join(body) + "\n", previous == SKIP_MARKER))
        index += 1
    return blocks


def _markdown(*paths: Path) -> list[Path]:
    return [p for p in paths if p.is_file()]


def _has_python(path: Path) -> bool:
    return any(b.language == "python" for b in fenced_blocks(path))


PYTHON_DOCS = [
    path
    for path in _markdown(
        ROOT / "README.md",
        *sorted(DOCS.glob("*.md")),
        *(DOCS / "drivers" / f"{name}.md" for name in ("memory", "file", "console")),
    )
    # design.md is the contract's twin: its python blocks are signatures, not examples.
    if _has_python(path) and path.name != "design.md"
]
YAML_DOCS = _markdown(
    DOCS / "configuration.md", DOCS / "deployment.md", *sorted((DOCS / "drivers").glob("*.md"))
)
SHELL_DOCS = _markdown(ROOT / "README.md", *sorted(DOCS.glob("*.md")))


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


# -- python blocks ----------------------------------------------------------------------------

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "", None}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection and name lookup that is not loopback."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in _LOOPBACK and not str(host).startswith("127."):
            raise OSError(f"the docs tests are offline: no connection to {host}")
        return real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        if text not in _LOOPBACK and not str(text).startswith("127."):
            raise socket.gaierror(f"the docs tests are offline: no lookup of {text}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("path", PYTHON_DOCS, ids=_ids(PYTHON_DOCS))
def test_python_examples_run(
    path: Path, in_tmp_cwd: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file's python blocks run in order, in one namespace, without raising."""
    blocks = [b for b in fenced_blocks(path) if b.language == "python"]
    runnable = [b for b in blocks if not b.skip]
    if not runnable:
        pytest.skip(f"{path.name} has no runnable python block")
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    try:
        for block in runnable:
            # Pad so a traceback's line numbers are the Markdown file's.
            code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
            try:
                exec(code, namespace)
            except Exception as exc:
                pytest.fail(f"the example at {block.where} raised {type(exc).__name__}: {exc}")
    finally:
        for value in list(namespace.values()):
            close = getattr(value, "close", None)
            if type(value).__name__ == "FailoverMailer" and callable(close):
                close()


def test_core_docs_have_runnable_examples() -> None:
    """The reference pages keep python examples, so the test above is not vacuous."""
    names = {path.name for path in PYTHON_DOCS}
    assert {"quickstart.md", "configuration.md", "errors.md", "python.md"} <= names


def test_skip_marker_is_used_sparingly() -> None:
    """At most a few python blocks opt out, so almost every example really runs."""
    skipped = [b.where for p in PYTHON_DOCS for b in fenced_blocks(p) if b.skip]
    assert len(skipped) <= 3, f"too many skipped examples: {skipped}"


def test_fence_parser_reads_blocks_and_skip_markers(tmp_path: Path) -> None:
    """The extractor finds each block's language, code, line and skip marker."""
    doc = tmp_path / "d.md"
    doc.write_text("x\n\n```python\na = 1\n```\n<!-- skip-test -->\n```python\nb\n```\n")
    first, second = fenced_blocks(doc)
    assert (first.language, first.code, first.line, first.skip) == ("python", "a = 1\n", 4, False)
    assert (second.code, second.skip) == ("b\n", True)


# -- yaml blocks ------------------------------------------------------------------------------


class _AnyEnvironment(Mapping[str, str]):
    """An environment in which every variable is set (to "1": valid as text and number)."""

    def __getitem__(self, key: str) -> str:
        return "1"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


YAML_BLOCKS = [b for p in YAML_DOCS for b in fenced_blocks(p) if b.language in ("yaml", "yml")]


def _as_config(document: Any) -> dict[str, Any] | None:
    """The document as a whole configuration, or None if it is not (a part of) one."""
    if isinstance(document, list) and all(isinstance(e, Mapping) and "name" in e for e in document):
        return {"drivers": document}
    if isinstance(document, Mapping) and document and set(document) <= _TOP_KEYS:
        config = dict(document)
        config.setdefault("drivers", [{"name": "docs-memory", "module": "memory"}])
        return config
    return None


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_examples_are_valid_configuration(block: Block) -> None:
    """A yaml example parses; as a configuration it loads and its drivers build."""
    document = yaml.safe_load(block.code)
    config = _as_config(document)
    if config is None:
        return  # a snippet of something else; parsing is all there is to check
    loaded = load_config(config, environ=_AnyEnvironment())
    skipped = []
    for spec in loaded.drivers:
        try:
            registry.load_driver(spec.module)
        except ConfigError as exc:  # not installed here, broken, or a missing extra
            skipped.append(f"{spec.module}: {exc.message}")
            continue
        build_driver(spec).close()
    if skipped:
        pytest.skip("driver(s) not available in this environment: " + "; ".join(skipped))


def test_configuration_reference_has_yaml_examples() -> None:
    """docs/configuration.md keeps its checked yaml examples (at least the main one)."""
    assert any(b.path.name == "configuration.md" for b in YAML_BLOCKS)


# -- shell examples ---------------------------------------------------------------------------


def _commands(path: Path) -> list[tuple[str, list[str]]]:
    """``mailfailover ...`` command lines in a file's shell blocks, continuation lines joined."""
    found = []
    for block in fenced_blocks(path):
        if block.language not in ("sh", "shell", "bash", "console", "shell-session"):
            continue
        text = block.code.replace("\\\n", " ")
        for number, line in enumerate(text.splitlines()):
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                words = shlex.split(part, comments=True)
                if words and words[0] == "mailfailover":
                    found.append((f"{block.where}+{number}", words[1:]))
    return found


SHELL_COMMANDS = [command for path in SHELL_DOCS for command in _commands(path)]


@pytest.mark.parametrize(
    "argv", [argv for _, argv in SHELL_COMMANDS], ids=[where for where, _ in SHELL_COMMANDS]
)
def test_shell_examples_use_real_commands_and_flags(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A documented ``mailfailover`` command parses with the real argparse parser."""
    code: Any = 0
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0; a bad flag exits 2
        code = exc.code
    assert code == 0, capsys.readouterr().err


def test_cli_doc_shows_commands() -> None:
    """docs/cli.md has shell examples to check (the parametrized test is not vacuous)."""
    assert any(where.startswith("docs/cli.md") for where, _ in SHELL_COMMANDS)


def test_cli_doc_mentions_every_subcommand_and_flag() -> None:
    """Every subcommand and every option string of the parser appears in docs/cli.md."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = _parser()
    missing = [s for a in parser._actions for s in a.option_strings if s not in text]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            if f"mailfailover {name}" not in text:
                missing.append(f"mailfailover {name}")
            missing += [
                f"{name} {s}"
                for a in sub._actions
                for s in a.option_strings
                if s not in text and s not in ("-h", "--help")
            ]
    assert not missing, f"docs/cli.md does not mention: {missing}"
