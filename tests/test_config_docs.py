"""docs/configuration.md lists exactly the settings the code reads."""

from __future__ import annotations

from pathlib import Path

from config_docs import main, render, undocumented_fields

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_is_documented_in_code() -> None:
    assert undocumented_fields() == []


def test_configuration_page_is_current() -> None:
    assert DOC.read_text() == render(), "docs/configuration.md is stale: run `make docs-config`"


def test_stale_page_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    assert main(["write", str(page)]) == 0
    assert main(["check", str(page)]) == 0
    page.write_text(page.read_text().replace("ASTRA_SYNTH_PORT", "ASTRA_SYNTH_PROT"))
    assert main(["check", str(page)]) == 1
