"""Fine-tunes a causal language model on a dataset: `python -m substratus_workloads.trainer`."""
