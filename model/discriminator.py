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

    def forward(self, x, return_features=False, groups=1):
        """x: (N, 3, size, size) -> logits (N, 1), and with return_features the activations after each
        element of `convs`, after the stddev concatenation and after `final_conv` (the feature loss's).

        groups: the minibatch-stddev statistic is taken per contiguous group of N/groups samples (the
        authors: one group, the whole batch of a process; `train.batch_groups` reproduces a multi-process
        run in one process)."""
        features = []
        out = x
        for layer in self.convs:
            out = layer(out)
            features.append(out)
        # Minibatch standard deviation over the group (the authors' group = the batch), one feature: the
        # mean over channels and pixels of the per-position std, appended as a constant channel.
        n, c, h, w = out.shape
        grouped = out.reshape([groups, n // groups, c, h, w])
        std = paddle.sqrt(paddle.var(grouped, axis=1, unbiased=False) + 1e-8).mean(axis=[1, 2, 3])  # (groups,)
        std = paddle.expand(std.reshape([groups, 1, 1, 1, 1]), [groups, n // groups, 1, h, w])
        out = paddle.concat([out, std.reshape([n, 1, h, w])], axis=1)
        features.append(out)
        out = self.final_conv(out)
        features.append(out)
        logits = self.final_linear(out.reshape([-1, self.code_dim]))
        return (logits, features) if return_features else logits
