"""``inception``: a model of the whole recorded population, fit on every response, maximized per unit.

An *inception loop* (Walker et al. 2019; Bashivan et al. 2019) in closed loop.
Every query gives every target unit's response; one model learns them all:

1. **Model**, one of two:

   * by default an ensemble of small CNNs on the generated images with one
     output per target, sharing their convolutional features across targets (a
     population's units are driven by the same strokes, edges and blobs).  Each
     target's responses are standardized.  Refit, warm-started from the last
     weights, whenever the data grew by ``refit`` (a fraction) since the last fit;
   * with ``backbone`` (a pretrained network of the stimulus domain, cut at
     ``backbone_layer``), the classic inception-loop model: a linear readout per
     target of the backbone's frozen features (Bayesian ridge regression, ridge
     chosen by exact leave-one-out error; :mod:`mango.optimizers.inception.readout`),
     refit on every ask that has new data.  The readout's posterior standard
     deviation is the spread of the upper confidence bound.
2. **Synthesis**: the points of an ask are dealt round-robin to the targets.
   For each, gradient ascent *through the generator* on the model's
   upper confidence bound (mean + ``beta`` x spread, with ``beta`` drawn per
   point so that a batch is diverse) from the target's best point so far,
   inside a trust region around it.
3. **Trust region** per target: its side doubles after ``success_tol``
   improvements in a row and halves after ``failure_tol`` failures.

Until ``n_init`` points have values, asks are uniform draws from the space.
Needs a differentiable generator (the VQ-VAE embedding, the GAN, gratings, a
differentiable ModuleGenerator) or none (a plain function of the points: the
model is then an MLP on the coordinates); for codes or opaque generators use
``surrogate`` (evolutionary acquisition).  Works for one target too.

State (format ``inception-1``): the data, the trust regions, the networks'
weights and the random state; a loaded optimizer continues exactly (a
readout is refit from the data: the same fit).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError
from ..base import Optimizer

__all__ = ["InceptionOptimizer"]


def _net(channels: int, k: int, image: bool = True) -> nn.Module:
    """A CNN on images with ``channels`` channels, or (``image=False``) an MLP on ``channels`` coordinates."""
    if not image:
        return nn.Sequential(nn.Linear(channels, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, k))
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, k))


class InceptionOptimizer(Optimizer):
    """Multi-target CNN ensemble + synthesis through the generator (see the module doc).

    Parameters
    ----------
    n_targets : targets (units) served; ``tell`` takes values ``[n, n_targets]`` (``[n]`` for one).
    n_init : uniform draws before the model takes over (default ``max(20, 2 * n_targets)``).
    members : CNNs in the ensemble.
    epochs_first, epochs : training epochs of the first fit and of each refit.
    refit : refit when the data grew by this fraction since the last fit.
    beta_max : the largest ``beta`` of the upper confidence bound (drawn uniformly in [0, beta_max]).
    steps : gradient steps per synthesis.
    length_init, length_min, length_max, success_tol, failure_tol : the per-target trust region (a
        fraction of the box side).
    backbone, backbone_layer : a pretrained model (``zoo:NAME`` or ``FILE.py:FACTORY``) and the name of
        the layer whose output is the features of a linear readout per target (e.g. ``zoo:cnn-digits`` and
        ``features.relu2`` for digit stimuli); ``None`` (default): the CNN ensemble learned from scratch.
    device : torch device of the model (default: the generator's).
    """

    name = "inception"
    native = ("box", "grid")
    needs = frozenset({"generator"})
    multi_target = True
    defaults = {"n_init": None, "members": 3, "epochs_first": 100, "epochs": 30, "refit": 0.1, "beta_max": 1.0,
                "steps": 150, "length_init": 1.0, "length_min": 0.02, "length_max": 1.0, "success_tol": 2,
                "failure_tol": 3, "backbone": None, "backbone_layer": None, "device": None}

    def __init__(self, space, seed=None, budget=None, batch_size=None, n_targets: int = 1, **params):
        if isinstance(n_targets, bool) or int(n_targets) != n_targets or n_targets < 1:
            raise ConfigError(f"n_targets must be an integer >= 1, got {n_targets!r}.")
        self.n_targets = int(n_targets)
        self._generator = None
        super().__init__(space, seed=seed, budget=budget, batch_size=batch_size, **params)

    # -- setup ------------------------------------------------------------------
    def _setup(self) -> None:
        p = self.params
        for key in ("members", "epochs_first", "epochs", "steps", "success_tol", "failure_tol"):
            if isinstance(p[key], bool) or int(p[key]) != p[key] or p[key] < 1:
                raise ConfigError(f"{key} must be an integer >= 1, got {p[key]!r}.")
        for key in ("refit", "beta_max"):
            if isinstance(p[key], bool) or not isinstance(p[key], (int, float)) or not p[key] >= 0:
                raise ConfigError(f"{key} must be a number >= 0, got {p[key]!r}.")
        if not 0 < p["length_min"] <= p["length_init"] <= p["length_max"] <= 1:
            raise ConfigError("trust region lengths need 0 < length_min <= length_init <= length_max <= 1, got "
                              f"{p['length_min']}, {p['length_init']}, {p['length_max']}.")
        n_init = p["n_init"] if p["n_init"] is not None else max(20, 2 * self.n_targets)
        if isinstance(n_init, bool) or int(n_init) != n_init or n_init < 2:
            raise ConfigError(f"n_init must be an integer >= 2, got {n_init!r}.")
        self.n_init = int(n_init)
        k = self.n_targets
        self._points: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._length = np.full(k, float(p["length_init"]))
        self._succ = np.zeros(k, dtype=np.int64)
        self._fail = np.zeros(k, dtype=np.int64)
        self._turn = 0  # the next target a synthesized point serves
        self._asked_for: list[int] = []  # target of each outstanding synthesized point, in ask order (-1: random)
        self._nets: list[nn.Module] | None = None
        self._backbone = None
        if p["backbone"] is not None or p["backbone_layer"] is not None:
            from .readout import Backbone

            self._backbone = Backbone(p["backbone"], p["backbone_layer"], device=self.device)
        self._readout = None
        self._fit_n = 0
        self._n_asked = 0
        box = self.space if self.space.kind == "box" else self.space.box
        self._low, self._high = np.asarray(box.low, float), np.asarray(box.high, float)

    def _connect(self, generator=None) -> None:
        if generator is None:  # a plain function of the points: an MLP on the coordinates
            if self._backbone is not None:
                raise ConfigError(f"inception's backbone {self.params['backbone']!r} needs a generator of images; "
                                  "this campaign has none. Drop backbone or give a generator.")
            self._generator = None
            return
        if generator.space != self.space:
            raise ConfigError(f"the generator's space {generator.space!r} is not the optimizer's {self.space!r}.")
        if not generator.differentiable:
            raise ConfigError(f"inception needs a differentiable generator; {type(generator).__name__} over a "
                              f"{generator.space.kind} space is not. Use 'surrogate' (evolutionary acquisition) for "
                              "VQ-VAE codes or opaque generators.")
        self._generator = generator
        if self._backbone is not None:  # where the images will be (the generator's device unless told otherwise)
            self._backbone.model.to(self.device)

    @property
    def device(self) -> torch.device:
        d = self.params["device"]
        if d is not None:
            return torch.device(d)
        return self._generator.device if self._generator else torch.device("cpu")

    @property
    def preferred_batch_size(self) -> int | None:
        return 10

    # -- data ---------------------------------------------------------------------
    def _data(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self._points), np.concatenate(self._values)

    def _add(self, points: np.ndarray, values: np.ndarray) -> None:
        self._points.append(np.asarray(points))
        self._values.append(np.asarray(values, dtype=float).reshape(len(points), self.n_targets))

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float).reshape(len(points), self.n_targets)
        before = self._data()[1].max(axis=0) if self._points else None
        served = self._asked_for[:len(points)]
        del self._asked_for[:len(points)]
        self._add(points, values)
        if before is None:
            return
        for j in set(t for t in served if t >= 0):  # the trust region of each target served by this batch
            rows = [i for i, t in enumerate(served) if t == j]
            if values[rows, j].max() > before[j] + 1e-3 * abs(before[j]):
                self._succ[j], self._fail[j] = self._succ[j] + 1, 0
            else:
                self._succ[j], self._fail[j] = 0, self._fail[j] + 1
            if self._succ[j] >= self.params["success_tol"]:
                self._length[j], self._succ[j] = min(2 * self._length[j], self.params["length_max"]), 0
            elif self._fail[j] >= self.params["failure_tol"]:
                self._length[j], self._fail[j] = self._length[j] / 2, 0
                if self._length[j] < self.params["length_min"]:
                    self._length[j] = self.params["length_init"]  # collapsed: start afresh around the best

    def _warm_start(self, points: np.ndarray, values: np.ndarray) -> None:
        self._add(points, values)

    def _observe(self, points: np.ndarray, values: np.ndarray) -> None:
        self._add(points, values)

    # -- ask --------------------------------------------------------------------------
    def _ask(self, n: int) -> np.ndarray:
        self._n_asked += n
        have = sum(len(p) for p in self._points)
        if have < self.n_init:
            self._asked_for += [-1] * n
            return self.space.sample(n, seed=self.rng)
        self._fit()
        targets = [(self._turn + i) % self.n_targets for i in range(n)]
        self._turn = (self._turn + n) % self.n_targets
        self._asked_for += targets
        return self._synthesize(targets)

    def _fit(self) -> None:
        pts, vals = self._data()
        if self._backbone is not None:
            self._fit_readout(pts, vals)
            return
        if self._nets is not None and len(pts) < (1 + self.params["refit"]) * self._fit_n:
            return
        first = self._nets is None
        gen = torch.Generator().manual_seed(int(self.rng.integers(0, 2 ** 62)))
        x = self._inputs(pts)
        y = torch.as_tensor(self._standardize(vals), dtype=torch.float32, device=self.device)
        if first:
            self._nets = []
            for _ in range(int(self.params["members"])):
                with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's torch RNG
                    torch.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=gen)))
                    net = _net(x.shape[1], self.n_targets, image=x.dim() == 4)
                self._nets.append(net.to(self.device))
        epochs = int(self.params["epochs_first" if first else "epochs"])
        for net in self._nets:
            net.train()
            for q in net.parameters():
                q.requires_grad_(True)
            opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
            for _ in range(epochs):
                perm = torch.randperm(len(x), generator=gen).to(self.device)
                for b in range(0, len(x), 64):
                    idx = perm[b:b + 64]
                    loss = ((net(x[idx]) - y[idx]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            net.eval()
            for q in net.parameters():
                q.requires_grad_(False)
        self._fit_n = len(pts)

    def _fit_readout(self, pts: np.ndarray, vals: np.ndarray) -> None:
        """Refit the linear readout of the backbone's features when there are new data."""
        if self._readout is not None and len(pts) == self._fit_n:
            return
        from .readout import LinearReadout

        feats = []
        for b in range(0, len(pts), 256):  # all of them, in the same chunks every time: a resumed run's features
            with torch.no_grad():           # are bit for bit the uninterrupted run's
                feats.append(self._backbone(self._inputs(pts[b:b + 256])).double().cpu().numpy())
        self._readout = LinearReadout().fit(np.concatenate(feats), vals)
        self._fit_n = len(pts)

    def _standardize(self, vals: np.ndarray) -> np.ndarray:
        sd = vals.std(axis=0)
        self._mu, self._sd = vals.mean(axis=0), np.where(sd > 0, sd, 1.0)
        return (vals - self._mu) / self._sd

    def predict(self, points) -> np.ndarray:
        """The model's mean prediction of every target's response at ``points`` (``[n, n_targets]``), in
        the responses' units, as of the last fit (``None`` before the first)."""
        if self._readout is not None:
            with torch.no_grad():
                mean, _ = self._readout.predict(self._backbone(self._inputs(self.space.validate(points))).double())
            return self._readout.to_values(mean.cpu().numpy())
        if self._nets is None:
            return None
        x = self._inputs(self.space.validate(points))
        with torch.no_grad():
            pred = torch.stack([net(x) for net in self._nets]).mean(0).double().cpu().numpy()
        return pred * self._sd + self._mu

    def _inputs(self, points: np.ndarray) -> torch.Tensor:
        """The model's inputs for points: their images, or (no generator) their coordinates scaled to [0, 1]."""
        if self._generator is not None:
            with torch.no_grad():
                return self._generator(points).to(self.device)
        coords = self.space.values(points) if self.space.kind == "grid" else np.asarray(points, float)
        return self._inputs_of(torch.as_tensor(coords, dtype=torch.float32, device=self.device))

    def _inputs_of(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable model inputs of latent coordinates ``z`` (through the generator when there is one)."""
        if self._generator is not None:
            return self._generator.decode(z)
        low = torch.as_tensor(self._low, dtype=torch.float32, device=z.device)
        span = torch.as_tensor(np.maximum(self._high - self._low, 1e-300), dtype=torch.float32, device=z.device)
        return (z - low) / span

    def _synthesize(self, targets: list[int]) -> np.ndarray:
        pts, vals = self._data()
        n = len(targets)
        tj = torch.as_tensor(targets, device=self.device)
        # each point starts from one of its target's best few points (the best for the first of a batch)
        tops = {j: np.argsort(-vals[:, j], kind="stable")[:3] for j in set(targets)}
        seen: dict[int, int] = {}
        starts = []
        for j in targets:
            r = seen.get(j, 0)
            seen[j] = r + 1
            starts.append(pts[tops[j][0] if r == 0 else int(self.rng.choice(tops[j]))])
        starts = np.asarray(starts, dtype=float)
        if self.space.kind == "grid":  # indices -> the Box values the generator decodes
            starts = self.space.values(starts.astype(np.int64))
        span = self._high - self._low
        half = (self._length[targets] / 2)[:, None] * span
        lo, hi = np.maximum(starts - half, self._low), np.minimum(starts + half, self._high)
        # start from the best point, nudged inside the region (two points for one target must differ)
        z0 = np.clip(starts + self.rng.normal(0, 0.1, starts.shape) * (hi - lo), lo, hi)
        beta = torch.as_tensor(self.rng.uniform(0, self.params["beta_max"], n), dtype=torch.float32,
                               device=self.device)
        lo_t, hi_t = (torch.as_tensor(a, dtype=torch.float32, device=self.device) for a in (lo, hi))
        z = torch.tensor(z0, dtype=torch.float32, device=self.device, requires_grad=True)
        opt = torch.optim.Adam([z], lr=float(0.05 * np.mean(hi - lo)) or 1e-3)
        for _ in range(int(self.params["steps"])):
            img = self._inputs_of(z)
            if self._readout is not None:
                mean, std = self._readout.predict(self._backbone(img), tj)
                ucb = mean + beta * std
            else:
                preds = torch.stack([net(img) for net in self._nets])[:, torch.arange(n), tj]  # [members, n]
                ucb = preds.mean(0) + beta * (preds.std(0) if len(self._nets) > 1 else 0.0)
            (z.grad,) = torch.autograd.grad(-ucb.sum(), [z])
            opt.step()
            with torch.no_grad():
                z.copy_(torch.minimum(torch.maximum(z, lo_t), hi_t))
        out = z.detach().cpu().numpy().astype(float)
        return self.space.index(out) if self.space.kind == "grid" else self.space.clip(out)

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        pts, vals = self._data() if self._points else (np.zeros((0, self.space.dim)), np.zeros((0, self.n_targets)))
        nets = None
        if self._nets is not None:
            nets = []
            for net in self._nets:
                buf = io.BytesIO()
                torch.save(net.state_dict(), buf)
                nets.append(np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())
        return {**self._state_header("inception-1"), "points": pts, "values": vals,
                "length": self._length, "succ": self._succ, "fail": self._fail, "turn": int(self._turn),
                "asked_for": list(self._asked_for), "fit_n": int(self._fit_n), "nets": nets,
                "scale": None if nets is None else [self._mu, self._sd],
                "rng": self.rng.bit_generator.state, "n_asked": int(self._n_asked), "n_told": int(self._n_told),
                "best_point": self._best_point, "best_value": self._best_value}

    def load_state_dict(self, state: dict) -> None:
        self._restore_header(state, "inception-1")
        self._reset()
        pts = np.asarray(state["points"]).reshape(-1, self.space.dim).astype(self.space.dtype)
        if len(pts):
            self._add(pts, np.asarray(state["values"], dtype=float))
        self._length = np.asarray(state["length"], dtype=float)
        self._succ = np.asarray(state["succ"], dtype=np.int64)
        self._fail = np.asarray(state["fail"], dtype=np.int64)
        self._turn = int(state["turn"])
        self._asked_for = [int(t) for t in state["asked_for"]]
        self._fit_n = int(state["fit_n"])
        if state["nets"] is not None:
            self._mu, self._sd = (np.asarray(a, dtype=float) for a in state["scale"])
            self._nets = []
            for blob in state["nets"]:
                # weights_only: plain tensors, never pickled objects
                sd = torch.load(io.BytesIO(np.asarray(blob, dtype=np.uint8).tobytes()), weights_only=True,
                                map_location=self.device)
                w = sd["0.weight"]
                net = _net(w.shape[1], self.n_targets, image=w.dim() == 4).to(self.device)
                net.load_state_dict(sd)
                net.eval()
                for q in net.parameters():
                    q.requires_grad_(False)
                self._nets.append(net)
        self.rng.bit_generator.state = state["rng"]
        self._n_asked, self._n_told = int(state["n_asked"]), int(state["n_told"])
        self._restore_best(state)
