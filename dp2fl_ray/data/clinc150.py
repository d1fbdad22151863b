"""CLINC150 (Larson et al., EMNLP 2019): 150 intents in 10 domains, read from its own JSON.

The folder holds the files of the public ``clinc/oos-eval`` repository, unchanged:
``data_full.json`` (keys ``train``, ``val``, ``test`` and ``oos_*``; each row
``[utterance, intent]``) and ``domains.json`` (domain name -> its intents). Only the
in-scope splits are used; the out-of-scope (``oos_*``) queries belong to no class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dp2fl_ray.data.base import DataSource, Split
from dp2fl_ray.data.labels import RawLabels, check_coverage
from dp2fl_ray.errors import DataError

ENV_VAR = "DP2FL_CLINC150"
# The shared copy, beside the repository (and beside the working directory of most runs).
_SHARED = Path("..") / "shared" / "data" / "clinc150"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SPLITS = ("train", "val", "test")
_FETCH = "the files data/data_full.json and data/domains.json of github.com/clinc/oos-eval"


def default_clinc150_path() -> Path:
    """Where CLINC150 is when ``data.path`` is null.

    The folder in env ``DP2FL_CLINC150`` when set; else ``../shared/data/clinc150`` from the
    current directory, then from the repository root, whichever holds ``data_full.json``.

    Raises:
        DataError: no candidate holds the files; the message lists those tried.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    tried = [Path.cwd() / _SHARED, _REPO_ROOT / _SHARED]
    for folder in tried:
        if (folder / "data_full.json").is_file():
            return folder.resolve()
    raise DataError(
        f"CLINC150 not found: no data_full.json in {', '.join(str(t) for t in tried)}; set"
        f" data.path (or env {ENV_VAR}) to a folder holding {_FETCH}"
    )


def load_clinc150_source(path: str | os.PathLike[str] | None = None) -> DataSource:
    """Load CLINC150's in-scope intents as a text source with domains.

    Class ids follow ``domains.json``: domain by domain in file order, each domain's intents
    in file order (so domain ``d`` holds ids ``15 d`` to ``15 d + 14``). Class names are the
    intent names as in the file (``"pin_change"``: underscores kept; models may replace them).

    Args:
        path: the folder with ``data_full.json`` and ``domains.json``; None for
            :func:`default_clinc150_path`.

    Returns:
        A source named ``"clinc150"``: text, 150 classes, 10 domains, with its own val
        split (the file has 15000 train, 3000 val and 4500 test utterances).

    Raises:
        DataError: a missing folder or file, malformed JSON, an intent that no domain lists
            (or two do), a class without training samples.
    """
    folder = Path(path) if path is not None else default_clinc150_path()
    if not folder.is_dir():
        raise DataError(
            f"CLINC150 folder {folder} does not exist; set data.path (or env {ENV_VAR}) to a"
            f" folder holding {_FETCH}"
        )
    data_file, domains_file = folder / "data_full.json", folder / "domains.json"
    data = _read_json(data_file)
    domain_map = _read_json(domains_file)
    class_names, domains, domain_names = _classes_from_domains(domain_map, domains_file)
    index = {name: c for c, name in enumerate(class_names)}

    raws: list[RawLabels] = []
    texts: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for split in _SPLITS:
        rows = _rows(data, split, data_file)
        unknown = sorted({intent for _, intent in rows} - index.keys())
        if unknown:
            raise DataError(
                f"{data_file}: {split} intent(s) {unknown[:5]} are in no domain of"
                f" {domains_file}; add them to a domain there"
            )
        where = f"{data_file} [{split}]"
        raws.append(RawLabels(split, where, [intent for _, intent in rows]))
        texts.append(np.array([text for text, _ in rows], dtype=object))  # (N,) str
        ids.append(np.array([index[intent] for _, intent in rows], dtype=np.int64))  # (N,)
    check_coverage(class_names, raws, ids)
    train, val, test = (Split(x, y) for x, y in zip(texts, ids))
    return DataSource(
        name="clinc150",
        modality="text",
        class_names=class_names,
        train=train,
        test=test,
        val=val,
        domains=domains,
        domain_names=domain_names,
    )


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise DataError(f"{file} does not exist; the CLINC150 folder must hold {_FETCH}")
    try:
        with file.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file} is not readable JSON ({exc}); fetch it again: {_FETCH}") from exc


def _classes_from_domains(domain_map: Any, file: Path) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """``(class_names, domain id per class (C,) int64, domain_names)`` from ``domains.json``."""
    if not isinstance(domain_map, dict) or not domain_map:
        raise DataError(f"{file}: expected a mapping of domain name -> list of intents")
    names: list[str] = []
    domain_ids: list[int] = []
    owner: dict[str, str] = {}
    for d, (domain, intents) in enumerate(domain_map.items()):
        if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
            raise DataError(f"{file}: domain {domain!r} must map to a list of intent names")
        for intent in intents:
            if intent in owner:
                raise DataError(
                    f"{file}: intent {intent!r} is listed in domains {owner[intent]!r} and"
                    f" {domain!r}; each intent belongs to one domain"
                )
            owner[intent] = domain
            names.append(intent)
            domain_ids.append(d)
    return tuple(names), np.array(domain_ids, dtype=np.int64), tuple(domain_map)


def _rows(data: Any, split: str, file: Path) -> list[tuple[str, str]]:
    """The ``[utterance, intent]`` rows of one split, checked."""
    if not isinstance(data, dict) or split not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{file}: no {split!r} key (found {found}); expected CLINC150's data_full.json"
            f" with keys {', '.join(_SPLITS)}: {_FETCH}"
        )
    rows = data[split]
    ok = isinstance(rows, list) and all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in rows
    )
    if not ok:
        raise DataError(f"{file}: {split!r} must be a list of [utterance, intent] string pairs")
    return [(text, intent) for text, intent in rows]
