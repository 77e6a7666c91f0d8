"""Every example directory validates and plans on a fresh machine. The quickstart is applied end
to end in test_local_ml.py; facebook-opt-125m needs the network to apply, so here it is planned
offline (fetched digests are known after apply) with its sizing checked against this machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

# examples/ci is a CI recipe (a workflow and a script): the workspace in it is what validates.
WORKSPACES = {"ci": "ci/workspace"}


@pytest.mark.parametrize("example", sorted(WORKSPACES.get(p.name, p.name)
                                           for p in EXAMPLES.iterdir() if p.is_dir()))
def test_example_validates(cli, example: str):
    result = cli("validate", EXAMPLES / example)
    assert result.code == 0, result.output


def test_facebook_opt_125m_plans_offline_with_its_sizing(cli, tmp_path: Path):
    workdir = tmp_path / "facebook-opt-125m"
    shutil.copytree(EXAMPLES / "facebook-opt-125m", workdir)
    plan = cli("plan", "--detailed-exitcode", workdir)
    assert plan.code == 2, plan.output
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in plan.out
    assert ("# sizing: training needs 125.0M parameters x 16 bytes (weights, gradients and Adam "
            "state) = 1.9 GiB, x 1.2 for activations = 2.2 GiB; fits in ") in plan.out
    assert ("# sizing: serving needs 125.0M parameters x 32 bits / 8 = 476.8 MiB of weights, "
            "x 1.2 for the KV cache and activations = 572.2 MiB; fits in ") in plan.out
    assert not (workdir / ".substratus").exists(), "a plan changes nothing"
