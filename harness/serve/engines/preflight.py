"""Check an SGLang launch line with the installed SGLang's own argument parser, before anything is launched.

SGLang renames and retires flags between releases (0.5.17 still takes `--mamba-scheduler-strategy` as a
deprecated alias; 0.5.20+ reject it for `--mamba-radix-cache-strategy`). A thresholds.yaml written for one
release then fails minutes into a GPU job with argparse's terse "unrecognized arguments". Here the same
parser `sglang.launch_server` builds (`argparse.ArgumentParser(); ServerArgs.add_cli_args(parser)`, as in
`prepare_server_args`) parses the line in a second, and a failure becomes a `PreflightError` naming the
server, the flag or value, the valid choices and a did-you-mean from the parser's own option strings.

Only parsing is checked (flag names, choices, types). `ServerArgs` resolution needs a GPU platform and the
model's config, so combinations are left to SGLang at launch.

Command line, so tests can run it under another PYTHONPATH (one per SGLang version):

    python -m harness.serve.engines.preflight --model-path M [--where model/config] -- ARGS...
    python -m harness.serve.engines.preflight --batch lines.json

prints one JSON line on stdout (`ok`, `sglang_version`, `parsed`, `warnings`, or `error`; a list of them
with --batch) and exits 0 (accepted, or any --batch), 1 (rejected; the message also on stderr) or 3 (sglang
not importable).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.serve.engines.flags import flag_value

EXIT_REJECTED = 1
EXIT_NO_SGLANG = 3
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PreflightError(ConfigError):
    """SGLang's parser rejected a launch line. Carries the pieces of the message for callers and tests."""

    def __init__(self, message: str, *, flag: str | None, value: str | None, sglang_version: str):
        super().__init__(message)
        self.flag = flag
        self.value = value
        self.sglang_version = sglang_version


@dataclass(frozen=True)
class PreflightResult:
    """An accepted line: the SGLang version that accepted it, what it set, and SGLang's deprecation warnings."""

    sglang_version: str
    parsed: dict[str, Any]
    warnings: tuple[str, ...]


class _ParserFailure(Exception):
    """argparse called `error()`; raised instead of printing usage and exiting."""


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _ParserFailure(message)


def sglang_importable() -> bool:
    return importlib.util.find_spec("sglang") is not None


def sglang_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sglang")
    except PackageNotFoundError:  # a source checkout on PYTHONPATH has no dist-info
        from sglang.version import __version__

        return __version__


@functools.lru_cache(maxsize=1)
def _parser() -> _RaisingParser:
    """SGLang's parser, built once per process (importing server_args takes seconds: torch, triton)."""
    from sglang.srt.server_args import ServerArgs

    parser = _RaisingParser(prog="sglang serve", exit_on_error=False)
    ServerArgs.add_cli_args(parser)
    return parser


def check_sglang_args(model_path: str, args: Sequence[str], where: str = "") -> PreflightResult:
    """Parse `--model-path M *args` as `sglang.launch_server` would; raise PreflightError if it would not."""
    parser = _parser()
    version = sglang_version()
    argv = ["--model-path", str(model_path), *map(str, args)]
    prefix = f"{where}: " if where else ""
    with _captured_sglang_warnings() as warnings:
        try:
            argv = _merge_config_file(parser, argv)
            namespace, extras = parser.parse_known_args(argv)
        except argparse.ArgumentError as exc:
            raise _bad_value(parser, argv, exc, prefix, version) from None
        except _ParserFailure as exc:
            raise PreflightError(
                f"{prefix}SGLang {version} rejects the launch args: {exc}",
                flag=None,
                value=None,
                sglang_version=version,
            ) from None
    unknown = [token for token in extras if token.startswith("-") and not _is_number(token)]
    if unknown:
        raise _unknown_flag(parser, unknown, prefix, version)
    if extras:
        raise PreflightError(
            f"{prefix}SGLang {version} takes no positional arguments, got {' '.join(map(repr, extras))}",
            flag=None,
            value=extras[0],
            sglang_version=version,
        )
    parsed = {  # what the line set: values that differ from SGLang's defaults
        key: value
        for key, value in vars(namespace).items()
        if key == "model_path" or (value is not None and value != parser.get_default(key))
    }
    return PreflightResult(sglang_version=version, parsed=parsed, warnings=tuple(warnings))


