"""The package's public namespace."""

import subprocess
import sys

import skages


def test_every_public_name_resolves():
    for name in skages.__all__:
        assert getattr(skages, name) is not None, name
    assert set(skages.__all__) <= set(dir(skages))


def test_unknown_name_raises_attribute_error():
    try:
        skages.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light():
    """`import skages` (and the CLI's start-up) must not load PyTorch or lightkurve."""
    code = (
        "import sys, skages, skages.cli; "
        "print('torch' in sys.modules, 'lightkurve' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
