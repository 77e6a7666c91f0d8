"""`python -m tests.cluster.record`: re-record the apiserver answers that tests/unit/test_k8s_normalize.py
compares manifests with (tests/unit/goldens/k8s/apiserver/). Run it after a manifest change: it
server-side applies each case's manifest to a fresh test cluster and saves the object as a GET
returns it (managedFields, defaults, status)."""

from __future__ import annotations

import json
import time

from tests.cluster.controlplane import ControlPlane
from tests.unit.test_k8s_normalize import CASES, CTX, RECORDED, desired

PLURALS = {"Deployment": "apis/apps/v1", "StatefulSet": "apis/apps/v1", "Job": "apis/batch/v1",
           "Service": "api/v1"}


def main() -> None:
    with ControlPlane() as cluster:
        cluster.add_node_pool("l4-pool", 1, accelerator="nvidia-l4", gpus=2, cpu="24",
                              memory="96Gi")
        cluster.create_namespace(CTX.namespace)
        for make, kind, _ in CASES:
            manifest = desired(make(), kind)
            path = (f"/{PLURALS[kind]}/namespaces/{CTX.namespace}/{kind.lower()}s/"
                    f"{manifest['metadata']['name']}")
            cluster.request("PATCH", path, manifest, content_type="application/apply-patch+yaml",
                            query={"fieldManager": "substratus"})
        time.sleep(2)  # let the controllers write a status, as a live object has one
        for make, kind, file in CASES:
            manifest = desired(make(), kind)
            path = (f"/{PLURALS[kind]}/namespaces/{CTX.namespace}/{kind.lower()}s/"
                    f"{manifest['metadata']['name']}")
            (RECORDED / file).write_text(json.dumps(cluster.request("GET", path), indent=2) + "\n")
            print(f"recorded {RECORDED / file}")


if __name__ == "__main__":
    main()
