"""The install layout and the README's commands stay true to the repository."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = set()
    for root, name in (("substratus_cli", "substratus_cli"), ("providers", "substratus_providers"),
                       ("workloads", "substratus_workloads"), ("artifacts", "substratus_artifacts")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root)
            found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "python -m pytest" in ci_command
    assert f"```bash\n{ci_command}\n```" in readme


def test_the_workload_images_carry_the_store_package():
    # The workloads import substratus_artifacts: every image is built from the repository root and
    # copies it beside them.
    dockerfiles = [REPO / "workloads" / "Dockerfile.loader",
                   *sorted((REPO / "workloads").glob("*/Dockerfile"))]
    assert len(dockerfiles) == 5
    for dockerfile in dockerfiles:
        text = dockerfile.read_text()
        assert "COPY artifacts /opt/substratus/substratus_artifacts/\n" in text, dockerfile
        assert "COPY workloads /opt/substratus/substratus_workloads/\n" in text, dockerfile
        assert f"docker build -f {dockerfile.relative_to(REPO)} .\n" in text, dockerfile


def test_the_readme_indexes_every_example():
    readme = (REPO / "README.md").read_text()
    index = readme[readme.index("## Examples"):readme.index("## How it works")]
    for folder in sorted(p for p in (REPO / "examples").iterdir() if p.is_dir()):
        assert f"| `examples/{folder.name}` |" in index, folder.name
