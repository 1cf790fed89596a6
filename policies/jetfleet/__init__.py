"""`jetfleet`: the project's own scheduling policy, split by concept.

config       JetfleetConfig, the knobs
objective    what a plan minimises (Objective; EnergyPerFrame by default, LatencyFirst)
candidates   the requests one decision plans for
groups       interchangeable devices and which of them plans
guard        room for the tightest request that may arrive
parking      idle devices to their lowest-idle-power clock
step         one decision's working state
power        sleep states: consolidation and napping (PowerConfig, PowerPlanner)
policy       JetfleetPolicy, which puts them together (see its docstring for the algorithm)
"""

from policies.jetfleet.config import JetfleetConfig, LateMode
from policies.jetfleet.groups import DeviceGroup
from policies.jetfleet.objective import EnergyPerFrame, LatencyFirst, Objective
from policies.jetfleet.policy import JetfleetPolicy
from policies.jetfleet.power import PowerConfig
from policies.jetfleet.step import Step

__all__ = [
    "DeviceGroup",
    "EnergyPerFrame",
    "JetfleetConfig",
    "JetfleetPolicy",
    "LatencyFirst",
    "LateMode",
    "Objective",
    "PowerConfig",
    "Step",
]
