"""``make fast``: compile the modules named in ``operators/native.py`` with mypyc, in place.

Builds in ``build/native/`` through a mirror of the ``audienceflow.*`` layout (links to
``operators/`` and ``models/``), so the extension modules land next to their sources,
then writes the stamp the import guard checks. The source hashes are taken before
compiling: a source edited during the build leaves a stamp that no longer matches, so
the guard refuses the build rather than run code older than the file.
``python build_native.py --clean`` removes everything it built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "native"
SRC = BUILD / "src"
# Third-party packages the compiled modules import, read as untyped (``Any``): their
# values are used as Python objects either way, and type-checking River, NumPy and SciPy
# from their sources made the build take ten minutes instead of one.
UNTYPED = ("river.*", "numpy.*", "scipy.*")


def _mirror(src: Path = SRC) -> None:
    pkg = src / "audienceflow"
    pkg.mkdir(parents=True, exist_ok=True)
    for name in ("operators", "models"):
        link = pkg / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)


def clean() -> list[Path]:
    """Remove every extension module in the engine folders and the stamp; what was there."""
    from audienceflow.operators import native

    gone = [p for p in (*native.built_files(), native.stamp_path()) if p.exists()]
    for path in gone:
        path.unlink()
    return gone


def _mypycify(root: Path, opt_level: str) -> list[Any]:
    """mypyc's front end over the modules of ``operators/native.py``, in ``root`` (a
    mirror of the package layout in ``root/src``, C sources in ``root/c``): type checks,
    mypyc's own checks and the C sources; the extensions to compile (``build``)."""
    from mypyc.build import mypycify

    from audienceflow.operators import native

    _mirror(root / "src")
    config = root / "mypy.ini"
    config.write_text("[mypy]\n" + "".join(f"[mypy-{m}]\nfollow_imports = skip\n" for m in UNTYPED))
    paths = [m.replace(".", "/") + ".py" for m in native.COMPILED]
    cwd = Path.cwd()
    os.chdir(root / "src")
    try:
        return list(
            mypycify(
                [
                    "--config-file",
                    str(config),
                    "--explicit-package-bases",
                    "--ignore-missing-imports",
                    *paths,
                ],
                opt_level=opt_level,
                group_name=native.GROUP,
                target_dir=str(root / "c"),
            )
        )
    finally:
        os.chdir(cwd)


def check() -> None:
    """What ``build`` does before compiling C (~10 s, not minutes), in a folder of its
    own, leaving any build in place: a source mypyc refuses (a ``list`` subclass, a type
    error its stricter reading finds) fails here, and in the test suite, not at
    ``make fast`` on a user's machine. Exits non-zero with mypyc's errors."""
    with tempfile.TemporaryDirectory(prefix="audienceflow-native-check-") as tmp:
        _mypycify(Path(tmp), "0")


def build(opt_level: str) -> dict[str, object]:
    from setuptools import setup

    from audienceflow.operators import native

    clean()  # a failed build leaves pure Python, never half a build
    # From scratch every time (~25 s): no cache of an earlier build can leak into this one.
    shutil.rmtree(BUILD, ignore_errors=True)
    hashes = native.source_hashes()
    t = time.perf_counter()
    extensions = _mypycify(BUILD, opt_level)
    cwd = Path.cwd()
    os.chdir(SRC)
    try:
        setup(
            name="audienceflow-native",
            ext_modules=extensions,
            script_args=["build_ext", "--inplace", "--build-temp", str(BUILD / "temp"), "-q"],
        )
    finally:
        os.chdir(cwd)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    files = []
    for ext in extensions:
        parts = ext.name.split(".")  # audienceflow.<folder>.<module>
        path = native.ROOTS[parts[1]] / (parts[-1] + suffix)
        if not path.is_file():
            raise SystemExit(f"build_native: {ext.name} was not built at {path}")
        files.append(f"{parts[1]}/{path.name}")
    stamp = {
        "format": native.STAMP_FORMAT,
        "modules": list(native.COMPILED),
        "files": sorted(files),
        "sources": hashes,
        "python": sys.version.split()[0],
        "opt_level": opt_level,
        "build_seconds": round(time.perf_counter() - t, 1),
    }
    native.stamp_path().write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    return stamp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="remove the compiled build")
    ap.add_argument("--opt-level", default="3", help="C compiler -O level (default 3)")
    ap.add_argument(
        "--check", action="store_true", help="run mypyc's checks only (~10 s), build nothing"
    )
    args = ap.parse_args()
    if args.check:
        check()
        print("mypyc accepts every module of operators/native.py")
        return 0
    if args.clean:
        for path in clean():
            print(f"removed {path.relative_to(ROOT)}")
        return 0
    stamp = build(args.opt_level)
    print(
        f"compiled {len(stamp['modules'])} modules in {stamp['build_seconds']} s "  # type: ignore[arg-type]
        f"(stamp: operators/native.json)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
