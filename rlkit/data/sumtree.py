"""A sum tree on tensors: proportional sampling and priority updates in O(log n), batched.

Leaves hold priorities; each inner node holds the sum of its two children, so the root is the
total. Node 1 is the root, node k has children 2k and 2k+1, leaves are nodes
[capacity, 2 capacity). A batch of updates or samples walks the log2(capacity) levels once, as a
few tensor operations per level, on whatever device the tree lives on.
"""

from __future__ import annotations

import torch


class SumTree:
    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = 1 << max(int(capacity) - 1, 0).bit_length()  # next power of two
        self.depth = self.capacity.bit_length() - 1
        self.device = torch.device(device)
        # float64: sums of many small priorities stay exact enough to sample by.
        self.nodes = torch.zeros(2 * self.capacity, dtype=torch.float64, device=self.device)

    @property
    def total(self) -> torch.Tensor:
        return self.nodes[1]

    def priorities(self, indices: torch.Tensor) -> torch.Tensor:
        return self.nodes[indices + self.capacity]

    def update(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set the leaves `indices` to `priorities` and refresh their ancestors."""
        nodes = indices.to(self.device, torch.int64) + self.capacity
        self.nodes[nodes] = priorities.to(self.device, torch.float64)
        for _ in range(self.depth):
            # Repeated parents are harmless: every copy writes the same sum of the same children.
            nodes = nodes // 2
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """Leaf index for each cumulative `mass` in [0, total): the prefix-sum search."""
        mass = mass.to(self.device, torch.float64).clone()
        nodes = torch.ones_like(mass, dtype=torch.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * nodes]
            go_right = mass >= left
            mass = torch.where(go_right, mass - left, mass)
            nodes = 2 * nodes + go_right.long()
        return nodes - self.capacity

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`batch_size` leaves, each with probability priority / total, stratified: the total
        mass is cut into equal segments and one point drawn uniformly in each."""
        total = self.total
        u = torch.rand(batch_size, dtype=torch.float64, device=self.device, generator=generator)
        mass = (torch.arange(batch_size, device=self.device, dtype=torch.float64) + u) * (
            total / batch_size
        )
        leaves = self.find(mass.clamp(max=total * (1 - 1e-12)))
        return leaves
