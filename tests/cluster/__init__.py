"""A real Kubernetes control plane for tests (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) built from Go modules and run as local processes; see controlplane.py."""
