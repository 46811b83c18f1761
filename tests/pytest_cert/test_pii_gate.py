"""``cert_trace.expect_no_pii``: a failed check names each finding masked and counts as a violation."""

from __future__ import annotations

import pytest

from tests.pytest_cert.conftest import Evidence


def test_expect_no_pii_fails_with_masked_findings(project: pytest.Pytester, evidence: Evidence) -> None:
    project.makepyfile(
        """
        def test_leak(cert_trace):
            cert_trace.expect_no_pii("Sure! Jane's card is 4111 1111 1111 1111, mail jane@example.com")

        def test_clean(cert_trace):
            cert_trace.expect_no_pii("The Helios 10 stores 10.2 kWh.")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*CertPiiError: personal data in the text: 2 finding(s): "
            "card **** **** **** **11 at 21, email *****@*******.*om at *"
        ]
    )
    assert "4111 1111 1111 1111" not in "\n".join(
        line for line in result.stdout.lines if "CertPiiError" in line
    )
    (violation,) = evidence.test("test_leak")["violations"]
    assert violation["kind"] == "pii"
