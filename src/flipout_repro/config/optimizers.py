"""The optimisers ``optim=`` picks: each is its keys (a dataclass), the checks of their values and the
torch.optim class it builds.

Every optimiser has :class:`OptimConfig`'s keys: its name, its rate and the lr schedule
(training/lr_schedule.py). Its own keys are the keyword arguments of its torch class. An optimiser's
conf/optim/<name>.yaml starts with ``defaults: [/optim_<name>, _self_]``, which puts its dataclass
(stored in Hydra's ConfigStore by schema.register) under the YAML: Hydra refuses a key it lacks or a
value of the wrong type while composing. Adding an optimiser is a dataclass, a check and an entry of
:data:`OPTIMIZERS` here, and its YAML; config.validate checks it and training.build builds it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral
from typing import Any, Callable, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from flipout_repro.errors import ConfigError, check_finite, choice, number

#: ``optim.schedule`` values (training/lr_schedule.py implements them)
LR_SCHEDULES = ("step", "cosine", "triangle")


@dataclass
class OptimConfig:
    """What every optimiser has: its name, its rate, and the lr schedule, set once per epoch."""

    name: str = MISSING
    lr: float = MISSING
    #: epochs of a ``milestones_of``-epoch run, scaled to ``epochs`` (the paper: 150 and 250 of 350)
    milestones: List[int] = MISSING
    milestones_of: int = MISSING
    gamma: float = MISSING
    #: ``step`` (lr x gamma at the milestones) or ``cosine`` (STR's cosine_lr: 0.5 (1 + cos(pi e / E)) lr
    #: over the epochs after the warm-up), set once per epoch; or ``triangle`` (airbench's, set every step:
    #: training/lr_schedule.py)
    schedule: str = "step"
    #: epochs of linear warm-up before the schedule, lr (e + 1) / W in epoch e (STR's _warmup_lr); 0: none
    warmup_epochs: int = 0
    #: the rate of the BatchNorm parameters: ``lr`` times this (airbench's bias_scaler: 64)
    norm_lr_scale: float = 1.0
    #: the weight decay of the BatchNorm parameters (null: ``weight_decay``'s)
    norm_weight_decay: Optional[float] = None
    #: Lookahead (airbench's): every this many steps the weights and buffers become a slow copy's running
    #: average, weighted 0.95^k (step / steps)^3; 0: none (training/lookahead.py)
    lookahead_every: int = 0


@dataclass
class SGDConfig(OptimConfig):
    """torch.optim.SGD with momentum and coupled weight decay (the FlipOut paper's, section 4)."""

    momentum: float = MISSING
    weight_decay: float = MISSING
    nesterov: bool = MISSING


def check_sgd(cfg: DictConfig) -> None:
    """``optim.momentum`` in [0, 1), a weight decay >= 0, Nesterov only with a momentum."""
    number(cfg, "optim.momentum", float, 0, 1, fix="e.g. optim.momentum=0.9")
    number(cfg, "optim.weight_decay", float, 0, None, fix="e.g. optim.weight_decay=0.0005")
    choice(cfg, "optim.nesterov", (True, False))
    if cfg.optim.nesterov and cfg.optim.momentum == 0:  # torch's SGD refuses it
        raise ConfigError("optim.nesterov", True, "needs a momentum", "set optim.momentum=0.9, or optim.nesterov=false")


@dataclass
class AdamWConfig(OptimConfig):
    """torch.optim.AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019): each step also
    shrinks the weights by lr x weight_decay, instead of adding weight_decay x w to the gradient."""

    #: the decay rates of the running means of the gradient and of its square
    betas: List[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING


def check_adamw(cfg: DictConfig) -> None:
    """``optim.betas`` two numbers in [0, 1), ``optim.eps`` > 0, a weight decay >= 0."""
    betas = list(cfg.optim.betas)
    check_finite("optim.betas", betas, "e.g. optim.betas=[0.9,0.999]")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError("optim.betas", betas, "must be two numbers in [0, 1)", "e.g. optim.betas=[0.9,0.999]")
    number(cfg, "optim.eps", float, 0, None, lo_open=True, fix="e.g. optim.eps=1e-8")
    number(cfg, "optim.weight_decay", float, 0, None, fix="decoupled: e.g. optim.weight_decay=0.01")


@dataclass(frozen=True)
class Optimizer:
    """An entry of :data:`OPTIMIZERS`."""

    schema: type  # its keys, their types and their meaning
    torch_class: str  # the class of torch.optim it builds; its own keys are the class's keyword arguments
    check: Callable[[DictConfig], None]  # the checks of its own keys (ranges, combinations)


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(SGDConfig, "SGD", check_sgd),
    "adamw": Optimizer(AdamWConfig, "AdamW", check_adamw),
}


def keys(name: str | None = None) -> list[str]:
    """The keys of optimiser ``name`` (of every optimiser when None), without ``optim.``."""
    specs = OPTIMIZERS.values() if name is None else [OPTIMIZERS[name]]
    return list(dict.fromkeys(f.name for spec in specs for f in fields(spec.schema)))


def key_error(name: str, key: str, value: Any) -> ConfigError:
    """``optim.<key>=<value>`` given to an optimiser that has no such key."""
    common = [f.name for f in fields(OptimConfig)]
    listed = [k for k in keys(name) if k not in common] + common[1:]  # its own first; not ``name``
    return ConfigError(f"optim.{key}", value, f"is not a key of optim={name}",
                       f"its keys: {', '.join(listed)} (optim=NAME picks an optimiser with its keys)")


def check(cfg: DictConfig) -> None:
    """``optim.*``: a registered optimiser with exactly its keys, a positive rate, milestones inside their
    run, warm-up before the end, and the optimiser's own checks."""
    choice(cfg, "optim.name", tuple(OPTIMIZERS))
    name, own = cfg.optim.name, keys(cfg.optim.name)
    for key in cfg.optim:  # optim.name=adamw over the keys of optim=sgd
        if key not in own:
            raise key_error(name, key, OmegaConf.select(cfg, f"optim.{key}"))
    for key in own:
        if key not in cfg.optim:
            raise ConfigError(f"optim.{key}", None, f"is missing for optim={name}", f"give it, or pick optim={name}")
    number(cfg, "optim.lr", float, 0, None, lo_open=True, fix="e.g. optim.lr=0.1")
    number(cfg, "optim.gamma", float, 0, 1, lo_open=True, hi_open=False, fix="e.g. optim.gamma=0.1")
    of = number(cfg, "optim.milestones_of", int, 1, None, fix="the run length the milestones refer to, e.g. 350")
    ms = list(cfg.optim.milestones)
    if any(isinstance(m, bool) or not isinstance(m, Integral) or m < 1 for m in ms) or ms != sorted(ms):
        raise ConfigError("optim.milestones", ms, "must be increasing positive epochs",
                          "e.g. optim.milestones=[150,250]")
    if ms and ms[-1] >= of:  # a milestone at or past the end of the run would never lower the rate
        raise ConfigError("optim.milestones", ms, f"must be below optim.milestones_of={of}",
                          f"they are epochs of a {of}-epoch run, e.g. optim.milestones=[150,250] of 350")
    choice(cfg, "optim.schedule", LR_SCHEDULES)
    warmup = number(cfg, "optim.warmup_epochs", int, 0, None, fix="e.g. optim.warmup_epochs=5")
    if warmup >= cfg.epochs:
        raise ConfigError("optim.warmup_epochs", warmup, f"must be below epochs={cfg.epochs}",
                          f"e.g. optim.warmup_epochs={cfg.epochs // 20}, or more epochs")
    if warmup and cfg.optim.schedule == "triangle":
        raise ConfigError("optim.warmup_epochs", warmup, "does not apply to optim.schedule=triangle, which warms up"
                          " over its first 23 % of steps", "set optim.warmup_epochs=0")
    number(cfg, "optim.norm_lr_scale", float, 0, None, lo_open=True, fix="e.g. optim.norm_lr_scale=64 (airbench's),"
           " or 1 for the rate of every parameter")
    if cfg.optim.norm_weight_decay is not None:
        number(cfg, "optim.norm_weight_decay", float, 0, None, fix="e.g. 0, or null for optim.weight_decay's")
    number(cfg, "optim.lookahead_every", int, 0, None, fix="e.g. optim.lookahead_every=5 (airbench's), or 0 for none")
    OPTIMIZERS[name].check(cfg)


def arguments(optim: DictConfig) -> dict[str, Any]:
    """The keyword arguments of the torch class: the optimiser's own keys and ``lr`` (lists as tuples)."""
    schedule_keys = {f.name for f in fields(OptimConfig)} - {"lr"}
    values = OmegaConf.to_container(optim, resolve=True)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k not in schedule_keys}
