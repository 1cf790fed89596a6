"""Ray actors: the scheduler actor and the device actors, with engines, DVFS and power meters."""
