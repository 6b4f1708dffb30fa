"""The fixed part of a run's config as typed dataclasses: the one list of keys, their types and defaults.

Hydra merges conf/config.yaml, the config groups and the command line into :class:`RunConfig` (stored in
Hydra's ConfigStore as ``run_schema``, the first entry of conf/config.yaml's defaults list), so an
unknown key (``+lr=0.1``) or a value of the wrong type (``epochs=abc``) is refused while the config is
composed, before any code of ours runs. ``model``, ``method`` and ``schedule`` stay free-form YAML with
a ``_target_``: their constructors' signatures are their schema (see config.instantiate). ``optim`` has
the schema of the optimiser it names (config/optimizers.py). Ranges and cross-field rules (sparsity in
[0, 1), milestones increasing, ...) are checked by config.validate with messages that name the key,
the value and the fix.

Defaults are the FlipOut paper's setting (Apostol et al. 2020, section 4): VGG19 on CIFAR-10, SGD lr 0.1,
momentum 0.9, weight decay 5e-4, batch 128, 350 epochs, lr /10 at epochs 150 and 250.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from flipout_repro.config import optimizers

#: The FlipOut paper's five levels, as its code reaches them (1 - 2^-k, k = 2, 4, 6, 8, 10; the "99.9 %"
#: column is 0.9990234375): the suggestions of the sparsity check and the figures' ticks.
SPARSITY_HINTS = (0.75, 0.9375, 0.984375, 0.99609375, 0.9990234375)
#: int8 observers and quantized-kernel backends (analysis/quantize.py implements them).
OBSERVERS = ("minmax", "per_channel", "histogram")
BACKENDS = ("x86", "fbgemm", "qnnpack")
#: ``model.init`` values (models/weight_init.py implements them)
MODEL_INITS = ("default", "kaiming_normal")
#: ``tta`` values: the views evaluation averages the logits of (training/evaluate.py)
TTA_LEVELS = (0, 1, 2)
#: ``on_collapse`` values (training/collapse.py implements them)
ON_COLLAPSE = ("warn", "stop")
#: ``logger`` values: TensorBoard alone, or beside it Weights & Biases or MLflow (training/trackers.py)
LOGGERS = ("tensorboard", "wandb", "mlflow")


@dataclass
class LossConfig:
    """The training loss: cross-entropy, with optional label smoothing (evaluation stays plain CE)."""

    #: weight of the uniform distribution in the targets (torch's ``label_smoothing``; STR's recipe: 0.1)
    label_smoothing: float = 0.0
    #: ``mean`` over the batch, or ``sum`` (airbench's: the gradient is batch_size times the mean's, so its
    #: rates are per summed example)
    reduction: str = field(default="mean", metadata={"choices": ("mean", "sum")})


@dataclass
class DatasetConfig:
    """A data set held on the device as uint8 tensors, or streamed from files (``imagenet``) (conf/dataset/)."""

    #: the data set (conf/dataset/<name>.yaml); a folder name of the run's path
    name: str = MISSING
    #: where its files are (or go); make it absolute on a cluster (a relative one is read from the working folder)
    root: str = MISSING
    #: fetch missing files through torchvision (CIFAR, MNIST, Imagenette); false on offline machines
    download: bool = MISSING
    #: image channels (3 for colour, 1 for MNIST)
    in_channels: int = MISSING
    #: side of the square images the model sees
    image_size: int = MISSING
    #: classes of the labels (checked against the data once it is loaded)
    num_classes: int = MISSING
    #: per-channel normalisation of the pixels in [0, 1]
    mean: List[float] = MISSING
    std: List[float] = MISSING
    #: random crop with this many pixels of zero padding (0: no crop)
    crop_padding: int = MISSING
    #: random horizontal flip
    flip: bool = MISSING
    #: what the random crop pads with: ``zeros`` (black pixels, torchvision's RandomCrop) or ``reflect``
    #: (the image mirrored at its border, airbench's)
    crop_fill: str = field(default="zeros", metadata={"choices": ("zeros", "reflect")})
    #: with ``flip``: draw each image's flip once per run and mirror it in every other epoch (airbench's
    #: alternating flip), instead of a fresh draw every epoch
    flip_alternate: bool = False
    #: leave out each epoch's last, smaller batch (airbench's); in-memory sets only
    drop_last: bool = False
    #: resize every image once at load to resize x resize (bilinear), e.g. 32 for MNIST as the FlipOut
    #: code; null keeps the files' size. ``image_size`` is then the resized side.
    resize: Optional[int] = None
    #: fraction of the training set trained on; the rest (a fixed split, the same for every seed, as
    #: FORCE's CIFAR protocol: 0.9) is held out and evaluated each epoch as val_loss/val_acc
    train_fraction: float = 1.0
    #: streamed sets (imagenet): evaluation resizes the shorter side to this, then center-crops
    #: image_size (torchvision's Resize(256) + CenterCrop(224)); null for the in-memory sets
    eval_resize: Optional[int] = None
    #: streamed sets: DataLoader worker processes that decode and augment (null: CPUs - 1, 1 to 16); does not
    #: change results (each image's augmentation is seeded by the run, the epoch and the image)
    workers: Optional[int] = None
    #: streamed sets: ``workers`` decode the JPEGs with PIL; ``device``: workers read the bytes and draw the
    #: same crop boxes, the training process decodes them on its device (torchvision.io.decode_jpeg; nvjpeg
    #: on CUDA) and crops there. Pixels differ slightly (other decoder and resize): hashed unless ``workers``
    decode: str = field(default="workers", metadata={"choices": ("workers", "device")})
    #: streamed sets: read every file once before the run starts (before its folder is made) and stop, naming
    #: every file that cannot be read; otherwise such a file stops the run when it is met (exit code 7). The
    #: in-memory sets read every file at load anyway
    verify: bool = False


@dataclass
class QuantizationConfig:
    """Post-training static int8 quantization (``quantize=true``); not part of the run hash."""

    #: histogram (torch's default), minmax (per-tensor weights) or per_channel
    observer: str = field(default="histogram", metadata={"choices": OBSERVERS})
    #: ``all`` = one pass over the training set (the reference code's), or a number of batches
    calibration_batches: Any = "all"
    #: quantized kernels: x86, fbgemm or qnnpack
    backend: str = field(default="x86", metadata={"choices": BACKENDS})


@dataclass
class BudgetConfig:
    """How a prune event's zeros are shared among layers (conf/budget/, src/flipout_repro/sparsity/budgets.py)."""

    #: global, uniform or erk (a method's yaml may pick its own default: conf/method/*.yaml)
    name: str = "global"
    #: keep the first / last prunable layer dense (the other layers take all the zeros)
    dense_first: bool = False
    #: see dense_first
    dense_last: bool = False


