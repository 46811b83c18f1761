from __future__ import annotations

import pytest


def test_plugin_is_registered_under_its_entry_point_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_one(request):\n    assert request.config.pluginmanager.has_plugin('cert')\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_plugin_declares_the_cert_option_group(pytester: pytest.Pytester) -> None:
    # pytest prints a group in --help only once it has options (they arrive with the gate). A
    # conftest adds a probe option to the group "cert": the title shown is the description the
    # plugin gave the group, which proves the plugin created it first.
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.getgroup('cert').addoption('--probe')\n")
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["pytest-cert: LLM accuracy, cost and evidence gate:", "  --probe*"])


def test_plugin_is_inert_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_one():\n    assert True\n")
    before = sorted(p.name for p in pytester.path.iterdir())
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    # Python's own bytecode cache is not ours (it appears unless PYTHONDONTWRITEBYTECODE is set).
    assert sorted(p.name for p in pytester.path.iterdir() if p.name != "__pycache__") == before


def test_disabling_the_plugin_works(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_one(request):\n    assert not request.config.pluginmanager.has_plugin('cert')\n"
    )
    pytester.runpytest("-p", "no:cert").assert_outcomes(passed=1)
