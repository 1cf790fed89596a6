"""The data path: how a batch's input reaches its device, and what that costs in time.

A request's frames are decoded and preprocessed on the controller (jetfleet's ingress: resize, centre crop,
normalise to the model's input tensor), queued there, and shipped to the device with the batch the scheduler
dispatches. Shipping a batch of n frames of a model whose input tensor is `b` bytes takes

    Link.transfer_s(n * b) = latency_s + 8 * n * b / bandwidth_bps

on the device's link. The simulator and the emulated devices charge it; policies see it through the cost view
(`costmodel.view.CostView.grid(..., link=)`), which prices a batch as its transfer followed by its compute.
A device on the controller itself has `LOCAL` (no transfer).

Defaults (`DEFAULT_LINKS`, by device kind; a fleet's inventory may override them per device):

- Bandwidth is the TCP goodput of the developer kit's Ethernet port at the standard 1500-byte MTU: each
  1538-byte frame on the wire (1500 B payload + 14 B header + 4 B FCS + 8 B preamble + 12 B inter-frame gap)
  carries 1448 B of TCP payload (1500 - 20 B IP - 20 B TCP - 12 B timestamp option), 94.1 % of the line rate.
  That is arithmetic on the protocols, not a fit: measured iperf3 goodput on a clean GbE link is 930-940 Mbit/s.
- Latency is one request's fixed cost on a switched LAN (its HTTP request and first bytes, an ACK's wait):
  an assumption, 0.5 ms, plausible range 0.1-2 ms. It matters little: one FP32 InceptionV3 frame alone takes
  9.1 ms on GbE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jetfleet.errors import ConfigError

__all__ = [
    "DEFAULT_LINKS",
    "GBE",
    "LINK_SOURCES",
    "LOCAL",
    "PREPROCESS_S_PER_FRAME",
    "TCP_GOODPUT",
    "TEN_GBE",
    "Link",
    "default_link",
]

# TCP payload per Ethernet frame on the wire at MTU 1500 (see the module docstring).
TCP_GOODPUT = 1448 / 1538
LAN_LATENCY_S = 0.0005  # assumption: one request's fixed cost on a switched LAN (range 0.1-2 ms)

# Controller preprocessing per frame: a 640 x 480 JPEG decoded, resized, centre-cropped to 299 x 299 and normalised
# to FP32 by jetfleet's ingress code (`deployments.payload.decode_images`): median 5.0 ms on one core of this
# project's 2-core Xeon sandbox (`python -m benchmarks preprocess`; 11 ms at 1280 x 720, 21 ms at 1920 x 1080).
# A measurement of our code on our CPU, not of LoudVA's controller, whose CPU and image sizes are not published.
# The live service pays its real preprocessing; the simulator charges this figure.
PREPROCESS_S_PER_FRAME = 0.005


@dataclass(frozen=True, slots=True)
class Link:
    """One device's data path from the controller: goodput in bits per second (inf: no network) and a fixed
    cost per batch."""

    bandwidth_bps: float = math.inf
    latency_s: float = 0.0
    # True when nothing crosses a network (the device runs on the controller). Worked out once: the planner and the
    # core ask it for every device they look at.
    local: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.bandwidth_bps > 0) or math.isnan(self.bandwidth_bps):
            raise ConfigError(f"link bandwidth must be > 0 bit/s, got {self.bandwidth_bps}")
        if not (0 <= self.latency_s < math.inf):
            raise ConfigError(f"link latency must be >= 0 s and finite, got {self.latency_s}")
        object.__setattr__(self, "local", math.isinf(self.bandwidth_bps) and self.latency_s == 0.0)

    def transfer_s(self, n_bytes: float) -> float:
        """Seconds to ship `n_bytes` of one batch's input to the device (0 for nothing, or on `LOCAL`)."""
        if n_bytes <= 0 or self.local:
            return 0.0
        return self.latency_s + 8.0 * n_bytes / self.bandwidth_bps

    def describe(self) -> str:
        """E.g. '941 Mbit/s, 0.5 ms' or 'local'."""
        if self.local:
            return "local"
        return f"{self.bandwidth_bps / 1e6:.0f} Mbit/s, {self.latency_s * 1e3:g} ms"


LOCAL = Link()
GBE = Link(1e9 * TCP_GOODPUT, LAN_LATENCY_S)
TEN_GBE = Link(10e9 * TCP_GOODPUT, LAN_LATENCY_S)

_DEVKIT = "NVIDIA {} Developer Kit specifications: {} port; goodput = line rate x 1448/1538 (TCP, MTU 1500)"
LINK_SOURCES: dict[str, str] = {
    "jetson-nano": _DEVKIT.format("Jetson Nano", "Gigabit Ethernet (RJ45)"),
    "xavier-nx": _DEVKIT.format("Jetson Xavier NX", "Gigabit Ethernet (RJ45)"),
    "agx-xavier": _DEVKIT.format("Jetson AGX Xavier", "Gigabit Ethernet (RJ45)"),
    "orin-nano": _DEVKIT.format("Jetson Orin Nano", "Gigabit Ethernet (RJ45)"),
    "orin-nx": _DEVKIT.format("Jetson Orin Nano (the Orin NX module's carrier board)", "Gigabit Ethernet (RJ45)"),
    "agx-orin": _DEVKIT.format("Jetson AGX Orin", "10 Gigabit Ethernet (RJ45)"),
    "cuda-gpu": "assumed in the controller's host (PCIe, no network); set link_mbps in the inventory otherwise",
    "cpu": "the controller's own CPU: no network",
}
DEFAULT_LINKS: dict[str, Link] = {
    "jetson-nano": GBE,
    "xavier-nx": GBE,
    "agx-xavier": GBE,
    "orin-nano": GBE,
    "orin-nx": GBE,
    "agx-orin": TEN_GBE,
    "cuda-gpu": LOCAL,
    "cpu": LOCAL,
}


def default_link(kind: str) -> Link:
    """The default link of a device kind (`LOCAL` for a kind not listed)."""
    return DEFAULT_LINKS.get(kind, LOCAL)
