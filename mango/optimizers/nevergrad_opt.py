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
ask there (~0.1 s on a 784-d Box).  The samplers that mango's wrapper makes
nevergrad build keep those permutations (only the entries a sample can reach)
instead: :func:`_inside_wrapper`.  The samples are bit-identical, only faster
(``tests/test_nevergrad_halton.py``, ``benchmarks/ng_halton.py``), and
nevergrad itself is left as it is: its users outside mango's wrapper, in the
same process, get nevergrad's own samplers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings

import numpy as np

from ..errors import ConfigError, SpaceTooLargeError, UnknownNameError
from .base import Optimizer
from .pending import Pending


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


class _KeptPermutations:
    """Stands in for a scrambled sampler's ``HaltonPermutationGenerator``: draws the permutations once (exact).

    nevergrad's generator re-creates the same permutations (a fresh
    ``RandomState(seed)`` each call) on every sample, which costs O(sum of the
    first ``dimension`` primes) per sample.  Sample ``index`` reads entry
    ``(index + 1)`` of each permutation of size ``p > index + 1`` (one digit in
    base ``p``) and any entry of smaller ones, so keeping the first ``k``
    entries of each permutation reproduces every sample with ``index + 1 < k``
    exactly; later samples get nevergrad's own permutations.  ``k`` is the
    sampler's budget + 2 (nevergrad's samplers never exceed their budget).
    """

    def __init__(self, sampler, gen, k: int):
        self.sampler, self.gen, self.k = sampler, gen, k
        self.kept: list[_PermPrefix] | None = None
        # what nevergrad reads of a permutation generator
        self.dimension, self.scrambling, self.primes, self.seed = gen.dimension, gen.scrambling, gen.primes, gen.seed

    def get_permutations_generator(self):
        if self.sampler.index + 1 >= self.k:
            return self.gen.get_permutations_generator()
        if self.kept is None:
            dtype = np.uint16 if (self.primes[-1] if self.primes else 0) <= 65535 else np.int64
            self.kept = [_PermPrefix(int(p), np.array(perm[:self.k], dtype=dtype))
                         for p, perm in zip(self.primes, self.gen.get_permutations_generator())]
        return iter(self.kept)


class _Inside:
    """Book-keeping of the blocks in which mango's wrapper calls into nevergrad (see :func:`_inside_wrapper`)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.depth = 0  # open blocks, all threads
        self.here = threading.local()  # .depth: open blocks of this thread
        self.saved: tuple | None = None  # nevergrad's own sampler classes, while replaced
        self.classes: tuple | None = None  # mango's subclasses of them (made once)


_INSIDE = _Inside()


class _KeepsPermutations:
    """Mixin of mango's subclasses of nevergrad's Halton/Hammersley samplers: a scrambled sampler that the
    current thread builds inside mango's wrapper, on a large space, keeps its permutations."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        gen = getattr(self, "permgen", None)
        if (getattr(_INSIDE.here, "depth", 0) and getattr(gen, "scrambling", False)
                and getattr(gen, "dimension", 0) >= _HALTON_MEMO_MIN_DIM
                and hasattr(gen, "get_permutations_generator") and hasattr(gen, "seed")):
            k = int(self.budget) + 2 if self.budget else _HALTON_MEMO_DEFAULT_LEN
            self.permgen = _KeptPermutations(self, gen, k)


def _sampler_classes(seq) -> tuple | None:
    """mango's subclasses of nevergrad's ``(HaltonSampler, HammersleySampler)`` (made once); ``None`` when
    nevergrad lacks the internals they rely on."""
    if _INSIDE.classes is None:
        halton, hammersley = getattr(seq, "HaltonSampler", None), getattr(seq, "HammersleySampler", None)
        if halton is None or hammersley is None or not hasattr(halton, "vdc"):
            return None
        _INSIDE.classes = tuple(type(f"Keeping{c.__name__}", (_KeepsPermutations, c), {"__module__": __name__})
                                for c in (halton, hammersley))
    return _INSIDE.classes


