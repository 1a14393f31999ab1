"""Generators: latent points in a Space -> images ``[n, C, H, W]`` (torch, float32).

* :class:`VQVAEGenerator` — VQ-VAE decoder; codes view (Codebook) or continuous embedding view (Box).
* :class:`GANGenerator` — GAN generator; Box latent or its Grid discretization.
* :class:`ParametricGenerator` — gratings and Gabor patches over named parameters.
* :class:`ModuleGenerator` — any user module ``latent -> image``.

Outputs are in [0, 1] unless an explicit ``transform`` (see :mod:`mango.generators.transforms`) is given.
"""

from .base import Generator, as_images, default_device
from .gan import GANGenerator
from .module import ModuleGenerator
from .parametric import PARAMETER_RANGES, ParametricGenerator
from .transforms import Affine, Clamp01, Compose, Normalize, Resize, ToChannels
from .vqvae import VQVAEGenerator

__all__ = [
    "Generator", "VQVAEGenerator", "GANGenerator", "ParametricGenerator", "ModuleGenerator",
    "PARAMETER_RANGES", "Normalize", "Clamp01", "Affine", "Resize", "ToChannels", "Compose",
    "as_images", "default_device",
]
