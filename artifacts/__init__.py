"""The artifact store's format and backends, shared by the CLI, the providers and the
workload containers; stdlib only (google-cloud-storage is imported by the gs:// backend alone)."""
