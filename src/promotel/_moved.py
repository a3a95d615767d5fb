"""Module paths from before the 0.2 layout keep importing, as aliases of the modules that now hold the code.

0.1 had one flat module per stage (``promotel.convert``, ``promotel.encode``, ``promotel.maptool``, …);
0.2 groups them in packages named after the pipeline stage (see ``docs/architecture.md``). Scripts that
import an old path get the very same module object as the new path: one copy of the code and its state.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

# old module path → new module path
MOVED = {
    "promotel.assemble": "promotel.mappings.assemble",
    "promotel.check": "promotel.commands.check",
    "promotel.convert": "promotel.series.store",
    "promotel.demo": "promotel.commands.demo",
    "promotel.duration": "promotel.config.units",
    "promotel.encode": "promotel.export.encode",
    "promotel.health": "promotel.service.health",
    "promotel.lint": "promotel.commands.lint",
    "promotel.maptool": "promotel.commands.map",
    "promotel.otlp_json": "promotel.export.otlp_json",
    "promotel.secrets": "promotel.config.secrets",
    "promotel.selftelemetry": "promotel.service.selftelemetry",
    "promotel.shard": "promotel.scrape.shard",
    "promotel.temporality": "promotel.export.delta",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None     # the default empty module; exec_module replaces it in sys.modules

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name once loading ends, so the
        # old name becomes the new module itself (its __name__ and __spec__ stay the new ones).
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once (``promotel/__init__`` does it at import)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
