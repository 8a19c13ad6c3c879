"""GPEN's generator (GPEN_SPEC §3): a U-shaped network whose encoder maps the degraded face to a latent
code and to features, and whose decoder is a StyleGAN2 generator (the "GAN prior") that takes the code
through its mapping network as the style and the encoder features as its noise inputs.

The encoder may work at a lower resolution than the decoder (the authors' `FullGenerator_SR`, e.g.
1024 in, 2048 out): the layers above the encoder's resolution then take random noise, which is an
explicit input here (see FullGenerator)."""
import math

import numpy as np
import paddle
import paddle.nn as nn

from model.layers import (ConstantInput, ConvLayer, EqualLinear, PixelNorm, StyledConv, ToRGB,
                          channel_table)


class Generator(nn.Layer):
    """StyleGAN2 decoder whose noise inputs are concatenated encoder features (`generator.*` keys)."""

    def __init__(self, size, style_dim, n_mlp, channel_multiplier=2, blur_kernel=(1, 3, 3, 1),
                 lr_mlp=0.01, isconcat=True, narrow=1.0):
        super().__init__()
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.n_latent = self.log_size * 2 - 2
        feat = 2 if isconcat else 1  # concatenated noise doubles every layer's input channels
        channels = channel_table(channel_multiplier, narrow)

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])

        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel, isconcat=isconcat)
        self.to_rgb1 = ToRGB(channels[4] * feat, style_dim, upsample=False)

        self.convs = nn.LayerList()
        self.to_rgbs = nn.LayerList()
        in_channel = channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = channels[2 ** i]
            self.convs.append(StyledConv(in_channel * feat, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, isconcat=isconcat))
            self.convs.append(StyledConv(out_channel * feat, out_channel, 3, style_dim,
                                         blur_kernel=blur_kernel, isconcat=isconcat))
            self.to_rgbs.append(ToRGB(out_channel * feat, style_dim))
            in_channel = out_channel

    def forward(self, z, noise, return_latents=False):
        """z: (N, style_dim) code; noise: one map per StyledConv, from 4×4 upward."""
        w = self.style(z)
        # One copy of w per layer: the path-length penalty differentiates with respect to these.
        latent = paddle.expand(w.unsqueeze(1), [-1, self.n_latent, self.style_dim])
        out = self.conv1(self.input(w), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k + 1
            out = self.convs[2 * k](out, latent[:, i], noise[i])
            out = self.convs[2 * k + 1](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip, (latent if return_latents else None)


class FullGenerator(nn.Layer):
    """Encoder (`ecd0` … `ecd{log2(in_size)−2}`, `final_linear`) + the StyleGAN2 decoder (`generator`).

    size: the output resolution. in_size: the encoder's (default: size). in_size < size is the authors'
    FullGenerator_SR: the two StyledConvs of every resolution above in_size have no encoder feature to
    take and take random noise instead, of the shapes `noise_shapes` ((C, H, W), in call order). That
    noise is an input of `forward` (nothing random runs inside the network: export, determinism): given
    explicitly (`noise=`, the authors' mode: they draw it afresh on every call, see `random_noise`), or
    by default the fixed maps drawn once at construction from `np.random.default_rng(noise_seed)`,
    shape (1, C, H, W), the same for every face (same input, same output). noise_seed None: no fixed maps
    (nothing allocated); every call must then pass the noise.
    """

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0, isconcat=True,
                 lr_mlp=0.01, blur_kernel=(1, 3, 3, 1), in_size=None, noise_seed=0):
        super().__init__()
        in_size = size if in_size is None else in_size
        for name, value in (("size", size), ("in_size", in_size)):
            if value < 8 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 8, got {value}")
        if in_size > size:
            raise ValueError(f"in_size ({in_size}) must not exceed the output size ({size})")
        self.size = size
        self.in_size = in_size
        self.log_size = int(math.log2(size))
        log_in_size = int(math.log2(in_size))
        channels = channel_table(channel_multiplier, narrow)
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                   blur_kernel=blur_kernel, lr_mlp=lr_mlp, isconcat=isconcat, narrow=narrow)
        # Encoder: a 1×1 conv at in_size, then one downsampling 3×3 conv per level down to 4×4.
        # Each is wrapped in a one-element Sequential, as in the authors' checkpoints (`ecdK.0.<idx>`).
        self.encoder_names = [f"ecd{i}" for i in range(log_in_size - 1)]
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[in_size], 1))
        in_channel = channels[in_size]
        for i in range(log_in_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            setattr(self, self.encoder_names[log_in_size - i + 1],
                    nn.Sequential(ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)))
            in_channel = out_channel
        self.code_dim = channels[4] * 4 * 4
        self.final_linear = nn.Sequential(EqualLinear(self.code_dim, style_dim, activation="fused_lrelu"))

        self.noise_shapes = [(channels[2 ** i], 2 ** i, 2 ** i)
                             for i in range(log_in_size + 1, self.log_size + 1) for _ in range(2)]
        self.noise_seed = noise_seed
        if self.noise_shapes and noise_seed is not None:
            rng = np.random.default_rng(noise_seed)
            for k, shape in enumerate(self.noise_shapes):  # not in the state dict: the authors' keys only
                self.register_buffer(f"fixed_noise_{k}", paddle.to_tensor(
                    rng.standard_normal((1,) + shape, dtype=np.float32)), persistable=False)

    def forward(self, x, return_latents=False, noise=None):
        """x: (N, 3, in_size, in_size) RGB in [-1, 1] -> (image (N, 3, size, size), latents or None).

        noise: for in_size < size, one (N, C, H, W) tensor per entry of `noise_shapes`; None uses the fixed
        maps (see the class)."""
        return self.decode(*self.encode(x), return_latents=return_latents, noise=noise)

    def encode(self, x):
        """The degraded face -> (code z (N, style_dim), encoder features from in_size² down to 4×4)."""
        features = []
        out = x
        for name in self.encoder_names:
            out = getattr(self, name)(out)
            features.append(out)
        return self.final_linear(out.reshape([-1, self.code_dim])), features

    def decode(self, z, features, return_latents=False, noise=None):
        """StyleGAN2 decoder with the code z as style input and the encoder features as noise (and, above
        in_size, the random noise: `noise`, or the fixed maps)."""
        # Decoder noise inputs from 4×4 upward: each encoder feature twice, coarsest first, minus the
        # first copy (conv1 at 4×4 takes one; each resolution's two StyledConvs take two).
        encoded = [f for f in reversed(features) for _ in range(2)][1:]
        return self.generator(z, encoded + self._noise_above_in_size(z, noise), return_latents)

    def _noise_above_in_size(self, z, noise):
        if not self.noise_shapes:
            return []
        if noise is not None:
            if len(noise) != len(self.noise_shapes):
                raise ValueError(f"expected {len(self.noise_shapes)} noise maps (shapes {self.noise_shapes}), "
                                 f"got {len(noise)}")
            return list(noise)
        if self.noise_seed is None:
            raise ValueError("this generator has no fixed noise (noise_seed=None): pass noise=[...]")
        # The same maps for every face, broadcast over the batch of z (kept dynamic for export).
        batch = paddle.zeros_like(z[:, :1]).reshape([-1, 1, 1, 1])
        return [getattr(self, f"fixed_noise_{k}") + batch for k in range(len(self.noise_shapes))]

    def random_noise(self, batch, rng):
        """Fresh noise for the layers above in_size, (batch, C, H, W) each, standard normal from the numpy
        Generator `rng`: the authors' behaviour, who draw it anew (unseeded) on every call."""
        return [paddle.to_tensor(rng.standard_normal((batch,) + shape, dtype=np.float32))
                for shape in self.noise_shapes]


def generator_sizes(state):
    """(in_size, out_size) of a FullGenerator state dict (name -> array): the encoder has log2(in_size) − 1
    levels (`ecd0` …), the decoder one ToRGB per resolution from 8 up to out_size (`generator.to_rgbs.K`)."""
    n_encoder = len({k.split(".")[0] for k in state if k.startswith("ecd")})
    n_to_rgbs = len({k.split(".")[2] for k in state if k.startswith("generator.to_rgbs.")})
    return 2 ** (n_encoder + 1), 2 ** (n_to_rgbs + 2)
