"""MLP building blocks: `mlp`, `QNetwork` (regressor over actions), `PolicyNetwork` (classifier)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical

from rlkit.base.config import Config, check_choice, require
from rlkit.math.gaussian import LOG_STD_MAX, LOG_STD_MIN
from rlkit.math.policy_gradient import CategoricalLogits, DiagonalGaussian
from rlkit.nn.encoders import ENCODERS

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}
INITS = ("orthogonal", "kaiming", "torch_default")


def _gain(activation: str) -> float:
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", 0.01)
    return nn.init.calculate_gain(activation)


def _init_linear(layer: nn.Linear, init: str, gain: float) -> None:
    # Variance-preserving initialisation (notes 001, 004): each layer's pre-activations keep
    # roughly the scale of its inputs, so gradients neither vanish nor explode at the start.
    if init == "torch_default":
        return
    if init == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=gain)
    elif init == "kaiming":
        nn.init.normal_(layer.weight, mean=0.0, std=gain / math.sqrt(layer.in_features))
    else:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    nn.init.zeros_(layer.bias)


def mlp_trunk(
    in_features: int,
    hidden_sizes: Sequence[int],
    activation: str = "relu",
    init: str = "orthogonal",
    gain: float | None = None,
) -> nn.Sequential:
    """Hidden layers only: Linear + activation for each size in `hidden_sizes`, initialised
    with `gain` (None: the activation's own, torch's calculate_gain)."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        linear = nn.Linear(width, size)
        _init_linear(linear, init, _gain(activation) if gain is None else gain)
        layers += [linear, ACTIVATIONS[activation]()]
        width = size
    return nn.Sequential(*layers)


def trunk_width(in_features: int, hidden_sizes: Sequence[int]) -> int:
    """The width of what `mlp_trunk` puts out: its last hidden layer, or its input when it has
    none (heads straight on a CNN's features)."""
    return hidden_sizes[-1] if len(hidden_sizes) else in_features


def linear_head(in_features: int, out_features: int, init: str, gain: float) -> nn.Linear:
    head = nn.Linear(in_features, out_features)
    _init_linear(head, init, gain)
    return head


def mlp(
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int,
    activation: str = "relu",
    init: str = "orthogonal",
    output_gain: float = 1.0,
    gain: float | None = None,
) -> nn.Sequential:
    """Linear layers with `activation` between them and none after the last one.

    Hidden layers are initialised with `gain` (None: the gain of their activation); the output
    layer with `output_gain` (small values such as 0.01 start a policy near uniform).
    """
    trunk = mlp_trunk(in_features, hidden_sizes, activation, init, gain)
    width = trunk_width(in_features, hidden_sizes)
    return nn.Sequential(*trunk, linear_head(width, out_features, init, output_gain))


def dueling_aggregate(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Q = V + A - mean_a A (Wang et al. 2016): subtracting the mean advantage makes V and A
    identifiable (otherwise any constant could move between them) without changing argmax Q."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


class QNetwork(nn.Module):
    """MLP regressor: observation batch (B, obs_dim) -> Q(s, a) for every action, (B, n_actions).

    With `dueling`, the hidden layers feed two linear streams, a state value V(s) and action
    advantages A(s, a), combined by `dueling_aggregate`; the interface stays the same.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        init: str = "orthogonal",
        dueling: bool = False,
        gain: float | None = None,
        encoder: nn.Module | None = None,
    ) -> None:
        """`encoder`: a module (rlkit.nn.encoders) that turns observations into `obs_dim`
        features before the hidden layers (a CNN on frames); None reads vectors as they are."""
        super().__init__()
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.dueling = dueling
        self.encoder = encoder
        if dueling:
            self.trunk = mlp_trunk(obs_dim, hidden_sizes, activation, init, gain)
            width = trunk_width(obs_dim, hidden_sizes)
            self.value_head = linear_head(width, 1, init, 1.0)
            self.advantage_head = linear_head(width, n_actions, init, 1.0)
        else:
            self.net = mlp(obs_dim, hidden_sizes, n_actions, activation, init, 1.0, gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            obs = self.encoder(obs)
        if not self.dueling:
            return self.net(obs)
        features = self.trunk(obs)
        return dueling_aggregate(self.value_head(features), self.advantage_head(features))


def output_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The critics' output layer, x @ weight + bias: (c, B, in) x (c, in, out) -> (c, B, out),
    computed transposed, as (c, out, in) x (c, in, B). torch's batched CPU product is several
    times slower when its result has one column than when it has one row (88 against 26 us for
    the critics' 2 x 256 x 256 -> 1 output layer with its bias, on a 2-core AMD EPYC Zen 3;
    benchmarks/narrow_products.py)."""
    row = torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), x.transpose(1, 2))
    return row.transpose(1, 2)


