"""Google Cloud: the GCS state backend (`state.py`), the gs:// artifact store (`artifacts.py`) and
the GKE client (`gke.py`, operations polled to DONE, busy and quota answers retried); the
Cluster, NodePool and Bucket kinds are being built on them."""
