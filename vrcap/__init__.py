"""vrcap: the contract every part shares — session format, clock, config — and the `vrcap` command."""

__version__ = "0.1.0"
