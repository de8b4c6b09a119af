"""A broken analyzer plugin is a clear imgscan error (exit 3, naming the distribution),
never an "unexpected" crash (issue 12 item 7)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from imgscan import cli
from imgscan.analyzers import registry
from imgscan.analyzers.interface import AnalyzerError
from imgscan.analyzers.registry import PluginSpec, load_plugin
from imgscan.errors import ImgscanError


def test_analyzer_error_is_an_imgscan_error() -> None:
    assert issubclass(AnalyzerError, ImgscanError)
    assert AnalyzerError.exit_code == 3


def test_plugin_that_fails_to_import() -> None:
    spec = PluginSpec("broken", "imgscan_no_such_module:Thing", "broken-dist", "1.0")
    with pytest.raises(AnalyzerError, match=r"broken-dist 1\.0 failed to load: "
                       "ModuleNotFoundError"):
        load_plugin(spec)


def test_plugin_that_is_not_an_analyzer() -> None:
    spec = PluginSpec("notone", "imgscan.model:Report", "odd-dist", "2.0")
    with pytest.raises(AnalyzerError, match="not an Analyzer or PostAnalyzer subclass"):
        load_plugin(spec)


def test_cli_reports_a_broken_plugin_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = PluginSpec("broken", "imgscan_no_such_module:Thing", "broken-dist", "1.0")
    monkeypatch.setattr(registry, "find_plugins", lambda: [broken])
    result = CliRunner().invoke(cli.main, ["analyzers"])
    assert result.exit_code == 3
    assert "analyzer plugin 'broken' from distribution broken-dist" in result.output
    assert "unexpected" not in result.output
