"""The artifact store's format and backends (DESIGN.md §3), shared by the CLI, the providers and the
workload containers; stdlib only (google-cloud-storage is imported by the gs:// backend alone)."""