class TwinQNetwork(nn.Module):
    """Two MLP regressors over Q(s, a), the action an input next to the observation (the
    critics of SAC and TD3): (obs (B, obs_dim), actions (B, action_dim)) -> (Q1, Q2), each (B,).
    Two independent estimates, so that the target can take the smaller one (clipped double Q).

    Each layer holds both critics' weights as one stack, (2, in, out), and computes both with one
    batched product (torch.baddbmm): the arithmetic of two `mlp`s (they are built as two `mlp`s
    and stacked, so their initialisation is `mlp`'s; tests/test_networks.py checks the values
    and gradients against them) at half the operator calls, which on CPU cost as much as the
    products at these sizes."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        network: NetworkConfig,
        encoder: nn.Module | None = None,
    ) -> None:
        """`encoder`: a module (rlkit.nn.encoders, a CNN on frames) that both critics read
        first, as SB3's ContinuousCritic shares its features extractor; its `.features` is then
        `obs_dim`. None reads vectors as they are."""
        super().__init__()
        self.encoder = encoder
        shape = (network.hidden_sizes, 1, network.activation, network.init, 1.0, network.gain)
        critics = [mlp(obs_dim + action_dim, *shape) for _ in range(2)]
        layers = [[m for m in critic if isinstance(m, nn.Linear)] for critic in critics]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([a.weight.detach().T, b.weight.detach().T]))
            for a, b in zip(*layers, strict=True)
        )  # (2, in, out) per layer
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([a.bias.detach(), b.bias.detach()]).unsqueeze(1))
            for a, b in zip(*layers, strict=True)
        )  # (2, 1, out) per layer
        self.activation = ACTIVATIONS[network.activation]()

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.encoder is not None:
            obs = self.encoder(obs)
        q = self._stacked(obs, actions, list(self.weights), list(self.biases))
        return q[0], q[1]

    def frozen(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(Q1, Q2) with the weights held fixed: gradients reach obs and actions only (the
        actor's term of SAC climbs Q through the action; the critics move by their own loss)."""
        weights = [w.detach() for w in self.weights]
        q = self._stacked(self._frozen_features(obs), actions, weights, self._frozen_biases())
        return q[0], q[1]

    def frozen_q1(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q1 alone with its weights held fixed (TD3's actor term): the first of the stack."""
        weights = [w[:1].detach() for w in self.weights]
        biases = [b[:1] for b in self._frozen_biases()]
        return self._stacked(self._frozen_features(obs), actions, weights, biases)[0]

    def _frozen_biases(self) -> list[torch.Tensor]:
        return [b.detach() for b in self.biases]

    def _frozen_features(self, obs: torch.Tensor) -> torch.Tensor:
        """The encoder's features with its weights held fixed too (the actor's term reaches
        the critics through the action only)."""
        if self.encoder is None:
            return obs
        with torch.no_grad():
            return self.encoder(obs)

    def _stacked(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
    ) -> torch.Tensor:
        """The critics whose (n, in, out) weights are given, n of them at once: (n, B)."""
        x = torch.cat((obs, actions), dim=1).expand(len(weights[0]), -1, -1)
        last = len(weights) - 1
        for w, b in zip(weights[:last], biases[:last], strict=True):
            x = self.activation(torch.baddbmm(b, x, w))
        return output_layer(x, weights[last], biases[last]).squeeze(2)


class SquashedGaussianPolicy(nn.Module):
    """MLP: observation batch -> (mean, log std) of a Gaussian over pre-squash actions u, with
    a = tanh(u) in (-1, 1) (SAC's actor; rlkit.math.gaussian samples it). The log std comes from
    the network, clamped to [LOG_STD_MIN, LOG_STD_MAX]."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        network: NetworkConfig,
        encoder: nn.Module | None = None,
    ) -> None:
        """`encoder`: a module (rlkit.nn.encoders, a CNN on frames) read first; its
        `.features` is then `obs_dim`. None reads vectors as they are."""
        super().__init__()
        net = network
        self.encoder = encoder
        self.trunk = mlp_trunk(obs_dim, net.hidden_sizes, net.activation, net.init, net.gain)
        width = trunk_width(obs_dim, net.hidden_sizes)
        self.mean = linear_head(width, action_dim, net.init, 1.0)
        self.log_std = linear_head(width, action_dim, net.init, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.encoder is not None:
            obs = self.encoder(obs)
        features = self.trunk(obs)
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean(features), log_std


class DeterministicPolicy(nn.Module):
    """MLP: observation batch -> one action in (-1, 1) per dimension, tanh of the last layer
    (TD3's actor; the agent scales it to the env's bounds)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        network: NetworkConfig,
        encoder: nn.Module | None = None,
    ) -> None:
        """`encoder`: as SquashedGaussianPolicy's."""
        super().__init__()
        net = network
        self.encoder = encoder
        self.net = mlp(
            obs_dim, net.hidden_sizes, action_dim, net.activation, net.init, 1.0, net.gain
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            obs = self.encoder(obs)
        return torch.tanh(self.net(obs))


class PolicyNetwork(nn.Module):
    """MLP classifier: observation batch -> categorical distribution over discrete actions."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init: str = "orthogonal",
        gain: float | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        # A small output gain makes the initial policy close to uniform: maximal exploration.
        self.net = mlp(obs_dim, hidden_sizes, n_actions, activation, init, 0.01, gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-probabilities (logits), (B, n_actions)."""
        return self.net(obs)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.forward(obs))

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        logits = self.forward(obs)
        if deterministic:
            return logits.argmax(dim=-1)
        return Categorical(logits=logits).sample()


class PolicyHeads:
    """What a policy-gradient network's policy head means, shared by ActorCritic and the
    recurrent one: logits of a categorical, or (`continuous`) the mean of a diagonal Gaussian
    with the learned state-independent `log_std`."""

    continuous: bool
    log_std: nn.Parameter

    def policy_scalars(self) -> dict[str, float]:
        """What to log about the policy beyond the losses: the Gaussian's mean std."""
        if not self.continuous:
            return {}
        return {"train/action_std": float(self.log_std.detach().exp().mean())}

    def distribution(self, head: torch.Tensor) -> CategoricalLogits | DiagonalGaussian:
        """The action distribution for the policy head's output (`forward`'s first item)."""
        if self.continuous:
            return DiagonalGaussian(head, self.log_std)
        return CategoricalLogits(head)


class ActorCritic(PolicyHeads, nn.Module):
    """A policy and a state-value function V(s) for policy-gradient agents: two separate MLPs
    by default, or one shared trunk with two linear heads. The policy head gives logits of a
    categorical over discrete actions or, if `continuous`, the mean of a diagonal Gaussian
    over action dimensions with a state-independent learned log std (`distribution`)."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init: str = "orthogonal",
        shared: bool = False,
        gain: float | None = None,
        continuous: bool = False,
        log_std_init: float = 0.0,
        encoder: nn.Module | None = None,
        value_encoder: nn.Module | None = None,
    ) -> None:
        """`encoder`: a module (rlkit.nn.encoders, a CNN on frames) that both the policy and
        the value read first, as SB3's CnnPolicy and CleanRL's ppo_atari share theirs; its
        `.features` is then `obs_dim`. None reads vectors as they are. `value_encoder`: the
        value's own (SB3's share_features_extractor=False); `encoder` is then the policy's."""
        super().__init__()
        if value_encoder is not None and (encoder is None or shared):
            raise ValueError("a value encoder needs a policy encoder and no shared trunk")
        self.shared = shared
        self.continuous = continuous
        self.encoder = encoder
        self.value_encoder = value_encoder
        if continuous:  # n_actions: action dimensions
            self.log_std = nn.Parameter(torch.full((n_actions,), float(log_std_init)))
        if shared:
            width = trunk_width(obs_dim, hidden_sizes)
            self.trunk = mlp_trunk(obs_dim, hidden_sizes, activation, init, gain)
            self.policy_head = linear_head(width, n_actions, init, 0.01)
            self.value_head = linear_head(width, 1, init, 1.0)
        else:
            self.policy = PolicyNetwork(obs_dim, n_actions, hidden_sizes, activation, init, gain)
            self.value = mlp(obs_dim, hidden_sizes, 1, activation, init, 1.0, gain)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, n_actions), values (B,))."""
        if self.value_encoder is not None:
            return self.policy(self.encoder(obs)), self.value(self.value_encoder(obs)).squeeze(-1)
        if self.encoder is not None:
            obs = self.encoder(obs)
        if self.shared:
            features = self.trunk(obs)
            return self.policy_head(features), self.value_head(features).squeeze(-1)
        return self.policy(obs), self.value(obs).squeeze(-1)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        if self.value_encoder is not None:
            return self.value(self.value_encoder(obs)).squeeze(-1)
        if self.encoder is not None:
            obs = self.encoder(obs)
        if self.shared:
            return self.value_head(self.trunk(obs)).squeeze(-1)
        return self.value(obs).squeeze(-1)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy head: logits, or the Gaussian's mean for continuous actions."""
        if self.encoder is not None:
            obs = self.encoder(obs)
        if self.shared:
            return self.policy_head(self.trunk(obs))
        return self.policy(obs)


