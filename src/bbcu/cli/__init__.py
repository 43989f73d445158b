"""The ``bbcu`` command line: ``main`` wires one module per verb (``bbcu.cli.<verb>``)."""
