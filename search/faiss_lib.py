"""The one place FAISS is imported (by ``search.vectors``; ``pixseek doctor`` calls ``load``).

FAISS comes from one of two extras that install the same ``faiss`` package:
``pixseek[cpu]`` (``faiss-cpu``) or ``pixseek[gpu]`` (``faiss-gpu``). Neither is a base
dependency, because pip lets both be installed at once and then whichever was installed
last owns the shared files, and uninstalling either deletes them. Without FAISS, using the
index is one ``DependencyError`` naming the two commands, not a traceback; ``pixseek doctor``
says which build is in use and fails when more than one is installed.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from importlib.metadata import Distribution
from types import ModuleType

from search.errors import DependencyError

INSTALL = "pip install 'pixseek[cpu]' or pip install 'pixseek[gpu]' (NVIDIA GPUs, Linux)"
# The FAISS wheels (faiss-cpu, faiss-gpu, faiss-gpu-cu11, faiss-gpu-cu12, ...; conda's is
# plain faiss) all install the same files: faiss/__init__.py, faiss/_swigfaiss*.so.
DISTRIBUTION = re.compile(r"faiss(-(cpu|gpu)(-[a-z0-9]+)*)?")


class FaissMissingError(DependencyError):
    """No ``faiss`` package, or what is left of one whose files another FAISS build's
    uninstall deleted."""


def distributions(dists: Iterable[Distribution] | None = None) -> list[tuple[str, str]]:
    """The installed FAISS distributions as sorted ``(name, version)``, one per name:
    those of ``importlib.metadata.distributions()`` unless ``dists`` is given."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions() if dists is None else dists:
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if DISTRIBUTION.fullmatch(name):
            found.setdefault(name, dist.version)
    return sorted(found.items())


def _missing(incomplete: bool) -> FaissMissingError:
    found = distributions()
    if not found:
        return FaissMissingError(f"FAISS is not installed: {INSTALL}")
    what = "incomplete" if incomplete else "missing"
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        return FaissMissingError(f"the faiss package is {what} and {names} are all installed "
                                 "(they share its files): pixseek doctor says which to keep")
    name, version = found[0]
    return FaissMissingError(
        f"{name} {version} is installed but the faiss package is {what} (did uninstalling "
        f"another FAISS build delete its files?): pip install --force-reinstall --no-deps "
        f"{name}=={version}"
    )


def load() -> ModuleType:
    """The ``faiss`` module, or a ``DependencyError`` that says how to install it."""
    try:
        import faiss
    except ModuleNotFoundError as exc:
        if exc.name != "faiss":  # faiss is there but a module it needs is not
            raise DependencyError(f"FAISS does not load: {exc}") from exc
        raise _missing(incomplete=False) from exc
    except (ImportError, RuntimeError) as exc:  # faiss-gpu without the CUDA runtime: either
        raise DependencyError(f"FAISS does not load: {exc}") from exc
    if not hasattr(faiss, "IndexFlatIP"):
        # A namespace package: what is left after uninstalling one of two FAISS builds.
        raise _missing(incomplete=True)
    return faiss


def __getattr__(name: str) -> ModuleType:
    # ``from search.faiss_lib import faiss`` loads it; importing this module alone does not
    # (the doctor imports ``load`` to report on a missing FAISS).
    if name == "faiss":
        return load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
