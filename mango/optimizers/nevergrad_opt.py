"""Any optimizer of nevergrad's registry, as ``ng:<Name>`` (``ng:NGOpt``, ``ng:Portfolio``, ...).

Spaces: a Box becomes a bounded ``ng.p.Array``; a Codebook becomes one
categorical ``ng.p.Choice`` per position (nevergrad's own categorical
handling, not rounding); a Grid is searched through its Box by
:func:`mango.optimizers.make`.  nevergrad minimizes, so values are negated.
The loop's budget and batch size are passed on as nevergrad's ``budget`` and
``num_workers`` (NGOpt and the portfolios choose their algorithms from them).

Speed on a Codebook: nevergrad represents a ``Choice`` by one weight per code,
so a 7x7 VQ-VAE grid of 128 codes is a 6,272-dimensional parametrization.
Its scrambled Halton/Hammersley sampler (``ScrHammersleySearch``, one third of
``ng:Portfolio``) redraws one random permutation per dimension -- of sizes up
to the 6,271st prime, 62,701 -- from the same seed on *every* sample: ~3 s per
ask there.  :func:`_memoize_scrambled_halton` keeps those permutations (only
the entries a sample can reach) per sampler instead; the samples are
bit-identical (``tests/test_nevergrad_halton.py``), only faster.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

from ..errors import ConfigError, UnknownNameError
from .base import Optimizer


# scrambled samplers of fewer dimensions than this are fast enough as they are
_HALTON_MEMO_MIN_DIM = 256
# entries kept per permutation when the sampler has no budget
_HALTON_MEMO_DEFAULT_LEN = 4096


class _PermPrefix:
    """A permutation of ``range(p)`` of which only the first ``len(prefix)`` entries are kept;
    ``len()`` is ``p``, as nevergrad's ``vdc`` takes the base from it."""

    __slots__ = ("p", "prefix")

    def __init__(self, p: int, prefix: np.ndarray):
        self.p, self.prefix = p, prefix

    def __len__(self) -> int:
        return self.p

    def __getitem__(self, r):
        return self.prefix[r]  # an IndexError would mean a digit we did not keep (never: see the caller)


def _memoize_scrambled_halton() -> None:
    """Make nevergrad's scrambled Halton/Hammersley sampling keep its permutations (exact).

    ``HaltonPermutationGenerator.get_permutations_generator`` re-creates the
    same permutations (a fresh ``RandomState(self.seed)`` each call) on every
    sample, which costs O(sum of the first ``dimension`` primes) per sample.
    Sample ``index`` reads entry ``(index + 1)`` of each permutation of size
    ``p > index + 1`` (one digit in base ``p``) and any entry of smaller ones,
    so keeping the first ``K`` entries of each permutation reproduces every
    sample with ``index + 1 < K`` exactly; later samples fall back to
    nevergrad's own code.  ``K`` is the sampler's budget + 2 (nevergrad's
    samplers never exceed their budget).  Installed once; a no-op when the
    nevergrad internals it relies on are missing.
    """
    try:
        from nevergrad.optimization import sequences as seq
    except ImportError:  # pragma: no cover - nevergrad is a core dependency
        return
    cls = getattr(seq, "HaltonSampler", None)
    if cls is None or getattr(cls, "_mango_memo", False) or not hasattr(cls, "vdc"):
        return
    original = cls._internal_sampler

    def _internal_sampler(self):
        gen = getattr(self, "permgen", None)
        if (gen is None or not getattr(gen, "scrambling", False) or gen.dimension < _HALTON_MEMO_MIN_DIM
                or not hasattr(gen, "primes")):
            return original(self)
        memo = self.__dict__.get("_mango_perms")
        if memo is None:
            k = int(self.budget) + 2 if self.budget else _HALTON_MEMO_DEFAULT_LEN
            dtype = np.uint16 if (gen.primes[-1] if gen.primes else 0) <= 65535 else np.int64
            memo = [_PermPrefix(int(p), np.array(perm[:k], dtype=dtype))
                    for p, perm in zip(gen.primes, gen.get_permutations_generator())]
            self.__dict__["_mango_perms"] = memo
            self.__dict__["_mango_k"] = k
        if self.index + 1 >= self.__dict__["_mango_k"]:
            return original(self)
        return [self.vdc(self.index, perm) for perm in memo]

    cls._internal_sampler = _internal_sampler
    cls._mango_memo = True
    cls._mango_original_sampler = original


