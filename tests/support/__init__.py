"""Test support: a tiny provider, a state backend conformance suite, real local servers."""
