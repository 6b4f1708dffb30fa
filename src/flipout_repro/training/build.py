"""Everything a run needs, built from its config: device, precision, data, model, masks, method, prune
events, optimizer. The one place that turns a config into objects (a run, a reloaded finished run and
the benchmark all build their models and methods here).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from flipout_repro.sparsity import budgets
from flipout_repro.sparsity import patterns
from flipout_repro import data as data_mod
from flipout_repro.training import phases
from flipout_repro.config import optimizers
from flipout_repro.config.defaults import method_schedule
from flipout_repro.config.validate import Checked, instantiate
from flipout_repro.errors import ConfigError
from flipout_repro.sparsity.masking import Masks
from flipout_repro.methods.base import Method
from flipout_repro.models.weight_init import initialize
from flipout_repro.config.precision import resolved_precision
from flipout_repro.training.init_from import load_init_weights
from flipout_repro.training.lookahead import Lookahead
from flipout_repro.training.lr_schedule import make_scheduler, milestone_epochs
from flipout_repro.training import distributed
from flipout_repro.training.shard import shard


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when present, else cpu. ``cuda:k`` also becomes the current CUDA device, so that
    nothing that asks for "the" GPU (capability checks, compiled kernels, a stray context) lands on GPU 0."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(cfg: DictConfig, device: torch.device) -> data_mod.DataSet:
    """The configured data set for ``device``, checked against the config's image shape."""
    ds = cfg.dataset
    data = data_mod.load(ds.name, ds.root, ds.download, device, list(ds.mean), list(ds.std),
                         ds.crop_padding, ds.flip, ds.resize, train_fraction=ds.train_fraction,
                         image_size=ds.image_size, eval_resize=ds.eval_resize, workers=ds.workers,
                         num_classes=ds.num_classes, decode=ds.decode, verify=ds.verify, crop_fill=ds.crop_fill,
                         drop_last=ds.drop_last)
    if data.in_channels != ds.in_channels or data.image_size != ds.image_size:
        raise ConfigError("dataset", ds.name, f"files hold {data.in_channels}x{data.image_size}x"
                          f"{data.image_size} images, the config says {ds.in_channels}x{ds.image_size}",
                          "fix dataset.in_channels/image_size")
    if ds.flip_alternate:  # each image's flip drawn once, from the run's seed
        data = data.alternating_flips(int(cfg.seed))
    classes = 1 + int(max(data.train_y.max(), data.test_y.max()))
    if classes > ds.num_classes:  # the loss would fail on the first such label, deep into training
        raise ConfigError("dataset.num_classes", ds.num_classes, f"is below the labels of {ds.name} ({classes}"
                          f" classes, 0 to {classes - 1})", f"use dataset.num_classes={classes}")
    return data


