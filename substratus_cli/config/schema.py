"""The resource file schema: one pydantic model per kind's spec, the document envelope around it,
and the JSON Schema editors use (`substratus schema`)."""

from __future__ import annotations

import functools
import operator
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from substratus_cli.address import DNS_LABEL, KINDS
from substratus_cli.resource import API_VERSION
from substratus_cli.secrets import SECRET_REF
from substratus_cli.stacks.parameters import IDENTIFIER, Parameter

_SHA256 = re.compile(r"[0-9a-f]{64}")
_STORAGE_SCHEMES = ("file://", "gs://")
# The pydantic error type of a rule across fields (see `_Model._cross_field`).
CROSS_FIELD = "cross_field"


def _dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"invalid sha256 {value!r}: expected 64 lowercase hexadecimal digits")
    return value


def _artifacts_url(value: str) -> str:
    # An artifact store may also be a registry repository (the store package's oci.py).
    return _storage_url(value, (*_STORAGE_SCHEMES, "oci://"),
                        "file://PATH, gs://BUCKET/PREFIX or oci://HOST[:PORT]/REPOSITORY")


def _storage_url(value: str, schemes: tuple[str, ...] = _STORAGE_SCHEMES,
                 expected: str = "file://PATH or gs://BUCKET/PREFIX") -> str:
    if not value.startswith(schemes):
        raise ValueError(f"invalid location {value!r}: expected {expected}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"invalid location {value!r}: control characters (a NUL, a newline) "
                         "cannot be in a path or object name")
    path = value.split("://", 1)[1]
    # Linux's limits: PATH_MAX 4096 bytes, NAME_MAX 255 bytes a component (GCS: 1024 a name).
    if len(path.encode()) > 1024 or any(len(part.encode()) > 255 for part in path.split("/")):
        raise ValueError(f"invalid location {value[:60]!r}...: longer than a path can be (a "
                         "folder or object name of at most 255 bytes, 1024 in all)")
    return value


def _secret_refs(value: str) -> str:
    # Whatever looks like a secret reference must be one, or it would reach the workload as text.
    rest = SECRET_REF.sub("", value)
    if "${{" in rest:
        raise ValueError(
            f"invalid secret reference in {value!r}: expected ${{{{ secrets.NAME.KEY }}}}"
        )
    return value


def _quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a number or a quantity like \"500m\", got {value!r}")
    return value


Name = Annotated[
    str, AfterValidator(_dns_label),
    Field(json_schema_extra={"pattern": f"^{DNS_LABEL.pattern}$", "maxLength": 63}),
]
Sha256 = Annotated[
    str, AfterValidator(_sha256), Field(json_schema_extra={"pattern": "^[0-9a-f]{64}$"})
]
StorageURL = Annotated[
    str, AfterValidator(_storage_url), Field(json_schema_extra={"pattern": "^(file|gs)://"})
]
ArtifactsURL = Annotated[
    str, AfterValidator(_artifacts_url), Field(json_schema_extra={"pattern": "^(file|gs|oci)://"})
]
MaybeSecret = Annotated[str, AfterValidator(_secret_refs)]


def _no_secret_refs(value: str) -> str:
    # A URL is shown, planned and recorded as written: a secret in it would be one of them.
    if "${{" in value:
        raise ValueError("a URL cannot hold a secret reference (it is shown in plans and kept "
                         "in state); send the secret in `headers` (e.g. Authorization)")
    return value


