"""The documentation is true to the toolkit: every command has help and is documented,
and every command in the guides' shell blocks is a valid command line of the toolkit."""

from __future__ import annotations

import re
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from platform_cli.cli import cli
from tests.conftest import REPO

GUIDES = ("operator.md", "sudo-owner.md", "challenge-author.md")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def commands(
    group: click.Group = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    context = click.Context(group, info_name="platform")
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def shell_lines(text: str) -> Iterator[str]:
    """The ``platform`` command lines of the ```sh blocks (continuations joined)."""
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("platform "):
                yield line


def resolve(args: list[str]) -> None:
    """Parse ``args`` as the toolkit would, down to the leaf command, without running it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click 8.2+: protected_args
        _resolve(args)


def _resolve(args: list[str]) -> None:
    context = cli.make_context("platform", list(args), resilient_parsing=False)
    command: click.Command = cli
    rest = context.protected_args + context.args
    while isinstance(command, click.Group):
        assert rest, f"{args}: a group without a command"
        name, rest = rest[0], rest[1:]
        found = command.get_command(context, name)
        assert found is not None, f"{args}: no command {name!r}"
        context = found.make_context(name, list(rest), parent=context)
        command, rest = found, context.protected_args + context.args if isinstance(found, click.Group) else []


ALL_TEXT = "\n".join(path.read_text() for path in DOCS)


@pytest.mark.parametrize(
    ("path", "command"), list(commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_has_help_and_is_documented(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or command.short_help or "").strip(), f"platform {' '.join(path)} has no help"
    words = r"\s+".join(map(re.escape, path))
    # "platform devnet status", or in code beside its group: "`devnet logs [-f]`"
    assert re.search(rf"(platform\s+(--\S+\s+)*|`){words}\b", ALL_TEXT), (
        f"platform {' '.join(path)} appears in no doc"
    )


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guides_shell_blocks_are_commands_of_the_toolkit(guide: str) -> None:
    lines = list(shell_lines((REPO / "docs" / guide).read_text()))
    assert lines, f"{guide} has no platform command"
    for line in lines:
        args = shlex.split(line)[1:]
        try:
            resolve(args)
        except click.ClickException as exc:
            raise AssertionError(f"{guide}: {line!r}: {exc.format_message()}") from None


def test_the_guides_are_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name in (*GUIDES, "architecture.md", "security.md"):
        assert f"docs/{name}" in readme, name


@pytest.mark.parametrize(
    "line",
    [
        "platform --help",
        "platform devnet --help",
        "platform keys list",
        "platform status",
        "platform registry list",
        "platform consensus log --limit 5",
        "platform weights history",
    ],
)
def test_the_guides_read_only_commands_run(line: str, tmp_path: Path) -> None:
    guides = "\n".join((REPO / "docs" / g).read_text() for g in GUIDES) + (REPO / "README.md").read_text()
    assert line in guides or line.endswith("--help")
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), *shlex.split(line)[1:]])
    assert result.exit_code == 0, result.output