def build_optimizer(cfg: DictConfig, model: torch.nn.Module,
                    steps_per_epoch: int = 1) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser ``optim`` names (config/optimizers.py: its torch.optim class, with its own keys), and
    the ``optim.schedule`` (training/lr_schedule.py; ``triangle`` counts ``steps_per_epoch``).

    ``optim.milestones`` (``step``) are epochs of a ``optim.milestones_of``-epoch run (the paper: 150
    and 250 of 350) and are scaled to ``epochs``, so a short run keeps the paper's shape. With
    ``optim.norm_lr_scale`` or ``optim.norm_weight_decay`` set, the BatchNorm parameters are a second group
    with their own rate and decay (airbench's); otherwise there is one group, every parameter.
    """
    o = cfg.optim
    torch_class = getattr(torch.optim, optimizers.OPTIMIZERS[o.name].torch_class)
    args = optimizers.arguments(o)
    opt = torch_class(param_groups(model, o, args), **args)
    milestones = milestone_epochs(o.milestones, o.milestones_of, cfg.epochs)
    sched = make_scheduler(opt, o.schedule, o.warmup_epochs, cfg.epochs, milestones, o.gamma, steps_per_epoch)
    return opt, sched


#: the normalisation layers whose parameters ``optim.norm_lr_scale``/``norm_weight_decay`` apply to
NORM_TYPES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)


def param_groups(model: torch.nn.Module, optim: DictConfig, args: dict[str, Any]) -> Any:
    """``model.parameters()``, or two groups: the other parameters, and the normalisation layers' parameters
    at ``lr x norm_lr_scale`` with ``norm_weight_decay``. Frozen parameters are left out of the groups."""
    if optim.norm_lr_scale == 1 and optim.norm_weight_decay is None:
        return model.parameters()
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = args.get("weight_decay", 0.0) if optim.norm_weight_decay is None else optim.norm_weight_decay
    return [{"params": [p for p in trained if id(p) in norm], "lr": optim.lr * optim.norm_lr_scale,
             "weight_decay": decay},
            {"params": [p for p in trained if id(p) not in norm]}]


@dataclass
class Built:
    """A run's objects, freshly built from its config (also used to reload a finished run)."""

    data: data_mod.DataSet
    model: torch.nn.Module
    masks: Masks
    method: Method
    events: list
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    generator: torch.Generator
    speed: dict  # Trainer keyword arguments: compiled, autocast_dtype, channels_last
    axes: dict = field(default_factory=dict)  # Trainer keyword arguments: budget, pattern (build_axes)
    lookahead: Lookahead | None = None  # optim.lookahead_every's slow copy (training/lookahead.py)


def speed_settings(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Resolve precision/channels_last "auto" for ``device``: bf16 on GPUs with native bf16
    (precision.has_native_bf16), channels_last on CUDA."""
    bf16 = resolved_precision(cfg.precision, device) == "bf16"
    cl = cfg.channels_last if cfg.channels_last != "auto" else device.type == "cuda"
    return {"autocast_dtype": torch.bfloat16 if bf16 else None, "channels_last": bool(cl)}


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """cuDNN autotuning (fast) or deterministic kernels (reproducible) for the run about to start.

    On CUDA, ``deterministic=False`` turns on ``torch.backends.cudnn.benchmark``: the fixed input shapes
    of these runs let cuDNN time its convolution algorithms once and keep the fastest (the original
    FlipOut code turned it off and cuDNN's deterministic mode on, for reproducibility). ``True`` does
    that and asks torch for deterministic algorithms everywhere (``warn_only``: an op without a
    deterministic kernel warns instead of stopping a run). The switches are process-wide, so each run
    sets all of them, also back. CPU kernels are deterministic either way.
    """
    if deterministic:
        # cuBLAS reads this when it starts; it only takes effect if no CUDA matmul ran in this process yet
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    current = (torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled())
    if current[0] != deterministic or (deterministic and not current[1]):  # the call imports torch._inductor
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def build_model(model_cfg: DictConfig, in_channels: int, num_classes: int, input_size: int,
                device: torch.device | str = "cpu", channels_last: bool = False) -> torch.nn.Module:
    """The model a ``model`` config group describes, on ``device`` (in channels_last layout if asked).

    ``model.init`` (models/weight_init.py) is applied here, not by each model, so every model has it; it
    is not a constructor argument.
    """
    keys = OmegaConf.to_container(model_cfg, resolve=True)
    init = keys.pop("init")
    for key in ("init_from", "init_from_sha256"):  # loaded by build() (training/init_from.py), not here
        keys.pop(key, None)
    model = instantiate(OmegaConf.create(keys), "model", in_channels=int(in_channels),
                        num_classes=int(num_classes), input_size=int(input_size))
    initialize(model, init)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device, memory_format=fmt)  # before the masks are made, so they share the layout


def build_method(method_cfg: DictConfig, model: torch.nn.Module, masks: Masks) -> Method:
    """The method a ``method`` config group describes, bound to ``model`` and its ``masks``."""
    method = instantiate(method_cfg, "method")
    method.bind(model, masks)
    return method


def build_axes(cfg: DictConfig, masks: Masks, method: Method, target: float) -> dict[str, Any]:
    """The Trainer's ``budget`` (also the method's, for the prunes it makes itself) and ``pattern`` (None:
    unstructured), checked against the model's layers, so that a budget whose dense layers keep more than
    ``target`` allows, or an N:M group size that does not divide a layer, fails here, before anything is
    written."""
    b, p = cfg.budget, cfg.pattern
    budget = budgets.Budget(b.name, bool(b.dense_first), bool(b.dense_last))
    method.use_budget(budget)
    pattern = patterns.Pattern(p.name, p.n, p.m)
    shapes = [tuple(v.shape) for v in masks.values]
    if method.prunes:
        budgets.check(shapes, target, budget)
    if pattern.nm:
        patterns.check_layers(masks.names, shapes, pattern.m, budget.dense(len(shapes)))
    return {"budget": budget, "pattern": pattern if pattern.nm else None}


def check_reaches(cfg: DictConfig, method: Method, events: list, target: float) -> None:
    """ConfigError when the run could never reach its target sparsity: a method that prunes only at its
    schedule's events, and a schedule with none in the run's epochs (``method=rigl schedule=none`` would
    train dense and be recorded at 0.9)."""
    by_itself = method.sparsity_is_outcome or type(method).prune_due is not Method.prune_due
    by_itself = by_itself or getattr(method, "from_parent", False)  # its mask is set from its parent at the start
    if target <= 0 or events or not method.prunes or by_itself:
        return
    raise ConfigError("schedule", cfg.schedule.name, f"has no prune event in epochs={cfg.epochs}, and method="
                      f"{cfg.method.name} prunes only at its schedule's events: it would never reach sparsity="
                      f"{target:g}", f"use schedule={method_schedule(cfg.method.name)} (the method's own), or a"
                      " schedule with an event within the run's epochs")


def build(cfg: DictConfig, target: float, device: torch.device, checked: Checked | None = None) -> Built:
    """Seed, load the data, build model, masks, method, schedule events and optimizer. ``checked``: what
    config.validate built (the method, bound here, and the schedule); without it they are built here."""
    seed_everything(cfg.seed)
    set_determinism(bool(cfg.deterministic), device)
    # a data-parallel rank trains on its shard of every batch (training/shard.py); one process: ``data``
    data = shard(load_data(cfg, device), cfg.batch_size, distributed.rank(), distributed.world_size())
    phases.mark("data")
    speed = speed_settings(cfg, device)
    model = build_model(cfg.model, data.in_channels, cfg.dataset.num_classes, data.image_size, device,
                        speed["channels_last"])
    init_from_data(model, data)
    if cfg.model.get("init_from") is not None:  # before the method binds: it may read the weights
        load_init_weights(model, cfg.model.init_from)
    masks = Masks.for_model(model)
    method = checked.method if checked is not None else instantiate(cfg.method, "method")
    method.bind(model, masks)
    if hasattr(data, "train_y") and method.prunes:
        method.check_data(data.train_y, int(cfg.dataset.num_classes))
    schedule = checked.schedule if checked is not None else instantiate(cfg.schedule, "schedule")
    events = schedule.events(target, cfg.epochs, data.steps_per_epoch(cfg.batch_size)) if method.prunes else []
    check_reaches(cfg, method, events, target)
    spe = data.steps_per_epoch(cfg.batch_size)
    optimizer, lr_scheduler = build_optimizer(cfg, model, spe)
    every = int(cfg.optim.lookahead_every)
    lookahead = Lookahead(model, masks, every, cfg.epochs * spe) if every else None
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    speed["compiled"] = torch.compile(model) if cfg.compile else None
    if cfg.compile:
        method.compile_hooks()
    axes = build_axes(cfg, masks, method, target)
    phases.mark("built")
    return Built(data, model, masks, method, events, optimizer, lr_scheduler, generator, speed, axes, lookahead)


def init_from_data(model: torch.nn.Module, data: data_mod.DataSet) -> None:
    """A model whose weights start from the training images (airbench's whitening layer: ``init_from_data``
    and ``init_images``) gets the first ``init_images`` of them, normalised, in data-set order."""
    init = getattr(model, "init_from_data", None)
    if init is None:
        return
    images = data.normalize(data.train_x[:int(model.init_images)])
    init(images.to(next(model.parameters()).dtype))
