"""The optional compiled build of the engine's hot path; everything else about the package is
in pyproject.toml.

The modules that pyproject.toml lists under ``[tool.xbus] compiled`` are compiled to C
extensions with mypyc, from the same typed source (which stays the reference, and what runs
where they are not compiled), when mypyc and a C compiler are there. ``XBUS_COMPILE=0`` turns
it off. Whatever goes wrong while compiling, the install goes on with the pure-Python modules
and says why.

mypyc reads the types of what the modules import, so it compiles only where xbus's
dependencies are installed: ``make install`` builds without pip's build isolation once they
are. An isolated build (``pip install .``, ``pip wheel .``) has only setuptools, and makes the
pure-Python package.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent

# The one shared library that holds the compiled modules: inside xbus.streams, so that the
# package keeps ``xbus`` as its only top-level name.
GROUP = "xbus.streams.compiled"


def _say(message: str) -> None:
    print(f"xbus: {message}", file=sys.stderr)


def compiled_sources() -> list[str]:
    """The source files to compile, as pyproject.toml lists them."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        listed: list[str] = tomllib.load(f)["tool"]["xbus"]["compiled"]
    return listed


def extensions() -> list[Any]:
    """The compiled modules' extensions, or none (then the modules stay pure Python)."""
    if os.environ.get("XBUS_COMPILE", "1") == "0":
        _say("XBUS_COMPILE=0: the engine's modules are not compiled (pure Python)")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed in this build: the engine's modules stay pure Python")
        return []
    try:
        # mypy's configuration (the namespace's folders) is pyproject.toml's, read from here.
        os.chdir(ROOT)
        return list(mypycify(compiled_sources(), opt_level="3", group_name=GROUP))
    except (Exception, SystemExit) as exc:  # mypy reports errors by exiting
        _say(f"mypyc could not compile the engine's modules ({exc!r}): they stay pure Python")
        return []


class OptionalBuildExt(build_ext):
    """Builds the compiled modules all or none (a module without its shared library would not
    import); a failure leaves the pure-Python package."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, a compiler error
            _say(f"compiling the engine's modules failed ({exc}): they stay pure Python")
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            self.extensions = []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
