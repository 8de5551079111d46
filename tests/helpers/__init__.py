"""What the tests share: box generators and tolerances (boxes), devices, multi-process runs.

tests/ is on sys.path while pytest runs (tests/conftest.py puts it there), so any test file,
tests/harness/ included, imports these as ``from helpers.boxes import random_boxes``.
"""
