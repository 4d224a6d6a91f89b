"""Simulators: pretend to be mall hardware and tills, speaking what the real ones speak."""
