"""The memoized scrambled Halton/Hammersley sampling of nevergrad (mango.optimizers.nevergrad_opt)
gives exactly nevergrad's own samples, and makes ng:Portfolio on a VQ-VAE-sized Codebook fast."""

import numpy as np
import pytest

from mango.optimizers import nevergrad_opt

seq = pytest.importorskip("nevergrad.optimization.sequences")


@pytest.mark.parametrize("cls_name,budget", [("HammersleySampler", 12), ("HaltonSampler", 12),
                                             ("HaltonSampler", None)])
def test_memoized_samples_equal_nevergrads(monkeypatch, cls_name, budget):
    nevergrad_opt._memoize_scrambled_halton()
    cls = getattr(seq, cls_name)
    monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_DEFAULT_LEN", 9)  # no budget: fall back from sample 8 on
    n = budget if budget else 15
    dim = 40  # primes up to 173: sizes both below and above the kept prefix

    def samples(memo: bool):
        monkeypatch.setattr(nevergrad_opt, "_HALTON_MEMO_MIN_DIM", 0 if memo else 10**9)
        s = cls(dim, budget=budget, scrambling=True, random_state=np.random.RandomState(3))
        out = [np.asarray(s()) for _ in range(n)]
        assert ("_mango_perms" in s.__dict__) == memo
        return out

    a, b = samples(True), samples(False)
    assert len(a) == len(b) == n
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # bit-identical


def test_portfolio_on_vqvae_codebook_builds_permutations_once(monkeypatch):
    """ng:Portfolio's ScrHammersleySearch on a VQ-VAE-sized Codebook: the permutations (6,271 of them,
    ~3 s to build here) are built once, not on every sample (counted, not timed: timings flake)."""
    from mango.optimizers import make
    from mango.spaces import Codebook

    gen_cls = seq.HaltonPermutationGenerator
    calls = []
    original = gen_cls.get_permutations_generator

    def counted(self):
        calls.append(self.dimension)
        return original(self)

    monkeypatch.setattr(gen_cls, "get_permutations_generator", counted)
    space = Codebook((7, 7), 128)  # 6,272 softmax weights in nevergrad
    opt = make("ng:Portfolio", space, seed=1, budget=3000)
    for _ in range(9):  # three asks of each portfolio member, incl. ScrHammersleySearch
        x = opt.ask(1)
        assert x.shape == (1, 49) and x.min() >= 0 and x.max() < 128
        opt.tell(x, np.array([float(x.sum() % 7)]))
    big = [dim for dim in calls if dim >= nevergrad_opt._HALTON_MEMO_MIN_DIM]
    assert len(big) == 1, calls  # without the memo: once per Hammersley sample (3 here)
