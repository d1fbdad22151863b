"""The loader dispatch: ``load_source`` turns a config's ``data.source`` into a ``DataSource``.

The loaders (one module per format) import ``data/base.py`` for ``Split`` and ``DataSource``;
this module imports them lazily, so no module of ``data/`` imports one that imports it.
"""

from __future__ import annotations

import difflib

from dp2fl_ray.data.base import MODALITIES, DataSource, Inputs, Split
from dp2fl_ray.data.images import DEFAULT_IMAGE_SIZE
from dp2fl_ray.errors import ConfigError

__all__ = ["AVAILABLE_SOURCES", "MODALITIES", "DataSource", "Inputs", "Split", "load_source"]

# Built-in sources read no files; file sources need ``data.path`` (clinc150 has a default).
BUILTIN_SOURCES = ("digits", "synthetic")
FILE_SOURCES = ("clinc150", "csv", "parquet", "hf_disk", "coop")
AVAILABLE_SOURCES = BUILTIN_SOURCES + FILE_SOURCES


def load_source(
    name: str, path: str | None = None, seed: int = 0, *, image_size: int = DEFAULT_IMAGE_SIZE
) -> DataSource:
    """Load the data source named in the config's ``data.source``.

    Args:
        name: one of :data:`AVAILABLE_SOURCES`.
        path: where the source's files are (``data.path``): a folder for ``csv``,
            ``parquet``, ``hf_disk``; a folder or a ``split_*.json`` for ``coop``; for
            ``clinc150`` optional (default: env ``DP2FL_CLINC150``, else
            ``../shared/data/clinc150``). The built-in sources take none.
        seed: the experiment seed; only ``synthetic`` depends on it (its data are generated).
            The file sources and ``digits`` have fixed splits, so test sets are comparable
            across seeds.
        image_size: side of the square image tensors the file sources with images give.

    Returns:
        The loaded :class:`DataSource`.

    Raises:
        ConfigError: unknown ``name``, a ``path`` given to a built-in source, or none given
            to a file source that needs one.
        DataError: the files are missing or inconsistent (the message names the file).
    """
    if name not in AVAILABLE_SOURCES:
        close = difflib.get_close_matches(str(name), AVAILABLE_SOURCES, n=1)
        raise ConfigError(
            "data.source",
            name,
            f"one of {', '.join(AVAILABLE_SOURCES)}",
            f"did you mean {close[0]!r}?" if close else "",
        )
    if name in BUILTIN_SOURCES and path is not None:
        raise ConfigError("data.path", path, f"null for the built-in source {name!r}", "it reads no files")
    # Imported on use: a loader and its dependencies load only when its format is asked for.
    if name == "digits":
        from dp2fl_ray.data.digits import load_digits_source

        return load_digits_source()
    if name == "synthetic":
        from dp2fl_ray.data.synthetic import load_synthetic_source

        return load_synthetic_source(seed=seed)
    if name == "clinc150":
        from dp2fl_ray.data.clinc150 import load_clinc150_source

        return load_clinc150_source(path)
    if path is None:
        raise ConfigError("data.path", path, _PATH_EXPECTED[name], f"source {name!r} reads files")
    if name in ("csv", "parquet"):
        from dp2fl_ray.data.tables import load_table_source

        return load_table_source(name, path, image_size=image_size)
    if name == "hf_disk":
        from dp2fl_ray.data.hf_disk import load_hf_disk_source

        return load_hf_disk_source(path, image_size=image_size)
    from dp2fl_ray.data.coop import load_coop_source

    return load_coop_source(path, image_size=image_size)


_PATH_EXPECTED = {
    "csv": "a folder with train.csv and test.csv (val.csv optional)",
    "parquet": "a folder with train.parquet and test.parquet (val.parquet optional)",
    "hf_disk": "a folder written by DatasetDict.save_to_disk (splits train and test)",
    "coop": "a CoOp dataset folder (images + split_*.json), or the split JSON itself",
}
