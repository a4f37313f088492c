"""Experience: the replay buffers (uniform and prioritized, with their sum tree), the n-step
and Monte Carlo collectors, and the on-policy rollout storage."""
