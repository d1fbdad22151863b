"""What client state costs at rest, computed from a model's prompt shapes, per ``store.dtype``.

A client's stored row is its data prompt (one float vector) plus a fixed overhead: the
sharded store's Parquet row adds client_id int64 + baseline float64 + rounds_seen int32 (20
bytes, ``ShardedClientStore.bytes_per_client``), the in-memory store baseline + rounds seen
(16). ``local`` keeps the task prompt too; every other method stores the data prompt only.

The shapes follow the models' data layouts: CLIP's data prompt is the MaPLe coupling
functions, one ``Linear(d_text -> d_vision)`` per prompted layer (``models/clip_maple.py``);
BERT-family and ViT models couple ``Linear(d -> d)`` per prompted layer
(``models/prompt_ops.deep_prompt_layouts``). The two named configurations are the paper's
CLIP ViT-B/16 (``experiments/paper/*.yaml``: depth 9; openai/clip-vit-base-patch16 has text
width 512 and vision width 768) and the packaged MiniLM on CLINC150
(``experiments/clinc150_minilm.yaml``: depth 3, width 384).
"""

from __future__ import annotations

from dataclasses import dataclass

from dp2fl_ray.state.dtypes import STORE_DTYPES, itemsize

ROW_OVERHEAD = {"sharded": 8 + 8 + 4, "memory": 8 + 8}


def clip_data_prompt_values(depth: int, d_text: int, d_vision: int) -> int:
    """Values in a CLIP (MaPLe) data prompt: ``depth`` couplings of weight (d_v, d_t) and bias (d_v,)."""
    return depth * (d_vision * d_text + d_vision)


def coupling_data_prompt_values(depth: int, dim: int) -> int:
    """Values in a BERT-family or ViT data prompt: ``depth`` couplings ``Linear(dim -> dim)``."""
    return depth * (dim * dim + dim)


def bytes_per_client(prompt_values: int, dtype: str, backend: str = "sharded") -> int:
    """One stored row in bytes: ``itemsize(dtype) * prompt_values`` + the backend's overhead.

    Raises:
        ValueError: an unknown ``dtype`` or ``backend``.
    """
    if backend not in ROW_OVERHEAD:
        raise ValueError(f"store backend {backend!r} is not one of {', '.join(ROW_OVERHEAD)}")
    return itemsize(dtype) * prompt_values + ROW_OVERHEAD[backend]


# name -> data prompt values, from the shapes above
NAMED_CONFIGS: dict[str, int] = {
    "CLIP ViT-B/16, paper (depth 9, 512 -> 768)": clip_data_prompt_values(9, 512, 768),
    "MiniLM-L6, CLINC150 (depth 3, 384)": coupling_data_prompt_values(3, 384),
}


@dataclass(frozen=True)
class StoreSize:
    """What ``clients`` touched clients of one configuration cost in one store dtype."""

    config: str
    dtype: str
    prompt_values: int
    bytes_per_client: int
    clients: int

    @property
    def total_bytes(self) -> int:
        return self.bytes_per_client * self.clients


def store_sizes(clients: int = 10**6, backend: str = "sharded") -> list[StoreSize]:
    """Every named configuration in every store dtype, for ``clients`` touched clients."""
    return [
        StoreSize(name, dtype, values, bytes_per_client(values, dtype, backend), clients)
        for name, values in NAMED_CONFIGS.items()
        for dtype in STORE_DTYPES
    ]


def sizes_markdown(sizes: list[StoreSize]) -> str:
    """A Markdown table of ``store_sizes()`` (MB = 10^6 bytes, TB = 10^12 bytes; non-empty)."""
    clients = f"{sizes[0].clients:,} clients" if sizes else "clients"
    lines = [
        f"| configuration | store.dtype | data prompt values | bytes per client | {clients} |",
        "|---|---|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(
            f"| {s.config} | {s.dtype} | {s.prompt_values:,} | {s.bytes_per_client:,} "
            f"({s.bytes_per_client / 1e6:.2f} MB) | {s.total_bytes / 1e12:.2f} TB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(sizes_markdown(store_sizes()))
