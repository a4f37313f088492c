"""The math of reinforcement learning as pure functions of tensors and arrays: TD targets,
regression losses, policy-gradient terms (GAE, the PPO loss, distributions), Gaussian
policies, schedules and statistics over seeds. Tested directly; no state, no I/O."""