@contextlib.contextmanager
def _inside_wrapper():
    """While mango's wrapper calls into nevergrad: the scrambled samplers nevergrad builds keep their permutations.

    ``ScrHammersleySearch`` and kin build their sampler at their first ask,
    from ``nevergrad.optimization.sequences.HaltonSampler`` /
    ``HammersleySampler``.  Inside the block those two names are mango's
    subclasses (:class:`_KeptPermutations`, bit-identical samples); outside,
    nevergrad's own classes, which mango never modifies.  A sampler built here
    keeps its permutations for the rest of its life; a nevergrad user outside
    mango's wrapper gets nevergrad's sampler.  The block nests, is safe across
    threads (the names are restored when the last block closes, also on an
    exception), and a sampler that another thread builds while a block is open
    behaves as nevergrad's own: only the threads inside the wrapper keep
    permutations.
    """
    try:
        from nevergrad.optimization import sequences as seq
    except ImportError:  # pragma: no cover - nevergrad is a core dependency
        seq = None
    classes = _sampler_classes(seq) if seq is not None else None
    if classes is None:
        yield
        return
    with _INSIDE.lock:
        if _INSIDE.depth == 0:
            _INSIDE.saved = (seq.HaltonSampler, seq.HammersleySampler)
            seq.HaltonSampler, seq.HammersleySampler = classes
        _INSIDE.depth += 1
    _INSIDE.here.depth = getattr(_INSIDE.here, "depth", 0) + 1
    try:
        yield
    finally:
        _INSIDE.here.depth -= 1
        with _INSIDE.lock:
            _INSIDE.depth -= 1
            if _INSIDE.depth == 0:
                seq.HaltonSampler, seq.HammersleySampler = _INSIDE.saved
                _INSIDE.saved = None


# Optional packages some nevergrad methods import when they are built or first asked.  A method whose
# package is missing cannot run at all, so it is not listed (left_off() says why); it appears once the
# package is installed.  Checked with nevergrad 1.0.12 (tests/test_every_optimizer.py runs every listed name).
_NEEDS_PREFIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("NLOPT_", ("nlopt",)),
    ("FCMA", ("fcmaes",)),
    ("Pymoo", ("pymoo",)),
    ("PCABO", ("bayes_optim",)),
)
_NEEDS_EXACT: dict[str, tuple[str, ...]] = {
    "AX": ("ax",), "AXP": ("ax",),
    "BOBYQA": ("pybobyqa",),
    "BayesOptimBO": ("bayes_optim",),
    "SMAC3": ("smac", "ConfigSpace"),
    "pysot": ("pySOT", "poap"),
}


def _needs(name: str) -> tuple[str, ...]:
    if name in _NEEDS_EXACT:
        return _NEEDS_EXACT[name]
    for prefix, mods in _NEEDS_PREFIX:
        if name.startswith(prefix):
            return mods
    return ()


def missing_packages(name: str) -> list[str]:
    import importlib.util

    out = []
    for m in _needs(name):
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(m)
    return out


def registry_keys() -> dict[str, str]:
    """Listed name -> nevergrad registry key.  Names are stripped: nevergrad 1.0.12 registers
    ``'UltraSmoothDiscreteLognormalOnePlusOne '`` with a trailing space, which no shell user can type."""
    try:
        import nevergrad as ng
    except ImportError:  # pragma: no cover - nevergrad is a core dependency
        return {}
    keys = sorted(ng.optimizers.registry.keys())
    out = {k: k for k in keys}
    for k in keys:
        s = k.strip()
        if s != k and s not in out:
            del out[k]
            out[s] = k
    return out


def nevergrad_names(all_names: bool = False) -> list[str]:
    """nevergrad's optimizers as mango lists them (without ``ng:``); ``all_names`` includes the left-off ones."""
    return sorted(n for n in registry_keys() if all_names or not missing_packages(n))


