"""The device catalogue: what jetfleet knows about each kind of device it schedules.

Each figure names its source in `DeviceKind.sources`. "LoudVA" means the measurements in
../shared/data/loudva (github.com/iloudaros/LoudVA @ 2b4b15e, MIT): `gpu_specs.csv`, the GPU
frequencies swept in `Profiling.csv`, the idle power seen in its logs and the frequency-change
delays its scheduler assumes. Orin figures come from NVIDIA's Jetson Orin module data sheets and
the devfreq `available_frequencies` lists of JetPack 5/6; they are not measured by this project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jetfleet.errors import FrequencyError, UnknownNameError
from jetfleet.power_states import PowerState, PowerStateSpec

MHZ = 1e6


def _mhz(*values: float) -> tuple[float, ...]:
    return tuple(round(v * MHZ) for v in values)


@dataclass(frozen=True)
class DeviceKind:
    """Static description of one device kind. Frequencies are in Hz, ascending."""

    key: str
    display_name: str
    freqs_hz: tuple[float, ...]  # the device's own available GPU frequencies; DVFS writes only these
    idle_power_w: float  # board power when idle at the lowest frequency
    freq_change_delay_s: float  # time a GPU frequency change takes to settle
    memory_gb: float
    max_batch: int  # the largest batch worth running (throughput saturates beyond it)
    gpu_cores: int
    mem_bandwidth_gbps: float
    arch: str
    tensor_cores: int = 0
    has_dvfs: bool = True  # False for the CPU: its single "frequency" is nominal
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # Its sleep states (deep idle, suspended, off), shallowest first; empty: it cannot sleep.
    power_states: tuple[PowerStateSpec, ...] = field(default=(), compare=False, hash=False)

    @property
    def min_freq_hz(self) -> float:
        return self.freqs_hz[0]

    @property
    def max_freq_hz(self) -> float:
        return self.freqs_hz[-1]

    def power_state(self, state: PowerState) -> PowerStateSpec | None:
        """This kind's figures for sleep `state`, or None when it cannot enter it."""
        return next((spec for spec in self.power_states if spec.state is state), None)

    def check_frequency(self, freq_hz: float) -> float:
        """Return `freq_hz` if it is one of this kind's frequencies, else raise FrequencyError."""
        for f in self.freqs_hz:
            if abs(f - freq_hz) < 1.0:
                return f
        raise FrequencyError(
            f"{freq_hz:.0f} Hz is not an available frequency of {self.key}; "
            f"available: {', '.join(f'{f / MHZ:g}' for f in self.freqs_hz)} MHz"
        )


# -- sleep states -------------------------------------------------------------------------------------
# Anchors (docs/power-states.md lists them with their use):
_RAILGATE = (
    "nvgpu driver: railgate_enable / railgate_delay (default 500 ms) / is_railgated sysfs files; the GPU rail is "
    "gated once it has idled railgate_delay"
)
_SC7 = "NVIDIA DRIVE OS docs, 'Suspend to RAM / SC7': all SoC domains off but AON, DRAM in self-refresh"
_ORIN_SC7 = "Orin module in SC7 draws about 1 W (issue 10 anchor; NVIDIA forum figures for Orin suspend)"
_XAVIER_SC7 = "assumed: Xavier-generation SC7 draw, scaled from the Orin ~1 W anchor by idle power (see ranges)"
_AGX_ORIN_SC7 = "assumed: AGX Orin SC7 above the Orin NX/Nano ~1 W anchor (larger module, more DRAM in self-refresh)"
_TRANSITION = (
    "assumed: during a transition the board draws its idle power, so a transition's energy above the state's "
    "own draw is (idle W - state W) x its latency"
)
_SC7_RESUME = "assumed: SC7 resume latency is published nowhere we found (range 0.5-10 s; results show sensitivity)"
_SC7_ENTRY = "assumed: suspend entry (freeze tasks, SC7 entry firmware) ~1 s (range 0.5-3 s)"
_UNGATE = "assumed: un-railgating the GPU and restoring its context ~50 ms (range 10-200 ms)"
_BOOT = "assumed: cold boot of L4T plus `ray start` rejoining the cluster ~45 s (range 20-90 s)"
_SHUTDOWN = "assumed: orderly shutdown ~10 s (range 5-30 s)"
_OFF_W = "assumed: carrier-board standby draw while off ~0.1 W (range 0-0.5 W)"


