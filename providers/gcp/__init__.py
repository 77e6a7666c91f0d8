"""Google Cloud: the GCS state backend (`state.py`), the gs:// artifact store (`artifacts.py`), the
GKE client (`gke.py`, operations polled to DONE, busy and quota answers retried) and the provider
of the Cluster, NodePool and Bucket kinds built on them (`provider.py`)."""
