"""How a run starts: the local launcher, the serial in-process loop, presets."""
