"""Checked command-line arguments, shared by every entry point (typer/click commands and argparse scripts).

* Value kinds (``POSITIVE_INT``, ``int_range``, ``float_range``, ``choice``, ``existing_file``, ``parquet_with``,
  ``output_dir``, ...) are argparse ``type=`` callables and, as ``kind.typer``, typer ``parser=`` functions: a
  bad value is rejected while the arguments are parsed, before anything is loaded.
* ``ArgumentParser``: argparse that reports a bad argument as one line (``error: argument --steps: ...``) and
  exits with code 2; ``parse_with_overrides`` also insists that the extra arguments are Hydra overrides.
* ``OneLineErrors``: a typer command/group mixin that prints usage errors as one line, exit code 2.
* ``atomic_dir``: build an output directory next to its target and move its files into place only when complete;
  ``building_dir``: the same, replacing the whole target directory (``replace_dir``).
* ``write_text_atomic``, ``write_parquet_atomic``, ``savefig_atomic``, ``write_atomic``: one file, written next
  to its target and renamed into place.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 2


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------
# value kinds
# ---------------------------------------------------------------------------


class Kind:
    """A checked argument value. ``kind.parse(value)`` returns the converted value or raises ValueError/TypeError
    with a message that reads after the argument's name; ``kind(value)`` is the same for argparse's ``type=``
    and ``kind.typer`` for ``typer.Option(parser=...)`` / ``typer.Argument(parser=...)``."""

    def __init__(self, name: str, parse: Callable[[Any], Any]):
        self.name = name
        self._parse = parse
        self.__name__ = name

    def parse(self, value):
        return self._parse(value)

    def __call__(self, value):
        try:
            return self._parse(value)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(one_line(exc)) from None

    def typer(self, value):
        import typer

        try:
            return self._parse(value)
        except (ValueError, TypeError) as exc:
            raise typer.BadParameter(one_line(exc)) from None

    def __repr__(self) -> str:
        return self.name


def _bounds(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return " and ".join(parts)


def _as_int(value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"must be an integer, got {value!r}") from None


def int_range(lo: int | None = None, hi: int | None = None) -> Kind:
    def parse(value) -> int:
        number = _as_int(value)
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ValueError(f"must be an integer {_bounds(lo, hi)}, got {number}")
        return number

    return Kind(f"integer {_bounds(lo, hi)}".strip(), parse)


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Kind:
    def parse(value) -> float:
        if isinstance(value, bool):
            raise TypeError(f"must be a number, got {value!r}")
        try:
            number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {value!r}")
        low_bad = lo is not None and (number <= lo if lo_open else number < lo)
        high_bad = hi is not None and (number >= hi if hi_open else number > hi)
        if low_bad or high_bad:
            raise ValueError(f"must be a number {_bounds(lo, hi, lo_open, hi_open)}, got {number:g}")
        return number

    return Kind(f"number {_bounds(lo, hi, lo_open, hi_open)}".strip(), parse)


POSITIVE_INT = int_range(1)
NON_NEGATIVE_INT = int_range(0)
SEED = int_range(0, 2**32 - 1)
POSITIVE_FLOAT = float_range(0.0, lo_open=True)
FRACTION = float_range(0.0, 1.0, hi_open=True)  # [0, 1)
PROBABILITY = float_range(0.0, 1.0)  # [0, 1]


def choice(*values: str) -> Kind:
    def parse(value) -> str:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(values)} (got {value!r})")
        return value

    return Kind("|".join(values), parse)


def csv_choices(*values: str) -> Kind:
    """A comma-separated, non-empty list of ``values``; returns the list."""

    def parse(value) -> list[str]:
        items = [v.strip() for v in str(value).split(",") if v.strip()] if isinstance(value, str) else list(value)
        if not items:
            raise ValueError(f"must be a comma list of {', '.join(values)} (got {value!r})")
        bad = [v for v in items if v not in values]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(values)}")
        return items

    return Kind("comma list", parse)


def _existing(value, what: str, check: Callable[[Path], bool]) -> Path:
    path = Path(os.path.expanduser(str(value)))
    if not path.exists():
        raise ValueError(f"{what} not found: {path}")
    if not check(path):
        raise ValueError(f"not a {what}: {path}")
    return path


existing_file = Kind("file", lambda v: _existing(v, "file", Path.is_file))
existing_dir = Kind("directory", lambda v: _existing(v, "directory", Path.is_dir))
existing_path = Kind("path", lambda v: _existing(v, "path", lambda p: True))


def check_parquet(path: Path, columns: Sequence[str] = (), alternatives: Sequence[Sequence[str]] = ()) -> Path:
    """``path`` is a parquet file with at least one row and every column in ``columns``; with ``alternatives``,
    it also holds every column of at least one of them."""
    path = _existing(path, "file", Path.is_file)
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
        raise ValueError(f"{path} is not a readable parquet file ({one_line(exc)})") from None
    names = set(meta.schema.to_arrow_schema().names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path} has no column {missing[0]!r} (columns: {', '.join(sorted(names)) or 'none'})")
    if alternatives and not any(all(c in names for c in group) for group in alternatives):
        wanted = " or ".join("+".join(group) for group in alternatives)
        raise ValueError(f"{path} needs the columns {wanted} (columns: {', '.join(sorted(names)) or 'none'})")
    if meta.num_rows < 1:
        raise ValueError(f"{path} has no rows")
    return path


def parquet_with(*columns: str, alternatives: Sequence[Sequence[str]] = ()) -> Kind:
    return Kind("parquet", lambda v: check_parquet(v, columns, alternatives))


def _tiny_world(value) -> Path:
    path = _existing(value, "directory", Path.is_dir)
    if not (path / "manifest.json").is_file():
        raise ValueError(f"no tiny world at {path} (no manifest.json; run `frontier world build --out {path}`)")
    return path


tiny_world = Kind("world dir", _tiny_world)


def _writable_target(value, want_dir: bool) -> Path:
    path = Path(os.path.expanduser(str(value)))
    if str(value).strip() == "":
        raise ValueError("must be a path, got ''")
    if want_dir and path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if not want_dir and path.is_dir():
        raise ValueError(f"{path} is a directory, not a file")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{parent} is not writable")
    return path


output_dir = Kind("directory", lambda v: _writable_target(v, want_dir=True))
output_file = Kind("file", lambda v: _writable_target(v, want_dir=False))


def hydra_override(value: str) -> str:
    """An extra argument of a study script, passed to verl: ``key=value``, ``+key=value``, ``~key``."""
    text = str(value)
    key = text.split("=", 1)[0].lstrip("+~")
    if text.startswith("-") or not key or ("=" not in text and not text.startswith("~")):
        raise ValueError(f"unrecognized argument {text!r} (not an option, nor a Hydra override key=value)")
    return text


# ---------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --steps: must be an integer >= 1, got 0`` on stderr,
    exit code 2 (``--help`` is unchanged)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {one_line(message)}\n")

    def parse_with_overrides(self, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
        """``parse_known_args`` whose leftovers must all be Hydra overrides (a misspelled option is an error,
        not an override)."""
        args, extra = self.parse_known_args(argv)
        for item in extra:
            try:
                hydra_override(item)
            except ValueError as exc:
                self.error(str(exc))
        return args, extra


# ---------------------------------------------------------------------------
# click / typer
# ---------------------------------------------------------------------------


def _param_name(param) -> str | None:
    if param is None:
        return None
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return max(opts, key=len)
    return getattr(param, "human_readable_name", None) or getattr(param, "name", None)


def format_click_error(exc) -> str:
    """One line for a (typer) click error; a bad value reads ``--batch-size: must be an integer >= 1, got 0``."""
    from typer._click.exceptions import BadParameter, MissingParameter  # typer >= 0.22 ships its own click

    if isinstance(exc, BadParameter) and not isinstance(exc, MissingParameter):
        name = exc.param_hint if isinstance(exc.param_hint, str) else _param_name(exc.param)
        if name:
            return one_line(f"{name}: {exc.message}")
    return one_line(exc.format_message())


def run_click(main, args, prog_name, complete_var, extra) -> NoReturn:
    """Run a typer command's ``main`` the way standalone mode does, but with usage errors as one line (exit 2)."""
    import typer
    from typer._click.exceptions import ClickException

    try:
        rv = main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help itself (rich has printed it already)
            if exc.format_message().strip():
                typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(f"error: {format_click_error(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class OneLineErrors:
    """Mixin for a typer ``TyperCommand``/``TyperGroup``: in standalone mode a usage error is one line on
    stderr (exit code 2) instead of usage text and a box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run_click(super().main, args, prog_name, complete_var, extra)


class InputError(ValueError):
    """A bad input found past parsing (inside a file, or a combination of values): ``name: message``, where
    ``name`` is the function's argument (a command maps it to its option with ``reports_input_errors``)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {one_line(message)}")
        self.name, self.message = name, one_line(message)


def reports_input_errors(aliases: dict[str, str] | None = None):
    """Decorator for a typer command: an ``InputError`` raised inside it becomes a usage error naming the
    command's option for that argument (``aliases`` maps the function's argument names to the command's)."""
    import functools

    def wrap(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except InputError as exc:
                import typer
                from typer._click.globals import get_current_context

                name = (aliases or {}).get(exc.name, exc.name)
                ctx = get_current_context(silent=True)
                params = [p for p in (ctx.command.params if ctx else []) if p.name == name]
                hint = _param_name(params[0]) if params else name
                raise typer.BadParameter(exc.message, param_hint=hint) from None

        return wrapper

    return wrap


def one_line_typer_classes():
    """``(group_cls, command_cls)`` for ``typer.Typer(cls=...)`` / ``app.command(cls=...)``."""
    from typer.core import TyperCommand, TyperGroup

    class Group(OneLineErrors, TyperGroup):
        pass

    class Command(OneLineErrors, TyperCommand):
        pass

    return Group, Command


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _staging_dir(target: str | Path, suffix: str, finish: Callable[[Path, Path], Any]) -> Iterator[Path]:
    """Yield a fresh directory next to ``target`` (named ``.<target name>.*<suffix>``); when the block succeeds,
    ``finish(directory, target)`` puts its content in place; in any case the directory is removed if it is still
    there, so that on error ``target`` is left as it was."""
    target = Path(target)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.", suffix=suffix))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; keep the mode a plain mkdir would give
        finish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_dir(target: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Yield a fresh directory next to ``target``; when the block succeeds its files are moved into ``target``
    (created by a rename when it does not exist yet, else file by file with ``os.replace``); on error it is
    removed and ``target`` is left as it was."""
    return _staging_dir(target, ".tmp", _merge_into)


def _merge_into(src: Path, target: Path) -> None:
    """Move ``src`` to ``target`` (a rename when ``target`` does not exist yet), else each entry of ``src`` over
    the entry of the same name in ``target`` (a directory replaces a whole entry; a file never replaces a
    directory)."""
    if not target.exists():
        os.rename(src, target)
        return
    for item in src.iterdir():
        dest = target / item.name
        if dest.is_dir() and not item.is_dir():
            raise IsADirectoryError(f"{dest} is a directory")
        if item.is_dir() and dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(item, dest)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; keep the mode a plain write would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to ``path`` (same suffix, so that writers that pick the
    format by the extension still do) and rename it into place; on error nothing is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_parquet_atomic(rows, path: str | Path) -> Path:
    """``rows`` (a list of dicts, a pandas DataFrame or a pyarrow Table) as a parquet file, renamed into place."""

    def write(tmp: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(rows, pa.Table):
            pq.write_table(rows, tmp)
        elif isinstance(rows, list):
            import pandas as pd

            pd.DataFrame(rows).to_parquet(tmp, index=False)
        else:
            rows.to_parquet(tmp, index=False)

    return write_atomic(path, write)


def savefig_atomic(fig, path: str | Path, **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)`` through a temporary file in the same directory, renamed into place."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))


def replace_dir(src: str | Path, target: str | Path) -> Path:
    """Move the complete directory ``src`` to ``target`` (a sibling path). An existing ``target`` is renamed
    aside first and deleted only once ``src`` is in place (if that rename fails it is put back), so ``target``
    is never a mix of old and new files."""
    src, target = Path(src), Path(target)
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(dir=target.absolute().parent, prefix=f".{target.name}.", suffix=".old"))
        os.rename(target, old / target.name)
    try:
        os.rename(src, target)
    except BaseException:
        if old is not None:
            os.rename(old / target.name, target)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def building_dir(target: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Yield a fresh directory next to ``target``; when the block succeeds it replaces ``target`` as a whole
    (:func:`replace_dir`), on error it is removed and ``target`` is left as it was."""
    return _staging_dir(target, ".partial", replace_dir)
