"""substratus: Terraform's plan/apply discipline for ML infrastructure."""

__version__ = "0.1.0"
