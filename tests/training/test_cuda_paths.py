"""The GPU paths on a real CUDA device (marker ``cuda``: skipped without one; scripts/gpu_check.sh runs
them with ``pytest -m cuda``): the training step against the CPU's, bf16 autocast, FlipOut's one-draw noise
and its flip counting on the device, compiled counting, and the device/precision defaults."""
import pytest
import torch
from torch import nn

from flipout_repro.data import TensorData
from flipout_repro.sparsity.masking import Masks, prune_to
from flipout_repro.methods.flipout import FlipOut, count_flips
from flipout_repro.methods.noise import add_gradient_noise, noise_plan
from flipout_repro.sparsity.schedule import PruneEvent
from flipout_repro.training.build import resolve_device, speed_settings
from flipout_repro.training.trainer import Trainer

from helpers import make_cfg

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def trainer(device, noise=0.0, autocast_dtype=None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).to(device)
    masks = Masks.for_model(net)
    method = FlipOut(noise=noise)
    method.bind(net, masks)
    prune_to([torch.rand_like(m) for m in masks.values], masks, 0.5)
    method.after_prune()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g).to(device)
    y = (torch.arange(64) % 4).to(device)
    stat = torch.full((1, 1, 1, 1), 0.5, device=device)
    data = TensorData(x, y, x, y, stat, stat)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [100])
    return Trainer(net, data, method, masks, opt, sched, [PruneEvent(10**9, 0.5)], epochs=1, target=0.5,
                   batch_size=16, eval_batch_size=64, generator=torch.Generator(device=device).manual_seed(0),
                   progress=False, autocast_dtype=autocast_dtype)


def steps(t, n=5):
    batches = list(t.data.train_batches(16, t.generator, torch.arange(64, device=t.data.train_y.device)))
    for i in range(n):
        t.step(*batches[i % len(batches)])
    return [p.detach().cpu() for p in t.model.parameters()], [c.cpu() for c in t.method.counters]


def test_a_cuda_step_matches_the_cpu_step():
    cpu_w, cpu_c = steps(trainer(torch.device("cpu")))
    gpu_w, gpu_c = steps(trainer(torch.device("cuda")))
    for a, b in zip(cpu_w, gpu_w):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # TF32 is off for fp32 matmuls by default
    assert [float(c.sum()) for c in cpu_c] == [float(c.sum()) for c in gpu_c]


def test_bf16_autocast_keeps_fp32_master_weights_and_finite_loss():
    t = trainer(torch.device("cuda"), noise=1.0, autocast_dtype=torch.bfloat16)
    x, y = next(iter(t.data.train_batches(16, t.generator)))
    ce, out = t.step(x, y)
    assert out.dtype == torch.bfloat16 and torch.isfinite(ce)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in t.model.parameters())
    assert all(bool((p[m == 0] == 0).all()) for p, m in zip(t.masks.params, t.masks.values))


def test_one_draw_noise_on_the_device_has_each_parameters_scale():
    params = [nn.Parameter(torch.zeros(4000, device="cuda")), nn.Parameter(torch.zeros(60, 60, device="cuda"))]
    params[0].grad = torch.full((4000,), 2.0, device="cuda")
    params[1].grad = torch.full((60, 60), 0.5, device="cuda")
    plan = noise_plan(params)
    assert plan.sizes is not None  # the GPU path is the one-draw path
    add_gradient_noise(params, 1.0, plan)
    assert (params[0].grad - 2.0).std().item() == pytest.approx(2.0, rel=0.1)
    assert (params[1].grad - 0.5).std().item() == pytest.approx(0.5, rel=0.1)


def test_compiled_flip_counting_on_the_device_equals_eager():
    g = torch.Generator(device="cuda").manual_seed(0)
    weights = [torch.randn(300, 200, device="cuda", generator=g), torch.randn(50, device="cuda", generator=g)]
    signs = [torch.sign(w) for w in weights]
    eager = ([torch.zeros_like(w) for w in weights], [s.clone() for s in signs])
    compiled = ([torch.zeros_like(w) for w in weights], [s.clone() for s in signs])
    counter = torch.compile(count_flips)
    for _ in range(4):
        for w in weights:
            w.add_(torch.randn(w.shape, device="cuda", generator=g))
        count_flips(weights, eager[1], eager[0])
        counter(weights, compiled[1], compiled[0])
    assert all(torch.equal(a, b) for a, b in zip(eager[0], compiled[0]))
    assert sum(float(c.sum()) for c in eager[0]) > 0


def test_auto_device_is_cuda_with_channels_last():
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert speed_settings(make_cfg(), device)["channels_last"] is True