@dataclass
class PatternConfig:
    """Which weights may go (conf/pattern/, src/flipout_repro/sparsity/patterns.py): unstructured, or nm (N:M)."""

    #: unstructured (any weight may go) or nm
    name: str = "unstructured"
    #: nm only: keep n of every m consecutive weights along the input dimension (null for unstructured)
    n: Optional[int] = None
    #: see n
    m: Optional[int] = None


@dataclass
class ParentConfig:
    """The finished run a derived run starts from (a control; a level of ``method=imp``, which the chain
    sets): ``run`` says where it is, ``hash`` is filled in from its summary when the run is prepared."""

    #: the parent's run folder (``<results_dir>/runs/...``); where it lies is not part of the run hash
    run: Optional[str] = None
    #: the parent's identity hash (its folder's ``<hash8>``), written from its summary: part of the run hash
    hash: Optional[str] = None


@dataclass
class RunConfig:
    """Every top-level key of a run (docs/reference/config.md lists each, generated from these fields)."""

    #: the network (conf/model/<name>.yaml: its constructor's arguments, plus model.init and model.init_from)
    model: Any = MISSING
    dataset: DatasetConfig = MISSING
    #: when and how far to prune (conf/schedule/<name>.yaml: periodic, one_shot, cubic, none)
    schedule: Any = MISSING
    #: what to prune (conf/method/<name>.yaml: the method's class and knobs)
    method: Any = MISSING
    #: the keys of the optimiser conf/optim/<name>.yaml names (config/optimizers.py: SGDConfig, AdamWConfig)
    optim: Any = MISSING
    loss: LossConfig = field(default_factory=LossConfig)
    #: exact fraction of prunable weights (Conv2d/Linear weights) removed at the end of training
    sparsity: float = 0.9375
    #: training epochs; the lr milestones and the prune events scale with it
    epochs: int = 350
    #: seed of the initialisation, the data order and the method's draws (its own folder: seed_<n>)
    seed: int = 0
    #: auto: cuda when present, else cpu
    device: str = "auto"
    #: training batch size (the global batch on several GPUs)
    batch_size: int = 128
    #: evaluation only: does not change results and is not part of the run hash
    eval_batch_size: int = 1000
    #: test-time augmentation of every evaluation, the logits of its views averaged (airbench's levels): 0
    #: the image alone, 1 also mirrored, 2 also both shifted one pixel diagonally (6 views)
    tta: int = field(default=0, metadata={"choices": TTA_LEVELS})
    #: bf16 (autocast, fp32 master weights) or fp32; auto = bf16 on GPUs of compute capability 8.0+
    precision: str = field(default="auto", metadata={"choices": ("auto", "bf16", "fp32")})
    #: channels_last memory format for the model and inputs: auto (= on CUDA), true or false
    channels_last: Any = field(default="auto", metadata={"choices": ("auto", True, False)})
    #: torch.compile the model's forward pass
    compile: bool = False
    #: GPU only: false = cuDNN autotuning (fastest), true = deterministic kernels (bit-reproducible)
    deterministic: bool = False
    #: runs go to <results_dir>/runs/...
    results_dir: str = "results"
    #: continue an interrupted run from its checkpoint; false starts it over
    resume: bool = True
    #: a progress bar while training, drawn only on a terminal: with output to a file or a pipe there is
    #: one line per epoch whatever this says
    progress: bool = True
    #: post-training static int8 quantization at the end of the run (CPU)
    quantize: bool = False
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    pattern: PatternConfig = field(default_factory=PatternConfig)
    #: the run this one is derived from (``method=control``; ``method=imp`` sets it for its levels)
    parent: ParentConfig = field(default_factory=ParentConfig)
    #: a prune event that leaves a layer no weight: ``warn`` at the event and train on, or ``stop`` the run
    #: there (exit code 6, summary status failed); not part of the run hash
    on_collapse: str = field(default="warn", metadata={"choices": ON_COLLAPSE})
    #: where the metrics go beside metrics.jsonl and TensorBoard's tb/: nowhere else (tensorboard), Weights
    #: & Biases (wandb) or MLflow (mlflow), each an extra: pip install -e ".[wandb]"; not part of the run hash
    logger: str = field(default="tensorboard", metadata={"choices": LOGGERS})


