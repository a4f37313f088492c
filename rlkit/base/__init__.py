"""The foundation every other layer stands on: user errors, typed configs and their YAML,
atomic file writes, the device, and process settings (threads, malloc). Imports nothing of
rlkit."""
