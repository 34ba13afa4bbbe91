"""DeepLabConfig: everything that fixes a DeepLab architecture, as plain data (no TensorFlow here)."""
from __future__ import annotations

import dataclasses
import json

from edge_deeplab.choices import ASPP_KINDS, BACKBONES, OUTPUT_STRIDES, check_choice
from edge_deeplab.errors import OptionError

# ASPP rates of DeepLabv3 at output stride 16; they scale inversely with the output stride.
BASE_ATROUS_RATES = (6, 12, 18)


@dataclasses.dataclass(frozen=True)
class DeepLabConfig:
    backbone: str = "mobilenetv2"
    depth_multiplier: float = 1.0  # MobileNetV2 only
    output_stride: int = 16
    input_size: tuple = (513, 513)  # (height, width)
    num_classes: int = 21
    aspp: str | None = None  # None: "mobile" for MobileNetV2, "separable" for Xception (DeepLabv3+)
    decoder: bool = False
    decoder_separable: bool = True  # the decoder's two 3x3 convs are depthwise-separable (DeepLabv3+)
    aspp_channels: int = 256
    decoder_channels: int = 256
    low_level_channels: int = 48
    # "deeplab": channel widths as the official DeepLab MobileNetV2 (exact d*multiplier below 1.0);
    # "keras": widths of keras.applications.MobileNetV2 (needed to load its ImageNet weights).
    width_rounding: str = "deeplab"
    dropout: float = 0.1  # after the ASPP projection, as DeepLab trains (keep_prob 0.9)
    name: str = ""
    class_names: tuple = ()  # names of the classes, when known (they go into the .tflite metadata)

    def __post_init__(self):
        size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        object.__setattr__(self, "input_size", tuple(int(s) for s in size))
        object.__setattr__(self, "depth_multiplier", float(self.depth_multiplier))
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names or ()))
        if self.aspp is None:
            object.__setattr__(self, "aspp", "mobile" if self.backbone == "mobilenetv2" else "separable")
        self.validate()

    def validate(self):
        if self.backbone not in BACKBONES:
            raise OptionError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONES)}")
        if self.backbone == "mobilenetv2" and self.depth_multiplier <= 0:
            raise OptionError(f"depth multiplier must be positive, got {self.depth_multiplier}")
        check_choice("output stride", self.output_stride, OUTPUT_STRIDES)
        if self.aspp not in ASPP_KINDS:
            raise OptionError(f"unknown ASPP kind {self.aspp!r}; expected one of {', '.join(ASPP_KINDS)}")
        if self.width_rounding not in ("deeplab", "keras"):
            raise OptionError(f"width_rounding must be 'deeplab' or 'keras', got {self.width_rounding!r}")
        if self.num_classes < 1:
            raise OptionError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise OptionError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        h, w = self.input_size
        if len(self.input_size) != 2 or min(h, w) < 32:
            raise OptionError(f"input size must be two sizes of at least 32 pixels, got {self.input_size}")

    @property
    def atrous_rates(self) -> tuple:
        """ASPP rates: (6, 12, 18) at output stride 16, (12, 24, 36) at 8, (3, 6, 9) at 32."""
        if self.aspp == "mobile":
            return ()
        return tuple(r * 16 // self.output_stride for r in BASE_ATROUS_RATES)

    @property
    def default_name(self) -> str:
        if self.backbone == "mobilenetv2":
            bb = f"mobilenetv2_dm{self.depth_multiplier:g}".replace(".", "")
        else:
            bb = self.backbone
        h, w = self.input_size
        size = f"{h}" if h == w else f"{h}x{w}"
        dec = "_decoder" if self.decoder else ""
        return f"deeplab_{bb}_os{self.output_stride}{dec}_{size}"

    def replace(self, **changes) -> "DeepLabConfig":
        if changes.get("num_classes", self.num_classes) != self.num_classes and "class_names" not in changes:
            changes["class_names"] = ()  # another head: its classes are not the old ones
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DeepLabConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise OptionError(f"unknown DeepLab config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
