"""Seed comparisons (vaelib.claims) and vaelib's source on a page (vaelib.source)."""
import math

import pytest

import vaelib
from vaelib import claims
from vaelib.source import show_source


def test_separation_is_welch_statistic():
    a, b = [1.0, 2.0, 3.0], [0.0, 0.5, 1.0]
    expected = (2.0 - 0.5) / math.sqrt(1.0 / 3 + 0.25 / 3)
    assert claims.separation(a, b) == pytest.approx(expected)
    assert claims.separation(b, a) == pytest.approx(-expected)
    assert claims.separation([1.0, 1.0], [1.0, 1.0]) == 0.0
    assert claims.separation([2.0, 2.0], [1.0, 1.0]) == math.inf


def test_checks_pass_and_fail_with_the_numbers_named():
    high, low = [10.0, 10.2, 9.9], [1.0, 1.1, 0.9]
    assert claims.check_above(high, low) > 2
    assert claims.check_below(low, high) < -2
    with pytest.raises(AssertionError, match="not clearly above .* a = 1"):
        claims.check_above(low, high)
    noisy = [0.0, 2.0, 4.0]
    assert abs(claims.check_as_good_as(noisy, [1.0, 2.5, 3.0])) <= 2
    with pytest.raises(AssertionError, match="the seeds tell them apart"):
        claims.check_as_good_as(high, low)


def test_summaries_refuse_what_cannot_be_compared():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        claims.summarise([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        claims.summarise([1.0, float("nan")])
    s = claims.summarise([1.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, math.sqrt(2.0), 2)
    assert s.standard_error == pytest.approx(1.0)


def test_show_source_gives_the_installed_definition():
    source = show_source(vaelib.VAE.reparameterize)
    assert source.path == "vaelib/models/vae.py"
    assert "def reparameterize" in source.code and source.qualname == "VAE.reparameterize"
    lines = open(vaelib.models.vae.__file__).read().splitlines()
    shown = "\n".join(lines[source.first_line - 1:source.last_line]).strip()
    assert shown.endswith(source.code.splitlines()[-1].strip())
    markdown = source._repr_markdown_()
    assert markdown.startswith("`vaelib/models/vae.py, lines ") and "```python\n" in markdown


def test_show_source_can_leave_out_docstrings():
    full, short = show_source(vaelib.fit), show_source(vaelib.fit, docstring=False)
    assert '"""' in full.code and '"""' not in short.code
    assert short.code.splitlines()[0] == full.code.splitlines()[0]
    compile(short.code, "<short>", "exec")  # still valid Python


def test_show_source_refuses_code_outside_vaelib():
    with pytest.raises(TypeError, match="outside"):
        show_source(pytest.approx)
    with pytest.raises(TypeError, match="no Python source"):
        show_source(len)
