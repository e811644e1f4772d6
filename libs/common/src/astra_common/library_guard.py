"""Version guards for hand-written speed paths that shadow a library's internals.

A speed path that re-implements part of a library (its request checks, its wire bytes) or
reads its private attributes is only known to be equal to the library at the versions it was
tested against. ``LibraryGuard`` states those versions; on any other installed version the
path turns itself off, and one WARNING says which library, which versions and which setting
turns the path off for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

logger = logging.getLogger("astra.library_guard")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (a distribution name, e.g. ``httpx``), or
    None when it is not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def version_admitted(installed: str | None, tested: str) -> bool:
    """Whether ``installed`` is a version the specifier ``tested`` (PEP 440, e.g.
    ``==0.28.1``) admits; a missing or unparsable version is not."""
    if installed is None:
        return False
    try:
        return SpecifierSet(tested).contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return False


class LibraryGuard:
    """Whether a speed path may run with the libraries installed now.

    ``tested`` maps each distribution the path shadows to the PEP 440 specifier of the
    versions it was tested against; ``what`` names the path and ``setting`` the environment
    variable that turns it off, both for the log line. The verdict is taken once, on the first
    ``allows()``, and kept (installed versions do not change while a process runs).
    ``version_of`` looks a distribution's version up (``installed_version``).
    """

    def __init__(
        self,
        tested: Mapping[str, str],
        *,
        what: str,
        setting: str,
        version_of: Callable[[str], str | None] = installed_version,
    ) -> None:
        if not tested:
            raise ValueError("a library guard needs at least one tested distribution")
        for distribution, specifier in tested.items():
            try:
                SpecifierSet(specifier)
            except InvalidSpecifier:
                raise ValueError(
                    f"tested versions of {distribution}: {specifier!r} is not a PEP 440 specifier"
                ) from None
        self.tested = dict(tested)
        self.what = what
        self.setting = setting
        self.version_of = version_of
        self._verdict: bool | None = None

    def allows(self) -> bool:
        """True when every shadowed library is at a tested version. Otherwise False, after
        one WARNING (on the first call only) naming the library, its installed and tested
        versions and the setting that turns the path off."""
        if self._verdict is None:
            self._verdict = self._check()
        return self._verdict

    def _check(self) -> bool:
        for distribution, specifier in self.tested.items():
            installed = self.version_of(distribution)
            if not version_admitted(installed, specifier):
                logger.warning(
                    "%s is off: it shadows %s and was tested with %s%s only, but %s is "
                    "installed; the library's own path serves instead (set %s=false to "
                    "keep it off without this warning)",
                    self.what,
                    distribution,
                    distribution,
                    specifier,
                    f"version {installed}" if installed is not None else "no version",
                    self.setting,
                )
                return False
        return True
