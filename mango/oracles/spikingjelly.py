"""SpikingJelly conventions for :class:`~mango.oracles.SNNOracle` (one home for them).

SpikingJelly (``spikingjelly.activation_based``) differs from snntorch in three ways
that matter to an oracle:

* neurons (any ``neuron.BaseNode``) keep their state in the module (membrane ``.v``)
  and are reset by ``functional.reset_net(net)``;
* every SpikingJelly module has a *step mode*: ``'s'`` (single step, tensors
  ``[N, ...]``) or ``'m'`` (multi-step, tensors ``[T, N, ...]``);
* a neuron's output is its spikes; its membrane after each step is ``.v``
  (after the firing reset), and in multi-step mode ``.v_seq`` ``[T, N, ...]`` when
  ``store_v_seq=True``.

Nothing here imports SpikingJelly unless the network being probed was built with it
(it is then in ``sys.modules``), so snntorch users never pay for it.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
import torch.nn as nn

__all__ = ["loaded", "neuron_class", "is_neuron", "step_mode", "reset", "stateless_types",
           "is_time_stateless", "constant_in_time", "broadcast_prefix", "call_order_prefix"]


def loaded() -> bool:
    """Has the process imported SpikingJelly's activation-based API (so a network may use it)?"""
    return "spikingjelly.activation_based.neuron" in sys.modules or "spikingjelly.activation_based" in sys.modules


def neuron_class():
    """``spikingjelly.activation_based.neuron.BaseNode``, or None when SpikingJelly is not in use."""
    if not loaded():
        return None
    try:
        from spikingjelly.activation_based import neuron
    except Exception:  # noqa: BLE001 - a broken install is "not in use" here; importing the net would fail first
        return None
    return neuron.BaseNode


def is_neuron(m: nn.Module) -> bool:
    cls = neuron_class()
    return cls is not None and isinstance(m, cls)


def step_mode(m: nn.Module) -> str | None:
    """``'s'`` / ``'m'`` for a SpikingJelly step module, None for any other module."""
    mode = getattr(m, "step_mode", None)
    return mode if mode in ("s", "m") else None


def reset(model: nn.Module) -> None:
    """``functional.reset_net``: every stateful SpikingJelly module (neurons, dropout masks, ...) to its first state."""
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


_TYPES: tuple | None = None


def stateless_types() -> tuple:
    """SpikingJelly layers whose output at a time step depends only on their input at that step (exact types)."""
    global _TYPES
    if _TYPES is None:
        if not loaded():
            return ()
        from spikingjelly.activation_based import layer

        names = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
                 "Linear", "Flatten", "Upsample", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
                 "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
                 "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm")
        _TYPES = tuple(getattr(layer, n) for n in names if hasattr(layer, n))
    return _TYPES


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def is_time_stateless(m: nn.Module, plain_stateless) -> bool:
    """A multi-step module that applies one stateless function to every time step.

    A SpikingJelly stateless layer in ``'m'`` mode, or a ``SeqToANNContainer`` whose
    children are all stateless (``plain_stateless(child)``: mango's list of plain torch
    layers).  Batch norm counts only in eval mode.
    """
    if isinstance(m, _BN) and m.training:
        return False
    if type(m) in stateless_types():
        return step_mode(m) == "m"
    from spikingjelly.activation_based import layer

    if type(m) is layer.SeqToANNContainer:
        return len(m) > 0 and all(plain_stateless(c) for c in m)
    return False


def constant_in_time(x) -> bool:
    """Is ``x`` ``[T, N, ...]`` (T > 1) the same at every time step?  Exact; a broadcast is checked by stride."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 2:
        return False
    if x.stride(0) == 0:
        return True
    return bool(torch.equal(x[1:], x[:1].expand_as(x[1:])))


def call_order_prefix(model: nn.Module, run, plain_stateless) -> list[nn.Module]:
    """The time-stateless modules that run before anything stateful, in call order.

    ``run()`` runs one forward pass of ``model``; pre-hooks record which modules are
    called in which order.  Walking that order, a time-stateless module joins the
    prefix (its submodules are skipped), a container is looked into, and the first
    stateful module (a neuron, any SpikingJelly memory module) or unknown leaf ends
    the prefix.  (Wrapping a module that is not first would still be exact, as
    :func:`broadcast_prefix` checks its input; only the check would be wasted.)
    """
    order: list[nn.Module] = []
    handles = [m.register_forward_pre_hook(lambda mod, inp: order.append(mod)) for m in model.modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    from spikingjelly.activation_based import base

    prefix, inside = [], set()
    for m in order:
        if id(m) in inside:
            continue
        if is_time_stateless(m, plain_stateless):
            if m not in prefix:
                prefix.append(m)
            inside.update(id(c) for c in m.modules())
            continue
        if isinstance(m, base.MemoryModule) or not any(True for _ in m.children()):
            break  # a neuron or other stateful module, or an unknown leaf
    return prefix


@contextmanager
def broadcast_prefix(modules):
    """While active, each module of ``modules`` given an input constant in time computes one step and broadcasts it.

    The result is the same tensor values as the module's own forward pass (a
    stateless per-step function of a constant sequence is constant), computed once
    instead of ``T`` times.  Inputs that are not constant in time take the normal path.
    """
    made: list[torch.Tensor] = []  # outputs of these wrappers in this pass: known constant in time

    def wrap(m):
        orig = m.forward

        def forward(x, *args, **kwargs):
            if args or kwargs or not (any(x is y for y in made) or constant_in_time(x)):
                return orig(x, *args, **kwargs)
            y = orig(x[:1])
            y = y.expand((x.shape[0],) + tuple(y.shape[1:])).contiguous()
            made.append(y)
            return y

        return forward

    patched = []
    try:
        for m in modules:
            if "forward" in m.__dict__:  # someone else patched it: leave it alone
                continue
            m.forward = wrap(m)
            patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward
        made.clear()
