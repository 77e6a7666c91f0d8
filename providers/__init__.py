"""Providers: one sub-package per runtime or cloud (local, later kubernetes and gcp)."""
