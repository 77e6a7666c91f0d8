"""Serves a causal language model over HTTP, OpenAI-shaped: `python -m substratus_workloads.server`."""
