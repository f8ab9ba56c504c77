"""Command line, launchers, experiment presets and cluster launch files."""