def _unknown_flag(parser: argparse.ArgumentParser, unknown: list[str], prefix: str, version: str) -> PreflightError:
    flag = unknown[0].partition("=")[0]
    options = list(parser._option_string_actions)  # every spelling SGLang accepts, aliases included
    hint = did_you_mean(flag, options)
    if not hint:  # nothing close enough for a single suggestion: show the nearest few instead
        closest = difflib.get_close_matches(flag, options, n=5, cutoff=0.5)
        hint = f" (closest flags: {', '.join(closest)})" if closest else ""
    others = f"; also unknown: {', '.join(unknown[1:])}" if len(unknown) > 1 else ""
    return PreflightError(
        f"{prefix}SGLang {version} does not accept {flag!r}{hint}{others}; "
        "`python -m sglang.launch_server --help` lists its flags",
        flag=flag,
        value=None,
        sglang_version=version,
    )


def _bad_value(
    parser: argparse.ArgumentParser, argv: list[str], exc: argparse.ArgumentError, prefix: str, version: str
) -> PreflightError:
    """An invalid choice, a wrong type or a missing value for a flag SGLang knows."""
    flag = (exc.argument_name or "").split("/")[0]
    action = parser._option_string_actions.get(flag)
    value = flag_value(argv, *(action.option_strings if action else [flag]))
    shown = flag if value is None else f"{flag} {value!r}"
    message = f"{prefix}SGLang {version} rejects {shown}: {exc.message}"
    if action is not None and action.choices is not None:
        choices = [str(c) for c in action.choices]
        message = (
            f"{prefix}SGLang {version} rejects {flag} {value!r}{did_you_mean(value or '', choices)}; "
            f"valid choices: {', '.join(choices)}"
        )
    return PreflightError(message, flag=flag, value=value, sglang_version=version)


def _merge_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--config FILE` is expanded before parsing, as `prepare_server_args` does (module moved in 0.5.20)."""
    if "--config" not in argv:
        return argv
    try:
        from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger
    except ImportError:
        from sglang.srt.server_args_config_parser import ConfigArgumentMerger
    return ConfigArgumentMerger(parser).merge_config_with_args(argv)


@contextlib.contextmanager
def _captured_sglang_warnings() -> Iterator[list[str]]:
    """Collect what SGLang logs while parsing (its deprecated-flag warnings) instead of printing it."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.startswith("sglang") and record.levelno >= logging.WARNING:
                messages.append(_ANSI.sub("", record.getMessage()))

    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield messages
    finally:
        root.removeHandler(handler)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def check_to_json(model_path: str, args: Sequence[str], where: str = "") -> dict[str, Any]:
    """`check_sglang_args` as a JSON-ready dict (`ok` true with what was parsed, or false with the error)."""
    try:
        result = check_sglang_args(model_path, args, where=where)
    except PreflightError as exc:
        return {
            "ok": False,
            "error": str(exc),
            "flag": exc.flag,
            "value": exc.value,
            "sglang_version": exc.sglang_version,
        }
    return {
        "ok": True,
        "sglang_version": result.sglang_version,
        "parsed": result.parsed,
        "warnings": list(result.warnings),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, sglang_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    cli = argparse.ArgumentParser(prog="python -m harness.serve.engines.preflight", description=__doc__.split("\n")[0])
    cli.add_argument("--model-path", help="required unless --batch")
    cli.add_argument("--where", default="", help="model/config, for the message")
    cli.add_argument(
        "--batch",
        metavar="FILE",
        help='JSON list of {"model_path", "args", "where"}: one line, '
        "one parser import (seconds) for all; prints a JSON list, exits 0",
    )
    opts = cli.parse_args(own)
    if not opts.batch and not opts.model_path:
        cli.error("--model-path is required (or --batch FILE)")
    if not sglang_importable():
        print(json.dumps({"ok": False, "error": "sglang is not importable", "sys_path": sys.path}))
        print("sglang is not importable from this interpreter / PYTHONPATH", file=sys.stderr)
        return EXIT_NO_SGLANG
    if opts.batch:
        with open(opts.batch) as f:
            items = json.load(f)
        results = [check_to_json(item["model_path"], item["args"], item.get("where", "")) for item in items]
        print(json.dumps(results, default=str))
        return 0
    result = check_to_json(opts.model_path, sglang_args, where=opts.where)
    print(json.dumps(result, default=str))
    if not result["ok"]:
        print(result["error"], file=sys.stderr)
        return EXIT_REJECTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
