"""The version guard of speed paths: on at tested versions, off with one WARNING otherwise."""

from __future__ import annotations

import logging

import pytest

from astra_common.library_guard import LibraryGuard, installed_version, version_admitted

GUARD_LOGGER = "astra.library_guard"


def guard_with(versions: dict[str, str | None], tested: dict[str, str]) -> LibraryGuard:
    """A guard that sees ``versions`` installed (a unit test double of the version lookup)."""
    return LibraryGuard(
        tested, what="the test path", setting="ASTRA_TEST_PATH", version_of=versions.__getitem__
    )


def test_the_installed_version_is_read_from_the_distribution() -> None:
    import packaging

    assert installed_version("packaging") == packaging.__version__
    assert installed_version("no-such-distribution-astra") is None


@pytest.mark.parametrize(
    ("installed", "tested", "admitted"),
    [
        ("0.28.1", "==0.28.1", True),
        ("0.28.2", "==0.28.1", False),
        ("0.29.0", ">=0.28,<0.29", False),
        ("0.28.9", ">=0.28,<0.29", True),
        ("2.3.0rc1", "==2.3.0rc1", True),
        ("not a version", "==1.0", False),
        (None, "==1.0", False),
    ],
)
def test_versions_admitted(installed: str | None, tested: str, admitted: bool) -> None:
    assert version_admitted(installed, tested) is admitted


def test_a_tested_version_allows_the_path_without_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_with(
        {"lib": "1.2.0", "lib-types": "1.2.0"}, {"lib": "==1.2.0", "lib-types": "==1.2.0"}
    )
    with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
        assert guard.allows()
    assert caplog.records == []


def test_an_untested_version_turns_the_path_off_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_with(
        {"lib": "1.2.0", "lib-types": "1.3.0"}, {"lib": "==1.2.0", "lib-types": "==1.2.0"}
    )
    with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
        assert not guard.allows()
        assert not guard.allows()  # the verdict is kept: no second line
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("the test path is off", "lib-types==1.2.0", "version 1.3.0", "ASTRA_TEST_PATH"):
        assert part in message, part


def test_a_missing_library_turns_the_path_off(caplog: pytest.LogCaptureFixture) -> None:
    guard = guard_with({"lib": None}, {"lib": "==1.2.0"})
    with caplog.at_level(logging.WARNING, logger=GUARD_LOGGER):
        assert not guard.allows()
    assert "no version is installed" in caplog.text


@pytest.mark.parametrize("tested", [{}, {"lib": "1.2.0"}, {"lib": "=>1"}])
def test_a_guard_needs_tested_versions_written_as_specifiers(tested: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"specifier|at least one"):
        guard_with({"lib": "1.2.0"}, tested)
