"""Every optimizer `mango maximize --list-optimizers` prints runs (issue 15).

The slow test runs each listed name through ``mango.maximize`` with budget 24
on a small Box: it must end with exactly 24 queries, or with mango's one-line
ConfigError -- never another exception.
"""

from __future__ import annotations

import gc
import re
import sys
import time
import warnings

import numpy as np
import pytest

import mango
from mango.cli.maximize import main
from mango.errors import ConfigError
from mango.optimizers.nevergrad_opt import left_off, nevergrad_names
from mango.spaces import Box


def listed_names(capsys, pattern=None) -> list[str]:
    assert main(["maximize", "--list-optimizers"] + ([pattern] if pattern else [])) == 0
    out = capsys.readouterr().out
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith("  ")]


def test_listing_is_grouped_described_and_filtered(capsys):
    assert main(["maximize", "--list-optimizers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mango's own (")
    for g in ("CMA-ES and evolution strategies (", "differential evolution and particle swarms (",
              "Bayesian optimization and surrogate models (", "portfolios and algorithm selection ("):
        assert g in out
    rows = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert all(len(ln.split(None, 1)) == 2 for ln in rows)  # every name has a description
    names = [ln.split()[0] for ln in rows]
    assert len(names) == len(set(names)) and {"cma", "ga", "random", "tt", "ng:NGOpt", "ng:Powell"} <= set(names)
    assert not [n for n in nevergrad_names() if n != n.strip()]  # nevergrad's trailing-space name is stripped
    assert "ng:UltraSmoothDiscreteLognormalOnePlusOne" in names
    assert re.search(rf"\n{len(names)} optimizer\(s\)", out)
    powell = listed_names(capsys, "powell")
    assert "ng:Powell" in powell and all("powell" in n.lower() for n in powell)
    assert set(listed_names(capsys, "ng:*DE")) and all(n.endswith("DE") for n in listed_names(capsys, "ng:*DE"))
    assert main(["maximize", "--list-optimizers", "zzznothing"]) == 0
    assert "no optimizer matches" in capsys.readouterr().out


def test_left_off_names_say_why():
    for name, why in left_off().items():
        assert "optional package" in why
        with pytest.raises(ConfigError, match="needs the optional package"):
            mango.maximize(lambda x: -np.sum(x ** 2, 1), Box(3), optimizer=f"ng:{name}", budget=5, progress=False)


def test_sequential_method_runs_with_batch_size_1_and_says_so(tmp_path, capsys, monkeypatch):
    from mango.optimizers import nevergrad_opt

    monkeypatch.setattr(nevergrad_opt, "_SAID_SEQUENTIAL", set())
    assert main(["maximize", "--objective", "sphere", "--dim", "4", "--budget", "24", "--optimizer", "ng:Powell",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "24 of 24 queries" in cap.out
    assert cap.err.count("ng:Powell proposes one point at a time: it runs with batch size 1.") == 1
    assert "Traceback" not in cap.err
    # an explicit batch size > 1 is refused in one line
    assert main(["maximize", "--objective", "sphere", "--dim", "4", "--budget", "24", "--optimizer", "ng:Powell",
                 "--batch-size", "5", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "one point at a time" in err and "--batch-size 1" in err and "Traceback" not in err


@pytest.mark.slow
def test_every_listed_optimizer_runs_24_queries_or_says_why(capsys):
    names = listed_names(capsys)
    f = lambda x: -np.sum((x - 0.3) ** 2, axis=1)  # noqa: E731
    ran, refused, slow = [], {}, []
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append  # "Exception ignored in __del__" reports
    t_all = time.perf_counter()
    try:
        _run_all(names, f, ran, refused, slow)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [str(u.exc_value) for u in unraisable[:3]]
    total = time.perf_counter() - t_all
    print(f"\n{len(names)} listed: {len(ran)} ran 24 queries, {len(refused)} refused with a ConfigError "
          f"({', '.join(sorted(refused))}); {total:.0f} s; slowest {sorted(slow)[-3:]}")
    assert len(ran) >= 0.95 * len(names)


def _run_all(names, f, ran, refused, slow):
    for name in names:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r = mango.maximize(f, Box(4, -1, 1), optimizer=name, budget=24, seed=0, progress=False)
            except ConfigError as exc:
                msg = str(exc)
                assert "\n" not in msg and len(msg) < 600, (name, msg)
                refused[name] = msg
                continue
        assert r.n_queries == 24 and len(r.values) == 24 and np.isfinite(r.best_value), name
        ran.append(name)
        slow.append((time.perf_counter() - t0, name))
