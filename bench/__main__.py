"""`python -m bench [area ...]`: run every benchmark module (or the ones named) in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = argv or sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "main"):
            continue
        started = time.monotonic()
        sys.stdout.write(f"\n==== bench.{name} ====\n")
        sys.stdout.flush()
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            sys.stdout.write(f"bench.{name} FAILED: {exc!r}\n")
        sys.stdout.write(f"==== bench.{name}: {time.monotonic() - started:.0f}s ====\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
