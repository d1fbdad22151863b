"""Bytes per client computed from prompt shapes, checked against the models' own layouts."""

from __future__ import annotations

from pathlib import Path

from dp2fl_ray.config import ExperimentConfig, load_config
from dp2fl_ray.models.loader import build_model
from dp2fl_ray.state.sizing import (
    NAMED_CONFIGS,
    bytes_per_client,
    clip_data_prompt_values,
    sizes_markdown,
    store_sizes,
)

REPO = Path(__file__).resolve().parents[2]


def test_clip_formula_matches_a_built_clip_data_layout(tiny_config: ExperimentConfig) -> None:
    model = build_model(tiny_config.model, ["zero", "one", "two"])
    d = tiny_config.model.tiny.hidden  # type: ignore[union-attr]
    depth = tiny_config.model.prompt.depth
    assert model.data_layout.size == clip_data_prompt_values(depth, d, d)


def test_the_paper_configs_are_the_shapes_sized_here() -> None:
    for path in sorted((REPO / "experiments" / "paper").glob("*.yaml")):
        cfg = load_config(path)
        assert (cfg.model.backbone, cfg.model.prompt.depth) == ("clip", 9), path.name
    minilm = load_config(REPO / "experiments" / "clinc150_minilm.yaml")
    assert (minilm.model.backbone, minilm.model.prompt.depth) == ("bert", 3)


def test_paper_clip_is_about_14_mb_a_client_and_half_in_bfloat16() -> None:
    values = NAMED_CONFIGS["CLIP ViT-B/16, paper (depth 9, 512 -> 768)"]
    assert values == 9 * (768 * 512 + 768)
    assert bytes_per_client(values, "float32") == 4 * values + 20
    assert bytes_per_client(values, "bfloat16", "memory") == 2 * values + 16
    sizes = {(s.config, s.dtype): s for s in store_sizes(10**6)}
    clip32 = sizes[("CLIP ViT-B/16, paper (depth 9, 512 -> 768)", "float32")]
    assert round(clip32.total_bytes / 1e12, 2) == 14.18  # a million touched clients: 14 TB
    table = sizes_markdown(list(sizes.values()))
    assert "| bfloat16 |" in table and "1,000,000 clients" in table
