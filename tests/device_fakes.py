"""Stand-ins shared by the device-side tests: a linear device model and recording fakes.

The tests pin the runtime's behaviour, not the calibration, so they use this simple model instead of
`costmodel.device_models` (whose numbers may be refitted).
"""

from __future__ import annotations

from costmodel.model_zoo import get_model
from jetfleet.catalogue import get_kind


class LinearDeviceModel:
    """latency = (a + b·batch·gmacs) · f_max / f; power = idle + 2 W · f / f_max while busy."""

    def __init__(self, kind: str, a_s: float = 0.002, b_s: float = 0.001) -> None:
        self.kind = kind
        self._kind = get_kind(kind)
        self.a_s, self.b_s = a_s, b_s
        self.calls: list[tuple[str, int, float]] = []

    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        self.calls.append((model, batch, freq_hz))
        return (self.a_s + self.b_s * batch * get_model(model).gmacs) * self._kind.max_freq_hz / freq_hz

    def busy_power_w(self, model: str, batch: int, freq_hz: float) -> float:
        get_model(model)
        return self.idle_power_w(freq_hz) + 2.0 * freq_hz / self._kind.max_freq_hz

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        return self.busy_power_w(model, batch, freq_hz) * self.latency_s(model, batch, freq_hz)

    def idle_power_w(self, freq_hz: float) -> float:
        return self._kind.idle_power_w


ORIN_GPU = "sys/devices/platform/bus@0/17000000.gpu"
ORIN_DEVFREQ = "sys/class/devfreq/17000000.ga10b"
ORIN_GPU_FREQS = (306000000, 624750000, 918000000)


def fake_jetson_tree(root, *, gpu_node: str = ORIN_GPU, cpus: int = 2, tegra: bool = True):
    """A Jetson-like sysfs tree: nvgpu rail-gate files, the GPU devfreq node and per-CPU cpufreq files.

    `is_railgated` follows `railgate_enable` as soon as it is written (a real GPU waits `railgate_delay`)."""
    gpu = root / gpu_node
    gpu.mkdir(parents=True)
    (gpu / "railgate_enable").write_text("0\n")
    (gpu / "railgate_delay").write_text("500\n")
    (gpu / "is_railgated").write_text("0\n")
    devfreq = root / ORIN_DEVFREQ
    devfreq.mkdir(parents=True)
    (devfreq / "available_frequencies").write_text(" ".join(map(str, ORIN_GPU_FREQS)) + "\n")
    for leaf in ("min_freq", "max_freq", "cur_freq"):
        (devfreq / leaf).write_text(f"{ORIN_GPU_FREQS[-1] if leaf != 'min_freq' else ORIN_GPU_FREQS[0]}\n")
    for i in range(cpus):
        cpufreq = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        cpufreq.mkdir(parents=True)
        (cpufreq / "scaling_available_frequencies").write_text("115200 729600 1510400\n")
        (cpufreq / "scaling_max_freq").write_text("1510400\n")
    if tegra:
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    return gpu


class RailgateFollows:
    """Stands in for the nvgpu driver: copies railgate_enable into is_railgated whenever asked."""

    def __init__(self, gpu) -> None:
        self.gpu = gpu

    def __call__(self) -> None:
        (self.gpu / "is_railgated").write_text((self.gpu / "railgate_enable").read_text())