PlainURL = Annotated[str, AfterValidator(_no_secret_refs)]
Quantity = Annotated[str | int | float, BeforeValidator(_quantity)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        """Rules across fields, checked on the input as written (see `_cross_field`)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # An "after" validator only runs once every field is valid; checking the raw input
        # instead reports these rules together with the field errors, as users expect.
        problems = cls._problems(data) if isinstance(data, dict) else []
        if not problems:
            return handler(data)
        errors: list[Any] = []
        try:
            handler(data)
        except ValidationError as error:
            errors = [_reraisable(e) for e in error.errors()]
        errors += [_cross_field_error(p, (), data) for p in problems]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _cross_field_error(message: str, loc: tuple[Any, ...], data: Any) -> dict[str, Any]:
    return {"type": PydanticCustomError(CROSS_FIELD, message), "loc": loc, "input": data}


def _reraisable(error: Any) -> dict[str, Any]:
    if error["type"] == CROSS_FIELD:
        return _cross_field_error(error["msg"], error["loc"], error["input"])
    return {k: error[k] for k in ("type", "loc", "input", "ctx") if k in error}


def _given(data: dict[Any, Any], *keys: str) -> list[str]:
    return [k for k in keys if data.get(k) is not None]


def _one_of(data: dict[Any, Any], *keys: str, required: bool = True) -> list[str]:
    given = _given(data, *keys)
    if len(given) > 1 or (required and not given):
        return [f"give {'exactly' if required else 'at most'} one of {', '.join(keys)}"]
    return []


class Ref(_Model):
    """A reference to another resource by name, in the referrer's namespace."""

    name: Name


# Environment


class EnvironmentKubernetes(_Model):
    context: str | None = None
    namespace: Name = "default"
    cluster: Ref | None = None
    # The executor image of in-cluster builds (`builder: cluster`); a pinned kaniko by default.
    kaniko_image: str | None = Field(None, alias="kanikoImage")


class EnvironmentSpec(_Model):
    runtime: Literal["local", "kubernetes"] = "local"
    kubernetes: EnvironmentKubernetes | None = None
    artifacts: ArtifactsURL | None = None
    state: StorageURL | None = None
    registry: str | None = None


# Infrastructure (GCP)


class ClusterSpec(_Model):
    project: str
    location: str
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = Field(
        "REGULAR", alias="releaseChannel")
    workload_identity: bool = Field(True, alias="workloadIdentity")
    image_streaming: bool = Field(False, alias="imageStreaming")
    gcs_fuse_csi_driver: bool = Field(False, alias="gcsFuseCsiDriver")


class Accelerator(_Model):
    type: str
    count: int = Field(1, ge=1)


class Autoscaling(_Model):
    min: int = Field(ge=0)
    max: int = Field(ge=1)

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        low, high = data.get("min"), data.get("max")
        if type(low) is int and type(high) is int and low > high:
            return [f"min ({low}) must not be greater than max ({high})"]
        return []


class Taint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodePoolSpec(_Model):
    cluster: Ref
    machine_type: str = Field(alias="machineType")
    accelerator: Accelerator | None = None
    spot: bool = False
    autoscaling: Autoscaling | None = None
    zones: list[str] | None = None
    taints: list[Taint] | None = None


class BucketSpec(_Model):
    project: str | None = None
    location: str = "US"
    storage_class: str = Field("STANDARD", alias="storageClass")


# Fields shared by the ML kinds


class GitSource(_Model):
    url: str
    ref: str | None = None
    branch: str | None = None
    tag: str | None = None
    path: str | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "ref", "branch", "tag", required=False)


class Build(_Model):
    """An image built from a context: a folder of the workspace, or a path in a git repository."""

    git: GitSource | None = None
    context: str | None = None
    dockerfile: str | None = None  # in the context; `Dockerfile` when not given
    build_args: dict[str, str] | None = Field(None, alias="buildArgs")
    target: str | None = None
    # Where it is built: buildah on this machine (the default), or a kaniko Job in the cluster
    # of the kubernetes runtime.
    builder: Literal["local", "cluster"] | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "git", "context")


ImageTag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]


class ImageSpec(Build):
    """An Image: a build whose result is pushed to the Environment's registry, tagged with its
    identity and with `tags` (a version a stack pins, for instance)."""

    tags: list[ImageTag] | None = None


class GPU(_Model):
    type: str
    count: int = Field(1, ge=1)


class Resources(_Model):
    cpu: Quantity | None = None
    memory: str | None = None
    disk: str | None = None
    gpu: GPU | None = None


class WorkloadSpec(_Model):
    """What Dataset, Model, ModelServer and Notebook share: the container and its resources."""

    image: str | None = None
    build: Build | None = None
    command: list[str] | None = None
    env: dict[str, MaybeSecret] | None = None
    params: dict[str, Any] | None = None
    resources: Resources | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return _one_of(data, "image", "build", required=False)


class HuggingFace(_Model):
    name: str
    revision: str | None = None


class DatasetSource(_Model):
    url: PlainURL | None = None
    sha256: Sha256 | None = None
    headers: dict[str, MaybeSecret] | None = None
    path: str | None = None
    huggingface: HuggingFace | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = _one_of(data, "url", "path", "huggingface")
        if not _given(data, "url") and _given(data, "sha256", "headers"):
            problems.append("sha256 and headers apply only to a url source")
        return problems


class DatasetSpec(WorkloadSpec):
    source: DatasetSource | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = super()._problems(data)
        if not _given(data, "source", "image", "build"):
            problems.append("give a source, or an image or build that loads the data")
        return problems


class Scratch(_Model):
    config: dict[str, Any] = Field(default_factory=dict)


class ModelSource(_Model):
    huggingface: HuggingFace | None = None
    url: PlainURL | None = None
    sha256: Sha256 | None = None
    path: str | None = None
    scratch: Scratch | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        problems = _one_of(data, "huggingface", "url", "path", "scratch")
        if not _given(data, "url") and _given(data, "sha256"):
            problems.append("sha256 applies only to a url source")
        return problems


