"""The N-mask U-Net++: a thin factory over segmentation-models-pytorch, encoder chosen by name.

The network outputs logits (one channel per candidate dislocation); the sigmoid is applied by
``ProbsModel`` so that training can use numerically stable logits while the exported ONNX graph
returns probabilities, as the model-file contract requires.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

ARCHITECTURE = "UnetPlusPlus"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored in checkpoints, safetensors and the card.

    The default is the CPU model: U-Net++'s nested decoder dominates the cost, so its channels are
    halved relative to smp's default (measured ~1.5x faster per step at 4x256² on 2 cores).
    The paper's model is ``ModelConfig(encoder="resnet50", decoder_channels=(256, 128, 64, 32, 16))``.
    """

    encoder: str = "mobilenet_v2"
    n_masks: int = 20
    decoder_channels: tuple[int, ...] = field(default=(128, 64, 32, 16, 16))
    encoder_depth: int = 5
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        d["architecture"] = ARCHITECTURE
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in keys}
        if "decoder_channels" in kw:
            kw["decoder_channels"] = tuple(int(c) for c in kw["decoder_channels"])
        return cls(**kw)


def build_model(config: ModelConfig) -> nn.Module:
    """U-Net++ with 1 input channel and ``n_masks`` logit outputs; never downloads weights."""
    import segmentation_models_pytorch as smp

    if len(config.decoder_channels) != config.encoder_depth:
        raise ValueError(
            f"decoder_channels needs {config.encoder_depth} entries, got {len(config.decoder_channels)}"
        )
    return smp.UnetPlusPlus(
        encoder_name=config.encoder,
        encoder_depth=config.encoder_depth,
        encoder_weights=None,
        decoder_channels=tuple(config.decoder_channels),
        in_channels=1,
        classes=config.n_masks,
    )


class ProbsModel(nn.Module):
    """Wraps the logit network so the exported graph outputs probabilities in [0, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


def normalise(grey: torch.Tensor, config: ModelConfig, max_value: float = 1.0) -> torch.Tensor:
    """The contract's input normalisation ``(grey / max_value - mean) / std``."""
    return (grey / max_value - config.mean) / config.std