#: what other tools call a key, by the name a user may type (lower case, ``-`` as ``_``) -> our key path:
#: an unknown key answers "did you mean <ours>?" (config.validate.suggest_keys), before close matches
SYNONYMS = {
    **dict.fromkeys(("lr", "learning_rate", "base_lr", "learningrate", "init_lr"), "optim.lr"),
    **dict.fromkeys(("wd", "weight_decay", "weightdecay", "decay", "l2", "l2_reg"), "optim.weight_decay"),
    **dict.fromkeys(("momentum", "mom", "beta"), "optim.momentum"),
    **dict.fromkeys(("nesterov",), "optim.nesterov"),
    **dict.fromkeys(("betas", "beta1", "beta2"), "optim.betas"),
    **dict.fromkeys(("eps", "epsilon", "adam_eps"), "optim.eps"),
    **dict.fromkeys(("gamma", "lr_decay", "lr_gamma", "decay_rate"), "optim.gamma"),
    **dict.fromkeys(("milestones", "lr_steps", "lr_milestones", "decay_epochs", "steps"), "optim.milestones"),
    **dict.fromkeys(("warmup", "warmup_epochs", "lr_warmup"), "optim.warmup_epochs"),
    **dict.fromkeys(("lr_schedule", "lr_scheduler", "scheduler"), "optim.schedule"),
    **dict.fromkeys(("optimizer", "optimiser", "opt"), "optim"),
    **dict.fromkeys(("bs", "batch", "batchsize", "train_batch_size", "mini_batch_size"), "batch_size"),
    **dict.fromkeys(("test_batch_size", "eval_bs", "val_batch_size", "test_bs"), "eval_batch_size"),
    **dict.fromkeys(("epoch", "n_epochs", "num_epochs", "max_epochs", "nepochs", "train_epochs"), "epochs"),
    **dict.fromkeys(("random_seed", "rng_seed", "manual_seed", "seeds"), "seed"),
    **dict.fromkeys(("target_sparsity", "sparsity_level", "prune_ratio", "pruning_ratio", "amount", "density"),
                    "sparsity"),
    **dict.fromkeys(("arch", "architecture", "network", "net", "model_name"), "model"),
    **dict.fromkeys(("data", "ds", "dataset_name"), "dataset"),
    **dict.fromkeys(("data_dir", "data_root", "root", "data_path"), "dataset.root"),
    **dict.fromkeys(("workers", "num_workers", "n_workers"), "dataset.workers"),
    **dict.fromkeys(("gpu", "cuda", "gpus"), "device"),
    **dict.fromkeys(("amp", "fp16", "bf16", "mixed_precision", "dtype"), "precision"),
    **dict.fromkeys(("label_smoothing", "smoothing"), "loss.label_smoothing"),
    **dict.fromkeys(("output_dir", "out_dir", "save_dir", "log_dir", "outdir", "results"), "results_dir"),
    **dict.fromkeys(("layer_budget", "distribution", "sparsity_distribution"), "budget"),
    **dict.fromkeys(("pruner", "pruning_method", "prune_method", "algorithm"), "method"),
    **dict.fromkeys(("pruning_schedule", "prune_schedule"), "schedule"),
}


