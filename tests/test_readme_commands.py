"""Every `mango ...` command in the README parses (argparse only: nothing runs), and every option, subcommand,
optimizer and optimizer parameter the README names exists (issue 33)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from mango.cli.maximize import build_parser, main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()

# options of other programs the README mentions: pip's, benchmarks/population.py's and benchmarks/readme_check.py's
OTHER_PROGRAMS = {"--no-deps", "--report", "--clone", "--only"}


def _code_commands() -> list[str]:
    """`mango ...` lines of the README's bash blocks (continuations joined, comments, `&` and `[...]` dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip().rstrip("&").strip()
            if line.startswith("mango "):
                out.append(re.sub(r"\[[^\]]*\]", "", line))
    return out


def _prose_commands() -> list[str]:
    """`mango ...` spans written in the README's text (``...`` dropped)."""
    spans = re.findall(r"`(mango [^`]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    return [" ".join(s.replace("...", " ").split()) for s in spans]


COMMANDS = _code_commands() + _prose_commands()


def test_the_readme_has_commands():
    assert len(_code_commands()) >= 20 and len(_prose_commands()) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command):
    words = shlex.split(command)[1:]
    parser = build_parser()
    if len(words) == 1 or (len(words) == 2 and words[1].isupper()):  # `mango report`, `mango report STORE`
        words = words[:1] + ["--help"]
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as ei:
            parser.parse_args(words)
        assert ei.value.code == 0, command
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"{command!r} does not parse: {err.getvalue().strip()}")
    assert getattr(args, "func", None) is not None, command


def _options_of(argv: list[str]) -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(argv + ["--help"]) if argv[:1] != ["train"] else _train_main(["--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out.getvalue()))


def _train_main(argv):
    from mango.zoo.train import main as train_main

    return train_main(argv)


def test_every_option_the_readme_names_exists():
    subcommands = ["maximize", "report", "watch", "zoo", "rig", "bench", "track", "atlas"]
    known = set().union(*(_options_of([c]) for c in subcommands))
    known |= _options_of(["rig", "simulate"]) | _options_of(["zoo", "info"]) | _options_of(["train"])
    known |= _options_of(["export", "nwb"])
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README))
    assert named - known - OTHER_PROGRAMS == set()


def test_every_subcommand_optimizer_and_parameter_the_readme_names_exists():
    from mango.optimizers import available
    from mango.optimizers.registry import get

    parser_help = build_parser().format_help()
    for sub in set(re.findall(r"`mango ([a-z]+)", README)):
        assert sub in parser_help, sub
    names = set(available())
    for command in COMMANDS:
        words = shlex.split(command)
        opt = words[words.index("--optimizer") + 1] if "--optimizer" in words else "surrogate"
        assert opt in names, command
        cls = get(opt)[0]
        for i, w in enumerate(words):
            if w == "--param":
                key = words[i + 1].split("=", 1)[0]
                assert key in cls.defaults or key == "allocation", (command, key)
    for name in re.findall(r"--optimizer (\S+?)[`\s,)]", README):
        assert name in names, name
    for key in re.findall(r"--param ([a-z_]+)=", README):
        assert key in get("surrogate")[0].defaults or key in get("inception")[0].defaults or key == "allocation", key