def nevergrad_names() -> list[str]:
    try:
        import nevergrad as ng
    except ImportError:  # pragma: no cover - nevergrad is a core dependency
        return []
    return sorted(ng.optimizers.registry.keys())


class NevergradOptimizer(Optimizer):
    """Wraps ``nevergrad.optimizers.registry[method]``."""

    name = "ng"
    native = ("box", "codebook")
    defaults = {"method": "NGOpt"}
    budget_aware = True  # NGOpt, Portfolio, ... choose their algorithm from the budget

    def _setup(self) -> None:
        import nevergrad as ng

        _memoize_scrambled_halton()

        method = self.params["method"]
        registry = ng.optimizers.registry
        if method not in registry:
            raise UnknownNameError("nevergrad optimizer", f"ng:{method}", [f"ng:{k}" for k in registry])
        self.name = f"ng:{method}"
        if self.space.kind == "box":
            param = ng.p.Array(shape=(self.space.dim,), lower=self.space.low, upper=self.space.high)
        else:  # codebook: categorical per position
            param = ng.p.Choice(list(range(self.space.codes)), repetitions=self.space.dim, deterministic=True)
        param.random_state = np.random.RandomState(self.rng.integers(2**31 - 1))
        self._param = param
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt = registry[method](parametrization=param, budget=self.budget,
                                         num_workers=max(1, int(self.batch_size or 1)))
        self._pending: deque = deque()

    @property
    def preferred_batch_size(self) -> int | None:
        """The population size of the algorithm nevergrad settled on, when it has one.

        NGOpt and its kin pick an algorithm from the space, budget and workers; a
        CMA-ES inside draws its whole population at once and updates only when all
        of it is told.  Batches of exactly that size keep the two in step; other
        sizes make pycma's step-size rule (TPA) fail on a second draw before the
        update (nevergrad issue #1690).
        """
        opt = self._opt
        for _ in range(8):  # NGOpt -> selected optimizer -> ... (.optim for NGOpt, ._optim for MetaModel)
            pop = getattr(opt, "_popsize", None)
            if isinstance(pop, (int, np.integer)) and pop > 0:
                return int(pop)
            inner = getattr(opt, "optim", None) or getattr(opt, "_optim", None)
            if inner is None or inner is opt:
                return None
            opt = inner
        return None

    def _to_point(self, cand) -> np.ndarray:
        return np.asarray(cand.value, dtype=self.space.dtype).reshape(self.space.dim)

    def _ask(self, n: int) -> np.ndarray:
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                try:
                    cand = self._opt.ask()
                except ImportError as exc:  # some nevergrad methods pick optional backends (e.g. fcmaes)
                    raise ConfigError(
                        f"nevergrad's {self.params['method']} needs an optional package on this space: {exc}. "
                        "Install it, or choose another method (e.g. ng:CMA, ng:NGOpt)."
                    ) from None
                except RuntimeError as exc:
                    if "Mean shift samples" not in str(exc):
                        raise
                    pop = self.preferred_batch_size
                    raise ConfigError(
                        f"nevergrad's {self.params['method']} runs a CMA-ES with a population of {pop} here, "
                        f"which fails when asked in batches of another size (nevergrad issue #1690). "
                        f"Use batch size {pop} (or leave it unset), or another optimizer (e.g. cma)."
                    ) from None
                pt = self._to_point(cand)
                if self.space.kind == "box":
                    pt = self.space.clip(pt)
                self._pending.append((pt, cand))
                out.append(pt)
        return np.array(out)

    def _tell(self, points, values) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p, v in zip(points, values):
                for i, (q, cand) in enumerate(self._pending):
                    if np.array_equal(q, p):
                        del self._pending[i]
                        self._opt.tell(cand, -float(v))
                        break
                else:  # not asked: tell nevergrad if the method supports it
                    value = tuple(int(c) for c in p) if self.space.kind == "codebook" else np.asarray(p, float)
                    try:
                        self._opt.tell(self._param.spawn_child(new_value=value), -float(v))
                    except Exception:  # TellNotAskedNotSupportedError and friends
                        pass
