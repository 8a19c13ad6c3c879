"""Background super-resolution of the authors' FaceEnhancement (`--use_sr`): RRDBNet and RealESRNet.

RRDBNet is ESRGAN's generator as BasicSR extends it to x2 and x1 (Real-ESRGAN): a pixel-unshuffle by 2
(x2) or 4 (x1) folds the image into channels, a 3x3 conv, `num_block` residual-in-residual dense
blocks and a conv with a skip around them, two nearest-x2 upsamplings each followed by a conv and a
leaky ReLU, and two 3x3 convs to RGB. Output side = scale x input side.

`RealESRNet.process(img)` is the authors' RealESRNet.process step for step: float32 / 255, BGR -> RGB,
reflect pad on the bottom/right to a multiple of 2 (x2) or 4 (x1) (x4: none), the network on the whole
image or on tiles (`tile_size` px tiles starting at 0, each extended by `tile_pad` px of context on
every side where the image has it, the central part pasted into a zero canvas), crop, clamp to [0, 1],
RGB -> BGR, x 255 rounded half to even, uint8. Input and output are HWC uint8 BGR (OpenCV order).

Two modes, which differ only where the authors' code is a bug a user would not want:

* `authors_mode=True` keeps both quirks, for reproducing their outputs (the fixtures need them):
  the crop removes h_pad rows / w_pad columns from the scale-times larger output, so x2 with an odd
  side keeps one reflect-padded row or column (375x500 -> 751x1000, not 750x1000); and tiling returns
  None (after a warning, as theirs prints "sr failed") whenever an extended tile is not a multiple of
  the unshuffle factor, which for x1 with tile_pad 10 and tile sizes that are multiples of 4 is always.
* the default mode crops scale x h_pad (375x500 -> 750x1000, exactly scale x the photo) and widens each
  extended tile to the next multiples of the unshuffle factor with more of the image's own context, so
  x1 tiling works. For x2 / x4 with an even tile size the tiles are the authors'.

Tiling is on by default so memory stays bounded on large photos: `tile_size=None` means tiles of
DEFAULT_TILE_OUTPUT // scale input pixels (768 / 384 / 192 for x1 / x2 / x4). Every scale runs its
body at a quarter of the output side, so memory follows the output area: the real network on the CPU
predictor peaks at ~2 KB per output pixel of an extended tile (measured: 0.55 GB for a 512 x 512
output, 2.3 GB for 1064 x 1064), ~1.4 GB for a default tile; the 10 px context costs ~11% more
compute. A photo smaller than one tile is one tile, the same as no tiling. `tile_size=0` runs the
whole image at once, as the authors' default --tile_size 0 (a 2000 x 1500 photo at x2 would need
~25 GB); in the authors' mode `tile_size=None` means that too. Tiles change pixels near tile borders
(the network sees only tile_pad px of context there).

Weights: the authors' `realesrnet_x{1,2,4}.pth` ({'params_ema': state dict}) or any file of the same
layout; num_feat / num_block / num_grow_ch and the scale are read off the shapes (conv_first takes
48 / 12 / 3 channels for x1 / x2 / x4). On the CPU the network runs through the checked oneDNN
predictor exported with an open H and W (one program for every tile shape), dygraph on a GPU.
"""
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn

from faces.inference_ops import conv_leaky_relu, pixel_unshuffle, scaled_conv, upsample_nearest2
from utils.errors import UserError
from utils.weights import WeightKind, check_state_dict, read_state_dict

LEAKY_SLOPE = 0.2
DENSE_RESIDUAL_SCALE = 0.2     # ESRGAN's residual scaling inside and around the dense blocks
TILE_PAD = 10                  # RealESRNet's tile_pad
DEFAULT_TILE_OUTPUT = 768      # output side of a default tile (see the module doc)

