"""Child Python processes that import what the test process imported.

A child started in the repository root would import the tree's alwa_ext first (its working
folder leads sys.path), whose _C may be built for another torch (`make test-torch-latest` tests
an installed build with the tree's _C built for the pinned torch). Run children from a neutral
folder with the imported packages' folders on PYTHONPATH instead.
"""
from __future__ import annotations

import os

import alwa_ext


def child_options(cwd) -> dict:
    """subprocess keyword arguments: `cwd` and an environment whose PYTHONPATH leads with the
    folders holding the alwa_ext (and alwa_det, when importable) this process uses."""
    folders = [os.path.dirname(os.path.dirname(os.path.abspath(alwa_ext.__file__)))]
    try:
        import alwa_det

        folders.append(os.path.dirname(os.path.dirname(os.path.abspath(alwa_det.__file__))))
    except ImportError:  # the core tests run without the harness's extras
        pass
    existing = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(folders + ([existing] if existing else []))))
    return dict(cwd=str(cwd), env=env)
