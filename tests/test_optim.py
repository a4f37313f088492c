"""rlkit.optim against torch.optim: same trajectories, torch's conventions, clear errors."""

import copy
import io
import math

import pytest
import torch

import rlkit.optim as ro
from rlkit.nn.networks import mlp

CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"momentum": 0.9, "dampening": 0.9}),  # notes 002: momentum with (1 - beta)
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"weight_decay": 1e-2, "maximize": True}),
    ("adagrad", {}),
    ("adagrad", {"lr_decay": 1e-2, "initial_accumulator_value": 0.1}),
    ("adagrad", {"weight_decay": 1e-2, "eps": 1e-6}),
    ("adagrad", {"maximize": True}),
    ("rmsprop", {}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"centered": True, "momentum": 0.9, "weight_decay": 1e-2}),
    ("rmsprop", {"alpha": 0.9, "eps": 1e-6, "maximize": True}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("adam", {"weight_decay": 1e-2}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam", {"amsgrad": True, "weight_decay": 1e-2, "maximize": True}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.1, "amsgrad": True}),
    ("adamw", {"maximize": True}),
    ("nadam", {}),
    ("nadam", {"momentum_decay": 1e-2}),
    ("nadam", {"weight_decay": 1e-2}),
    ("nadam", {"weight_decay": 1e-2, "decoupled_weight_decay": True}),
    ("nadam", {"betas": (0.8, 0.99), "maximize": True}),
]
LR = {"sgd": 1e-2, "adagrad": 1e-2, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3}
# rlkit's Adam and AdamW run torch's fused kernel by default (fused=False: the update written
# out op by op); torch's counterpart is then its fused Adam.
TORCH_TWIN = {"adam": {"fused": True}, "adamw": {"fused": True}}


def _problem(dtype, seed=0):
    """A small MLP regression: a fixed batch, so both optimizers see identical gradients."""
    torch.manual_seed(seed)
    net = mlp(5, [16, 16], 3, activation="tanh").to(dtype)
    x = torch.randn(64, 5, dtype=dtype)
    y = torch.sin(x[:, :3]) + 0.1 * torch.randn(64, 3, dtype=dtype)
    return net, x, y


def _train(net, optimizer, x, y, steps, maximize=False):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (net(x) - y).square().mean()
        (-loss if maximize else loss).backward()
        optimizer.step()


def _max_relative_difference(a, b):
    return max(
        ((pa - pb).abs().max() / pb.abs().max().clamp_min(1e-30)).item()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True)
    )


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_same_trajectory_as_torch(name, options, dtype, tolerance):
    ours, x, y = _problem(dtype)
    theirs = copy.deepcopy(ours)
    opt_ours = ro.OPTIMIZERS[name](ours.parameters(), lr=LR[name], **options)
    opt_theirs = ro.OPTIMIZERS[f"torch.{name}"](
        theirs.parameters(), lr=LR[name], **options, **TORCH_TWIN.get(name, {})
    )
    # A loss that goes up under maximize would diverge; maximise its negative instead.
    maximize = options.get("maximize", False)
    _train(ours, opt_ours, x, y, 200, maximize)
    _train(theirs, opt_theirs, x, y, 200, maximize)
    assert _max_relative_difference(ours, theirs) <= tolerance
    # The trajectory really moved (a test that cannot fail is no test).
    start, _, _ = _problem(dtype)
    assert _max_relative_difference(ours, start) > 1e-3


