"""Scanning beyond one machine: the Ray Data path (``pip install 'apn[ray]'``).

For job arrays without Ray, ``apn scan --shard K/N`` and ``apn merge`` do the same job from the shell.
"""