def left_off() -> dict[str, str]:
    """nevergrad names mango does not list here, and why."""
    return {n: f"needs the optional package(s) {', '.join(missing_packages(n))}, which are not installed"
            for n in registry_keys() if missing_packages(n)}


def is_sequential(method: str) -> bool:
    """Whether nevergrad's ``method`` proposes one point at a time (cannot be asked for a batch)."""
    import nevergrad as ng

    key = registry_keys().get(method, method)
    return bool(getattr(ng.optimizers.registry[key], "no_parallelization", False))


# sequential methods already announced in this process (the note is said once)
_SAID_SEQUENTIAL: set[str] = set()


class _quiet_unraisable:
    """Silence ``Exception ignored in __del__`` reports inside the block."""

    def __enter__(self):
        self._hook = sys.unraisablehook
        sys.unraisablehook = lambda *_: None

    def __exit__(self, *exc):
        sys.unraisablehook = self._hook
        return False


#: bytes per entry of an ``N x N`` matrix that pycma's full-covariance CMA-ES holds: the covariance, its
#: eigenbasis and the decomposition's copy, float64 each
FULL_CMA_BYTES_PER_ENTRY = 24


def _memory_limit() -> int:
    """Half of this machine's physical memory in bytes (8 GiB where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 * 2 ** 30


def _tree(opt, depth: int = 0):
    """A nevergrad optimizer and every one it delegates to: NGOpt's choice (``.optim``), MetaModel's
    (``._optim``) and a portfolio's members (``.optims``).  nevergrad has no public way to read them."""
    yield opt
    if depth >= 8:
        return
    inner = [getattr(opt, "optim", None), getattr(opt, "_optim", None)] + list(getattr(opt, "optims", None) or [])
    seen = {id(opt)}
    for o in inner:
        if o is not None and id(o) not in seen:  # NGOpt's .optim is its ._optim
            seen.add(id(o))
            yield from _tree(o, depth + 1)


def _full_cma(opt) -> bool:
    """Whether ``opt`` is nevergrad's CMA-ES with a full (not diagonal) covariance."""
    from nevergrad.optimization import optimizerlib

    cls = getattr(optimizerlib, "_CMA", None)
    return cls is not None and isinstance(opt, cls) and not getattr(getattr(opt, "_config", None), "diagonal", False)