# Input channels of conv_first -> scale: x1 unshuffles by 4 (3·16), x2 by 2 (3·4), x4 not at all.
SCALE_OF_INPUT_CHANNELS = {48: 1, 12: 2, 3: 4}
UNSHUFFLE = {1: 4, 2: 2, 4: 1}  # scale -> unshuffle factor (= the multiple the input is padded to)


# ----------------------------------------------------------------------------------------------
# The network.

class ResidualDenseBlock(nn.Layer):
    """Five 3x3 convs, each seeing the block input and every earlier output; x + 0.2 · conv5(...)."""

    def __init__(self, num_feat=64, num_grow_ch=32):
        super().__init__()
        self.conv1 = nn.Conv2D(num_feat, num_grow_ch, 3, padding=1)
        self.conv2 = nn.Conv2D(num_feat + num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv3 = nn.Conv2D(num_feat + 2 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv4 = nn.Conv2D(num_feat + 3 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv5 = nn.Conv2D(num_feat + 4 * num_grow_ch, num_feat, 3, padding=1)

    def forward(self, x):
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(conv_leaky_relu(conv, paddle.concat(features, axis=1), LEAKY_SLOPE))
        return scaled_conv(self.conv5, paddle.concat(features, axis=1), DENSE_RESIDUAL_SCALE) + x


class RRDB(nn.Layer):
    """Residual in residual dense block: three dense blocks, x + 0.2 · rdb3(rdb2(rdb1(x)))."""

    def __init__(self, num_feat, num_grow_ch=32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * DENSE_RESIDUAL_SCALE + x


class RRDBNet(nn.Layer):
    """BasicSR's RRDBNet (the authors' sr_model/rrdbnet_arch.py): (N, 3, H, W) RGB in [0, 1] ->
    (N, 3, scale·H, scale·W), not clamped. For x2 / x1, H and W must be multiples of 2 / 4."""

    def __init__(self, scale=4, num_feat=64, num_block=23, num_grow_ch=32, num_in_ch=3, num_out_ch=3):
        super().__init__()
        if scale not in UNSHUFFLE:
            raise UserError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.config = dict(scale=scale, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
        self.conv_first = nn.Conv2D(num_in_ch * self.unshuffle ** 2, num_feat, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2D(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2D(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2D(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2D(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2D(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x):
        if self.unshuffle > 1:
            x = pixel_unshuffle(x, self.unshuffle)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        features = conv_leaky_relu(self.conv_up1, upsample_nearest2(features), LEAKY_SLOPE)
        features = conv_leaky_relu(self.conv_up2, upsample_nearest2(features), LEAKY_SLOPE)
        return self.conv_last(conv_leaky_relu(self.conv_hr, features, LEAKY_SLOPE))


# ----------------------------------------------------------------------------------------------
# Weights.

REALESRNET_WEIGHTS = WeightKind(
    "Real-ESRNet (RRDBNet)", markers=("conv_first.weight", "conv_body.weight", "conv_last.weight"),
    hint="expected the authors' realesrnet_x1.pth / _x2.pth / _x4.pth (background super-resolution)",
    entries=("params_ema", "params"))


def rrdbnet_config(state):
    """RRDBNet's constructor arguments read off a state dict's shapes (see the module doc)."""
    in_channels = state["conv_first.weight"].shape[1]
    if in_channels not in SCALE_OF_INPUT_CHANNELS:
        raise UserError(f"RRDBNet conv_first takes {in_channels} channels; expected 48, 12 or 3 (x1, x2, x4)")
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    grow = state.get("body.0.rdb1.conv1.weight")
    return dict(scale=SCALE_OF_INPUT_CHANNELS[in_channels], num_feat=int(state["conv_first.weight"].shape[0]),
                num_block=len(blocks), num_grow_ch=int(grow.shape[0]) if grow is not None else 32,
                num_out_ch=int(state["conv_last.weight"].shape[0]))


def load_rrdbnet(path, scale=None):
    """RRDBNet in eval mode with the weights of `path` (the authors' realesrnet_x*.pth, its
    `params_ema` entry, or a .pdparams of the same layout). `scale`: the scale the caller expects
    (None: whatever the file holds). A wrong file: one UserError."""
    state = read_state_dict(path, REALESRNET_WEIGHTS).state
    config = rrdbnet_config(state)
    if scale is not None and config["scale"] != scale:
        raise UserError(f"{path}: holds an x{config['scale']} Real-ESRNet, but x{scale} was asked for "
                        f"(--sr_scale); pass the realesrnet_x{scale}.pth file")
    net = RRDBNet(**config)
    expected = net.state_dict()
    check_state_dict(state, expected, path, "RRDBNet", "expected the authors' realesrnet_x1/x2/x4.pth layout")
    net.set_state_dict({k: paddle.to_tensor(state[k]) for k in expected})
    net.eval()
    return net


def realesrnet_file(weights_dir, model="realesrnet", scale=2):
    """The file the authors' RealESRNet loads: <weights_dir>/<model>_x<scale>.pth."""
    return os.path.join(weights_dir, f"{model}_x{scale}.pth")


# ----------------------------------------------------------------------------------------------
# The authors' procedure.

@dataclass(frozen=True)
class Tile:
    """One network call of a tiled run, in pixels of the padded input (rows then columns).

    source: the extended tile the network sees, (top, bottom, left, right); target: the tile's own area
    (without context), which its output fills, scaled by `scale` in the output."""
    source: tuple
    target: tuple


def plan_tiles(height, width, tile_size, tile_pad, multiple=1):
    """The authors' tiling of a (height, width) image: tiles of tile_size starting at 0, each extended
    by tile_pad on every side, clipped to the image. multiple > 1 widens every extended tile outward to
    multiples of `multiple` (still inside the image, whose sides must be multiples of it)."""
    tiles = []
    for y in range(math.ceil(height / tile_size)):
        for x in range(math.ceil(width / tile_size)):
            top, left = y * tile_size, x * tile_size
            bottom, right = min(top + tile_size, height), min(left + tile_size, width)
            source = [max(top - tile_pad, 0), min(bottom + tile_pad, height),
                      max(left - tile_pad, 0), min(right + tile_pad, width)]
            if multiple > 1:
                source = [source[0] // multiple * multiple, -(-source[1] // multiple) * multiple,
                          source[2] // multiple * multiple, -(-source[3] // multiple) * multiple]
            tiles.append(Tile(tuple(source), (top, bottom, left, right)))
    return tiles


def to_uint8_bgr(output):
    """(3, H, W) float RGB network output -> HWC uint8 BGR: clamp to [0, 1], x 255, round half to even."""
    rgb = np.clip(output, 0, 1).astype(np.float32, copy=False)
    return np.round(rgb[::-1].transpose(1, 2, 0) * np.float32(255.0)).astype(np.uint8)


class RealESRNet:
    """The authors' RealESRNet on our RRDBNet (see the module doc for the modes and the tiling).

    weights: a realesrnet_x*.pth path or a built RRDBNet. scale: the scale the caller asks for (checked
    against the file; None accepts the file's). tile_size: None (default tiles; in the authors' mode
    their default, the whole image), 0 (whole image) or a tile side in input pixels. backend / threads:
    deploy.checked.checked_layer's.
    """

    def __init__(self, weights, scale=None, tile_size=None, tile_pad=TILE_PAD, authors_mode=False,
                 backend="auto", threads=0):
        from deploy.checked import checked_layer

        self.net = weights if isinstance(weights, RRDBNet) else load_rrdbnet(weights, scale)
        if scale is not None and self.net.scale != scale:
            raise UserError(f"the Real-ESRNet given is x{self.net.scale}, not x{scale}")
        self.scale = self.net.scale
        self.multiple = self.net.unshuffle
        if tile_size is None:  # the authors' demo default is --tile_size 0 (no tiling)
            tile_size = 0 if authors_mode else DEFAULT_TILE_OUTPUT // self.scale
        if tile_size < 0 or tile_pad < 0:
            raise UserError(f"tile_size and tile_pad must be >= 0, got {tile_size} and {tile_pad}")
        self.tile_size, self.tile_pad = int(tile_size), int(tile_pad)
        self.authors_mode = authors_mode
        self._network = checked_layer(self.net, (3, None, None), f"Real-ESRNet x{self.scale}", backend=backend,
                                      threads=threads)

    @property
    def backend(self):
        return self._network.backend

    def network_input(self, img):
        """(1, 3, H', W') float32 RGB in [0, 1], reflect-padded on the bottom/right to the multiple, and
        the pads (h_pad, w_pad)."""
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise UserError(f"super-resolution needs an HxWx3 uint8 BGR image, got {img.dtype} {list(img.shape)}")
        x = (img.astype(np.float32) / np.float32(255.0))[:, :, ::-1].transpose(2, 0, 1)[None]
        h_pad, w_pad = (-img.shape[0]) % self.multiple, (-img.shape[1]) % self.multiple
        if h_pad or w_pad:
            if min(img.shape[:2]) <= max(h_pad, w_pad):
                raise UserError(f"image of {img.shape[1]}x{img.shape[0]} px is too small for x{self.scale} "
                                f"super-resolution (at least {self.multiple} px a side)")
            x = np.pad(x, ((0, 0), (0, 0), (0, h_pad), (0, w_pad)), mode="reflect")
        return np.ascontiguousarray(x), (h_pad, w_pad)

    def run_network(self, x):
        """The network on a padded input (1, 3, H', W'): float32 (1, 3, scale·H', scale·W')."""
        return self._network(x)

    def _tiled(self, x):
        """The output of the padded input assembled from tiles as uint8 BGR, or None where the authors'
        code fails (authors' mode, a tile that is not a multiple of the unshuffle factor)."""
        height, width = x.shape[2:]
        s = self.scale
        tiles = plan_tiles(height, width, self.tile_size, self.tile_pad,
                           multiple=1 if self.authors_mode else self.multiple)
        if self.authors_mode:
            bad = next((t for t in tiles if (t.source[1] - t.source[0]) % self.multiple
                        or (t.source[3] - t.source[2]) % self.multiple), None)
            if bad is not None:
                warnings.warn(f"Real-ESRNet x{s} failed as in the authors' code: a {bad.source[3] - bad.source[2]}x"
                              f"{bad.source[1] - bad.source[0]} px tile is not a multiple of {self.multiple} "
                              f"(authors' mode; the default mode tiles this image)", RuntimeWarning)
                return None
        canvas = np.zeros((s * height, s * width, 3), np.uint8)  # the authors' zero canvas
        for tile in tiles:
            (st, sb, sl, sr), (tt, tb, tl, tr) = tile.source, tile.target
            out = self.run_network(np.ascontiguousarray(x[:, :, st:sb, sl:sr]))[0]
            part = out[:, s * (tt - st):s * (tb - st), s * (tl - sl):s * (tr - sl)]
            canvas[s * tt:s * tb, s * tl:s * tr] = to_uint8_bgr(part)
        return canvas

    def process(self, img):
        """Super-resolve a HWC uint8 BGR image -> HWC uint8 BGR (None: see authors_mode)."""
        x, (h_pad, w_pad) = self.network_input(img)
        if self.tile_size > 0:
            out = self._tiled(x)
            if out is None:
                return None
        else:
            out = to_uint8_bgr(self.run_network(x)[0])
        if self.authors_mode:  # their crop: h_pad rows / w_pad columns off the scale-times larger output
            return np.ascontiguousarray(out[:out.shape[0] - h_pad, :out.shape[1] - w_pad])
        return np.ascontiguousarray(out[:self.scale * img.shape[0], :self.scale * img.shape[1]])
