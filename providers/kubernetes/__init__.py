"""The kubernetes provider: Datasets and Models as Jobs, ModelServers as Deployments + Services,
Notebooks as StatefulSets + Services, on any kubeconfig context.

Being built: the manifests and the API client are here; the provider is not wired in yet, so an
Environment with `runtime: kubernetes` is still refused at plan time.
"""
