"""The experiment config: typed, frozen, validated once at the edge.

A config is built in three layers: the defaults below, then a YAML file, then repeatable
``--set key.sub=value`` overrides. Every section is a frozen dataclass that checks itself in
``__post_init__``, so an instance that exists is valid, however it was built.

Checks are table-driven rather than a wall of ifs: the annotation says the type (``int``,
``float``, ``str``, ``str | None`` or a ``Literal`` of choices), ``field`` metadata adds a
``range`` (interval text such as ``"[0, 1)"``), a ``pattern`` or a ``hint``, and a
section's ``_relations`` list its cross-field rules. Int fields reject floats, even ``3.0``:
a float where a count is wanted is almost always a mistake (``1e7`` is not an int in YAML).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import operator
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from dp2fl_ray.errors import ConfigError

# Data sources the loaders in ``data/`` know (one Literal, so error messages list them).
DataSource = Literal["digits", "clinc150", "csv", "parquet", "hf_disk", "coop", "synthetic"]


def _spec(default: Any, interval: str = "", pattern: str = "", hint: str = "") -> Any:
    """A dataclass field whose metadata carries its constraint (see module docstring)."""
    return field(default=default, metadata={"range": interval, "pattern": pattern, "hint": hint})


# Cross-field rules: (field, rule, other field) -> holds(value, other), what is expected.
_RULES: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "<=": (operator.le, "at most"),
    "divides": (lambda a, b: b % a == 0, "a divisor of"),
}


class _Section:
    """Mixin for config sections: validates and normalises every field after ``__init__``."""

    _path: ClassVar[str] = ""  # dotted prefix of this section, set once by _bind_paths
    _relations: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("dynamic"):  # checked by the section itself
                continue
            value = getattr(self, f.name)
            value = _check_leaf(self._dotted(f.name), value, hints[f.name], f.metadata)
            object.__setattr__(self, f.name, value)  # frozen: store the normalised value
        for name, rule, other in self._relations:
            holds, words = _RULES[rule]
            value, bound = getattr(self, name), getattr(self, other)
            if not holds(value, bound):
                field_name, other_name = self._dotted(name), self._dotted(other)
                expected = f"{words} {other_name} ({bound})"
                hint = f"change {field_name} or {other_name}"
                raise ConfigError(field_name, value, expected, hint)

    @classmethod
    def _dotted(cls, name: str) -> str:
        return f"{cls._path}.{name}" if cls._path else name


@dataclass(frozen=True)
class PromptConfig(_Section):
    """Learnable context vectors: how many per layer, how deep, and the text they start from."""

    n_ctx: int = _spec(2, "[1, 64]")
    depth: int = _spec(3, "[1, 64]")
    init: str = _spec("a photo of a")


@dataclass(frozen=True)
class TinyModelConfig(_Section):
    """A tiny random backbone for smoke runs; used only when ``model.path`` is null."""

    _relations = (("heads", "divides", "hidden"), ("patch_size", "divides", "image_size"))

    hidden: int = _spec(128, "[8, inf)")
    layers: int = _spec(4, "[1, inf)")
    heads: int = _spec(4, "[1, inf)")
    projection: int = _spec(64, "[1, inf)")
    image_size: int = _spec(32, "[4, inf)")
    patch_size: int = _spec(8, "[1, inf)")
    initializer_factor: float = _spec(3.0, "(0, inf)")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Which frozen backbone to load and the prompts trained on top of it."""

    backbone: Literal["clip", "vit", "bert"] = "clip"
    path: str | None = None  # local dir or hub id; None = tiny random model
    prompt: PromptConfig = field(default_factory=PromptConfig)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    name: str | None = None  # timm architecture for backbone vit, e.g. vit_base_patch16_224
    max_length: int = _spec(32, "[4, 512]", hint="tokens per text sample (bert)")
    compile: bool = False  # torch.compile the backbone passes


