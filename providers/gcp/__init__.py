"""Google Cloud: the GCS state backend (inventory and lock in a bucket); GKE and buckets come later."""
