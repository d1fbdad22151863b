"""Images decoded on demand: a split of a real image dataset holds where its images are.

Real image datasets do not fit in memory as float tensors (one 224x224 RGB image is 600 kB
as float32), and a client only ever needs a few dozen of them. So the loaders of files
(``csv``, ``parquet``, ``hf_disk``, ``coop``) keep paths or encoded bytes, and
:meth:`LazyImages.load` decodes, converts to RGB and resizes only the images a client asks
for, each time it asks. Memory stays at the size of the file list (or of the encoded bytes),
whatever the dataset's size; the price is decoding again when a client is sampled again.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dp2fl_ray.errors import DataError

# The resolution of CLIP ViT-B/16 and most ViTs; models resize again if theirs differs.
DEFAULT_IMAGE_SIZE = 224

# What PIL raises on a corrupt, truncated or hostile file.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """An image as float32 ``(3, size, size)`` in ``[0, 1]``: RGB, resized (bicubic) to a square."""
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0  # (size, size, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (3, size, size)


class LazyImages(abc.ABC):
    """A sequence of images decoded only when :meth:`load` asks for them.

    Subclasses say how to open image ``i`` and how to name it in an error message.
    """

    def __init__(self, image_size: int) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise DataError(f"image_size must be an int >= 1; got {image_size!r}")
        self.image_size = image_size

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of images."""

    @abc.abstractmethod
    def _open(self, i: int) -> Image.Image:
        """Open image ``i`` (may raise any of PIL's decoding errors)."""

    @abc.abstractmethod
    def where(self, i: int) -> str:
        """Where image ``i`` comes from, for error messages (a file path, or a table row)."""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, 3, S, S)``: the shape the loaded images would have, all of them."""
        return (len(self), 3, self.image_size, self.image_size)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """Decode the images at ``indices`` into float32 ``(n, 3, S, S)`` in ``[0, 1]``.

        Raises:
            DataError: an image cannot be read or decoded; the message names it.
        """
        idx = np.asarray(indices, dtype=np.int64)  # (n,)
        size = self.image_size
        out = torch.empty((len(idx), 3, size, size), dtype=torch.float32)  # (n, 3, S, S)
        for k, i in enumerate(idx.tolist()):
            try:
                with self._open(i) as image:
                    out[k] = to_tensor(image, size)
            except _DECODE_ERRORS as exc:
                raise DataError(
                    f"cannot read image {self.where(i)}: {type(exc).__name__}: {exc}; replace the"
                    " file with a valid image (PNG, JPEG...) or remove its row from the dataset"
                ) from exc
        return out


class ImageFiles(LazyImages):
    """Images stored as files, named by paths relative to a root folder.

    Args:
        root: the folder the paths are relative to.
        paths: one relative path per image.
        image_size: the side of the square tensors :meth:`load` returns.
        listed_in: the file that lists the paths (named in errors).
    """

    def __init__(self, root: Path, paths: Sequence[str], image_size: int, listed_in: str) -> None:
        super().__init__(image_size)
        self.root = Path(root)
        self.paths = np.asarray(list(paths), dtype=object)  # (N,) str
        self.listed_in = listed_in

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self, i: int) -> Image.Image:
        return Image.open(self.root / str(self.paths[i]))

    def where(self, i: int) -> str:
        return f"{self.root / str(self.paths[i])} (row {i} of {self.listed_in})"

    def check_exist(self) -> None:
        """Fail now, not rounds later, when a listed image file is missing (a cheap stat each).

        Raises:
            DataError: naming the first missing file, how many are missing, and the list.
        """
        missing = [p for p in self.paths.tolist() if not (self.root / str(p)).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(self.paths)} images listed in {self.listed_in} do"
                f" not exist, e.g. {self.root / str(missing[0])}; image paths are relative to"
                f" {self.root}: fix the paths or add the files"
            )


class EncodedImages(LazyImages):
    """Images held as their encoded file bytes (PNG, JPEG...), e.g. Parquet's image structs.

    Args:
        blobs: one encoded image per entry.
        image_size: the side of the square tensors :meth:`load` returns.
        listed_in: the file the bytes come from (named in errors).
    """

    def __init__(self, blobs: Sequence[bytes], image_size: int, listed_in: str) -> None:
        super().__init__(image_size)
        self.blobs = list(blobs)
        self.listed_in = listed_in

    def __len__(self) -> int:
        return len(self.blobs)

    def _open(self, i: int) -> Image.Image:
        return Image.open(io.BytesIO(self.blobs[i]))

    def where(self, i: int) -> str:
        return f"in row {i} of {self.listed_in}"