ADAM_CASES = [(n, o) for n, o in CASES if n in ("adam", "adamw")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("name", "options"), ADAM_CASES, ids=[f"{n}-{o}" for n, o in ADAM_CASES])
def test_adam_fused_and_written_out_paths(name, options, dtype):
    # Default (fused kernel) is torch's fused Adam to the bit; fused=False, the update written
    # out, is torch's single-tensor Adam to the bit; the two agree to rounding.
    start, x, y = _problem(dtype)
    maximize = options.get("maximize", False)
    nets = {}
    for key, cls, extra in (
        ("ours_fused", ro.OPTIMIZERS[name], {}),
        ("torch_fused", ro.OPTIMIZERS[f"torch.{name}"], {"fused": True}),
        ("ours_written", ro.OPTIMIZERS[name], {"fused": False}),
        ("torch_single", ro.OPTIMIZERS[f"torch.{name}"], {"foreach": False}),
    ):
        net = copy.deepcopy(start)
        _train(net, cls(net.parameters(), lr=LR[name], **options, **extra), x, y, 300, maximize)
        nets[key] = net

    def equal(a, b):
        return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))

    assert equal(nets["ours_fused"], nets["torch_fused"])
    assert equal(nets["ours_written"], nets["torch_single"])
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert _max_relative_difference(nets["ours_fused"], nets["ours_written"]) <= tolerance
    assert _max_relative_difference(nets["ours_fused"], start) > 1e-3


@pytest.mark.parametrize(
    ("name", "options", "in_place"),
    [
        ("adam", {}, True),
        ("adam", {"weight_decay": 1e-2, "amsgrad": True}, True),
        ("adamw", {"weight_decay": 0.1}, True),
        ("adam", {"maximize": True}, False),  # the gradient is negated first: a copy
        ("adam", {"fused": False}, False),  # the written-out update modifies its gradient
        ("sgd", {"momentum": 0.9}, False),
    ],
)
@pytest.mark.parametrize("layout", ["in order", "reversed", "replaced"])
def test_gradients_already_in_one_buffer_are_read_where_they_lie(name, options, in_place, layout):
    # Written-out gradient paths (rlkit.nn.mlp_grad) write the gradients as views of one buffer in
    # the parameters' order; an update that only reads them takes them there, without the copy.
    # The same steps to the bit either way, and param.grad is left as it was.
    start, x, y = _problem(torch.float32)
    nets = {"buffer": copy.deepcopy(start), "tensors": copy.deepcopy(start)}
    opts = {k: ro.OPTIMIZERS[name](n.parameters(), lr=1e-2, **options) for k, n in nets.items()}
    params = list(nets["buffer"].parameters())
    order = params[::-1] if layout == "reversed" else params
    buffer = torch.zeros(sum(p.numel() for p in params))
    views, offset = {}, 0
    for p in order:
        views[p] = buffer[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    for step in range(30):
        for key, net in nets.items():
            opts[key].zero_grad(set_to_none=True)
            loss = (net(x) - y).square().mean()
            (-loss if options.get("maximize") else loss).backward()
        for p in params:  # the same gradient, moved into the shared buffer
            views[p].copy_(p.grad)
            p.grad = views[p]
        if layout == "replaced" and step == 20:  # one step with a gradient of its own
            params[1].grad = params[1].grad * 2.0  # (a stale view would still hold 1x)
            list(nets["tensors"].parameters())[1].grad.mul_(2.0)
        before = buffer.clone()
        for opt in opts.values():
            opt.step()
        assert torch.equal(buffer, before)
    for p, q in zip(nets["buffer"].parameters(), nets["tensors"].parameters(), strict=True):
        assert torch.equal(p, q)
    (bucket,) = opts["buffer"]._buckets[0]
    assert (bucket._in_place_grads is not None) == (in_place and layout != "reversed")
    assert _max_relative_difference(nets["buffer"], start) > 1e-3


def test_fused_option_is_checked():
    params = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="Invalid fused: 'yes'"):
        ro.Adam(params, fused="yes")
    with pytest.raises(RuntimeError, match="fused=True requires float32 or float64"):
        ro.Adam([torch.zeros(3, dtype=torch.float16, requires_grad=True)], fused=True)
    # float16 parameters with the default: the written-out update, no error.
    half = torch.zeros(3, dtype=torch.float16, requires_grad=True)
    half.grad = torch.ones(3, dtype=torch.float16)
    ro.Adam([half], lr=0.1).step()
    assert (half < 0).all()