def key_paths() -> list[str]:
    """Every key of the fixed part, dotted (``dataset.name``), the keys of every optimiser (``optim.lr``),
    plus the free-form groups (``method``)."""
    return [key for key, _ in _leaves(RunConfig, "")] + [f"optim.{k}" for k in optimizers.keys()]


def bool_keys() -> list[str]:
    """The boolean keys of the fixed part and of the optimisers, dotted (``resume``, ``optim.nesterov``)."""
    optim = {f"optim.{f.name}" for spec in optimizers.OPTIMIZERS.values() for f in fields(spec.schema)
             if str(f.type) == "bool"}
    return [key for key, kind in _leaves(RunConfig, "") if kind == "bool"] + sorted(optim)


def choices() -> list[tuple[str, tuple]]:
    """(dotted key, allowed values) of every key of the fixed part that takes one of a few values: the
    ``choices`` its field declares, or true/false for a boolean."""
    out = []
    for key, f in _fields(RunConfig, ""):
        allowed = f.metadata.get("choices") or ((True, False) if str(f.type) == "bool" else None)
        if allowed:
            out.append((key, tuple(allowed)))
    return out


def _fields(cls: type, prefix: str) -> list[tuple[str, Any]]:
    """(dotted key, dataclass field) of every leaf field under the dataclass ``cls``."""
    out = []
    for f in fields(cls):
        kind = f.type if isinstance(f.type, type) else globals().get(str(f.type))
        out += _fields(kind, f"{prefix}{f.name}.") if is_dataclass(kind) else [(prefix + f.name, f)]
    return out


def _leaves(cls: type, prefix: str) -> list[tuple[str, str]]:
    """(dotted key, type as written) of every leaf field under the dataclass ``cls``."""
    return [(key, str(f.type)) for key, f in _fields(cls, prefix)]


def register() -> None:
    """Store :class:`RunConfig` as ``run_schema`` and each optimiser's keys as ``optim_<name>`` (the first
    entry of conf/optim/<name>.yaml's defaults) in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    for name, spec in optimizers.OPTIMIZERS.items():
        ConfigStore.instance().store(name=f"optim_{name}", node=spec.schema)
