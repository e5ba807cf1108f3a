"""durapod's own actors: the job actor, the lease keeper and the scheduler (built on durapod.lowlevel)."""
