"""The order in which the training loop calls a method's hooks (methods/base.py), pinned: a spy method
records every call (and the model's forward passes), the real Trainer runs it for 2 epochs of 2 steps
with prune events before the first step, in the middle of an epoch and at an epoch's end, a mask update
and the method's own prune, and the record is compared with the sequence written out by hand."""
import torch
from torch import nn

from flipout_repro.data import TensorData
from flipout_repro.methods.base import MaskUpdate, Method
from flipout_repro.sparsity.masking import Masks
from flipout_repro.sparsity.schedule import PruneEvent
from flipout_repro.training.trainer import Trainer, TrainState


class Spy(Method):
    """Records every hook the loop calls: its name, and the step index (0-based) or epoch it is given."""

    def __init__(self) -> None:
        super().__init__("spy")
        self.calls: list = []

    def bind(self, model, masks):
        self.calls.append("bind")
        super().bind(model, masks)

    def compile_hooks(self):
        self.calls.append("compile_hooks")

    def on_train_start(self, batches, target, epochs, steps_per_epoch):
        self.calls.append("on_train_start")

    def on_epoch_end(self, epoch):
        self.calls.append(("on_epoch_end", epoch))

    def regularizer(self, model):
        self.calls.append("regularizer")
        return None

    def after_backward(self, model):  # overridden, so modifies_grads is True and the loop calls it
        self.calls.append("after_backward")

    def after_step(self, model):
        self.calls.append("after_step")

    def scores(self, model):
        self.calls.append("scores")
        return [w.detach().abs() for w in self.masks.params]

    def replaces_step(self, step):
        self.calls.append(("replaces_step", step))
        return False

    def mask_update(self, step):
        self.calls.append(("mask_update", step))
        if step != 0:
            return None
        scores = [w.detach().abs() for w in self.masks.params]
        return MaskUpdate(scores, [torch.ones_like(s) for s in scores], [1, 0])

    def after_mask_update(self, result):
        self.calls.append("after_mask_update")

    def summary_stats(self):
        self.calls.append("summary_stats")
        return {}

    def prune_due(self, epoch):
        self.calls.append(("prune_due", epoch))
        return (0.75, "global") if epoch == 2 else None

    def after_prune(self):
        self.calls.append("after_prune")

    def epoch_stats(self):
        self.calls.append("epoch_stats")
        return {}

    def state_dict(self):
        self.calls.append("state_dict")
        return {}

    def load_state_dict(self, state):
        self.calls.append("load_state_dict")


def test_the_loop_calls_the_hooks_in_this_order():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    masks = Masks.for_model(net)
    spy = Spy()
    spy.bind(net, masks)  # as training/build.py does, before the Trainer exists
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1] * 4)
    one = torch.ones(1, 1, 1, 1)
    data = TensorData(x, y, x, y, one / 2, one / 2)  # 8 images, batch 4: 2 steps an epoch
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    events = [PruneEvent(step=0, sparsity=0.25), PruneEvent(step=1, sparsity=0.5), PruneEvent(step=2, sparsity=0.6)]
    calls = spy.calls
    # the forward passes too, to place the hooks around the step's forward and the epoch's evaluation
    net.register_forward_pre_hook(lambda module, args: calls.append("forward" if module.training else "evaluate"))
    trainer = Trainer(net, data, spy, masks, opt, torch.optim.lr_scheduler.MultiStepLR(opt, [100]), events,
                      epochs=2, target=0.6, batch_size=4, eval_batch_size=8, generator=torch.Generator(),
                      progress=False,
                      on_epoch=lambda rec, st: calls.append(("epoch record", rec["epoch"])),
                      on_prune=lambda rec, st: calls.append(("prune record", rec["step"])),
                      on_mask_update=lambda rec, st: calls.append(("mask update record", rec["step"])),
                      checkpoint=lambda st: calls.append(("checkpoint", st.step)))
    state = trainer.run(TrainState())

    # compile_hooks, summary_stats, state_dict and load_state_dict belong to the run (build.py, run.py,
    # the checkpoint), not to the loop: they never appear here
    assert calls == [
        "bind",
        "on_train_start",
        "scores", "after_prune", ("prune record", 0),  # the event at step 0: pruning at initialisation
        # epoch 1, step 0: the mask update, then its record once the step is done
        "forward", "regularizer", "after_backward", ("replaces_step", 0), ("mask_update", 0),
        "after_mask_update", "after_step", ("mask update record", 1),
        "scores", "after_prune", ("prune record", 1),  # the event after step 0, in the middle of epoch 1
        # epoch 1, step 1: its last; the event at its end waits for the evaluation
        "forward", "regularizer", "after_backward", ("replaces_step", 1), ("mask_update", 1), "after_step",
        ("on_epoch_end", 1), "evaluate", "epoch_stats", ("epoch record", 1),
        "scores", "after_prune", ("prune record", 2),
        ("prune_due", 1),
        ("checkpoint", 2),
        # epoch 2
        "forward", "regularizer", "after_backward", ("replaces_step", 2), ("mask_update", 2), "after_step",
        "forward", "regularizer", "after_backward", ("replaces_step", 3), ("mask_update", 3), "after_step",
        ("on_epoch_end", 2), "evaluate", "epoch_stats", ("epoch record", 2),
        ("prune_due", 2), "scores", "after_prune", ("prune record", 4),  # the method's own prune
        ("checkpoint", 4),
    ]
    assert (state.epoch, state.step, state.events_done) == (2, 4, 3)
    assert masks.total() - sum(masks.nonzero_counts()) == round(0.75 * masks.total())