class Training(_Model):
    base_model: Ref = Field(alias="baseModel")
    dataset: Ref
    params: dict[str, Any] | None = None


class Size(_Model):
    parameter_count: int = Field(gt=0, alias="parameterCount")
    parameter_bits: Literal[4, 8, 16, 32] = Field(alias="parameterBits")


class ModelSpec(WorkloadSpec):
    source: ModelSource | None = None
    training: Training | None = None
    size: Size | None = None

    @classmethod
    def _problems(cls, data: dict[Any, Any]) -> list[str]:
        return [*super()._problems(data), *_one_of(data, "source", "training")]


class Quantization(_Model):
    bits: Literal[4, 8, 16]


class Rollout(_Model):
    max_surge: int = Field(1, ge=1, alias="maxSurge")
    readiness_timeout_seconds: int = Field(300, gt=0, alias="readinessTimeoutSeconds")


class ModelServerSpec(WorkloadSpec):
    model: Ref
    replicas: int = Field(1, ge=0)
    quantization: Quantization | None = None
    rollout: Rollout | None = None


class NotebookSpec(WorkloadSpec):
    model: Ref | None = None
    dataset: Ref | None = None
    suspend: bool = False


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Environment": EnvironmentSpec,
    "Cluster": ClusterSpec,
    "NodePool": NodePoolSpec,
    "Bucket": BucketSpec,
    "Image": ImageSpec,
    "Dataset": DatasetSpec,
    "Model": ModelSpec,
    "ModelServer": ModelServerSpec,
    "Notebook": NotebookSpec,
}
assert tuple(SPEC_MODELS) == KINDS, "every kind needs a spec model"


# Documents


class Metadata(_Model):
    name: Name
    namespace: Name | None = None
    labels: dict[str, str] | None = None


def _empty_spec_is_default(value: Any) -> Any:
    return {} if value is None else value


def _document_model(kind: str, spec: type[BaseModel]) -> type[BaseModel]:
    spec_field: Any = (spec, ...)
    if kind == "Environment":
        # An Environment with no spec (or `spec:` left empty) means all defaults.
        spec_field = (Annotated[spec, BeforeValidator(_empty_spec_is_default)],
                      Field(default_factory=spec))
    model: type[BaseModel] = create_model(
        f"{kind}Document",
        __base__=_Model,
        api_version=(Literal[API_VERSION], Field(alias="apiVersion")),  # type: ignore[arg-type]
        kind=(Literal[kind], ...),  # type: ignore[arg-type]
        metadata=(Metadata, ...),
        spec=spec_field,
    )
    return model


DOCUMENT_MODELS: dict[str, type[BaseModel]] = {k: _document_model(k, m) for k, m in SPEC_MODELS.items()}


class StackSpec(_Model):
    """A stack instance: the stack's folder (./PATH) or a shipped stack's name, and its values
    (checked against the stack's stack.yaml when it is rendered)."""

    source: str
    values: dict[str, Any] | None = None


class StackMetadata(_Model):
    name: Name
    namespace: Name | None = None
    labels: dict[str, str] | None = None


class VariableMetadata(_Model):
    name: Annotated[str, Field(pattern=f"^{IDENTIFIER.pattern}$")]


def _config_document(kind: str, metadata: type[BaseModel], spec: type[BaseModel]) -> Any:
    return create_model(
        f"{kind}Document", __base__=_Model,
        api_version=(Literal[API_VERSION], Field(alias="apiVersion")),  # type: ignore[arg-type]
        kind=(Literal[kind], ...),  # type: ignore[arg-type]
        metadata=(metadata, ...), spec=(spec, ...))


# Documents the loader expands before validation (stacks/): in the editors' schema only.
CONFIG_DOCUMENT_MODELS: dict[str, type[BaseModel]] = {
    "Stack": _config_document("Stack", StackMetadata, StackSpec),
    "Variable": _config_document("Variable", VariableMetadata, Parameter),
}


def json_schema() -> dict[str, Any]:
    """One JSON Schema for a document of any kind, chosen by `kind` (for yaml-language-server)."""
    union = functools.reduce(operator.or_, [*DOCUMENT_MODELS.values(),
                                            *CONFIG_DOCUMENT_MODELS.values()])
    adapter: TypeAdapter[Any] = TypeAdapter(
        Annotated[union, Field(discriminator="kind")])  # type: ignore[arg-type]
    schema = adapter.json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "substratus resource",
        "description": f"A substratus resource document (apiVersion {API_VERSION}).",
        **schema,
    }
