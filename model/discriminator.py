"""StyleGAN2's residual discriminator (GPEN_SPEC §4), with the whole batch as the minibatch-stddev group."""
import math

import paddle
import paddle.nn as nn

from model.layers import ConvLayer, EqualLinear, ResBlock, channel_table


class Discriminator(nn.Layer):
    def __init__(self, size, channel_multiplier=2, narrow=1.0, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        channels = channel_table(channel_multiplier, narrow)
        log_size = int(math.log2(size))
        convs = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.code_dim = channels[4] * 4 * 4
        self.final_linear = nn.Sequential(
            EqualLinear(self.code_dim, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, x, return_features=False):
        """x: (N, 3, size, size) -> logits (N, 1), and with return_features the activations after each
        element of `convs`, after the stddev concatenation and after `final_conv` (the feature loss's)."""
        features = []
        out = x
        for layer in self.convs:
            out = layer(out)
            features.append(out)
        # Minibatch standard deviation over the whole batch (the authors' group = batch), one feature:
        # the mean over channels and pixels of the per-position std, appended as a constant channel.
        std = paddle.sqrt(paddle.var(out, axis=0, unbiased=False) + 1e-8).mean()
        out = paddle.concat([out, paddle.zeros_like(out[:, :1]) + std], axis=1)
        features.append(out)
        out = self.final_conv(out)
        features.append(out)
        logits = self.final_linear(out.reshape([-1, self.code_dim]))
        return (logits, features) if return_features else logits
