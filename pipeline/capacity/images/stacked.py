"""S copies of one 2D ConvNet, one per initialisation seed, run as one network.

Every parameter and buffer of the lab's ``ConvNet2d`` is stacked on a leading seed axis
(``(S, *shape)``), and the forward pass walks the template's layers once for all seeds:

* **conv stack**: seeds side by side in the channel axis, ``(B, S·C, H, W)``, stored
  channels-last (pooling and grouped convolutions on CPU run several times faster so); a
  convolution is one grouped convolution (``groups=S``), so seed s only ever sees its own
  channels. Batch norm, ReLU and pooling act per channel, hence per seed (each seed keeps
  its own running statistics, in its own rows of the stacked buffers). A ReLU followed by a
  max pool runs as pool then ReLU: the same values and gradients (both pick the first
  maximal position; a window whose maximum is <= 0 passes no gradient either way) for a
  quarter of the ReLU's work.
* **head**: ``(S, B, D)``; a linear layer is one batched matmul (``baddbmm``) of W and hᵀ.
* **dropout**: each seed draws its masks from its own generator (``mask_generator``), so a
  seed's masks do not depend on which other seeds share the batch. They are not the masks of
  `pipeline train --seed s`, which come from torch's global generator.

A rows tensor with C channels instead of S·C is one batch shared by every seed (scoring): each seed
gets a copy, so that every convolution is the grouped one (a dense one from C channels to S·F
ran slower, and from one channel it left its output contiguous, where pooling took 2 ms a batch).
The stacked tensors are leaves that ``torch.optim`` updates directly: its updates are
elementwise, so a seed's slice moves exactly as that seed's own model would.
With ``functional`` set, the forward pass is instead ``torch.func``'s (``vmapped``: ``vmap`` over
``functional_call`` of the template), the ``vmap`` strategy; it cannot give a seed its own dropout
stream, so nets with dropout never run it.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError

MASK_STREAM = 0x5EED_0000_0000  # a seed's dropout generator is seeded with MASK_STREAM + seed


def mask_generator(seed: int, device: torch.device) -> torch.Generator:
    """Seed ``seed``'s own dropout stream (apart from its batch order, torch.Generator().manual_seed(seed))."""
    return torch.Generator(device=device).manual_seed(MASK_STREAM + int(seed))


def log_softmax(h: torch.Tensor) -> torch.Tensor:
    """F.log_softmax(h, dim=-1) of (S, B, classes), the same values, computed over a non-last axis.

    torch's CPU kernel over a short last axis (10 classes) took 80 us on 512 rows, three times
    what the same kernel over the transposed tensor's middle axis takes.
    """
    return F.log_softmax(h.transpose(1, 2), dim=1).transpose(1, 2)


