"""Networks: the MLPs (Q-networks, policies, twin critics, actor-critics), observation
normalization, and the written-out gradients of the DQN, PPO, SAC and TD3 updates (checked
against autograd in the tests)."""
