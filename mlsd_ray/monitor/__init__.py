"""Monitoring: the prediction log written by serving, drift reports, and the monitor stage.

Submodules import pandas/pyarrow/scipy; nothing here starts Ray or touches storage at import.
"""
