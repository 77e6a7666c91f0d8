"""Runs JupyterLab over the workload's content directory: `python -m substratus_workloads.notebook`."""
