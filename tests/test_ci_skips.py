"""Under CI=true a skip means `make install` failed to provide something: it must fail the run."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")
SKIPPING_TESTS = """
import pytest

def test_needs_a_missing_tool():
    pytest.skip("tool not installed")

@pytest.mark.skip_ok_in_ci
def test_skip_that_reflects_the_machine():
    pytest.skip("flash-attn is installed here")
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str) -> pytest.RunResult:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    skip_ok_in_ci: allowed\n")
    pytester.makepyfile(test_skips=SKIPPING_TESTS)
    return pytester.runpytest_subprocess("-q", "-rfs")


def test_a_skip_fails_under_ci_unless_marked_as_the_machines(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "true")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true*tool not installed*"])


def test_a_skip_stays_a_skip_outside_ci(pytester, monkeypatch):
    _run(pytester, monkeypatch, "").assert_outcomes(skipped=2)


def test_a_module_level_importorskip_fails_collection_under_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_imports='import pytest\npytest.importorskip("no_such_mod")\n'
                        "def test_x():\n    pass\n")  # fmt: skip
    result = pytester.runpytest_subprocess("-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped under CI=true*no_such_mod*"])
