"""The ``apn`` command line: a thin Typer layer over the engine."""

import os

# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads cost training 3-6x
# (bench/train_throughput.py). Set before torch is imported; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