def test_param_groups_with_their_own_hyperparameters():
    ours, x, y = _problem(torch.float64)
    theirs = copy.deepcopy(ours)

    def groups(net):
        layers = [m for m in net if isinstance(m, torch.nn.Linear)]
        return [
            {"params": layers[0].parameters(), "lr": 1e-2, "betas": (0.8, 0.9)},
            {"params": [*layers[1].parameters(), *layers[2].parameters()], "weight_decay": 0.1},
        ]

    opt_ours = ro.Adam(groups(ours), lr=1e-3)
    opt_theirs = torch.optim.Adam(groups(theirs), lr=1e-3, fused=True)
    assert opt_ours.param_groups[0]["betas"] == (0.8, 0.9)
    assert opt_ours.param_groups[1]["lr"] == 1e-3 and opt_ours.defaults["lr"] == 1e-3
    _train(ours, opt_ours, x, y, 200)
    _train(theirs, opt_theirs, x, y, 200)
    assert _max_relative_difference(ours, theirs) <= 1e-10


def test_add_param_group_later():
    ours, x, y = _problem(torch.float64)
    theirs = copy.deepcopy(ours)
    opts = []
    for net, cls in ((ours, ro.SGD), (theirs, torch.optim.SGD)):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        opt = cls(linears[0].parameters(), lr=1e-2, momentum=0.9)
        opts.append(opt)
    for net, opt in zip((ours, theirs), opts, strict=True):
        _train(net, opt, x, y, 50)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        opt.add_param_group({"params": [*linears[1].parameters(), *linears[2].parameters()]})
        _train(net, opt, x, y, 50)
    assert _max_relative_difference(ours, theirs) <= 1e-10


