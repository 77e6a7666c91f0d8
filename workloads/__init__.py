"""The workloads substratus runs: model builders, the trainer, the model server and the notebook.

Each is a program of its own (`python -m substratus_workloads.<name>`) that follows the workload
contract of workloads/README.md, so the local runtime runs it as a subprocess and the Kubernetes
runtime runs the same code in a container built from the Dockerfile beside it.
"""