class _GradIn(torch.autograd.Function):
    """The identity, whose backward hands the gradient on in ``memory_format``."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.memory_format = memory_format
        return h.view_as(h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.contiguous(memory_format=ctx.memory_format), None


INITIALISED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)  # the layers of a ConvNet2d with parameters


def reinitialised(template: nn.Module, seeds: Sequence[int]) -> list[dict[str, torch.Tensor]]:
    """The weights and buffers of the template's model as ``build_model(seed=s)`` builds it, for every
    seed: seeded, the CPU generator draws each layer's initial weights in construction order
    (``reset_parameters``, as their constructors do). The template ends as the last seed's model.
    Building each model anew, checks included, took 20 ms a seed, most of it in torch.manual_seed
    seeding the accelerators' generators, which a CPU build never reads.
    """
    if any(list(m.parameters(recurse=False)) and not isinstance(m, INITIALISED) for m in template.modules()):
        raise ConfigError(f"the multi-seed trainer runs the 2D ConvNets, not {type(template).__name__}")
    states = []
    for s in seeds:
        torch.default_generator.manual_seed(int(s))
        for m in template.modules():
            if isinstance(m, INITIALISED):
                m.reset_parameters()
        states.append({k: v.detach().clone() for k, v in template.state_dict().items()})
    return states


class StackedNet:
    """The models of ``seeds`` (same architecture) with their weights stacked; call it like a model."""

    def __init__(self, models: Sequence[nn.Module], seeds: Sequence[int], device: torch.device | str = "cpu",
                 channels_last: bool = True, states: Sequence[dict[str, torch.Tensor]] | None = None):
        """``states``: every seed's weights and buffers, ``models`` then only the template (kept, not
        copied); else the models' own."""
        template = models[0]
        self.template = template.cpu() if states else copy.deepcopy(template).cpu()
        states = states or [m.state_dict() for m in models]
        if not (hasattr(template, "features") and hasattr(template, "classifier")):
            raise ConfigError(f"the multi-seed trainer runs the 2D ConvNets, not {type(template).__name__}")
        self.seeds = tuple(int(s) for s in seeds)
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.training = True
        with torch.no_grad():
            self.params = {name: torch.stack([st[name] for st in states]).to(self.device).requires_grad_()
                           for name, _ in template.named_parameters()}
            self.buffers = {name: torch.stack([st[name] for st in states]).to(self.device)
                            for name, _ in template.named_buffers()}
        self.layers = [(f"features.{n}", m) for n, m in template.features.named_children()] + \
                      [("flatten", nn.Flatten())] + \
                      [(f"classifier.{n}", m) for n, m in template.classifier.named_children()]
        for i in range(len(self.layers) - 1):  # ReLU -> pool as pool -> ReLU: 4x less ReLU work, the same numbers
            if isinstance(self.layers[i][1], nn.ReLU) and isinstance(self.layers[i + 1][1], nn.MaxPool2d):
                self.layers[i : i + 2] = self.layers[i + 1], self.layers[i]
        has_dropout = any(isinstance(m, (nn.Dropout, nn.Dropout2d)) and m.p > 0 for _, m in self.layers)
        self.generators = [mask_generator(s, self.device) for s in self.seeds] if has_dropout else []
        self.functional = False  # forward through torch.func (``vmapped``) instead of grouped convolutions

    @classmethod
    def from_seeds(cls, make: Callable[[int], nn.Module], seeds: Sequence[int],
                   device: torch.device | str = "cpu", channels_last: bool = True) -> "StackedNet":
        """``make(seeds[0])`` (it seeds torch itself, as ``build_model`` does), the others re-drawn
        (``reinitialised``); torch's global random state is left as it was."""
        with torch.random.fork_rng(devices=[]):
            template = make(int(seeds[0]))
            return cls([template], seeds, device, channels_last, states=reinitialised(template, seeds))

    # ------------------------------------------------------------------ the model interface
    @property
    def size(self) -> int:
        return len(self.seeds)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def num_parameters(self) -> int:
        """Parameters of one seed's model."""
        return sum(p[0].numel() for p in self.params.values())

    def train(self, mode: bool = True) -> "StackedNet":
        self.training = mode
        return self

    def eval(self) -> "StackedNet":
        return self.train(False)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Seed ``seeds[i]``'s weights and buffers, loadable into the template's model."""
        return {name: t[i].detach().cpu().clone() for name, t in (*self.params.items(), *self.buffers.items())}

    def model(self, i: int) -> nn.Module:
        """Seed ``seeds[i]`` as a plain model (a copy)."""
        model = copy.deepcopy(self.template)
        model.load_state_dict(self.state_dict(i))
        return model

    # ------------------------------------------------------------------ forward
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S·C, H, W) rows per seed, or (B, C, H, W) rows for all -> (S, B, outputs)."""
        if self.functional:
            return self.vmapped(x)
        if x.shape[1] == self.template.input_shape[0] and self.size > 1:  # one batch for all: each seed a copy
            x = x.unsqueeze(1).expand(-1, self.size, *x.shape[1:]).flatten(1, 2)
        h = x.contiguous(memory_format=self.memory_format)  # (B, S·C, H, W)
        for name, layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                h = self._conv(name, layer, h)
            elif isinstance(layer, nn.BatchNorm2d):
                h = self._batch_norm(name, layer, h)
            elif isinstance(layer, nn.Flatten):
                h = self._flatten(h)
            elif isinstance(layer, nn.Linear):
                h = self._linear(name, h)
            elif isinstance(layer, nn.ReLU):
                h = F.relu(h)
            elif isinstance(layer, nn.MaxPool2d):
                h = F.max_pool2d(h, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                 ceil_mode=layer.ceil_mode)
            elif isinstance(layer, (nn.Dropout, nn.Dropout2d)):
                h = self._dropout(layer.p, h, channels=isinstance(layer, nn.Dropout2d))
            else:
                raise ConfigError(f"the multi-seed trainer does not know layer {name} ({type(layer).__name__})")
        return log_softmax(h) if self.template.log_softmax else h

    def vmapped(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass as ``torch.func`` runs it: the template's own forward, vmapped over the seeds.

        Batch norm updates each seed's running statistics in its own rows of the stacked
        buffers. Dropout would draw from torch's global generator: ``strategy`` keeps it out.
        """
        from torch.func import functional_call, vmap  # loaded only when this strategy runs

        if self.generators and self.training:
            raise ConfigError("torch.func cannot give each seed its own dropout masks (use grouped or loop)")
        C = self.template.input_shape[0]
        shared = x.shape[1] == C and self.size > 1  # one batch for every seed (scoring)
        rows = x if shared else x.view(x.shape[0], self.size, C, *x.shape[2:]).transpose(0, 1)  # (S, B, C, H, W)
        self.template.train(self.training)
        forward = vmap(lambda p, b, r: functional_call(self.template, (p, b), (r,)), in_dims=(0, 0, None if shared else 0))
        return forward(self.params, self.buffers, rows)

    def _flatten(self, h: torch.Tensor) -> torch.Tensor:
        """(B, S·C, H, W) -> (S, B, C·H·W), each seed's features in torch's order (c, y, x).

        Its gradient (which ``_linear`` leaves transposed) is handed back in the conv stack's
        memory format (``_GradIn``): a ReLU's backward with a channels-last input and a gradient
        in another layout ran 10-65x slower than with both alike.
        """
        B, SC, H, W = h.shape
        rows = _GradIn.apply(h, self.memory_format).permute(0, 2, 3, 1).reshape(B, H * W, self.size, -1)  # (B, y·x, S, C)
        return rows.permute(2, 0, 3, 1).reshape(self.size, B, -1).contiguous()  # (S, B, C·y·x)

    def _linear(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """(S, B, D) -> (S, B, O), computed as W·hᵀ, stored (S, O, B): on the CPU torch's batched
        matmuls ran twice as fast so as h·Wᵀ, forward and backward (the weight's gradient comes out in
        its own layout), and the loss's log-softmax wants classes in the middle (``log_softmax``)."""
        w, b = self.params[f"{name}.weight"], self.params.get(f"{name}.bias")  # (S, O, D), (S, O)
        ht = h.transpose(1, 2)  # (S, D, B)
        return (torch.bmm(w, ht) if b is None else torch.baddbmm(b.unsqueeze(2), w, ht)).transpose(1, 2)

    def _conv(self, name: str, layer: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
        w, b = self.params[f"{name}.weight"], self.params.get(f"{name}.bias")  # (S, F, C, k, k), (S, F)
        return F.conv2d(h, w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1), layer.stride,
                        layer.padding, layer.dilation, groups=self.size)  # (B, S·F, H', W')

    def _batch_norm(self, name: str, layer: nn.BatchNorm2d, h: torch.Tensor) -> torch.Tensor:
        """BatchNorm2d per (seed, channel): exactly each seed's own layer, running statistics included."""
        mean, var = (self.buffers.get(f"{name}.running_{s}") for s in ("mean", "var"))
        training = self.training or mean is None
        momentum = layer.momentum
        if self.training and mean is not None:
            count = self.buffers[f"{name}.num_batches_tracked"]
            count.add_(1)
            momentum = 1.0 / float(count[0]) if momentum is None else momentum  # cumulative average
        w, b = self.params.get(f"{name}.weight"), self.params.get(f"{name}.bias")
        flat = [None if t is None else t.view(-1) for t in (mean, var, w, b)]  # views: updates land in the stack
        return F.batch_norm(h, *flat, training=training, momentum=momentum or 0.0, eps=layer.eps)

    def _dropout(self, p: float, h: torch.Tensor, channels: bool) -> torch.Tensor:
        """Each seed's own mask: of whole channels (Dropout2d) or of units (Dropout)."""
        if not self.training or p == 0:
            return h
        keep = 1.0 - p
        if h.dim() == 4:  # (B, S·C, H, W): seed s's mask covers its own C channels
            B, C = h.shape[0], h.shape[1] // self.size
            unit = (B, C, 1, 1) if channels else (B, C, *h.shape[2:])
            mask = torch.stack(self._draw(unit, keep, h.device), dim=1).view(B, -1, *unit[2:])
        else:  # (S, B, D)
            mask = torch.stack(self._draw(h.shape[1:], keep, h.device))
        return h * mask.div_(keep)

    def _draw(self, shape: tuple[int, ...], keep: float, device: torch.device) -> list[torch.Tensor]:
        return [torch.empty(shape, device=device).bernoulli_(keep, generator=g) for g in self.generators]