@dataclasses.dataclass
class NetworkConfig(Config):
    hidden_sizes: list[int] = dataclasses.field(default_factory=lambda: [64, 64])
    """Width of each hidden layer, input to output."""
    activation: str = "relu"
    """Hidden-layer nonlinearity: relu, tanh, sigmoid or leaky_relu."""
    init: str = "orthogonal"
    """Weight initialisation: orthogonal, kaiming (scaled normal) or torch_default."""
    gain: float | None = None
    """Scale of the hidden layers' initial weights (null: the activation's gain, 5/3 for tanh
    and sqrt(2) for relu; SB3 and CleanRL initialise PPO's tanh layers with sqrt(2))."""
    dueling: bool = False
    """Q-networks only: separate value and advantage streams, Q = V + A - mean(A)."""
    encoder: str = "auto"
    """What reads the observation before the hidden layers (rlkit.nn.encoders): auto (a CNN
    for image frames and for Dict keys that are frames; the vector as it is otherwise), mlp
    (frames flattened), nature_cnn (Atari-sized frames) or minatar_cnn (small grids)."""
    shared: bool = False
    """Actor-critic only: one trunk for policy and value (two heads) instead of two MLPs."""
    share_encoder: bool = True
    """With a CNN: policy and value read one encoder (SB3's CnnPolicy, CleanRL's Atari agent);
    SAC's and TD3's actor reads the critics' without training it (DrQ). false gives the value,
    or the actor, its own (SB3's share_features_extractor=False)."""

    def validate(self) -> None:
        require(
            len(self.hidden_sizes) >= 1 or self.encoder != "mlp",
            "network.hidden_sizes needs at least one layer ([] only on a CNN's features)",
        )
        for size in self.hidden_sizes:
            require(size >= 1, f"network.hidden_sizes must be positive, got {self.hidden_sizes}")
        check_choice("network.activation", self.activation, list(ACTIVATIONS))
        check_choice("network.init", self.init, list(INITS))
        check_choice("network.encoder", self.encoder, list(ENCODERS))
        require(
            self.share_encoder or not self.shared,
            "network.share_encoder false gives the value its own CNN, network.shared true "
            "makes policy and value one trunk; choose one",
        )
        if self.gain is not None:
            require(
                math.isfinite(self.gain) and self.gain > 0,
                f"network.gain must be > 0 or null, got {self.gain}",
            )
