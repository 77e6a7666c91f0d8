"""Builds a small causal language model from a config, offline: `python -m substratus_workloads.scratch`."""
