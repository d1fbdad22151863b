"""The paper's model: a frozen CLIP with MaPLe-style dual prompts (ALGORITHM.md section 1).

Task prompt ``Pt`` (shared, server-aggregated): the text context vectors ``ctx`` that
overwrite the "X X ..." slots of "X X ... <class name>." at the text input, plus deep text
prompts that overwrite the same slots at text layers 1..J-1.

Data prompt ``Pd_k`` (per client): the coupling functions ``F_j: Linear(d_text -> d_vision)``,
j = 0..J-1, mapping the text prompt of layer j to the vision prompt tokens of image layer j
(appended after the patch tokens at the input, overwritten at layers 1..J-1).

Classification: cosine similarity of image and class-text features times CLIP's logit scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTextConfig, CLIPVisionConfig, PreTrainedTokenizerBase

from dp2fl_ray.errors import ModelError
from dp2fl_ray.models.base import DualPromptModel, pad_small_gemms, rowwise
from dp2fl_ray.models.layout import PromptLayout

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPT_INIT_STD = 0.02


class ClipMaple(DualPromptModel):
    """Frozen ``CLIPModel`` + MaPLe prompts supplied per client as flat rows."""

    eot_index: torch.Tensor  # buffers, registered in __init__
    class_token_embeds: torch.Tensor
    init_ctx: torch.Tensor
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        clip: CLIPModel,
        tokenizer: PreTrainedTokenizerBase,
        class_names: Sequence[str],
        n_ctx: int,
        depth: int,
        init_text: str,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(device, dtype)
        # typed ``dict | ... | None`` for the constructor; a built CLIPConfig holds config objects
        text_cfg = cast(CLIPTextConfig, clip.config.text_config)
        vision_cfg = cast(CLIPVisionConfig, clip.config.vision_config)
        max_depth = min(text_cfg.num_hidden_layers, vision_cfg.num_hidden_layers)
        if not 1 <= depth <= max_depth:
            raise ModelError(
                f"model.prompt.depth={depth} but this CLIP has {max_depth} layers in its "
                f"shallower encoder; set model.prompt.depth to 1..{max_depth}"
            )
        pad_small_gemms(clip)  # a slice's 1-sample batch rounds as in a full one
        self.clip = clip
        self.n_ctx, self.depth = n_ctx, depth
        self.num_classes = len(class_names)
        self.image_size = int(cast(int, vision_cfg.image_size))  # CLIP's is one int (square images)
        d_text, d_vision = text_cfg.hidden_size, vision_cfg.hidden_size
        self.task_layout = PromptLayout((("ctx", (n_ctx, d_text)), ("deep_text", (depth - 1, n_ctx, d_text))))
        self.data_layout = PromptLayout(
            (("couple_weight", (depth, d_vision, d_text)), ("couple_bias", (depth, d_vision)))
        )

        placeholder = " ".join(["X"] * n_ctx)
        prompts = [f"{placeholder} {name}." for name in class_names]
        ids = tokenizer(prompts, padding="longest", return_tensors="pt")["input_ids"]  # (C, T)
        eos = tokenizer.eos_token_id
        if ids.shape[1] > text_cfg.max_position_embeddings or not bool((ids == eos).any(dim=1).all()):
            raise ModelError(
                f"class prompts need {ids.shape[1]} tokens but the text encoder takes "
                f"{text_cfg.max_position_embeddings}; shorten the class names or model.prompt.n_ctx"
            )
        self.register_buffer("eot_index", (ids == eos).int().argmax(dim=1), persistent=False)  # (C,)
        init_ids = tokenizer(init_text, return_tensors="pt")["input_ids"][0, 1:-1]  # drop start/end
        with torch.no_grad():
            embed = clip.text_model.embeddings.token_embedding
            self.register_buffer("class_token_embeds", embed(ids).clone(), persistent=False)  # (C, T, d_t)
            self.register_buffer(
                "init_ctx", embed(init_ids[:n_ctx]).clone(), persistent=False
            )  # (<=n_ctx, d_t)
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()
        self.to(device)

    def initial_prompts(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        d_text = self.task_layout.entries[0][1][1]
        ctx = torch.randn(self.n_ctx, d_text, generator=gen) * PROMPT_INIT_STD
        ctx[: self.init_ctx.shape[0]] = self.init_ctx.float().cpu()
        deep = torch.randn(self.depth - 1, self.n_ctx, d_text, generator=gen) * PROMPT_INIT_STD
        bound = d_text**-0.5  # nn.Linear's default init range
        (_, w_shape), (_, b_shape) = self.data_layout.entries
        weight = (torch.rand(w_shape, generator=gen) * 2 - 1) * bound
        bias = (torch.rand(b_shape, generator=gen) * 2 - 1) * bound
        task = self.task_layout.flatten({"ctx": ctx, "deep_text": deep})
        data = self.data_layout.flatten({"couple_weight": weight, "couple_bias": bias})
        return task, data

    def class_features(self, task: torch.Tensor) -> torch.Tensor:
        parts = self.task_layout.unflatten(task)
        ctx, deep = parts["ctx"], parts["deep_text"]  # (M, n, d), (M, J-1, n, d)
        m, n = ctx.shape[0], self.n_ctx
        c, t, d = self.class_token_embeds.shape
        tokens = self.class_token_embeds.unsqueeze(0).expand(m, c, t, d)  # (M, C, T, d)
        x = torch.cat(
            [tokens[:, :, :1], ctx.unsqueeze(1).expand(m, c, n, d).to(tokens.dtype), tokens[:, :, 1 + n :]],
            dim=2,
        ).reshape(m * c, t, d)  # (M*C, T, d)
        text = self.clip.text_model
        x = text.embeddings(inputs_embeds=x)  # adds position embeddings
        for layer_idx, layer in enumerate(text.encoder.layers):
            if 1 <= layer_idx < self.depth:
                deep_l = deep[:, layer_idx - 1].unsqueeze(1).expand(m, c, n, d).reshape(m * c, n, d)
                x = torch.cat([x[:, :1], deep_l.to(x.dtype), x[:, 1 + n :]], dim=1)  # (M*C, T, d)
            x = layer(x, None, is_causal=True)
        x = text.final_layer_norm(x)
        eot = self.eot_index.repeat(m)  # (M*C,)
        pooled = x[torch.arange(m * c, device=x.device), eot]  # (M*C, d)
        feats = rowwise(self.clip.text_projection, pooled)
        return F.normalize(feats.float(), dim=-1).reshape(m, c, -1)  # (M, C, P)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at any size -> CLIP-normalised pixels at the model's resolution."""
        images = images.to(self.device, non_blocking=True)
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return (images - self.pixel_mean) / self.pixel_std  # (N, 3, S, S)

    def vision_prompts(self, task: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """``F_j(P_j)`` for every model row and layer: ``(M, J, n_ctx, d_vision)``."""
        t, dp = self.task_layout.unflatten(task), self.data_layout.unflatten(data)
        text_prompts = torch.cat([t["ctx"].unsqueeze(1), t["deep_text"]], dim=1)  # (M, J, n, d_t)
        # contiguous operands: a strided view takes another GEMM path, which would make a
        # model's prompts round differently depending on how many rows share the batch
        weight = dp["couple_weight"].contiguous()  # (M, J, d_v, d_t)
        return torch.matmul(text_prompts, weight.transpose(-1, -2)) + dp["couple_bias"].unsqueeze(
            2
        )  # (M, J, n, d_v)

    def vision_states(
        self, images: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Last-layer vision tokens ``(N, 1 + patches + n_ctx, d_v)``: CLS, patches, prompts."""
        vision = self.clip.vision_model
        prompts = self.vision_prompts(task, data)[owner]  # (N, J, n, d_v)
        x = vision.embeddings(self.preprocess(images))  # (N, 1+patches, d_v)
        x = torch.cat([x, prompts[:, 0].to(x.dtype)], dim=1)  # (N, 1+patches+n, d_v)
        x = vision.pre_layrnorm(x)
        n = self.n_ctx
        for layer_idx, layer in enumerate(vision.encoder.layers):
            if 1 <= layer_idx < self.depth:
                x = torch.cat([x[:, :-n], prompts[:, layer_idx].to(x.dtype)], dim=1)
            x = layer(x, None)
        return x

    def image_features(
        self, images: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Normalised image features ``(N, P)``, sample n with the vision prompts of row ``owner[n]``."""
        x = self.vision_states(images, task, data, owner)  # (N, 1+patches+n, d_v)
        pooled = rowwise(self.clip.vision_model.post_layernorm, x[:, 0])
        return F.normalize(rowwise(self.clip.visual_projection, pooled).float(), dim=-1)  # (N, P)

    def token_features(
        self, inputs: torch.Tensor, task: torch.Tensor, data: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Normalised patch features ``(N, patches, P)``: each patch token through the same final
        LayerNorm and projection as the CLS token (as FedOTP/PLOT read CLIP's feature map); the
        CLS and prompt tokens are left out."""
        x = self.vision_states(inputs, task, data, owner)  # (N, 1+patches+n, d_v)
        patches = x[:, 1 : x.shape[1] - self.n_ctx]  # (N, L, d_v)
        n, length, d = patches.shape
        flat = rowwise(self.clip.vision_model.post_layernorm, patches.reshape(n * length, d))  # (N*L, d_v)
        feats = rowwise(self.clip.visual_projection, flat).float()  # (N*L, P)
        return F.normalize(feats, dim=-1).reshape(n, length, -1)  # (N, L, P)

    def token_logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().float()

    def logits(
        self,
        inputs: torch.Tensor,
        task: torch.Tensor,
        data: torch.Tensor,
        owner: torch.Tensor,
        class_feats: torch.Tensor,
    ) -> torch.Tensor:
        image = self.image_features(inputs, task, data, owner)  # (N, P)
        scale = self.clip.logit_scale.exp().float()
        return scale * torch.bmm(class_feats[owner], image.unsqueeze(-1)).squeeze(-1)  # (N, C)