@pytest.mark.parametrize(("name", "options"), [c for c in CASES if not c[1].get("maximize")][::2])
def test_state_dict_round_trip_continues_bit_for_bit(name, options):
    straight, x, y = _problem(torch.float32)
    resumed = copy.deepcopy(straight)
    opt = ro.OPTIMIZERS[name](straight.parameters(), lr=LR[name], **options)
    _train(straight, opt, x, y, 250)
    # Save mid-training (through bytes, as a checkpoint would), load into fresh objects.
    buffer = io.BytesIO()
    torch.save({"model": straight.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed.load_state_dict(saved["model"])
    fresh = ro.OPTIMIZERS[name](resumed.parameters(), lr=LR[name], **options)
    fresh.load_state_dict(saved["optimizer"])
    _train(straight, opt, x, y, 250)
    _train(resumed, fresh, x, y, 250)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_has_torch_layout_and_loads_into_torch():
    net, x, y = _problem(torch.float64)
    twin = copy.deepcopy(net)
    opt = ro.Adam(net.parameters(), lr=1e-3)
    _train(net, opt, x, y, 10)
    state = opt.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(state["state"][0]["step"]) == 10.0
    assert state["state"][0]["exp_avg"].shape == next(net.parameters()).shape
    torch_opt = torch.optim.Adam(twin.parameters(), lr=1e-3, fused=True)
    twin.load_state_dict(net.state_dict())
    torch_opt.load_state_dict(copy.deepcopy(state))  # like torch's, the state_dict holds references
    _train(net, opt, x, y, 20)
    _train(twin, torch_opt, x, y, 20)
    assert _max_relative_difference(net, twin) <= 1e-12


def test_lr_scheduler_drives_the_learning_rate():
    ours, x, y = _problem(torch.float64)
    theirs = copy.deepcopy(ours)
    runs = []
    for net, cls in ((ours, ro.Adam), (theirs, torch.optim.Adam)):
        opt = cls(net.parameters(), lr=1e-2, fused=True)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
        lrs = []
        for _ in range(100):
            _train(net, opt, x, y, 1)
            scheduler.step()
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    assert runs[0] == runs[1] and runs[0][-1] == pytest.approx(1e-2 * 0.5**3)
    assert _max_relative_difference(ours, theirs) <= 1e-10


def test_step_with_closure_returns_its_loss():
    net, x, y = _problem(torch.float64)
    opt = ro.SGD(net.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (net(x) - y).square().mean()
        loss.backward()
        return loss

    first = opt.step(closure)
    second = opt.step(closure)
    assert isinstance(first, torch.Tensor) and second < first


def test_parameters_without_gradients_are_left_alone_like_torch():
    ours, x, y = _problem(torch.float64)
    theirs = copy.deepcopy(ours)
    opts = [
        ro.Adam(ours.parameters(), lr=1e-2),
        torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=True),
    ]
    for step in range(60):
        for net, opt in zip((ours, theirs), opts, strict=True):
            opt.zero_grad(set_to_none=True)
            if step % 3 == 0:  # only the last layer's bias gets a gradient on these steps
                net[-1].bias.sum().backward()
            else:
                (net(x) - y).square().mean().backward()
            opt.step()
    assert _max_relative_difference(ours, theirs) <= 1e-10
    assert float(opts[0].state_dict()["state"][0]["step"]) == 40.0


def test_replaced_parameter_storage_is_picked_up():
    # module.to(), load_state_dict(assign=True) and friends give parameters new storage; the
    # optimizer must keep updating the parameters the module actually uses.
    ours, x, y = _problem(torch.float64)
    theirs = copy.deepcopy(ours)
    opts = [
        ro.Adam(ours.parameters(), lr=1e-2),
        torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=True),
    ]
    _train(ours, opts[0], x, y, 5)
    _train(theirs, opts[1], x, y, 5)
    for p in ours.parameters():
        p.data = p.data.clone()
    _train(ours, opts[0], x, y, 5)
    _train(theirs, opts[1], x, y, 5)
    assert _max_relative_difference(ours, theirs) <= 1e-12


def _reference_dozat(params, grads_fn, lr, beta1, beta2, eps, steps):
    """The notes' formula, written out: theta <- theta - lr/(sqrt(v_hat)+eps) *
    (beta1 m_hat + (1-beta1) g / (1 - beta1^t))."""
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = grads_fn()
        with torch.no_grad():
            for p, g, m_i, v_i in zip(params, grads, m, v, strict=True):
                m_i.mul_(beta1).add_((1 - beta1) * g)
                v_i.mul_(beta2).add_((1 - beta2) * g * g)
                m_hat = m_i / (1 - beta1**t)
                v_hat = v_i / (1 - beta2**t)
                p.sub_(
                    lr / (v_hat.sqrt() + eps) * (beta1 * m_hat + (1 - beta1) * g / (1 - beta1**t))
                )


def test_nadam_dozat_form_follows_the_notes():
    ours, x, y = _problem(torch.float64)
    reference = copy.deepcopy(ours)
    opt = ro.NAdam(ours.parameters(), lr=1e-3, dozat=True)
    _train(ours, opt, x, y, 300)

    def grads():
        for p in reference.parameters():
            p.grad = None
        (reference(x) - y).square().mean().backward()
        return [p.grad for p in reference.parameters()]

    _reference_dozat(list(reference.parameters()), grads, 1e-3, 0.9, 0.999, 1e-8, 300)
    assert _max_relative_difference(ours, reference) <= 1e-10
    # ... and it is not torch's NAdam (whose momentum coefficient warms up).
    torch_nadam, _, _ = _problem(torch.float64)
    _train(torch_nadam, torch.optim.NAdam(torch_nadam.parameters(), lr=1e-3), x, y, 300)
    assert _max_relative_difference(ours, torch_nadam) > 1e-6


def _param():
    return [torch.zeros(2, requires_grad=True)]


BAD_ARGUMENTS = [
    (ro.SGD, {"lr": -0.1}, "Invalid learning rate: -0.1"),
    (ro.SGD, {"lr": math.nan}, "Invalid learning rate: nan"),
    (ro.SGD, {"lr": math.inf}, "Invalid learning rate: inf"),
    (ro.Adam, {"lr": -math.inf}, "Invalid learning rate: -inf"),
    (ro.Adam, {"lr": math.inf}, "Invalid learning rate: inf"),
    (ro.SGD, {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    (ro.SGD, {"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    (ro.SGD, {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    (ro.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "zero dampening"),
    (ro.Adam, {"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
    (ro.Adam, {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    (ro.Adam, {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    (ro.AdamW, {"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
    (ro.Adagrad, {"lr_decay": -1.0}, "Invalid lr_decay value: -1.0"),
    (ro.Adagrad, {"initial_accumulator_value": -1.0}, "Invalid initial_accumulator_value value"),
    (ro.RMSprop, {"alpha": -0.1}, "Invalid alpha value: -0.1"),
    (ro.RMSprop, {"momentum": -0.1}, "Invalid momentum value: -0.1"),
    (ro.NAdam, {"momentum_decay": -1.0}, "Invalid momentum_decay value: -1.0"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS)
def test_constructor_validation_uses_torch_wording(cls, kwargs, message):
    with pytest.raises(ValueError) as info:
        cls(_param(), **kwargs)
    assert message in str(info.value)


def test_sparse_gradients_and_complex_parameters_are_refused():
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = ro.Adam(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    with pytest.raises(ValueError, match="does not support complex parameters"):
        ro.Adam([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])


def test_optimizer_config_builds_ours_by_default_and_torchs_by_prefix():
    params = list(mlp(2, [4], 1).parameters())
    assert type(ro.build_optimizer(params, ro.OptimizerConfig(name="adam"))) is ro.Adam
    torch_config = ro.OptimizerConfig(name="torch.adam", options={"foreach": True})
    assert type(ro.build_optimizer(params, torch_config)) is torch.optim.Adam
    sgd = ro.build_optimizer(
        params, ro.OptimizerConfig.from_mapping({"name": "sgd", "lr": 0.1, "momentum": 0.9})
    )
    assert type(sgd) is ro.SGD and sgd.defaults["momentum"] == 0.9


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"name": "constant"}, [1.0, 1.0, 1.0, 1.0, 1.0]),
        ({"name": "linear", "end_factor": 0.0}, [1.0, 0.75, 0.5, 0.25, 0.0]),
        ({"name": "linear", "end_factor": 0.5}, [1.0, 0.875, 0.75, 0.625, 0.5]),
        ({"name": "step", "step_size": 2, "factor": 0.1}, [1.0, 1.0, 0.1, 0.1, 0.01]),
    ],
)
def test_lr_schedules_from_config(schedule, expected):
    opt = ro.Adam(_param(), lr=1.0)
    scheduler = ro.build_lr_scheduler(opt, ro.LRScheduleConfig(**schedule), total_updates=4)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: a no-op, but schedulers expect it before their own step
        scheduler.step()
    assert lrs == pytest.approx(expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trajectory_and_state_dict_across_devices():
    ours, x, y = _problem(torch.float32)
    ours, x, y = ours.cuda(), x.cuda(), y.cuda()
    theirs = copy.deepcopy(ours)
    opt = ro.Adam(ours.parameters(), lr=1e-3)
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=1e-3, foreach=True)
    _train(ours, opt, x, y, 200)
    _train(theirs, torch_opt, x, y, 200)
    assert _max_relative_difference(ours, theirs) <= 1e-5
    cpu_net = copy.deepcopy(ours).cpu()
    cpu_opt = ro.Adam(cpu_net.parameters(), lr=1e-3)
    cpu_opt.load_state_dict(opt.state_dict())
    assert cpu_opt.state[next(cpu_net.parameters())]["exp_avg"].device.type == "cpu"
    _train(cpu_net, cpu_opt, x.cpu(), y.cpu(), 10)


# ----------------------------------------------------------------------------- capturable

DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
ADAM_OPTIONS = [
    {},
    {"amsgrad": True, "weight_decay": 1e-2},
    {"decoupled_weight_decay": True, "weight_decay": 1e-1},
    {"maximize": True},
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", ADAM_OPTIONS)
def test_capturable_fused_adam_is_torchs_capturable_fused_adam(options, dtype, device):
    """torch accepts capturable=True with its fused kernel on the CPU: the same step count on
    the device, the same learning rate as a device tensor, the same bits."""
    ours, x, y = _problem(dtype)
    ours, x, y = ours.to(device), x.to(device), y.to(device)
    theirs = copy.deepcopy(ours)
    lr = torch.tensor(1e-3, dtype=dtype, device=device)
    opt = ro.Adam(ours.parameters(), lr=lr.clone(), capturable=True, fused=True, **options)
    torch_opt = torch.optim.Adam(
        theirs.parameters(), lr=lr.clone(), capturable=True, fused=True, **options
    )
    _train(ours, opt, x, y, 100, options.get("maximize", False))
    _train(theirs, torch_opt, x, y, 100, options.get("maximize", False))
    pairs = zip(ours.parameters(), theirs.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    step = opt.state[next(ours.parameters())]["step"]
    assert step.device.type == device and float(step) == 100


@pytest.mark.parametrize("options", ADAM_OPTIONS)
def test_capturable_written_out_adam_follows_torchs_adam(options):
    """fused=False: torch's capturable formula (bias corrections computed on the device from
    the step tensor), which agrees with the plain update to rounding."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch's step counts are float64 then, as ours
    try:
        ours, x, y = _problem(torch.float64)
        theirs = copy.deepcopy(ours)
        opt = ro.Adam(ours.parameters(), lr=1e-3, capturable=True, fused=False, **options)
        torch_opt = torch.optim.Adam(theirs.parameters(), lr=1e-3, foreach=False, **options)
        _train(ours, opt, x, y, 300, options.get("maximize", False))
        _train(theirs, torch_opt, x, y, 300, options.get("maximize", False))
    finally:
        torch.set_default_dtype(default)
    assert _max_relative_difference(ours, theirs) <= 1e-12


def test_capturable_step_count_is_one_device_tensor_counted_in_place():
    net, x, y = _problem(torch.float32)
    opt = ro.Adam(net.parameters(), lr=1e-3, capturable=True)
    _train(net, opt, x, y, 1)
    step = opt.state[next(net.parameters())]["step"]
    _train(net, opt, x, y, 4)
    # The same tensor, counted in place: a captured graph that replays the step sees it move.
    assert opt.state[next(net.parameters())]["step"] is step and float(step) == 5
    assert all(entry["step"] is step for entry in opt.state.values())
    # state_dicts go both ways with torch's capturable Adam.
    torch_opt = torch.optim.Adam(copy.deepcopy(net).parameters(), lr=1e-3, capturable=True)
    torch_opt.load_state_dict(opt.state_dict())
    again = ro.Adam(net.parameters(), lr=1e-3, capturable=True)
    again.load_state_dict(torch_opt.state_dict())
    assert float(again.state[next(net.parameters())]["step"]) == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_capturable_adam_step_replays_in_a_cuda_graph():
    net, x, y = _problem(torch.float32)
    net, x, y = net.cuda(), x.cuda(), y.cuda()
    eager = copy.deepcopy(net)
    opt = ro.Adam(net.parameters(), lr=torch.tensor(1e-3, device="cuda"), capturable=True)
    eager_opt = ro.Adam(eager.parameters(), lr=1e-3)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph: state is created here
        _train(net, opt, x, y, 3)
    torch.cuda.current_stream().wait_stream(stream)
    _train(eager, eager_opt, x, y, 3)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        loss = (net(x) - y).square().mean()
        loss.backward()
        opt.step()
    for _ in range(20):
        graph.replay()
        _train(eager, eager_opt, x, y, 1)
    assert float(opt.state[next(net.parameters())]["step"]) == 23
    assert _max_relative_difference(net, eager) <= 1e-4


def test_training_never_imports_torch_dynamo_and_the_methods_match_torchs_once_it_is_loaded():
    # torch wraps Optimizer.add_param_group, zero_grad, state_dict and load_state_dict in
    # torch._disable_dynamo, whose first call imports torch._dynamo: about a second of every
    # training process's start. rlkit's optimizers skip the wrapper while dynamo is not loaded.
    # A fresh interpreter: train with a checkpoint, resume it, save and load the agent.
    import subprocess
    import sys

    code = """
import sys, tempfile
import agents
run = tempfile.mkdtemp()
agent = agents.SAC(env="Pendulum-v1", seed=1, learning_starts=50, batch_size=32,
                   network={"hidden_sizes": [16]}, log_interval=50)
agent.learn(200, run_dir=run, checkpoint_interval=100)
resumed = agents.from_checkpoint(run)
resumed.optimizer.zero_grad()
agents.load(agent.save(run + "/agent.safetensors"))
agents.PPO(env="CartPole-v1", seed=1, n_steps=64, batch_size=32).learn(128)
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"

    # Once dynamo is loaded (a user's torch.compile), torch's own wrapped methods run.
    import torch._dynamo

    params = [torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]
    ours = ro.Adam(params, lr=0.1)
    params[0].grad = torch.ones(3, dtype=torch.float64)
    ours.step()
    ours.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]})
    state = ours.state_dict()
    copies = [[torch.nn.Parameter(p.detach().clone()) for p in g["params"]]
              for g in ours.param_groups]  # fmt: skip
    again = ro.Adam(copies[0], lr=0.1)
    again.add_param_group({"params": copies[1]})
    again.load_state_dict(state)
    assert again.state_dict()["param_groups"] == state["param_groups"]
    torch.testing.assert_close(again.state_dict()["state"], state["state"])
    ours.zero_grad()
    assert params[0].grad is None


ROOT_CASES = [
    ("rmsprop", {}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "eps": 0.01, "alpha": 0.95}),  # MinAtar's DQN
    ("adagrad", {}),
    ("adam", {"fused": False}),
    ("adam", {"fused": False, "amsgrad": True, "eps": 1e-8, "betas": (0.9, 0.9999)}),
    ("nadam", {}),
    ("nadam", {"decoupled_weight_decay": True, "weight_decay": 1e-2}),
]


@pytest.mark.parametrize(("name", "options"), ROOT_CASES, ids=[f"{n}-{o}" for n, o in ROOT_CASES])
def test_the_fast_root_of_zeros_changes_no_bit(name, options, monkeypatch):
    # Inputs that are always zero give their first-layer weights zero gradients and zero
    # second moments: the values optimizers._root raises before the root. 300 steps with it
    # and with the plain torch.sqrt must end in the same weights to the bit.
    from rlkit.optim import optimizers

    start, x, y = _problem(torch.float32)
    x[:, :2] = 0.0
    plain = lambda v, eps, out=None: torch.sqrt(v, out=out) if out is not None else v.sqrt_()  # noqa: E731
    nets = []
    for root in (optimizers._root, plain):
        monkeypatch.setattr(optimizers, "_root", root)
        net = copy.deepcopy(start)
        _train(net, ro.OPTIMIZERS[name](net.parameters(), lr=LR[name], **options), x, y, 300)
        nets.append(net)
    first_layer = next(iter(nets[0].parameters()))
    if "weight_decay" not in options:  # (which moves them)
        assert bool((first_layer[:, :2] == start[0].weight[:, :2]).all())  # never moved: zeros
    assert all(
        torch.equal(p, q) for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True)
    )


@pytest.mark.parametrize("eps", [1e-8, 1e-6, 1e-5, 0.01, 1e-12])
def test_the_fast_root_plus_eps_is_the_plain_one_to_the_bit(eps):
    from rlkit.optim.optimizers import _root

    torch.manual_seed(0)
    x = torch.rand(100_000) * torch.logspace(-38, 2, 100_000)  # all magnitudes
    x[::3] = 0.0
    x[1::7] = 1e-40  # denormals
    for scale in (1.0, 0.01):  # Adam divides the root by sqrt(1 - beta2^t) >= 0.01 first
        fast = _root(x.clone(), eps).div_(scale).add_(eps)
        plain = torch.sqrt(x).div_(scale).add_(eps)
        assert torch.equal(fast, plain)
