"""Small real networks written in torch (no torchvision here): ResNet-18, MobileNetV2 and a tiny CNN.

They follow the torchvision reference architectures layer for layer (He et al. 2016; Sandler et al. 2018),
so a torchvision `state_dict` of the same model loads into them with `load_weights`. Without weights they
get seeded random initial weights: real arithmetic, meaningless classes. `export_onnx` writes an ONNX file
with a dynamic batch axis for TensorRT (or onnxruntime). torch is imported by this module: import it only
where torch is meant to be used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jetfleet.errors import ConfigError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a shortcut (ResNet-18/34)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (11.7 M parameters, 1.8 GMACs at 224×224); torchvision's parameter names."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, c_in = (64, 128, 256, 512), 64
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c_in, w, stride), BasicBlock(w, w)))
            c_in = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Conv-BN-ReLU6, torchvision's `Conv2dNormActivation` (same indices: 0 conv, 1 bn, 2 act)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand, 3×3 depthwise, 1×1 linear projection; shortcut when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn(c_in, hidden, 1, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, c_out, 1, bias=False)]
        layers.append(nn.BatchNorm2d(c_out))
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


# (expansion t, channels c, repeats n, first stride s) from the MobileNetV2 paper, table 2
_MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
_MOBILENETV2_SETTINGS += ((6, 320, 1, 1),)


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0 (3.5 M parameters, 0.3 GMACs at 224×224); torchvision's parameter names."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        c_in = 32
        layers: list[nn.Module] = [_conv_bn(3, c_in, 3, 2)]
        for t, c, n, s in _MOBILENETV2_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn(c_in, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class TinyCNN(nn.Module):
    """Three strided conv layers and a classifier: a real network that runs in milliseconds (tests, demos)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, 3, 2),
            _conv_bn(16, 32, 3, 2),
            _conv_bn(32, 64, 3, 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


# name -> (constructor, default square input side)
NETWORKS: dict[str, tuple[Callable[[int], nn.Module], int]] = {
    "resnet18": (ResNet18, 224),
    "mobilenetv2": (MobileNetV2, 224),
    "tiny-cnn": (TinyCNN, 64),
}


def build_network(name: str, *, num_classes: int = 1000, seed: int = 0, weights: str | Path | None = None) -> nn.Module:
    """The network `name` in eval mode: seeded random weights, or the state_dict at `weights`."""
    if name not in NETWORKS:
        raise UnknownNameError("network", name, NETWORKS)
    ctor, _ = NETWORKS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ctor(num_classes)
    if weights is not None:
        load_weights(net, weights)
    return net.eval()


def input_hw(name: str) -> int:
    """The default square input side of network `name`, in pixels."""
    if name not in NETWORKS:
        raise UnknownNameError("network", name, NETWORKS)
    return NETWORKS[name][1]


def load_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict file (torch.save of `state_dict()`, tensors only) into `net`; ConfigError if it
    does not exist or does not fit, naming the file and the first mismatching keys."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files: all mean "not a state_dict we can read"
        raise ConfigError(f"{path}: cannot read as a torch state_dict: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:3]
        raise ConfigError(f"{path}: weights do not fit {type(net).__name__}: {' '.join(first)}") from None
    return net


def export_onnx(net: nn.Module, path: str | Path, *, hw: int, max_batch: int = 256, opset: int = 18) -> Path:
    """Export `net` to ONNX with input `input` (batch, 3, hw, hw), output `logits`, and a dynamic batch axis.

    Opset >= 18 uses the torch.export-based exporter (torch's default; needs `onnxscript`); an older opset
    (TensorRT 8.x reads up to 17) or a missing onnxscript uses the TorchScript exporter."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    example = (torch.randn(2, 3, hw, hw),)
    names = {"input_names": ["input"], "output_names": ["logits"]}
    if opset >= 18 and _has_onnxscript():
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        program = torch.onnx.export(
            net, example, dynamic_shapes=({0: batch},), dynamo=True, opset_version=opset, verbose=False, **names
        )
        program.save(str(path))
    else:
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
        torch.onnx.export(
            net, example, str(path), dynamic_axes=axes, dynamo=False, opset_version=min(opset, 17), **names
        )
    return path


def _has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def image_to_chw(image, hw: int) -> np.ndarray:
    """A PIL image -> float32 (3, hw, hw): shorter side resized to hw·256/224, centre crop, ImageNet
    normalisation (torchvision's classification preset)."""
    from PIL import Image

    image = image.convert("RGB")
    short = round(hw * 256 / 224)
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize((max(hw, round(w * scale)), max(hw, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - hw) // 2, (h - hw) // 2
    arr = np.asarray(image.crop((left, top, left + hw, top + hw)), dtype=np.float32) / 255.0
    arr = (arr - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
