"""What a model takes as input, how test images become its tensor, and the encodings images
travel in (:data:`Encoding`).

Images travel through servecap as uint8 ``[n, height, width, channels]`` arrays (channels 1 or
3), already at the model's size: the dataset loader resizes them (:mod:`targets.common.dataset`,
with :attr:`InputSpec.resize`). A protocol that sends tensors turns them into the model's
dtype and value range with :meth:`InputSpec.tensor`: pixel value 0 becomes ``range[0]`` and
255 becomes ``range[1]``, linearly. servecap's own predict API sends the pixel values and the
server does the same conversion.

The paper's CNN takes float32 ``32x32x3`` pixel values in [0, 255] (it rescales in-graph): that
is :data:`CIFAR_INPUT`, the default everywhere.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Encoding = Literal["json", "base64", "jpeg", "binary", "png", "file"]
"""How images travel in a request body: json (numbers), base64 (raw pixels, base64 in JSON),
jpeg (the image files, as JPEG), png (as PNG), file (the dataset's files as they are: the
image-upload protocol), binary (raw tensor bytes: the KServe v2 binary extension, gRPC raw
contents). Each protocol says which it sends (``Protocol.encodings``); base64 and binary are
the same raw pixels, so a protocol that has one sends it for the other."""

InputDtype = Literal["float32", "uint8"]
Resize = Literal["bilinear", "bicubic", "nearest", "lanczos"]


class InputSpec(BaseModel):
    """One image as the model takes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, int, int] = Field(
        default=(32, 32, 3), description="height, width, channels (1: grayscale, 3: RGB)"
    )
    dtype: InputDtype = Field(default="float32", description="the input tensor's type")
    range: tuple[float, float] = Field(
        default=(0.0, 255.0), description="the values pixel 0 and pixel 255 become"
    )
    resize: Resize = Field(
        default="bilinear", description="how dataset images of another size are resized"
    )

    @model_validator(mode="after")
    def _valid(self) -> InputSpec:
        height, width, channels = self.shape
        if channels not in (1, 3):
            raise ValueError(f"input channels must be 1 or 3, got {channels}")
        if not (1 <= height <= 4096 and 1 <= width <= 4096):
            raise ValueError(f"input height and width must be 1..4096, got {height}x{width}")
        low, high = self.range
        if not low < high:
            raise ValueError(f"input range must rise, got {list(self.range)}")
        if self.dtype == "uint8" and self.range != (0.0, 255.0):
            raise ValueError("a uint8 input takes pixel values as they are: range [0, 255]")
        return self

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[2]

    @property
    def values(self) -> int:
        """Numbers in one image."""
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def pil_mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def tensor(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel values (0..255, any numeric dtype) as the model's input tensor."""
        if self.dtype == "uint8":
            return np.ascontiguousarray(pixels, dtype=np.uint8)
        low, high = self.range
        values = np.asarray(pixels, dtype=np.float32)
        if (low, high) != (0.0, 255.0):
            values = values * np.float32((high - low) / 255.0) + np.float32(low)
        return np.ascontiguousarray(values, dtype=np.float32)

    def check_images(self, images: np.ndarray) -> None:
        """ValueError unless ``images`` is a uint8 ``[n, h, w, c]`` batch of this shape."""
        if images.ndim != 4 or tuple(images.shape[1:]) != self.shape or images.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 images [n,{self.height},{self.width},{self.channels}], got "
                f"{images.dtype} {list(images.shape)}"
            )


CIFAR_INPUT = InputSpec()
"""The paper's CNN: float32 32x32x3 pixel values in [0, 255]."""
CNN_MODEL_NAME = "cifar10_cnn"
"""The paper's CNN's name: its model folder, and the name TF Serving and Triton serve it by."""
CNN_INPUT_NAME = "images"
"""Its serving signature's input tensor (also the default input name of tensor protocols)."""
CNN_OUTPUT_NAME = "probabilities"
"""Its serving signature's output tensor: scores per class (the output servecap prefers)."""


class InputConfig(BaseModel):
    """A target's ``input:`` in scenarios.yaml: what its model takes, where the model's
    signature (or a server's metadata) does not say it. Unset fields are read from there;
    set ones must agree with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, int, int] | None = Field(
        default=None, description="height, width, channels; default: the model's signature"
    )
    dtype: InputDtype | None = Field(default=None, description="default: the signature's")
    range: tuple[float, float] | None = Field(
        default=None,
        description="what pixels 0 and 255 become for a float input (e.g. [0, 1]); default "
        "[0, 255]: the values as they are",
    )
    resize: Resize = Field(
        default="bilinear", description="how dataset images of another size are resized"
    )

    def spec(self, known: InputSpec | None = None, source: str = "the model") -> InputSpec:
        """The input: these fields over what ``known`` (a signature, a server's metadata)
        says; ValueError when a field set here contradicts it."""
        base = known or CIFAR_INPUT
        if known is not None:
            for field in ("shape", "dtype"):
                mine = getattr(self, field)
                if mine is not None and mine != getattr(known, field):
                    raise ValueError(
                        f"input.{field} is {mine} but {source} takes "
                        f"{getattr(known, field)}: remove input.{field} or fix it"
                    )
        dtype = self.dtype or base.dtype
        value_range = self.range or (base.range if known is not None else (0.0, 255.0))
        return InputSpec(
            shape=self.shape or base.shape,
            dtype=dtype,
            range=value_range if dtype == "float32" else (0.0, 255.0),
            resize=self.resize,
        )
