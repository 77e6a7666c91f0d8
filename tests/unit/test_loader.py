"""The loader: a valid directory becomes Resources; every kind of mistake becomes one diagnostic
with the exact text, file, line and field a user sees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from substratus_cli.address import Address
from substratus_cli.config import LoadResult, load_directory
from substratus_cli.config.loader import MAX_FILE_BYTES
from substratus_cli.config.schema import EnvironmentSpec
from substratus_providers.gcp.expand import expand

HEAD = "apiVersion: substratus.ai/v1\n"


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if text.startswith(HEAD):
        text = HEAD + textwrap.dedent(text[len(HEAD):]).lstrip("\n")
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def messages(result: LoadResult) -> list[str]:
    return [str(d) for d in result.diagnostics]


def load_one(tmp_path: Path, text: str, name: str = "r.yaml") -> LoadResult:
    write(tmp_path, name, text)
    return load_directory(tmp_path)


def test_valid_directory_loads_every_document(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path, "env.yaml", """
        apiVersion: substratus.ai/v1
        kind: Environment
        metadata: {name: prod}
        spec:
          runtime: kubernetes
          kubernetes: {namespace: ml, cluster: {name: gke}}
        """)
    write(tmp_path, "infra/gke.yml", """
        apiVersion: substratus.ai/v1
        kind: Cluster
        metadata: {name: gke}
        spec: {project: my-project, location: us-central1}
        ---
        # the GPUs
        apiVersion: substratus.ai/v1
        kind: NodePool
        metadata: {name: l4, labels: {team: ml}}
        spec:
          cluster: {name: gke}
          machineType: g2-standard-8
          accelerator: {type: nvidia-l4, count: 1}
          taints: [{key: gpu, effect: NoSchedule}]
        """)
    write(tmp_path, "ml.yaml", """
        ---
        apiVersion: substratus.ai/v1
        kind: Dataset
        metadata: {name: colors}
        spec:
          source: {path: ./data}
        ---
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: base, namespace: other}
        spec: {source: {huggingface: {name: facebook/opt-125m}}}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: tuned}
        spec:
          command: [python, train.py]
          training:
            baseModel: {name: tuned-base}
            dataset: {name: colors}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: tuned-base}
        spec: {source: {scratch: {config: {layers: 2}}}}
        """)
    write(tmp_path, ".substratus/state.yaml", "kind: nonsense\n")
    write(tmp_path, ".hidden/x.yaml", "kind: nonsense\n")
    write(tmp_path, "notes.txt", "kind: nonsense\n")

    result = load_directory(tmp_path, recursive=True)

    assert messages(result) == []
    assert result.environment is not None
    assert result.environment.address == Address("Environment", "ml", "prod")
    assert result.environment.refs == (Address("Cluster", "ml", "gke"),)
    assert [str(r.address) for r in result.resources] == [
        "Cluster/ml/gke", "NodePool/ml/l4", "Dataset/ml/colors", "Model/other/base",
        "Model/ml/tuned", "Model/ml/tuned-base",
    ]
    pool = result.resources[1]
    assert pool.file == "infra/gke.yml" and pool.line == 7  # after the comment
    assert pool.labels == {"team": "ml"}
    assert pool.refs == (Address("Cluster", "ml", "gke"),)
    assert pool.spec == {
        "cluster": {"name": "gke"}, "machineType": "g2-standard-8",
        "accelerator": {"type": "nvidia-l4"}, "taints": [{"key": "gpu", "effect": "NoSchedule"}],
    }
    assert pool.field_lines["spec.machineType"] == 12
    assert pool.field_lines["spec.taints.0"] == 14
    assert pool.line_of("spec.taints.0.effect") == 14
    tuned = result.resources[4]
    assert tuned.line == 14
    assert tuned.refs == (Address("Model", "ml", "tuned-base"), Address("Dataset", "ml", "colors"))
    # Then what it runs on (the gcp provider's expansion): the Environment's cluster and its pools.
    expanded = expand(result.resources, EnvironmentSpec.model_validate(result.environment.spec))
    assert expanded[4].refs == (*tuned.refs, Address("Cluster", "ml", "gke"),
                                Address("NodePool", "ml", "l4"))
    assert tuned.field_lines["spec.command.1"] == 18
    assert tuned.field_lines["spec.training.dataset.name"] == 21


def test_explicit_defaults_normalize_like_omitted(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()  # the path source it names
    write(tmp_path, "a.yaml", HEAD + """
        kind: ModelServer
        metadata: {name: s}
        spec: {model: {name: m}}
        """)
    write(tmp_path, "b.yaml", HEAD + """
        kind: ModelServer
        metadata: {name: s, namespace: b}
        spec: {model: {name: m}, replicas: 1, image: null}
        """)
    write(tmp_path, "m.yaml", HEAD + """
        kind: Model
        metadata: {name: m}
        spec: {source: {path: ./m}}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m, namespace: b}
        spec: {source: {path: ./m}}
        """)
    result = load_directory(tmp_path)
    assert messages(result) == []
    first, second = result.resources[:2]
    assert first.spec == second.spec == {"model": {"name": "m"}}


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + "kind: Bucket\nmetadata: {name: b\nspec: {}\n")
    assert messages(result) == [
        "r.yaml:4: invalid YAML: while parsing a flow mapping; expected ',' or '}', but got ':'"
    ]


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + "kind: Bucket\n---\n- a\n- b\n")
    assert messages(result)[-1] == (
        "r.yaml:4: expected a mapping with apiVersion, kind, metadata and spec, got a list"
    )


def test_missing_api_version(tmp_path: Path) -> None:
    result = load_one(tmp_path, "kind: Bucket\nmetadata: {name: b}\nspec: {}\n")
    assert messages(result) == [
        'r.yaml:1: apiVersion: required field is missing; expected "substratus.ai/v1"'
    ]


def test_wrong_api_version(tmp_path: Path) -> None:
    result = load_one(tmp_path, "kind: Bucket\napiVersion: v1\nmetadata: {name: b}\nspec: {}\n")
    assert messages(result) == [
        'r.yaml:2: apiVersion: unsupported apiVersion "v1"; expected "substratus.ai/v1"'
    ]


def test_unknown_kind_lists_the_known_kinds(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + "kind: Widget\nmetadata: {name: d}\nspec: {}\n")
    assert messages(result) == [
        'r.yaml:2: kind: unknown kind "Widget"; expected one of: Environment, Cluster, '
        "NodePool, Bucket, Image, Dataset, Model, ModelServer, Notebook, Stack, Variable"
    ]


@pytest.mark.parametrize(("typo", "meant"), [("dataset", "Dataset"), ("Datset", "Dataset"),
                                             ("ModelSever", "ModelServer"), ("Stak", "Stack"),
                                             ("Varible", "Variable"), ("nodepool", "NodePool")])
def test_a_kind_typo_gets_a_did_you_mean(tmp_path: Path, typo: str, meant: str) -> None:
    result = load_one(tmp_path, HEAD + f"kind: {typo}\nmetadata: {{name: d}}\nspec: {{}}\n")
    assert messages(result) == [f'r.yaml:2: kind: unknown kind "{typo}" (did you mean "{meant}"?)']


def test_wrong_type_names_field_line_and_value(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()  # the path source it names
    result = load_one(tmp_path, HEAD + """
        kind: ModelServer
        metadata: {name: s}
        spec:
          model: {name: m}
          replicas: two
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m}
        spec: {source: {path: ./m}}
        """)
    assert messages(result) == [
        "r.yaml:6: spec.replicas: Input should be a valid integer, got 'two'"
    ]
    (diagnostic,) = result.diagnostics
    assert (diagnostic.subject.file, diagnostic.subject.line, diagnostic.subject.field) == (
        "r.yaml", 6, "spec.replicas")
    assert diagnostic.summary == "Input should be a valid integer, got 'two'"


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + """
        kind: Cluster
        metadata: {name: c}
        spec:
          project: my-project
          releaseChannel: FAST
        """)
    assert messages(result) == [
        "r.yaml:4: spec.location: required field is missing",
        "r.yaml:6: spec.releaseChannel: Input should be 'RAPID', 'REGULAR', 'STABLE' or "
        "'EXTENDED', got 'FAST'",
    ]


def test_unknown_field_suggests_the_closest(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + """
        kind: Bucket
        metadata: {name: b}
        spec: {storage_class: NEARLINE, colour: red}
        status: {}
        """)
    assert messages(result) == [
        'r.yaml:4: spec.colour: unknown field "colour"; allowed: project, location, storageClass',
        'r.yaml:5: status: unknown field "status"; allowed: apiVersion, kind, metadata, spec',
    ]
    result = load_one(tmp_path, HEAD + "kind: Bucket\nmetadata: {name: b}\nspec: {locaton: EU}\n")
    assert messages(result) == [
        'r.yaml:4: spec.locaton: unknown field "locaton" (did you mean "location"?)'
    ]


def test_cross_field_rules(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()  # the path source it names
    result = load_one(tmp_path, HEAD + """
        kind: Model
        metadata: {name: Bad_Name}
        spec:
          image: i
          build: {context: .}
          source: {path: ./m, sha256: abc}
          size: {parameterCount: 0, parameterBits: 3}
        ---
        apiVersion: substratus.ai/v1
        kind: NodePool
        metadata: {name: p}
        spec:
          cluster: {name: c}
          machineType: n1-standard-4
          autoscaling: {min: 3, max: 2}
        ---
        apiVersion: substratus.ai/v1
        kind: Dataset
        metadata: {name: d}
        spec:
          build: {git: {url: u, branch: main, tag: v1}}
          env: {TOKEN: "${{ secret.hf.token }}", OK: "${{ secrets.hf.token }}"}
        """)
    assert messages(result) == [
        "r.yaml:3: metadata.name: invalid name 'Bad_Name': use at most 63 lowercase letters, "
        "digits and '-', starting and ending with a letter or digit",
        "r.yaml:4: spec: give at most one of image, build",
        "r.yaml:7: spec.source.sha256: invalid sha256 'abc': expected 64 lowercase hexadecimal "
        "digits",
        "r.yaml:7: spec.source: sha256 applies only to a url source",
        "r.yaml:8: spec.size.parameterCount: Input should be greater than 0, got 0",
        "r.yaml:8: spec.size.parameterBits: Input should be 4, 8, 16 or 32, got 3",
        'r.yaml:14: spec.cluster.name: Cluster "c" not found (no Cluster is defined)',
        "r.yaml:16: spec.autoscaling: min (3) must not be greater than max (2)",
        "r.yaml:22: spec.build.git: give at most one of ref, branch, tag",
        "r.yaml:23: spec.env.TOKEN: invalid secret reference in '${{ secret.hf.token }}': "
        "expected ${{ secrets.NAME.KEY }}",
    ]


def test_duplicate_address_names_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", HEAD + "kind: Bucket\nmetadata: {name: b}\nspec: {}\n")
    write(tmp_path, "b.yaml", "# again\n" + HEAD + "kind: Bucket\nmetadata:\n  name: b\nspec: {}\n")
    result = load_directory(tmp_path)
    assert messages(result) == [
        "b.yaml:5: metadata.name: duplicate Bucket/default/b (first defined at a.yaml:1)"
    ]
    assert [r.file for r in result.resources] == ["a.yaml"]


def test_more_than_one_environment(tmp_path: Path) -> None:
    write(tmp_path, "env.yaml", HEAD + "kind: Environment\nmetadata: {name: a}\n---\n"
          + HEAD + "kind: Environment\nmetadata: {name: b}\nspec:\n")
    result = load_directory(tmp_path)
    assert messages(result) == [
        'env.yaml:5: more than one Environment: "b" here and "a" at env.yaml:1; '
        "a directory holds at most one"
    ]
    assert result.environment is not None and result.environment.name == "a"


def test_reference_to_nothing_is_reported_at_the_reference(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + """
        kind: Dataset
        metadata: {name: colors}
        spec: {source: {url: "https://x/c.csv", headers: {A: b}}}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m}
        spec:
          training:
            baseModel: {name: m}
            dataset: {name: colorz}
        """)
    assert messages(result) == [
        'r.yaml:12: spec.training.dataset.name: Dataset "colorz" not found (defined: colors)'
    ]
    (diagnostic,) = result.diagnostics
    assert diagnostic.subject.field == "spec.training.dataset.name"


def test_reference_in_another_namespace_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()  # the path source it names
    result = load_one(tmp_path, HEAD + """
        kind: Notebook
        metadata: {name: nb, namespace: team}
        spec: {model: {name: m}}
        ---
        apiVersion: substratus.ai/v1
        kind: Model
        metadata: {name: m}
        spec: {source: {path: ./m}}
        """)
    assert messages(result) == [
        'r.yaml:4: spec.model.name: Model "m" not found (no Model is defined in namespace "team")'
    ]


def test_no_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "hello\n")
    write(tmp_path, ".hidden/a.yaml", HEAD)
    assert messages(load_directory(tmp_path)) == [
        f"{tmp_path}: no resource files (*.yaml, *.yml) in {tmp_path}"
    ]
    write(tmp_path, "infra/a.yaml", HEAD + "kind: Bucket\nmetadata: {name: b}\nspec: {}\n")
    assert messages(load_directory(tmp_path)) == [
        f"{tmp_path}: no resource files (*.yaml, *.yml) in {tmp_path}\n  only the top of the "
        "directory is read (infra left out): --recursive reads its subfolders too"
    ]
    assert messages(load_directory(tmp_path, recursive=True)) == []


# -- which files: the top of the directory; subfolders with --recursive ----------------------

BUCKET = HEAD + "kind: Bucket\nmetadata: {{name: {name}}}\nspec: {{}}\n"


def test_only_the_top_of_the_directory_is_read_by_default(tmp_path: Path) -> None:
    write(tmp_path, "top.yaml", BUCKET.format(name="top"))
    write(tmp_path, "also.YML", BUCKET.format(name="also"))
    write(tmp_path, "infra/nested.yaml", BUCKET.format(name="nested"))
    write(tmp_path, "data/rows.yaml", "- not: a resource\n")
    result = load_directory(tmp_path)
    assert messages(result) == []
    assert [r.name for r in result.resources] == ["also", "top"]


def test_recursive_reads_subfolder_files_that_declare_substratus_resources(tmp_path: Path) -> None:
    write(tmp_path, "top.yaml", BUCKET.format(name="top"))
    write(tmp_path, "infra/nested.yaml", BUCKET.format(name="nested"))
    write(tmp_path, "infra/deeper/flow.yml",
          '{"apiVersion": "substratus.ai/v1", kind: Bucket, metadata: {name: flow}, spec: {}}\n')
    # A data folder's own YAML is never parsed, whatever it holds.
    write(tmp_path, "data/rows.yaml", "- not: a resource\n")
    write(tmp_path, "data/broken.yaml", "kind: [\n")
    write(tmp_path, "data/other-api.yaml", "apiVersion: substratus.ai/v1beta1\nkind: [\n")
    write(tmp_path, "data/k8s.yaml", "apiVersion: v1\nkind: ConfigMap\n")
    (tmp_path / "data" / "binary.yaml").write_bytes(b"\xff\xfe\x00apiVersion")
    write(tmp_path, "data/set.vars.yaml", "x: 1\n")
    # Stacks and dot folders are never read as resources.
    write(tmp_path, "mystack/stack.yaml", HEAD + "kind: Bucket\n")
    write(tmp_path, "mystack/extra.yaml", BUCKET.format(name="in-a-stack"))
    write(tmp_path, ".git/x.yaml", BUCKET.format(name="hidden"))
    result = load_directory(tmp_path, recursive=True)
    assert messages(result) == []
    assert [(r.name, r.file) for r in result.resources] == [
        ("flow", "infra/deeper/flow.yml"), ("nested", "infra/nested.yaml"), ("top", "top.yaml")]


def test_recursive_reports_a_declared_subfolder_file_like_any_other(tmp_path: Path) -> None:
    write(tmp_path, "top.yaml", BUCKET.format(name="top"))
    write(tmp_path, "infra/bad.yaml", HEAD + "kind: Datset\nmetadata: {name: x}\nspec: {}\n")
    with (tmp_path / "infra" / "big.yaml").open("wb") as f:
        f.write(HEAD.encode())
        f.truncate(MAX_FILE_BYTES + 1)
    with (tmp_path / "infra" / "big-data.yaml").open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # says nothing of substratus: not a resource file
    assert messages(load_directory(tmp_path, recursive=True)) == [
        'infra/bad.yaml:2: kind: unknown kind "Datset" (did you mean "Dataset"?)',
        f"infra/big.yaml:1: file too large ({MAX_FILE_BYTES + 1} bytes); resource files are "
        "limited to 10 MiB",
    ]


def test_top_level_files_are_read_whatever_they_declare(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", "kind: Bucket\nmetadata: {name: b}\nspec: {}\n")
    write(tmp_path, "sub/r.yaml", "kind: Bucket\nmetadata: {name: c}\nspec: {}\n")
    assert messages(load_directory(tmp_path, recursive=True)) == [
        'r.yaml:1: apiVersion: required field is missing; expected "substratus.ai/v1"']


def test_directory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = load_directory(missing)
    assert messages(result) == [f"{missing}: directory not found: {missing}"]
    assert result.resources == [] and result.environment is None


def test_path_that_is_a_file_not_a_directory(tmp_path: Path) -> None:
    file = write(tmp_path, "r.yaml", HEAD)
    assert messages(load_directory(file)) == [f"{file}: not a directory: {file}"]


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"apiVersion: x\nkind: \xff\n")
    assert messages(load_directory(tmp_path)) == [
        "bad.yaml:2: not UTF-8 text (byte 0xff cannot be decoded)"
    ]


def test_file_too_large_is_not_read(tmp_path: Path) -> None:
    with (tmp_path / "big.yaml").open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    assert messages(load_directory(tmp_path)) == [
        f"big.yaml:1: file too large ({MAX_FILE_BYTES + 1} bytes); resource files are limited "
        "to 10 MiB"
    ]


def test_duplicate_mapping_key(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + "kind: Bucket\nmetadata:\n  name: a\n  name: b\nspec: {}\n")
    assert messages(result) == [
        "r.yaml:5: metadata.name: duplicate key 'name' (first defined on line 4)"
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("spec: !custom {}\n", "r.yaml:4: spec: unsupported YAML tag '!custom' on a mapping"),
    ("spec: {location: !!binary aGk=}\n",
     "r.yaml:4: spec.location: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
    ("spec: {location: !!int eu}\n",
     "r.yaml:4: spec.location: invalid value 'eu' for YAML tag 'tag:yaml.org,2002:int'"),
    ("spec: &s {location: *s}\n",
     "r.yaml:4: spec.location: an alias refers to a node that contains it (a cycle)"),
    ('spec: {location: "\\ud800"}\n',
     "r.yaml:4: spec.location: invalid text '\\ud800': unpaired surrogate escape"),
])
def test_unreadable_yaml_values(tmp_path: Path, text: str, expected: str) -> None:
    result = load_one(tmp_path, HEAD + "kind: Bucket\nmetadata: {name: b}\n" + text)
    assert messages(result) == [expected]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    result = load_one(tmp_path, "\n".join(lines) + "\n")
    assert messages(result) == [
        "r.yaml:1: document too large: more than 100000 values once aliases are expanded"
    ]


def test_merge_keys_and_timestamps_are_read(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()  # the path source it names
    result = load_one(tmp_path, HEAD + """
        kind: Dataset
        metadata: {name: d}
        spec:
          params: &p {since: 2024-01-01, n: 1}
          env:
            <<: {A: a, B: b}
            B: c
          source: {path: ./d}
        """)
    assert messages(result) == []
    spec = result.resources[0].spec
    assert spec["params"] == {"since": "2024-01-01", "n": 1}
    assert spec["env"] == {"A": "a", "B": "c"}


def test_every_error_of_a_run_is_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "kind: [\n")
    write(tmp_path, "b.yaml", HEAD + "kind: Bucket\nmetadata: {name: B}\nspec: {location: 1}\n")
    write(tmp_path, "c/d.yaml", HEAD + "kind: Notebook\nmetadata: {name: n}\nspec: {suspend: maybe}\n")
    assert messages(load_directory(tmp_path, recursive=True)) == [
        "a.yaml:2: invalid YAML: while parsing a flow node; expected the node content, "
        "but found '<stream end>'",
        "b.yaml:3: metadata.name: invalid name 'B': use at most 63 lowercase letters, digits and "
        "'-', starting and ending with a letter or digit",
        "b.yaml:4: spec.location: Input should be a valid string, got 1",
        "c/d.yaml:4: spec.suspend: Input should be a valid boolean, got 'maybe'",
    ]


def test_empty_documents_and_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "comments.yaml", "# nothing yet\n---\n---\n")
    write(tmp_path, "b.yaml", "---\n" + HEAD + "kind: Bucket\nmetadata: {name: b}\nspec: {}\n---\n")
    result = load_directory(tmp_path)
    assert messages(result) == []
    assert [(r.file, r.line) for r in result.resources] == [("b.yaml", 2)]


def test_secret_references_must_be_well_formed(tmp_path: Path) -> None:
    result = load_one(tmp_path, HEAD + """
        kind: Dataset
        metadata: {name: d}
        spec:
          source:
            url: https://example.com/d.csv
            headers: {Authorization: "Bearer ${{ secrets.hub.token }}", X-Key: "${{ secrets.hub }}"}
        """)
    assert messages(result) == [
        "r.yaml:7: spec.source.headers.X-Key: invalid secret reference in '${{ secrets.hub }}': "
        "expected ${{ secrets.NAME.KEY }}"
    ]


def test_ml_resources_depend_on_the_bucket_their_artifacts_go_to(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()  # the path source it names
    write(tmp_path, "all.yaml", HEAD + """
        kind: Environment
        metadata: {name: e}
        spec: {runtime: kubernetes, kubernetes: {context: c}, artifacts: gs://arts/ml}
        ---
        apiVersion: substratus.ai/v1
        kind: Bucket
        metadata: {name: arts}
        spec: {location: US}
        ---
        apiVersion: substratus.ai/v1
        kind: Bucket
        metadata: {name: other}
        spec: {location: US}
        ---
        apiVersion: substratus.ai/v1
        kind: Dataset
        metadata: {name: d}
        spec: {source: {path: x}}
        """)
    result = load_directory(tmp_path)
    assert messages(result) == [] and result.environment is not None
    by_name = {r.name: r for r in expand(result.resources,
                                         EnvironmentSpec.model_validate(result.environment.spec))}
    assert by_name["d"].refs == (Address("Bucket", "default", "arts"),)
    assert by_name["arts"].refs == () and by_name["other"].refs == ()
