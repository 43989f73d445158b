"""Build hook: the package is pure Python until the packed engine's compiled kernels land."""

from setuptools import setup

setup()
