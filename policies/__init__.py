"""Pure scheduling logic: no Ray, no clock, no I/O.

A policy sees `now_s`, the queue, the device states and a cost model, and returns `Decisions`.
`SchedulerCore` applies those decisions the same way for the simulator and the live scheduler actor.
"""
