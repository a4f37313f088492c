"""rlkit: a PyTorch toolkit for deep reinforcement learning agents (the shared core)."""

__version__ = "0.1.0"
