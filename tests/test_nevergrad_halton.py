"""The scrambled Halton/Hammersley samplers that mango's ``ng:`` wrapper makes nevergrad build keep their
permutations (mango.optimizers.nevergrad_opt): exactly nevergrad's samples, fast on a VQ-VAE-sized Codebook,
and nevergrad itself is left as it is for its users outside mango's wrapper."""

import threading

import numpy as np
import pytest

from mango.optimizers import make, nevergrad_opt
from mango.spaces import Box

ng = pytest.importorskip("nevergrad")
seq = pytest.importorskip("nevergrad.optimization.sequences")


def _nevergrads_own():
    """What mango may not change in nevergrad: the sampler classes and the functions they run."""
    return (seq.HaltonSampler, seq.HammersleySampler, seq.HaltonSampler.__dict__["_internal_sampler"],
            seq.HammersleySampler.__dict__["_internal_sampler"],
            seq.HaltonPermutationGenerator.__dict__["get_permutations_generator"])


def _count_permutation_draws(monkeypatch) -> list:
    """Dimensions of the permutation generators asked for their permutations, in order."""
    calls = []
    original = seq.HaltonPermutationGenerator.get_permutations_generator

    def counted(self):
        calls.append(self.dimension)
        return original(self)

    monkeypatch.setattr(seq.HaltonPermutationGenerator, "get_permutations_generator", counted)
    return calls


@pytest.mark.parametrize("cls_name,budget", [("HammersleySampler", 12), ("HaltonSampler", 12),
                                             ("HaltonSampler", None)])
def test_kept_samples_equal_nevergrads(monkeypatch, cls_name, budget):
    monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_DEFAULT_LEN", 9)  # no budget: fall back from sample 8 on
    monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_MIN_DIM", 0)
    n = budget if budget else 15
    dim = 40  # primes up to 173: sizes both below and above the kept prefix

    def samples(cls):
        s = cls(dim, budget=budget, scrambling=True, random_state=np.random.RandomState(3))
        return s, [np.asarray(s()) for _ in range(n)]

    with nevergrad_opt._inside_wrapper():
        kept, a = samples(getattr(seq, cls_name))
    own, b = samples(getattr(seq, cls_name))
    assert isinstance(kept.permgen, nevergrad_opt._KeptPermutations)
    assert type(own) is getattr(seq, cls_name) and type(own.permgen) is seq.HaltonPermutationGenerator
    assert len(a) == len(b) == n
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # bit-identical


def test_portfolio_on_vqvae_codebook_builds_permutations_once(monkeypatch):
    """ng:Portfolio's ScrHammersleySearch on a VQ-VAE-sized Codebook: the permutations (6,271 of them,
    ~3 s to build here) are built once, not on every sample (counted, not timed: timings flake)."""
    from mango.spaces import Codebook

    calls = _count_permutation_draws(monkeypatch)
    space = Codebook((7, 7), 128)  # 6,272 softmax weights in nevergrad
    opt = make("ng:Portfolio", space, seed=1, budget=3000)
    for _ in range(9):  # three asks of each portfolio member, incl. ScrHammersleySearch
        x = opt.ask(1)
        assert x.shape == (1, 49) and x.min() >= 0 and x.max() < 128
        opt.tell(x, np.array([float(x.sum() % 7)]))
    big = [dim for dim in calls if dim >= nevergrad_opt._HALTON_MEMO_MIN_DIM]
    assert len(big) == 1, calls  # without the kept permutations: once per Hammersley sample (3 here)


def test_nevergrad_outside_mangos_wrapper_is_left_as_it_is(monkeypatch):
    """After mango's ng: wrapper ran (and failed once inside nevergrad), a plain nevergrad optimizer gets
    nevergrad's own, unpatched sampler; mango's optimizer keeps its permutations (drawn once)."""
    own = _nevergrads_own()
    calls = _count_permutation_draws(monkeypatch)
    dim, asks = 300, 6
    opt = make("ng:ScrHammersleySearch", Box(dim, 0.0, 1.0), seed=0, budget=50)
    for _ in range(asks):
        x = opt.ask(1)
        opt.tell(x, -np.sum(x ** 2, axis=1))
    assert len(calls) == 1  # mango's: drawn once
    assert isinstance(opt._opt.sampler.permgen, nevergrad_opt._KeptPermutations)

    def fails():
        raise RuntimeError("inside nevergrad")

    monkeypatch.setattr(opt._opt, "ask", fails)
    with pytest.raises(Exception, match="inside nevergrad"):
        opt.ask(1)
    monkeypatch.undo()  # nevergrad's own get_permutations_generator back before comparing
    assert _nevergrads_own() == own
    sampler_fn = seq.HaltonSampler._internal_sampler
    assert (sampler_fn.__module__, sampler_fn.__qualname__) == (seq.__name__, "HaltonSampler._internal_sampler")

    calls = _count_permutation_draws(monkeypatch)
    param = ng.p.Array(shape=(dim,), lower=0.0, upper=1.0)
    param.random_state = np.random.RandomState(0)
    plain = ng.optimizers.registry["ScrHammersleySearch"](parametrization=param, budget=50)
    for _ in range(asks):
        cand = plain.ask()
        plain.tell(cand, float(np.sum(cand.value ** 2)))
    assert type(plain.sampler) is seq.HammersleySampler
    assert type(plain.sampler.permgen) is seq.HaltonPermutationGenerator
    assert len(calls) == asks  # nevergrad's own: drawn on every sample


def test_inside_wrapper_nests_and_is_per_thread(monkeypatch):
    monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_MIN_DIM", 0)
    own = _nevergrads_own()
    entered, leave = threading.Event(), threading.Event()

    def other():
        with nevergrad_opt._inside_wrapper():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert entered.wait(10)
        # another thread is inside mango's wrapper: a sampler built here behaves as nevergrad's own
        s = seq.HaltonSampler(5, budget=4, scrambling=True)
        assert type(s.permgen) is seq.HaltonPermutationGenerator
        with pytest.raises(KeyError):
            with nevergrad_opt._inside_wrapper(), nevergrad_opt._inside_wrapper():
                s = seq.HaltonSampler(5, budget=4, scrambling=True)
                assert isinstance(s.permgen, nevergrad_opt._KeptPermutations)
                raise KeyError("x")
        assert seq.HaltonSampler is not own[0]  # the other thread is still inside
    finally:
        leave.set()
        t.join(10)
    assert _nevergrads_own() == own
