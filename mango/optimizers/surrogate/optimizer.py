"""``surrogate``: model-based activation maximization (the ask/tell shell).

Each batch:

1. **Data** (:mod:`.data`): past ``max_points`` points the GP keeps the best tenth by
   rank and the points nearest the trust region's centre.
2. **Model** (:mod:`.gp`): a GP on the stimuli of every query so far (the
   generated images, or a pretrained backbone's features of them: :mod:`.features`),
   targets standardized once, hyperparameters refit by marginal likelihood, warm-started.
3. **Region** (:mod:`.trust_region`): a TuRBO trust region around the point with
   the best posterior mean since the last restart.
4. **Acquisition** (:mod:`.acquisition`): batch Thompson sampling -- ``q`` independent
   posterior paths, each maximized on its own, so a batch is ``q`` different points.
5. **Acquisition optimizer** (:mod:`.optimize`): every path scores ``n_candidates`` sparse
   perturbations of the centre; the best is then refined by gradient ascent
   *through the generator* (``acquisition="gradient"``, the default where the
   generator is differentiable) or by a few generations of mutation scored on
   the path (``"evolution"``: VQ-VAE codes, opaque generators).

Quantized responses (spike counts) tie often.  While every value of a region is the same (a neuron silent to
every stimulus so far), the region has no best point and the model no signal: the random design goes on over
the whole space, and such batches are neither successes nor failures of the region.  Among points tied at the
best value, the centre is the one with the best posterior mean.

Every step reads the values only through their order or after standardizing them, so the optimizer
makes the same proposals for ``a * f + b`` (a > 0) as for ``f``, up to float rounding.  When the
model's numerics fail (a kernel matrix no jitter factorizes), the batch is drawn at random inside
the trust region instead, with one :class:`~mango.errors.NumericalWarning`; the run's result counts
such batches (``diagnostics()["model_fallbacks"]``).

The optimizer needs the run's generator (``needs = {"generator"}``), which
:func:`mango.maximize` hands over; without one (a plain function of the
points) it models the points themselves.

Points asked and not yet told (a pipelined loop asks the next batch while the rig presents the last)
are *pending*: the GP is conditioned on them at its own posterior mean (:func:`.gp.fantasize`), so
the Thompson paths of the next batch look elsewhere.

State is compact (format ``surrogate-1``): the told points and values, the pending points, the
region, the GP's hyperparameters and the random generator's state -- no refit on
load, and the continued run is identical to an uninterrupted one.  Same seed,
same history -- for a fixed torch thread count (float sums are ordered by it).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch

from ...errors import ConfigError, NumericalWarning
from ..base import Optimizer
from ..pending import Pending
from . import gp as gplib
from .acquisition import sample_paths
from .data import training_set
from .features import Features, from_unit, to_unit
from .optimize import ascend, distinct_argmax, evolve
from .trust_region import TrustRegion, candidates, failure_tolerance, improved

__all__ = ["SurrogateOptimizer"]

_ACQ = ("auto", "gradient", "evolution")
#: points whose features are computed together (see ``SurrogateOptimizer._all_features``)
FEATURE_CHUNK = 32


class SurrogateOptimizer(Optimizer):
    """GP on stimuli + trust region + batch Thompson sampling (see the module doc).

    Parameters
    ----------
    n_init : random points before the model takes over (default ``max(10, batch_size)``; the budget is
        never read, so a run's first ``b`` queries are what a run told ``b`` would do).
    acquisition : ``"auto"``, ``"gradient"`` (needs a differentiable generator or none, on a Box/Grid)
        or ``"evolution"``.
    n_candidates : candidates scored per batch.
    grad_steps, evo_rounds : refinement effort per batch.
    max_points : most points the GP is fit on.
    perturb : expected coordinates (positions) a candidate changes.
    length_init, length_min, length_max, success_tol, failure_tol : the trust region (failure_tol
        default: from the batch size and ``perturb``).
    temper : scale of the Thompson paths' deviations from the posterior mean (``1``: plain Thompson
        sampling; smaller is greedier, ``0`` ascends the posterior mean).
    backbone, backbone_layer : a pretrained model (``zoo:NAME`` or ``FILE.py:FACTORY``) and the name of
        the layer whose activations to the generated images the GP sees instead of the images' pixels
        (e.g. ``zoo:cnn-digits`` and ``features.relu2`` for the zoo's digit stimuli); needs a generator.
        A network trained on the stimulus domain gives the kernel that domain's distances.
    device : torch device of the model (default: the generator's).
    """

    name = "surrogate"
    native = ("box", "grid", "codebook")
    needs = frozenset({"generator"})
    defaults = {
        "n_init": None, "acquisition": "auto", "n_candidates": 1000, "grad_steps": 25, "evo_rounds": 4,
        "max_points": 800, "perturb": 20, "length_init": 0.8, "length_min": 0.5 ** 7, "length_max": 1.6,
        "success_tol": 3, "failure_tol": None, "temper": 1.0, "backbone": None, "backbone_layer": None,
        "device": None,
    }

    # -- setup ----------------------------------------------------------------
    def _setup(self) -> None:
        p = self.params
        if p["acquisition"] not in _ACQ:
            raise ConfigError(f"acquisition must be one of {_ACQ}, got {p['acquisition']!r}.")
        for k in ("n_candidates", "max_points", "perturb"):
            if int(p[k]) != p[k] or p[k] < 1:
                raise ConfigError(f"{k} must be an integer >= 1, got {p[k]!r}.")
        for k, low in (("grad_steps", 0), ("evo_rounds", 0), ("success_tol", 1), ("failure_tol", 1)):
            v = p[k]
            if v is None and k == "failure_tol":
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ConfigError(f"{k} must be an integer >= {low}" + (" (or null: from the dimension and batch "
                                  "size)" if k == "failure_tol" else "") + f", got {v!r}.")
        t = p["temper"]
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and t >= 0):
            raise ConfigError(f"temper must be a number >= 0 (1: Thompson sampling, 0: the posterior mean), "
                              f"got {t!r}.")
        if not 0 < p["length_min"] < p["length_init"] <= p["length_max"]:
            raise ConfigError("trust region lengths need 0 < length_min < length_init <= length_max, got "
                              f"{p['length_min']}, {p['length_init']}, {p['length_max']}.")
        q = int(self.batch_size or 10)
        n_init = p["n_init"]
        if n_init is None:  # not read from the budget: a run told 300 is the first 300 queries of one told 3,000
            n_init = max(10, q)
        if int(n_init) != n_init or n_init < 2:
            raise ConfigError(f"n_init must be an integer >= 2, got {n_init!r}.")
        self.n_init = int(n_init)
        self.tr = TrustRegion(
            length=float(p["length_init"]), length_init=float(p["length_init"]), length_min=float(p["length_min"]),
            length_max=float(p["length_max"]), success_tol=int(p["success_tol"]),
            failure_tol=int(p["failure_tol"] or failure_tolerance(self.space.dim, q, int(p["perturb"]))))
        self._points: list[np.ndarray] = []
        self._values: list[float] = []
        self._init_until = self.n_init  # random design until this many points were asked
        self._n_asked = 0
        self._hypers: list[float] | None = None
        self._fit_n, self._since_fit = 0, 0  # data size at the last hyperparameter fit, proposals since
        self._feat_cache: torch.Tensor | None = None
        self._fallbacks = 0  # batches drawn at random in the region because the model's numerics failed
        self._fit_failures = 0  # hyperparameter-fit starts that raised or ended non-finite
        if not hasattr(self, "_generator"):
            self._generator = None
        if not hasattr(self, "_backbone"):
            self._backbone = None  # built once, on first use; kept across reset()
        self._features = None
        self._pending = Pending(self.space.dim, self.space.dtype)  # asked, not yet told: the model's fantasies

    def _connect(self, generator=None) -> None:
        if generator is not None and generator.space != self.space:
            raise ConfigError(f"the generator's space {generator.space!r} is not the optimizer's {self.space!r}.")
        self._generator = generator
        self._features = None
        self._feat_cache = None
        self._check_acquisition()

    def _check_acquisition(self) -> str:
        feats = self._feature_map()
        mode = self.params["acquisition"]
        if mode == "gradient" and not feats.differentiable:
            why = ("a Codebook has no gradient (codes are categories)" if self.space.kind == "codebook" else
                   f"the generator {type(self._generator).__name__} is not differentiable")
            raise ConfigError(f"acquisition='gradient' cannot be used here: {why}. Use acquisition='evolution' "
                              "(or 'auto', which picks it).")
        if mode == "auto":
            mode = "gradient" if feats.differentiable else "evolution"
        return mode

    def _feature_map(self) -> Features:
        if self._features is None:
            p = self.params
            backbone = None
            if p["backbone"] is not None or p["backbone_layer"] is not None:
                if self._backbone is None:
                    from ..inception.readout import Backbone

                    self._backbone = Backbone(p["backbone"], p["backbone_layer"], device=p["device"])
                backbone = self._backbone
            self._features = Features(self.space, self._generator, device=p["device"], backbone=backbone)
        return self._features

    @property
    def preferred_batch_size(self) -> int | None:
        return 10

    # -- ask / tell ---------------------------------------------------------------
    def can_ask_ahead(self, n: int) -> bool:
        """Yes, except for the first model batch of a trust region: it waits for the values of the region's random
        design (asked ahead, it would have no data and be drawn at random too); after it, always."""
        if not len(self._pending) or self._n_asked < self._init_until:
            return True  # nothing pending, or still handing out the random design
        return len(self._points) - self.tr.epoch_start >= self.n_init

    def _flat(self) -> bool:
        """Whether every value told since the region's restart is the same (a spike count of 0 everywhere, say):
        the region has no best point to centre on and its model no signal, so the design goes on."""
        region = self._values[self.tr.epoch_start:]
        return len(region) > 0 and max(region) == min(region)

    def _ask(self, n: int) -> np.ndarray:
        n_random = min(n, max(0, self._init_until - self._n_asked))
        if len(self._points) - self.tr.epoch_start >= self.n_init:
            n_random = 0  # the region holds a design already (warm-start or observed points): the model takes over
        if len(self._points) < 2 or self._flat():
            n_random = n
        out = []
        if n_random:
            out.append(self.space.sample(n_random, self.rng))
        if n - n_random:
            out.append(self._propose(n - n_random))
        self._n_asked += n
        pts = np.concatenate(out)
        self._pending.add(pts)
        return pts

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        self._pending.pop(points, unasked="none")
        region = np.asarray(self._values[self.tr.epoch_start:], dtype=float)
        self._points.extend(np.asarray(points))
        self._values.extend(float(v) for v in values)
        if len(self._points) - self.tr.epoch_start <= self.n_init or len(region) == 0:
            return  # still the random design of this region
        if self._flat():
            return  # no signal yet (all values tied): neither a success nor a failure; the design goes on
        if self.tr.update(improved(region, np.asarray(values, dtype=float))):
            self.tr.restart(len(self._points))
            self._init_until = self._n_asked + self.n_init

    def _observe(self, points: np.ndarray, values: np.ndarray) -> None:
        """Points shown for another target: data for the model, not a success or failure of the region."""
        self._points.extend(np.asarray(points))
        self._values.extend(float(v) for v in values)

    # -- the model-based proposal ---------------------------------------------------
    def _all_features(self) -> torch.Tensor:
        """The features of every told point, computed in fixed chunks of :data:`FEATURE_CHUNK` points by index.

        A network's output for one input can depend on the other inputs of its batch (with several threads the
        work is split by batch shape), so features computed batch by batch during a run could differ in the last
        bits from those computed all at once after a resume.  Complete chunks are cached; the last, partial one
        is computed anew each time: a run and its resumed copy see the same features.
        """
        feats = self._feature_map()
        n = len(self._points)
        full = n - n % FEATURE_CHUNK
        have = 0 if self._feat_cache is None else len(self._feat_cache)
        parts = [] if self._feat_cache is None else [self._feat_cache]
        for a in range(have, full, FEATURE_CHUNK):
            parts.append(feats(np.asarray(self._points[a:a + FEATURE_CHUNK])))
        if len(parts) > 1 or (parts and self._feat_cache is None):
            self._feat_cache = torch.cat(parts)
        if full < n:
            parts.append(feats(np.asarray(self._points[full:])))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def diagnostics(self) -> dict:
        return {"model_fallbacks": int(self._fallbacks), "hyper_fit_failures": int(self._fit_failures)}

    def _propose(self, q: int) -> np.ndarray:
        try:
            return self._model_proposal(q)
        except gplib.ModelFitError as e:
            self._fallbacks += 1
            self._fit_failures += e.fit_failures
            if self._fallbacks == 1:
                warnings.warn(f"surrogate: {e} This batch, and any later one whose model fails the same way, is "
                              "drawn at random inside the trust region; the result counts them "
                              "(model_fallbacks).", NumericalWarning, stacklevel=2)
            return self._region_random(q)

    def _region_random(self, q: int) -> np.ndarray:
        """``q`` random points of the trust region around the best point of the region: the safe proposal."""
        y = np.asarray(self._values)
        ep = self.tr.epoch_start
        center = np.asarray(self._points[ep + int(np.argmax(y[ep:]))])
        p = self.params
        if self.space.kind == "codebook":
            return candidates("codebook", center, self.tr.length, q, self.rng, int(p["perturb"]), self.space.sizes)[0]
        u = candidates(self.space.kind, to_unit(self.space, center[None])[0], self.tr.length, q, self.rng,
                       int(p["perturb"]))[0]
        return from_unit(self.space, u) if self.space.kind == "grid" else self.space.clip(from_unit(self.space, u))

    def _model(self, F: torch.Tensor, y: np.ndarray, c_idx: int) -> tuple[gplib.GP, np.ndarray]:
        """The GP of this batch, fit on the training set around point ``c_idx`` (returned with it: row indices of
        ``F``); hyperparameters refit when the data grew by a tenth since the last fit (and at least every 5th
        proposal), else only re-solved."""
        idx = training_set(F, y, F[c_idx], int(self.params["max_points"]))
        refit = self._hypers is None or len(y) >= 1.1 * self._fit_n or self._since_fit >= 4
        model = gplib.fit(F[idx], torch.as_tensor(y[idx], dtype=F.dtype, device=F.device), init=self._hypers,
                          steps=(10 if self._hypers is not None else 30) if refit else 0)
        self._hypers = model.hypers
        self._fit_failures += model.fit_failures
        self._fit_n, self._since_fit = (len(y), 0) if refit else (self._fit_n, self._since_fit + 1)
        return model, idx

    def _model_proposal(self, q: int) -> np.ndarray:
        mode = self._check_acquisition()
        feats = self._feature_map()
        F = self._all_features()
        y = np.asarray(self._values)
        # centre: the best observed point of this region (its latest copy under repeats)
        ep = self.tr.epoch_start
        c_idx = ep + int(np.argmax(y[ep:]))
        model, idx = self._model(F, y, c_idx)
        if model.log_sn2 > math.log(1e-3):  # noisy responses: the centre is the best posterior mean
            c_idx = ep + int(torch.argmax(_posterior_mean(model, idx, F, np.arange(ep, len(y)))))
        else:  # several points tied at the best (a quantized response: spike counts): the best posterior mean
            tied = ep + np.flatnonzero(y[ep:] == y[c_idx])
            if len(tied) > 1:
                c_idx = int(tied[int(torch.argmax(_posterior_mean(model, idx, F, tied)))])
        if len(self._pending):  # points asked and not told yet (a pipelined loop): the paths look elsewhere
            model = gplib.fantasize(model, feats(self._pending.points()))
        tgen = torch.Generator().manual_seed(int(self.rng.integers(0, 2 ** 62)))
        paths = sample_paths(model, q, tgen, temper=float(self.params["temper"]))
        center = self._points[c_idx]
        kind = self.space.kind
        p = self.params
        if kind == "codebook":
            cand, _, _ = candidates(kind, np.asarray(center), self.tr.length, int(p["n_candidates"]), self.rng,
                                    int(p["perturb"]), self.space.sizes)
            with torch.no_grad():
                scores = _finite(paths(feats(cand)))
            pts = cand[distinct_argmax(scores)]
            cap = max(1, int(round(self.tr.length * self.space.dim)))
            return evolve(paths, feats, pts, np.asarray(center), self.space.sizes, cap, int(p["evo_rounds"]),
                          self.rng)
        cu = to_unit(self.space, np.asarray(center)[None])[0]
        cand, lo, hi = candidates(kind, cu, self.tr.length, int(p["n_candidates"]), self.rng, int(p["perturb"]))
        with torch.no_grad():
            scores = _finite(paths(feats.from_unit(torch.as_tensor(cand, dtype=torch.float32, device=feats.device))
                                   if feats.differentiable else feats(from_unit(self.space, cand))))
        u = cand[distinct_argmax(scores)]
        if mode == "gradient" and int(p["grad_steps"]) > 0:
            u = ascend(paths, feats, u, lo, hi, int(p["grad_steps"]), lr=max(0.02 * self.tr.length, 1e-3))
        return from_unit(self.space, u) if kind == "grid" else self.space.clip(from_unit(self.space, u))

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        dim = self.space.dim
        return {
            **self._state_header("surrogate-1"),
            "points": np.asarray(self._points, dtype=self.space.dtype).reshape(-1, dim),
            "values": np.asarray(self._values, dtype=float),
            "n_asked": int(self._n_asked), "n_told": int(self._n_told), "init_until": int(self._init_until),
            "trust_region": self.tr.to_dict(), "hypers": self._hypers, "fit_n": self._fit_n,
            "since_fit": self._since_fit, "fallbacks": int(self._fallbacks), "fit_failures": int(self._fit_failures),
            "rng": _rng_state(self.rng), "pending": self._pending.points(),
            "best_point": self._best_point, "best_value": self._best_value,
        }

    def load_state_dict(self, state: dict) -> None:
        self._restore_header(state, "surrogate-1")
        self._reset()
        pts = np.asarray(state["points"]).reshape(-1, self.space.dim).astype(self.space.dtype)
        self._points = list(pts)
        self._values = [float(v) for v in np.asarray(state["values"], dtype=float)]
        self._n_told = int(state.get("n_told", len(self._points)))
        self._n_asked = int(state["n_asked"])
        self._init_until = int(state["init_until"])
        self.tr = TrustRegion(**state["trust_region"])
        self._hypers = None if state["hypers"] is None else [float(v) for v in state["hypers"]]
        self._fit_n, self._since_fit = int(state["fit_n"]), int(state["since_fit"])
        self._fallbacks, self._fit_failures = int(state.get("fallbacks", 0)), int(state.get("fit_failures", 0))
        self.rng.bit_generator.state = _rng_unstate(state["rng"])
        pending = np.asarray(state.get("pending", np.zeros((0, self.space.dim)))).reshape(-1, self.space.dim)
        if len(pending):
            self._pending.add(pending.astype(self.space.dtype))
        self._restore_best(state)


def _posterior_mean(model: gplib.GP, idx: np.ndarray, F: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """The model's posterior mean at points ``rows`` (indices into ``F``; ``idx`` the model's training rows): read off
    the fit at training points (:meth:`.gp.GP.train_mean`), a kernel row against the training set for the others."""
    pos = np.full(len(F), -1)
    pos[idx] = np.arange(len(idx))
    at = pos[rows]
    out = torch.empty(len(rows), dtype=model.y.dtype, device=model.y.device)
    trained = np.flatnonzero(at >= 0)
    if len(trained):
        out[torch.as_tensor(trained, device=out.device)] = model.train_mean()[torch.as_tensor(at[trained],
                                                                                            device=out.device)]
    other = np.flatnonzero(at < 0)
    if len(other):
        out[torch.as_tensor(other, device=out.device)] = model.mean(F[torch.as_tensor(rows[other], device=F.device)])
    return out


def _finite(scores: torch.Tensor) -> torch.Tensor:
    """The paths' scores of the candidates, or :class:`~.gp.ModelFitError` when any is not finite (the features
    were checked finite, so the model is at fault)."""
    if not bool(torch.isfinite(scores).all()):
        raise gplib.ModelFitError("the GP's posterior paths gave non-finite scores to finite features.")
    return scores


def _rng_state(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]),
            "inc": str(st["state"]["inc"]), "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def _rng_unstate(d: dict) -> dict:
    return {"bit_generator": d["bit_generator"], "state": {"state": int(d["state"]), "inc": int(d["inc"])},
            "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}
