"""Shared set-up of the Python package tests: import monoquant from the build
tree (MQ_BUILD_DIR/python, where the test build puts the extension) or from the
environment, and run a file's test_* functions with pytest when it is
installed, else one by one (each test takes no fixtures)."""
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

_build = os.environ.get("MQ_BUILD_DIR")
if _build and os.path.isdir(os.path.join(_build, "python", "monoquant")):
    sys.path.insert(0, os.path.join(_build, "python"))


class Skip(Exception):
    pass


def skip_test(message):
    """Skips the running test (pytest's skip when pytest runs it)."""
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(message)
    raise Skip(message)


def expect_error(fn, *fragments):
    """Calls fn and returns the QuantizationError it must raise, whose message
    must hold every fragment."""
    import monoquant
    try:
        fn()
    except monoquant.QuantizationError as e:
        assert isinstance(e, ValueError)
        for f in fragments:
            assert f in str(e), "%r not in %r" % (f, str(e))
        return e
    raise AssertionError("no QuantizationError")


def need_package():
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import monoquant  # noqa: F401
    except ImportError as e:
        mqcheck.skip("monoquant, numpy or torch cannot be imported (%s); the test build makes "
                     "the extension when MQ_PYTHON has the Python development headers" % e)


def main(path, namespace):
    try:
        import pytest
    except ImportError:
        pytest = None
    if pytest is not None:
        sys.exit(pytest.main([path, "-q", "-p", "no:cacheprovider"]))
    failed = 0
    tests = [(k, v) for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    for name, fn in tests:
        try:
            fn()
            print("ok   " + name)
        except Skip as s:
            print("skip %s: %s" % (name, s))
        except Exception:
            failed += 1
            print("FAIL " + name)
            traceback.print_exc()
    print("%d of %d tests failed" % (failed, len(tests)))
    sys.exit(1 if failed else 0)
