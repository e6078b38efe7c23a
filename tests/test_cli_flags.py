"""Every ``--flag`` the code's texts name (errors, help, docstrings) is an option of one of the repo's command
lines: an error that suggests a flag which does not exist sends the user nowhere."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import re
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("experiments", "neve")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
#: Flags of other programs a text tells the user to run, with the program (checked by hand against its --help).
EXTERNAL_FLAGS = {"--output": "jupyter execute"}


def mentioned_flags() -> dict[str, list[str]]:
    """``--flag`` -> the files whose string literals (f-string parts included) name it."""
    found: dict[str, list[str]] = {}
    for source in SOURCES:
        for path in sorted((REPO / source).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for flag in FLAG.findall(node.value):
                        found.setdefault(flag, []).append(str(path.relative_to(REPO)))
    return found


def command_lines() -> list[str]:
    """The modules run with ``python -m``: those with a ``__main__`` guard, and packages with ``__main__.py``."""
    modules = []
    for source in SOURCES:
        for path in sorted((REPO / source).rglob("*.py")):
            text = path.read_text()
            if path.name == "__main__.py":
                modules.append(".".join(path.parent.relative_to(REPO).parts))
            elif '__name__ == "__main__"' in text:
                modules.append(".".join(path.with_suffix("").relative_to(REPO).parts))
    return modules


def defined_flags(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Each command line's options, read off the parsers it builds when run with ``--help`` (subcommands'
    included)."""
    parsers: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self: argparse.ArgumentParser, *args, **kwargs):
        parsers.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", recording)
    flags: dict[str, set[str]] = {}
    environ = dict(os.environ)
    for module in command_lines():
        parsers.clear()
        monkeypatch.setattr(sys, "argv", [module, "--help"])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with pytest.raises(SystemExit) as exit_:
                runpy.run_module(module, run_name="__main__", alter_sys=False)
        assert exit_.value.code in (0, None), module
        os.environ.clear()
        os.environ.update(environ)  # a __main__ block may set variables (PYTHONUNBUFFERED)
        assert parsers, f"{module} --help built no argparse parser"
        flags[module] = {flag for parser in parsers for flag in _options(parser)}
    return flags


def _options(parser: argparse.ArgumentParser) -> set[str]:
    options = {flag for flag in parser._option_string_actions if flag.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _options(sub)
    return options


@pytest.mark.filterwarnings("ignore:'experiments.*' found in sys.modules:RuntimeWarning")  # runpy, re-running
def test_every_flag_a_text_names_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    defined = set().union(*defined_flags(monkeypatch).values())
    assert {"--executor", "--partial", "--no-download", "--root"} <= defined  # the parsers were all read
    unknown = {flag: files for flag, files in mentioned_flags().items()
               if flag not in defined and flag not in EXTERNAL_FLAGS}
    assert unknown == {}, f"texts name flags no command line has: {unknown}"