def _state(
    state: PowerState,
    idle_w: float,
    power_w: float,
    entry_s: float,
    exit_s: float,
    sources: dict[str, str],
    ranges: dict[str, tuple[float, float]],
) -> PowerStateSpec:
    """One sleep state; transition energies follow the `_TRANSITION` assumption; `ranges` names the assumed figures."""
    paid_w = max(0.0, idle_w - power_w)
    return PowerStateSpec(
        state,
        board_power_w=power_w,
        entry_s=entry_s,
        exit_s=exit_s,
        entry_energy_j=paid_w * entry_s,
        exit_energy_j=paid_w * exit_s,
        sources={**sources, "entry_energy_j": _TRANSITION, "exit_energy_j": _TRANSITION},
        assumed=tuple(sorted({*ranges, "entry_energy_j", "exit_energy_j"})),
        ranges=ranges,
    )


def _jetson_states(
    idle_w: float,
    *,
    gated_saving_w: float,
    gated_range_w: tuple[float, float],
    sc7_w: float,
    sc7_range_w: tuple[float, float],
    sc7_source: str,
) -> tuple[PowerStateSpec, ...]:
    """Deep idle (GPU rail-gated), suspended (SC7) and off for a Jetson idling at `idle_w`."""
    deep_w = round(idle_w - gated_saving_w, 6)
    deep_lo, deep_hi = round(idle_w - gated_range_w[1], 6), round(idle_w - gated_range_w[0], 6)
    return (
        _state(
            PowerState.DEEP_IDLE,
            idle_w,
            deep_w,
            0.5,
            0.05,
            {
                "board_power_w": f"assumed: idle minus {gated_saving_w:g} W for the gated GPU rail and CPU/EMC floors",
                "entry_s": _RAILGATE,
                "exit_s": _UNGATE,
            },
            {"board_power_w": (deep_lo, deep_hi), "exit_s": (0.01, 0.2)},
        ),
        _state(
            PowerState.SUSPENDED,
            idle_w,
            sc7_w,
            1.0,
            2.0,
            {"board_power_w": sc7_source, "state": _SC7, "entry_s": _SC7_ENTRY, "exit_s": _SC7_RESUME},
            {"board_power_w": sc7_range_w, "entry_s": (0.5, 3.0), "exit_s": (0.5, 10.0)},
        ),
        _state(
            PowerState.OFF,
            idle_w,
            0.1,
            10.0,
            45.0,
            {"board_power_w": _OFF_W, "entry_s": _SHUTDOWN, "exit_s": _BOOT},
            {"board_power_w": (0.0, 0.5), "entry_s": (5.0, 30.0), "exit_s": (20.0, 90.0)},
        ),
    )


_LOUDVA = "LoudVA gpu_specs.csv / Profiling.csv (../shared/data/loudva)"

