"""The faust app, its topics and records, the agents and the pure rule core."""