@dataclass(frozen=True)
class PartitionConfig(_Section):
    """How the dataset is split into clients (per-client train/val/test)."""

    scheme: Literal["paper", "iid", "dirichlet", "domain"] = "paper"
    alpha: float = _spec(0.5, "(0, inf)", hint="Dirichlet concentration")
    shots: int = _spec(16, "[1, inf)", hint="max shots per class from the train split")
    drop_class_fraction: float = _spec(0.2, "[0, 1)")
    keep_fraction: float = _spec(0.25, "(0, 1]")
    dominant_fraction: float = _spec(0.75, "[0, 1]")
    val_fraction: float = _spec(0.5, "(0, inf)", hint="val per class / train count")
    test_fraction: float = _spec(1.0, "(0, inf)")
    samples_per_client: int = _spec(40, "[1, inf)", hint="train size for iid/dirichlet")


@dataclass(frozen=True)
class DataConfig(_Section):
    """Where the examples come from and how they are partitioned."""

    source: DataSource = "digits"
    path: str | None = None
    image_size: int = _spec(224, "[4, 4096]", hint="side images from files are resized to when loaded")
    partition: PartitionConfig = field(default_factory=PartitionConfig)


@dataclass(frozen=True)
class FederationConfig(_Section):
    """How many clients exist, how many train each round, and for how many rounds."""

    _relations = (("cohort", "<=", "population"),)

    population: int = _spec(10, "[1, 10_000_000_000]")  # = population_cap
    cohort: int = _spec(10, "[1, inf)")
    rounds: int = _spec(10, "[1, inf)")
    new_clients: int = _spec(2, "[0, inf)", hint="held-out clients for the global model")
    eval_every: int = _spec(
        1, "[1, inf)", hint="personalised and global evaluations every N rounds and at the last"
    )
    max_eval_models: int = _spec(
        0, "[0, inf)", hint="0 = exact up to 128 clients a round, then 128 candidates"
    )
    joins: str = _spec("", pattern=r"(\d+@\d+(,\d+@\d+)*)?", hint="'COUNT@ROUND,...', e.g. '100@5,100@10'")

    # Client ids are int64 and every id is seeded; ids past this many are refused at config time.
    population_cap: ClassVar[int] = 10_000_000_000

    def __post_init__(self) -> None:
        super().__post_init__()
        joined = sum(int(part.split("@")[0]) for part in self.joins.split(",") if part.strip())
        total = self.population + joined + self.new_clients
        if total > self.population_cap:
            name, value = (
                ("federation.joins", self.joins) if joined else ("federation.new_clients", self.new_clients)
            )
            raise ConfigError(
                name, value, f"population + joiners + new_clients <= {self.population_cap:_}",
                f"they add up to {total:_}; lower federation.population, joins or new_clients",
            )  # fmt: skip


class AlgorithmOptions(_Section):
    """Base of every algorithm's options: a frozen dataclass whose fields are validated like
    any config field (annotation, ``option(...)`` range, pattern and hint). Its fields sit under
    ``algorithm:`` next to ``name``; the algorithm declares the class (``algorithms/base.py``)."""

    _path = "algorithm"


def option(default: Any, interval: str = "", pattern: str = "", hint: str = "") -> Any:
    """A field of an ``AlgorithmOptions`` dataclass, checked like every config field."""
    return _spec(default, interval, pattern, hint)