CATALOGUE: dict[str, DeviceKind] = {
    k.key: k
    for k in [
        DeviceKind(
            key="jetson-nano",
            display_name="Jetson Nano 4GB",
            # 76.8 MHz is in gpu_specs.csv (min) but was not swept; the rest are the swept values.
            freqs_hz=_mhz(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6, 614.4, 691.2, 768.0, 844.8, 921.6),
            idle_power_w=1.0,
            power_states=_jetson_states(
                1.0,
                gated_saving_w=0.1,
                gated_range_w=(0.05, 0.3),
                sc7_w=0.3,
                sc7_range_w=(0.15, 0.6),
                sc7_source=_XAVIER_SC7,
            ),
            freq_change_delay_s=0.65,
            memory_gb=4,
            max_batch=13,
            gpu_cores=128,
            mem_bandwidth_gbps=25.6,
            arch="maxwell",
            sources={
                "freqs_hz": _LOUDVA,
                "idle_power_w": "LoudVA logs, POM_5V_IN at idle",
                "freq_change_delay_s": "LoudVA scheduler constant",
                "max_batch": "largest batch swept in LoudVA Profiling.csv",
                "specs": "LoudVA gpu_specs.csv",
            },
        ),
        DeviceKind(
            key="xavier-nx",
            display_name="Jetson Xavier NX",
            freqs_hz=_mhz(
                114.75,
                204.0,
                306.0,
                408.0,
                510.0,
                599.25,
                701.25,
                752.25,
                803.25,
                854.25,
                905.25,
                956.25,
                1007.25,
                1058.25,
                1109.25,
            ),
            idle_power_w=2.4,
            power_states=_jetson_states(
                2.4,
                gated_saving_w=0.3,
                gated_range_w=(0.15, 0.6),
                sc7_w=0.6,
                sc7_range_w=(0.3, 1.2),
                sc7_source=_XAVIER_SC7,
            ),
            freq_change_delay_s=0.8,
            memory_gb=8,
            max_batch=18,
            gpu_cores=384,
            mem_bandwidth_gbps=51.2,
            arch="volta",
            tensor_cores=48,
            sources={
                "freqs_hz": _LOUDVA,
                "idle_power_w": "LoudVA logs, VDD_IN at idle",
                "freq_change_delay_s": "LoudVA scheduler constant",
                "max_batch": "largest batch swept in LoudVA Profiling.csv",
                "specs": "LoudVA gpu_specs.csv",
            },
        ),
        DeviceKind(
            key="agx-xavier",
            display_name="Jetson AGX Xavier",
            freqs_hz=_mhz(
                114.75,
                216.75,
                318.75,
                420.75,
                522.75,
                624.75,
                675.75,
                828.75,
                905.25,
                1032.75,
                1198.5,
                1236.75,
                1338.75,
                1377.0,
            ),
            idle_power_w=5.9,
            power_states=_jetson_states(
                5.9,
                gated_saving_w=0.6,
                gated_range_w=(0.3, 1.2),
                sc7_w=1.0,
                sc7_range_w=(0.5, 2.0),
                sc7_source=_XAVIER_SC7,
            ),
            freq_change_delay_s=0.56,
            memory_gb=32,
            max_batch=128,
            gpu_cores=512,
            mem_bandwidth_gbps=137.0,
            arch="volta",
            tensor_cores=64,
            sources={
                "freqs_hz": _LOUDVA,
                "idle_power_w": "LoudVA logs, sum of rails at idle",
                "freq_change_delay_s": "LoudVA scheduler constant",
                "max_batch": "largest batch swept in LoudVA Profiling.csv",
                "specs": "LoudVA gpu_specs.csv",
            },
        ),
        DeviceKind(
            key="orin-nano",
            display_name="Jetson Orin Nano 8GB",
            freqs_hz=_mhz(306.0, 408.0, 510.0, 624.75),
            idle_power_w=3.5,
            power_states=_jetson_states(
                3.5,
                gated_saving_w=0.4,
                gated_range_w=(0.2, 0.8),
                sc7_w=1.0,
                sc7_range_w=(0.7, 1.5),
                sc7_source=_ORIN_SC7,
            ),
            freq_change_delay_s=0.6,
            memory_gb=8,
            max_batch=32,
            gpu_cores=1024,
            mem_bandwidth_gbps=68.0,
            arch="ampere",
            tensor_cores=32,
            sources={
                "freqs_hz": "JetPack 5 devfreq available_frequencies (15 W mode; 1020 MHz 'super' mode not listed)",
                "idle_power_w": "estimate from NVIDIA Jetson Orin Nano data sheet power budget; not measured here",
                "freq_change_delay_s": "assumed like Xavier (LoudVA); not measured",
                "specs": "NVIDIA Jetson Orin Nano series data sheet",
                "max_batch": "memory-bound estimate for 224x224 CNNs",
            },
        ),
        DeviceKind(
            key="orin-nx",
            display_name="Jetson Orin NX 16GB",
            freqs_hz=_mhz(306.0, 408.0, 510.0, 612.0, 714.0, 816.0, 918.0),
            idle_power_w=4.0,
            power_states=_jetson_states(
                4.0,
                gated_saving_w=0.5,
                gated_range_w=(0.25, 1.0),
                sc7_w=1.0,
                sc7_range_w=(0.7, 1.5),
                sc7_source=_ORIN_SC7,
            ),
            freq_change_delay_s=0.6,
            memory_gb=16,
            max_batch=64,
            gpu_cores=1024,
            mem_bandwidth_gbps=102.4,
            arch="ampere",
            tensor_cores=32,
            sources={
                "freqs_hz": "JetPack 5 devfreq available_frequencies (25 W mode)",
                "idle_power_w": "estimate from NVIDIA Jetson Orin NX data sheet; not measured here",
                "freq_change_delay_s": "assumed like Xavier (LoudVA); not measured",
                "specs": "NVIDIA Jetson Orin NX series data sheet",
                "max_batch": "memory-bound estimate for 224x224 CNNs",
            },
        ),
        DeviceKind(
            key="agx-orin",
            display_name="Jetson AGX Orin 64GB",
            freqs_hz=_mhz(306.0, 408.0, 510.0, 612.0, 714.0, 816.0, 918.0, 1020.0, 1122.0, 1224.0, 1300.5),
            idle_power_w=7.0,
            power_states=_jetson_states(
                7.0,
                gated_saving_w=0.8,
                gated_range_w=(0.4, 1.6),
                sc7_w=1.5,
                sc7_range_w=(1.0, 3.0),
                sc7_source=_AGX_ORIN_SC7,
            ),
            freq_change_delay_s=0.6,
            memory_gb=64,
            max_batch=128,
            gpu_cores=2048,
            mem_bandwidth_gbps=204.8,
            arch="ampere",
            tensor_cores=64,
            sources={
                "freqs_hz": "JetPack 5 devfreq available_frequencies (MAXN)",
                "idle_power_w": "estimate from NVIDIA Jetson AGX Orin data sheet; not measured here",
                "freq_change_delay_s": "assumed like Xavier (LoudVA); not measured",
                "specs": "NVIDIA Jetson AGX Orin series data sheet",
                "max_batch": "as AGX Xavier",
            },
        ),
        DeviceKind(
            key="cuda-gpu",
            display_name="Generic CUDA GPU (data-centre class)",
            # A representative NVML supported-clocks ladder; the live NVML controller reads the real list.
            freqs_hz=_mhz(345.0, 540.0, 705.0, 900.0, 1095.0, 1290.0, 1485.0, 1680.0, 1875.0, 1980.0),
            idle_power_w=60.0,
            freq_change_delay_s=0.05,
            memory_gb=80,
            max_batch=256,
            gpu_cores=16896,
            mem_bandwidth_gbps=3350.0,
            arch="hopper",
            tensor_cores=528,
            sources={
                "freqs_hz": "representative NVML supported graphics clocks; replaced by the device's own list live",
                "idle_power_w": "typical NVML idle draw of an H100 SXM; not measured here",
                "freq_change_delay_s": "NVML locked clocks apply within tens of ms; assumed",
                "specs": "NVIDIA H100 SXM data sheet",
                "max_batch": "assumed",
            },
        ),
        DeviceKind(
            key="cpu",
            display_name="CPU (no DVFS control)",
            freqs_hz=_mhz(2400.0),
            idle_power_w=10.0,
            freq_change_delay_s=0.0,
            memory_gb=16,
            max_batch=16,
            gpu_cores=0,
            mem_bandwidth_gbps=25.0,
            arch="cpu",
            has_dvfs=False,
            sources={
                "freqs_hz": "nominal; jetfleet does not change CPU frequency",
                "idle_power_w": "assumed package idle power",
                "specs": "assumed 4-core desktop-class CPU",
                "max_batch": "assumed",
            },
        ),
    ]
}

# Names used in LoudVA's files for the three measured kinds.
LOUDVA_NAMES: dict[str, str] = {"AGX": "agx-xavier", "NX": "xavier-nx", "Nano": "jetson-nano"}


def get_kind(key: str) -> DeviceKind:
    """Look a device kind up by catalogue key; raise UnknownNameError naming the known ones."""
    try:
        return CATALOGUE[key]
    except KeyError:
        raise UnknownNameError("device kind", key, CATALOGUE) from None
