"""numpy's BLAS runs on one thread while an agent trains and evaluates (rlkit.base.threads): its
pool would otherwise spin against torch's threads on the same cores."""

import numpy as np  # noqa: F401  (numpy's BLAS loaded)
import threadpoolctl
import torch

import agents


def _numpy_blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def test_numpy_blas_is_single_threaded_inside_learn_and_evaluate_only():
    assert _numpy_blas_threads(), "numpy's BLAS not found"
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as a user's would be
        torch_threads = torch.get_num_threads()
        agent = agents.DQN(env="CartPole-v1", learning_starts=50, batch_size=16,
                           network={"hidden_sizes": [16]})  # fmt: skip
        inside: list[list[int]] = []
        agent.learn(200, callback=lambda a: inside.append(_numpy_blas_threads()),
                    callback_interval=50)  # fmt: skip
        assert inside and all(threads == [1] * len(threads) for threads in inside), inside
        assert torch.get_num_threads() == torch_threads  # torch's own pool untouched
        assert _numpy_blas_threads() == [2] * len(_numpy_blas_threads())  # restored after

        seen = []
        policy = agent._greedy_policy()

        def watching(obs):
            seen.append(_numpy_blas_threads())
            return policy(obs)

        agent._greedy_policy = lambda: watching
        agent.evaluate(2)
        assert seen and all(threads == [1] * len(threads) for threads in seen)
        assert _numpy_blas_threads() == [2] * len(_numpy_blas_threads())
