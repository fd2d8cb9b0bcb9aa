"""The N-mask U-Net++: a thin factory over segmentation-models-pytorch, encoder chosen by name.

The network outputs logits (one channel per candidate dislocation); the sigmoid is applied by
``ProbsModel`` so that training can use numerically stable logits while the exported ONNX graph
returns probabilities, as the model-file contract requires.

Real dislocations are often fainter against their surroundings than synthetic ones, and how faint
varies across a frame. With ``local_contrast_px`` the network first divides its input by the local
grey-level spread (a fixed Gaussian window, no weights), in training and inside the exported graph
alike, so that the runtime feeds frames exactly as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

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
    local_contrast_px: float = 0.0  # sigma of the local-contrast window (0: global normalisation only)
    local_contrast_floor: float = 0.01  # floor on the local spread (grey units): flat areas stay flat
    trace_channel: bool = False  # one more output, after the masks, trained to mark the drawn slip traces

    @property
    def outputs(self) -> int:
        """Output channels of the network: the N masks, then the trace channel if there is one."""
        return self.n_masks + int(self.trace_channel)

    def same_weights(self, other: ModelConfig) -> bool:
        """Whether ``other``'s trained weights fit this network (input handling may differ)."""
        shape = ("encoder", "n_masks", "decoder_channels", "encoder_depth", "trace_channel")
        return all(getattr(self, k) == getattr(other, k) for k in shape)

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


class LocalContrast(nn.Module):
    """``x -> (x - m) / sqrt(v + floor²)`` with m, v the Gaussian-weighted local mean and variance.

    No trainable state (the kernel is a non-persistent buffer), so weights move freely between
    networks with and without it. Computed in float32 even under autocast: a 3-sigma Gaussian sum
    in bfloat16 would blur the faint differences this is meant to bring out."""

    def __init__(self, sigma: float, floor: float) -> None:
        super().__init__()
        self.radius = max(1, int(3 * sigma + 0.5))
        t = torch.arange(-self.radius, self.radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        self.register_buffer("kernel", kernel / kernel.sum(), persistent=False)
        self.floor = float(floor)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        r, k = self.radius, self.kernel.to(x.dtype)
        x = nn.functional.pad(x, (r, r, r, r), mode="replicate")
        x = nn.functional.conv2d(x, k.view(1, 1, 1, -1))
        return nn.functional.conv2d(x, k.view(1, 1, -1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.blur(x)
        return d / torch.sqrt(self.blur(d * d) + self.floor**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.normalise(x.float())
        return self.normalise(x)


def build_model(config: ModelConfig) -> nn.Module:
    """U-Net++ with 1 input channel and ``config.outputs`` logit outputs; never downloads weights."""
    import segmentation_models_pytorch as smp

    if len(config.decoder_channels) != config.encoder_depth:
        raise ValueError(
            f"decoder_channels needs {config.encoder_depth} entries, got {len(config.decoder_channels)}"
        )
    if config.local_contrast_px > 0:

        class LocalContrastUnetPlusPlus(smp.UnetPlusPlus):
            """smp's U-Net++ behind a ``LocalContrast`` step; same parameters, same state-dict keys."""

            def __init__(self, **kwargs) -> None:
                super().__init__(**kwargs)
                # the input is already (grey - mean) / std, so the floor is in those units too
                self.local_contrast = LocalContrast(
                    config.local_contrast_px, config.local_contrast_floor / config.std
                )

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(self.local_contrast(x))

        cls = LocalContrastUnetPlusPlus
    else:
        cls = smp.UnetPlusPlus
    return cls(
        encoder_name=config.encoder,
        encoder_depth=config.encoder_depth,
        encoder_weights=None,
        decoder_channels=tuple(config.decoder_channels),
        in_channels=1,
        classes=config.outputs,
    )


@dataclass(frozen=True)
class Loaded:
    """What ``load_matching`` did: tensors embedded in a resized one, tensors left as built."""

    resized: list[str]
    fresh: list[str]


def load_matching(net: nn.Module, state: dict[str, torch.Tensor]) -> Loaded:
    """Load ``state`` into a network whose decoder stages or N differ from the one that learned it.

    Tensors of the same name and shape are copied. A tensor that grew or shrank keeps the trained
    values where the two overlap (the first channels); a convolution's added input channels start at
    zero, so where the added channels are the last of its input (the final decoder stages, the head)
    the wider network computes what the trained one did and learns from there. The encoder must fit
    whole: a head or a decoder block that happens to fit another encoder's network is no start."""
    own = net.state_dict()
    loaded, resized, fresh = {}, [], []
    for name, built in own.items():
        trained = state.get(name)
        if trained is None or trained.dim() != built.dim():
            fresh.append(name)
        elif trained.shape == built.shape:
            loaded[name] = trained
        else:
            t = built.clone()
            if t.dim() == 4 and t.shape[1] > trained.shape[1]:
                t[:, trained.shape[1] :] = 0
            overlap = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, trained.shape, strict=True))
            t[overlap] = trained[overlap].to(t.dtype)
            loaded[name] = t
            resized.append(name)
    if any(k.startswith("encoder.") for k in fresh + resized):
        raise ValueError("the given weights' encoder does not fit this network's (another encoder or depth)")
    net.load_state_dict(loaded, strict=False)
    return Loaded(resized=resized, fresh=fresh)


def without_trace_channel(
    config: ModelConfig, state: dict[str, torch.Tensor]
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The N-mask network inside one trained with a trace channel: the head's rows for the masks.

    The trace channel only shapes the features during training; what is exported, fine-tuned and
    run is the plain N-mask network, so the runtime's contract never sees it."""
    if not config.trace_channel:
        return config, state
    plain = replace(config, trace_channel=False)
    shapes = {k: v.shape for k, v in build_model(plain).state_dict().items()}
    cut = {k: v[: shapes[k][0]] if v.shape != shapes[k] else v for k, v in state.items()}
    return plain, cut


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
