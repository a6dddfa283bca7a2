"""Optional dependencies: a module that needs an extra says which, when it is missing."""

from __future__ import annotations


def missing_extra(error: ImportError, extra: str, what: str) -> ModuleNotFoundError:
    """The error to raise (``from error``) when ``what`` cannot import a package of ``extra``.

    A ModuleNotFoundError still, so ``except ImportError`` around an optional import works.
    """
    package = (error.name or "").partition(".")[0] or "missing"
    return ModuleNotFoundError(
        f"{what} needs the {package} package: pip install 'freshcache[{extra}]'", name=package
    )