class NevergradOptimizer(Optimizer):
    """Wraps ``nevergrad.optimizers.registry[method]``."""

    name = "ng"
    native = ("box", "codebook")
    defaults = {"method": "NGOpt"}
    budget_aware = True  # NGOpt, Portfolio, ... choose their algorithm from the budget

    def _setup(self) -> None:
        import nevergrad as ng

        method = self.params["method"]
        registry = ng.optimizers.registry
        keys = registry_keys()
        if method not in keys:
            raise UnknownNameError("nevergrad optimizer", f"ng:{method}", [f"ng:{k}" for k in nevergrad_names()])
        missing = missing_packages(method)
        if missing:
            raise ConfigError(f"ng:{method} needs the optional package(s) {', '.join(missing)}: install them "
                              "(pip install ...), or choose another method (e.g. ng:NGOpt, cma).")
        self.name = f"ng:{method}"
        if self.space.kind == "box":
            param = ng.p.Array(shape=(self.space.dim,), lower=self.space.low, upper=self.space.high)
        else:  # codebook: categorical per position
            param = ng.p.Choice(list(range(self.space.codes)), repetitions=self.space.dim, deterministic=True)
        param.random_state = np.random.RandomState(self.rng.integers(2**31 - 1))
        self._param = param
        cls = registry[keys[method]]
        # a sequential method (Powell, BOBYQA, SMAC3, ...) refuses num_workers > 1: it proposes one point,
        # waits for its value, then proposes the next.  It runs with one worker and asks for batches of 1.
        self.sequential = is_sequential(method)
        workers = 1 if self.sequential else max(1, int(self.batch_size or 1))
        # the half-built optimizer of a failed attempt has a __del__ that fails (nevergrad's RecastOptimizer):
        # "Exception ignored in ..." reports are silenced while building
        with warnings.catch_warnings(), _quiet_unraisable(), _inside_wrapper():
            warnings.simplefilter("ignore")
            self._opt = self._build(cls, param, workers)
        self._check_memory(method)
        if self.sequential and (self.batch_size or 1) > 1 and method not in _SAID_SEQUENTIAL:
            _SAID_SEQUENTIAL.add(method)
            warnings.warn(f"ng:{method} proposes one point at a time: it runs with batch size 1.", UserWarning,
                          stacklevel=2)
        self._asked = Pending(self.space.dim, self.space.dtype)  # handle: nevergrad's candidate

    def _build(self, cls, param, workers: int):
        import gc

        try:
            return cls(parametrization=param, budget=self.budget, num_workers=workers)
        except Exception as exc:  # noqa: BLE001 - retried with one worker, else reported in one line
            # some methods are sequential only once built (a Rescaled sequential method: "does not support
            # parallelization"), some split their workers among sub-optimizers and fail below a minimum
            # (BAR4, MultiDS: ZeroDivisionError); both run with one worker, one point at a time
            if workers == 1:
                raise self._failed("could not be built", exc) from None
        gc.collect()
        try:
            opt = cls(parametrization=param, budget=self.budget, num_workers=1)
        except Exception as exc:  # noqa: BLE001
            raise self._failed("could not be built", exc) from None
        self.sequential = True
        return opt

    @property
    def preferred_batch_size(self) -> int | None:
        """The population size of the algorithm nevergrad settled on, when it has one.

        NGOpt and its kin pick an algorithm from the space, budget and workers; a
        CMA-ES inside draws its whole population at once and updates only when all
        of it is told.  Batches of exactly that size keep the two in step; other
        sizes make pycma's step-size rule (TPA) fail on a second draw before the
        update (nevergrad issue #1690).
        """
        if self.sequential:
            return 1
        for opt in self._chain():
            pop = getattr(opt, "_popsize", None)
            if isinstance(pop, (int, np.integer)) and pop > 0:
                return int(pop)
        return None

    def _chain(self):
        """nevergrad's optimizer and the ones it delegates to (NGOpt -> selected -> ...), outermost first.

        nevergrad has no public way to read its choice: ``.optim`` (NGOpt) and
        ``._optim`` (MetaModel) are read here and in :func:`_tree`, and only there.
        """
        opt = self._opt
        for _ in range(8):
            yield opt
            inner = getattr(opt, "optim", None) or getattr(opt, "_optim", None)
            if inner is None or inner is opt:
                return
            opt = inner

    def _check_memory(self, method: str) -> None:
        """Refuse, before the first ask, a full-covariance CMA-ES that this machine cannot hold.

        pycma keeps the ``N x N`` covariance and its eigenbasis (and a copy while decomposing): about
        ``FULL_CMA_BYTES_PER_ENTRY * N**2`` bytes for nevergrad's ``N``-dimensional parametrization.  On a
        Codebook that is one weight per code (64 positions x 512 codes: N = 32,768, 24 GiB), where
        ``ng:Portfolio``'s CMA-ES would be killed by the operating system mid-run.  Below the limit
        (:func:`_memory_limit`) nothing is looked at, so smaller spaces run exactly as before.
        """
        n = int(self._param.dimension)
        need = FULL_CMA_BYTES_PER_ENTRY * n * n
        limit = _memory_limit()
        if need <= limit or not any(_full_cma(o) for o in _tree(self._opt)):
            return
        what = (f"a Codebook of {self.space.dim} positions x {self.space.codes} codes is {n:,} weights, one per "
                "code" if self.space.kind == "codebook" else f"{n:,} dimensions")
        others = ", ".join(o for o in ("ng:NGOpt", "ng:DiagonalCMA", "ga", "surrogate") if o != f"ng:{method}")
        raise SpaceTooLargeError(
            f"ng:{method} runs a full-covariance CMA-ES here, on nevergrad's {n:,}-dimensional parametrization "
            f"({what}): its matrices need about {need / 2 ** 30:.1f} GiB, more than half of this machine's "
            f"{2 * limit / 2 ** 30:.1f} GiB of memory. Choose an optimizer that scales to this space ({others})"
            + (", or search the generator's embedding (a Box) instead of its codes" if self.space.kind == "codebook"
               else "") + ".")

    def _delegates_to_sequential(self) -> bool:
        """Whether the method runs a one-point-at-a-time (recast) optimizer inside, e.g. NGOpt's COBYLA
        at small budgets with one worker: asking it for a second point before a value would hang."""
        from nevergrad.optimization.recaster import SequentialRecastOptimizer

        return any(isinstance(o, SequentialRecastOptimizer) for o in self._chain())

    def _failed(self, what: str, exc: Exception) -> ConfigError:
        """A one-line error for a nevergrad method that breaks on this space, budget or batch size."""
        msg = " ".join(str(exc).split())[:200]
        tail = ("Choose another optimizer (e.g. ng:NGOpt, cma)." if self.sequential or (self.batch_size or 1) == 1
                else "Try batch size 1 (--batch-size 1) or another optimizer (e.g. ng:NGOpt, cma).")
        return ConfigError(f"nevergrad's {self.params['method']} {what} on this problem ({self.space.kind} of "
                           f"dimension {self.space.dim}, budget {self.budget}, batch size {self.batch_size}): "
                           f"{type(exc).__name__}: {msg}. {tail}")

    def _to_point(self, cand) -> np.ndarray:
        return np.asarray(cand.value, dtype=self.space.dtype).reshape(self.space.dim)

    def _ask(self, n: int) -> np.ndarray:
        if n + len(self._asked) > 1 and self.sequential:
            raise ConfigError(
                f"nevergrad's {self.params['method']} proposes one point at a time and cannot be asked for "
                f"{n + len(self._asked)} before it is told the values; use batch size 1 (--batch-size 1) "
                "or leave the batch size unset."
            )
        if n + len(self._asked) > 1 and self._delegates_to_sequential():
            raise ConfigError(
                f"nevergrad's {self.params['method']} chose a method that proposes one point at a time (it was "
                f"made for batch size {self.batch_size or 1}), so it cannot be asked for {n + len(self._asked)} "
                "points before it is told the values; create it with the batch size you ask for "
                f"(make(..., batch_size={n + len(self._asked)})), or ask one point at a time."
            )
        out = []
        with warnings.catch_warnings(), _inside_wrapper():
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
                        raise self._failed(f"failed after {self.n_told} values", exc) from None
                    pop = self.preferred_batch_size
                    raise ConfigError(
                        f"nevergrad's {self.params['method']} runs a CMA-ES with a population of {pop} here, "
                        f"which fails when asked in batches of another size (nevergrad issue #1690). "
                        f"Use batch size {pop} (or leave it unset), or another optimizer (e.g. cma)."
                    ) from None
                except (AssertionError, ArithmeticError, ValueError, IndexError, KeyError, TypeError) as exc:
                    raise self._failed(f"failed after {self.n_told} values", exc) from None
                pt = self._to_point(cand)
                if self.space.kind == "box":
                    pt = self.space.clip(pt)
                self._asked.add(pt[None], [cand])
                out.append(pt)
        return np.array(out)

    def _tell(self, points, values) -> None:
        with warnings.catch_warnings(), _inside_wrapper():
            warnings.simplefilter("ignore")
            for p, v, asked in zip(points, values, self._asked.pop(points, unasked="none")):
                if asked is not None:
                    self._opt.tell(asked.handle, -float(v))
                else:  # not asked: tell nevergrad if the method supports it
                    value = tuple(int(c) for c in p) if self.space.kind == "codebook" else np.asarray(p, float)
                    try:
                        self._opt.tell(self._param.spawn_child(new_value=value), -float(v))
                    except Exception:  # TellNotAskedNotSupportedError and friends
                        pass
