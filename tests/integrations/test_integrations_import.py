"""alwa_ext.integrations imports no framework; an adapter without its framework says what to install.

These run everywhere, with or without the frameworks (each check is a fresh interpreter, so
what the other tests imported does not count).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import alwa_ext

FRAMEWORKS = ("torchvision", "ultralytics", "mmdet", "mmengine", "mmcv")
# The directory alwa_ext was imported from: the child imports the same copy.
ALWA_EXT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(alwa_ext.__file__)))


def run_python(code: str) -> subprocess.CompletedProcess:
    # `python -c` puts the working folder first on sys.path: run from ALWA_EXT_ROOT, so a source
    # tree's alwa_ext (possibly built for another torch) cannot shadow an installed one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ALWA_EXT_ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=ALWA_EXT_ROOT, timeout=120
    )


def test_the_package_imports_no_framework_and_each_adapter_names_its_own():
    # One interpreter for both checks (starting one costs seconds on a shared machine): first
    # the package alone, then each adapter with its framework made unimportable.
    result = run_python(
        f"""
        import sys
        import alwa_ext, alwa_ext.integrations
        loaded = [name for name in {FRAMEWORKS!r} if name in sys.modules]
        assert not loaded, "importing alwa_ext.integrations imported " + str(loaded)
        assert alwa_ext.integrations.__file__.startswith({ALWA_EXT_ROOT!r})

        for name in ("torchvision", "ultralytics", "mmengine"):
            sys.modules[name] = None  # makes `import name` raise ImportError
        for adapter, framework in [("torchvision", "torchvision"), ("ultralytics", "ultralytics"), ("mmdet", "mmengine")]:
            try:
                __import__("alwa_ext.integrations." + adapter)
            except ImportError as error:
                message = str(error)
                assert framework in message and "pip install " + framework in message, message
            else:
                raise AssertionError(adapter + " imported without " + framework)
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