@dataclass(frozen=True)
class AlgorithmConfig(_Section):
    """The federated algorithm: a built-in name or ``package.module:ClassName``, and its options.

    The options are the algorithm's own ``options_type`` (``algorithms/registry.py`` finds the
    class): config.py lists no algorithm. In YAML they sit next to ``name``.
    """

    name: str = _spec(
        "dp2fl",
        pattern=r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?",
        hint="a built-in algorithm or package.module:ClassName",
    )
    options: AlgorithmOptions | None = field(default=None, metadata={"dynamic": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = algorithm_class(self.name)
        if self.options is None:
            object.__setattr__(self, "options", kind.options_type())
        elif type(self.options) is not kind.options_type:
            raise ConfigError(
                "algorithm",
                type(self.options).__name__,
                f"{kind.options_type.__name__} (the options of {self.name!r})",
            )

    def __getattr__(self, name: str) -> Any:
        """``config.algorithm.alpha`` reads the algorithm's option ``alpha``."""
        if name.startswith("_") or name == "options":
            raise AttributeError(name)
        options = self.__dict__.get("options")
        if options is not None and name in {f.name for f in dataclasses.fields(options)}:
            return getattr(options, name)
        raise AttributeError(f"algorithm {self.__dict__.get('name')!r} has no option {name!r}")

    @property
    def algorithm_class(self) -> Any:
        """The ``Algorithm`` subclass ``name`` refers to."""
        return algorithm_class(self.name)


def algorithm_class(name: str) -> Any:
    """The ``Algorithm`` subclass for ``algorithm.name`` (imported lazily: algorithms import config)."""
    from dp2fl_ray.algorithms.registry import resolve_algorithm

    return resolve_algorithm(name)


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Local training of the prompts on one client."""

    local_epochs: int = _spec(5, "[1, inf)")
    batch_size: int = _spec(4, "[1, inf)")
    lr: float = _spec(0.035, "(0, inf)")
    optimizer: Literal["sgd"] = "sgd"
    momentum: float = _spec(0.9, "[0, 1)")
    weight_decay: float = _spec(0.0, "[0, inf)")
    eval_batch_size: int = _spec(256, "[1, inf)")


@dataclass(frozen=True)
class RuntimeConfig(_Section):
    """Ray resources: how many workers and how clients are sliced across them."""

    workers: int = _spec(2, "[1, inf)")
    cpus_per_worker: float = _spec(1.0, "(0, inf)")
    gpus_per_worker: float = _spec(0.0, "[0, inf)")
    clients_per_slice: int = _spec(8, "[1, inf)", hint="at most; fewer when a slice would not fit in memory")
    slice_memory_mib: float = _spec(
        0.0, "[0, inf)", hint="memory a training slice may use; 0 = half the worker's share of free memory"
    )
    overlap_aggregation: bool = True  # DP2FL: step 5 on cross-evaluation blocks as they finish
    address: str | None = None  # None = start a local cluster
    max_retries: int = _spec(2, "[0, inf)", hint="times a failed slice is rerun")
    max_failures: int = _spec(0, "[0, inf)", hint="failed clients tolerated per round")
    # Reuse this driver's backbone workers for its next run with the same model, data and seed
    # (runtime/warm_workers.py): a notebook's or a script's run after run skips their start-up.
    keep_workers: bool = False


@dataclass(frozen=True)
class StoreConfig(_Section):
    """The client store: in memory, or sharded Parquet on any pyarrow filesystem."""

    backend: Literal["memory", "sharded"] = "memory"
    uri: str | None = None  # sharded: local dir or s3://...; None = <run dir>/store
    shard_size: int = _spec(4096, "[1, inf)", hint="client ids per shard")
    cache_shards: int = _spec(16, "[1, inf)", hint="shards kept in memory (beyond cache_mib)")
    cache_mib: float = _spec(256.0, "[0, inf)", hint="cached rows below this size are never evicted")
    # Prompts at rest (both backends); computation stays in model.dtype. See state/dtypes.py.
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclass(frozen=True)
class OutputConfig(_Section):
    """Where a run writes its results and how often it checkpoints."""

    dir: str = _spec("results/runs", pattern=r".+")
    checkpoint_every: int = _spec(5, "[0, inf)", hint="0 = never")


@dataclass(frozen=True)
class ExperimentConfig(_Section):
    """One whole experiment; the single argument of ``run_experiment``."""

    name: str = _spec("quickstart", pattern=r"[A-Za-z0-9_.-]+", hint="it names the run folder")
    seed: int = _spec(0, "[0, inf)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    # model.name for a vit with model.path null: model.tiny replaces its sizes (vit_prompt.TINY_TEMPLATE).
    tiny_vit_name: ClassVar[str] = "vit_base_patch16_224"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.backbone == "vit" and self.model.path is None and self.model.name is None:
            object.__setattr__(self, "model", dataclasses.replace(self.model, name=self.tiny_vit_name))
        self.algorithm.algorithm_class.check_config(self)

    def with_overrides(self, overrides: Sequence[str]) -> ExperimentConfig:
        """Return a new config with ``--set``-style overrides applied (this one is unchanged).

        Raises:
            ConfigError: an override is malformed or yields an invalid config.
        """
        return config_from_dict(apply_overrides(config_to_dict(self), overrides))


# --- leaf checks -------------------------------------------------------------------------


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a section (cached: annotations are strings here)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, _Section)


def _in_interval(value: float, text: str) -> bool:
    """Whether ``value`` lies in the interval written as text, e.g. ``"[0, 1)"``."""
    low, high = (float(part) for part in text[1:-1].split(","))
    # Written positively so that NaN is never "in range".
    above = value > low if text[0] == "(" else value >= low
    below = value < high if text[-1] == ")" else value <= high
    return above and below


def _expected(tp: Any, meta: Mapping[str, Any]) -> str:
    """Say in words what a field accepts, e.g. ``an int in [1, 64]``."""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(tp))
    if type(None) in get_args(tp):
        return "a string or null"
    words = {int: "an int", float: "a float", str: "a string", bool: "true or false"}[tp]
    if meta.get("range"):
        return f"{words} in {meta['range']}"
    return f"{words} matching {meta['pattern']}" if meta.get("pattern") else words


_IS_TYPE: dict[Any, Callable[[Any], bool]] = {
    int: lambda v: isinstance(v, numbers.Integral),  # numpy ints too; floats never
    float: lambda v: isinstance(v, numbers.Real),
    str: lambda v: isinstance(v, str),
}


def _accepts(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # a bool is an int to Python, never a number here
        return False
    if get_origin(tp) is Literal:
        return isinstance(value, str) and value in get_args(tp)
    if type(None) in get_args(tp):  # str | None
        return value is None or isinstance(value, str)
    return _IS_TYPE[tp](value)


_EXPONENT_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _check_leaf(path: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    """Return ``value`` normalised to the field's type, or raise ConfigError naming ``path``."""
    if _is_section(tp):
        if not isinstance(value, tp):
            raise ConfigError(path, value, f"a {tp.__name__}")
        return value
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot, no exponent sign) as a string
    expected, hint = _expected(tp, meta), meta.get("hint", "")
    if tp is int and isinstance(value, float):
        hint = "write a whole number without a decimal point"
    ok = _accepts(tp, value)
    if ok and tp in (int, float):
        try:
            value = tp(value)  # plain int/float, so YAML dumps cleanly
        except OverflowError:  # an int too large for a float
            ok = False
    if ok and meta.get("range"):
        ok = _in_interval(value, meta["range"])
    if ok and meta.get("pattern"):
        ok = re.fullmatch(meta["pattern"], value) is not None
    if not ok:
        raise ConfigError(path, value, expected, hint)
    return value


def _bind_paths(cls: type[_Section], prefix: str) -> None:
    """Tell every section class its dotted prefix, so its errors name full paths."""
    cls._path = prefix
    for name, tp in _hints(cls).items():
        if _is_section(tp):
            _bind_paths(tp, f"{prefix}.{name}" if prefix else name)


_bind_paths(ExperimentConfig, "")
_S = TypeVar("_S", bound=_Section)


# --- dicts, overrides, files -------------------------------------------------------------


def _build(cls: type[_S], data: Any) -> _S:
    """Build a section from a (possibly partial) mapping; ``None`` means all defaults."""
    where = f"the fields of '{cls._path}'" if cls._path else "the top-level fields"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(cls._path or "(top level)", data, f"a mapping of {where}")
    if cls is AlgorithmConfig:
        return _build_algorithm(data)  # type: ignore[return-value]
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            if close:
                hint = f"did you mean '{cls._dotted(close[0])}'?"
            else:
                hint = "valid: " + ", ".join(sorted(known))
            raise ConfigError(cls._dotted(str(key)), data[key], f"one of {where}", hint)
    hints = _hints(cls)
    kwargs = {k: _build(hints[k], v) if _is_section(hints[k]) else v for k, v in data.items()}
    return cls(**kwargs)


def _build_algorithm(data: Mapping[str, Any]) -> AlgorithmConfig:
    """``algorithm:``: ``name`` picks the algorithm, whose options type takes the other keys."""
    name = data.get("name", AlgorithmConfig.name)
    _check_leaf("algorithm.name", name, str, dataclasses.fields(AlgorithmConfig)[0].metadata)
    kind = algorithm_class(name)
    options_type = kind.options_type
    known = sorted(f.name for f in dataclasses.fields(options_type))
    for key in data:
        if key != "name" and key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            listed = ", ".join(known) if known else "none"
            hint = f"did you mean 'algorithm.{close[0]}'? " if close else ""
            raise ConfigError(
                f"algorithm.{key}",
                data[key],
                f"an option of algorithm {name!r}",
                f"{hint}its options: {listed}",
            )
    options = options_type(**{k: v for k, v in data.items() if k != "name"})
    return AlgorithmConfig(name=name, options=options)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate a config from a nested mapping, e.g. parsed YAML.

    Missing keys take their defaults and nested sections may be partial, so a file only
    states what differs from the defaults.

    Raises:
        ConfigError: a key is unknown, a section is not a mapping, or a value has the wrong
            type or range; the message names the dotted field.
    """
    return _build(ExperimentConfig, data)


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Return the config as a plain nested dict that ``config_from_dict`` turns back into it.

    The algorithm's options sit next to its name (``algorithm: {name: dp2fl, alpha: 1.2}``).
    """
    tree = dataclasses.asdict(config)
    algorithm = tree["algorithm"]
    tree["algorithm"] = {"name": algorithm["name"], **(algorithm["options"] or {})}
    return tree


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict, returning a new dict.

    Each value is parsed with ``yaml.safe_load``, so ``3``, ``0.1``, ``null``, ``true`` and
    ``[1, 2]`` mean what they look like; quote a string that would parse as something else.
    Keys are not checked here: validation does that, with suggestions, on the result.

    An override of ``algorithm.name`` switches the algorithm first (``switch_algorithm``): the
    base's options for another method are dropped, while an unknown option set by an
    override is still an error.

    Raises:
        ConfigError: an override has no ``=``, an empty key part or an unparsable value, or
            it reaches into a key that holds a value rather than a section.
    """
    result = _copy_tree(data)
    names = [o for o in overrides if o.partition("=")[0].strip() == "algorithm.name"]
    for override in [*names, *(o for o in overrides if o not in names)]:
        key, sep, raw = override.partition("=")
        key = key.strip()
        if not sep or not all(key.split(".")):
            raise ConfigError("--set", override, "key.sub=value", "e.g. --set train.lr=0.01")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(key, raw, "a YAML value", f"in --set {override!r}") from None
        if key == "algorithm.name" and isinstance(value, str):
            result = switch_algorithm(result, value)
        else:
            _set_dotted(result, key, value, override)
    return result


def switch_algorithm(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A copy of a config tree running algorithm ``name`` with that method's default options.

    Sweeps and ``--set algorithm.name=...`` use it, so a base written for one method (say
    DP2FL's ``alpha``) can run another without listing every method's options. Switching to
    another method drops *every* option of the base's method, even one the new method also
    has: a name means what its method says (DP2FL's ``eps`` guards a logarithm, FedOTP's is
    the transport's entropic weight), so carrying a value across would change a run silently.
    Set the new method's options after the switch (later ``--set``s, the sweep's space).
    """
    result = _copy_tree(data)
    section = result.get("algorithm")
    section = dict(section) if isinstance(section, Mapping) else {}
    if section.get("name", AlgorithmConfig.name) != name:
        section = {}
    section["name"] = name
    result["algorithm"] = section
    return result


def _set_dotted(tree: dict[str, Any], key: str, value: Any, override: str) -> None:
    """Set ``tree[a][b][c] = value`` for ``key == "a.b.c"``, creating missing sections."""
    *sections, leaf = key.split(".")
    node = tree
    for depth, part in enumerate(sections, start=1):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(sections[:depth])
            raise ConfigError(where, child, "a section to set keys in", f"in --set {override!r}")
        node = child
    node[leaf] = value


def _copy_tree(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the nested mappings (so overrides never write into the caller's dict)."""
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config (or start from the defaults when ``path`` is None), then override.

    An empty file means all defaults.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, its top level is
            not a mapping, or the result is invalid.
    """
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError("file", str(path), "a readable YAML file", reason) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("file", str(path), "valid YAML", str(exc).splitlines()[0]) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            found = f"found {type(data).__name__}"
            raise ConfigError("file", str(path), "a mapping at the top level", found)
    return config_from_dict(apply_overrides(data, overrides))


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the config as YAML, atomically: readers see the old file or the new, never half.

    The text goes to a temporary file in the same directory (so the rename stays on one
    filesystem), which then replaces ``path``; on failure the temporary file is removed.
    Missing parent directories are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
