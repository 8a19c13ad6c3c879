"""GPEN's generator (GPEN_SPEC §3): a U-shaped network whose encoder maps the degraded face to a latent
code and to features, and whose decoder is a StyleGAN2 generator (the "GAN prior") that takes the code
through its mapping network as the style and the encoder features as its noise inputs."""
import math

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
    """Encoder (`ecd0` … `ecd{log2(size)−2}`, `final_linear`) + the StyleGAN2 decoder (`generator`)."""

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0, isconcat=True,
                 lr_mlp=0.01, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size = size
        self.log_size = int(math.log2(size))
        channels = channel_table(channel_multiplier, narrow)
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                   blur_kernel=blur_kernel, lr_mlp=lr_mlp, isconcat=isconcat, narrow=narrow)
        # Encoder: a 1×1 conv at full resolution, then one downsampling 3×3 conv per level down to 4×4.
        # Each is wrapped in a one-element Sequential, as in the authors' checkpoints (`ecdK.0.<idx>`).
        self.encoder_names = [f"ecd{i}" for i in range(self.log_size - 1)]
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        in_channel = channels[size]
        for i in range(self.log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            setattr(self, self.encoder_names[self.log_size - i + 1],
                    nn.Sequential(ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)))
            in_channel = out_channel
        self.code_dim = channels[4] * 4 * 4
        self.final_linear = nn.Sequential(EqualLinear(self.code_dim, style_dim, activation="fused_lrelu"))

    def forward(self, x, return_latents=False):
        """x: (N, 3, size, size) RGB in [-1, 1] -> (image (N, 3, size, size), latents or None)."""
        return self.decode(*self.encode(x), return_latents=return_latents)

    def encode(self, x):
        """The degraded face -> (code z (N, style_dim), encoder features from size×size down to 4×4)."""
        features = []
        out = x
        for name in self.encoder_names:
            out = getattr(self, name)(out)
            features.append(out)
        return self.final_linear(out.reshape([-1, self.code_dim])), features

    def decode(self, z, features, return_latents=False):
        """StyleGAN2 decoder with the code z as style input and the encoder features as noise."""
        # Decoder noise inputs from 4×4 upward: each encoder feature twice, coarsest first, minus the
        # first copy (conv1 at 4×4 takes one; each resolution's two StyledConvs take two).
        noise = [f for f in reversed(features) for _ in range(2)][1:]
        return self.generator(z, noise, return_latents)
