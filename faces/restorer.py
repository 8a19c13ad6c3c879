"""Restorers for the photo pipeline: uint8 (N, S, S, 3) RGB faces in, the same shape and type out.

The networks work on float32 NCHW RGB in [-1, 1]; `array_restorer` does the conversions around any
function of that kind, so the same pipeline drives a Paddle generator (`generator_restorer`) and an
exported inference predictor (wrap its run call in a function of arrays).
"""
from utils.imaging import to_images, to_network


def array_restorer(run):
    """A restorer from `run(x) -> y`, x and y float32 (N, 3, S, S) in [-1, 1]."""
    def restore(faces):
        return to_images(run(to_network(faces)))

    return restore


def generator_restorer(generator):
    """A restorer from a Paddle generator whose forward(x) returns an image or (image, ...)."""
    import paddle

    generator.eval()

    @paddle.no_grad()
    def run(x):
        out = generator(paddle.to_tensor(x))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.numpy()

    return array_restorer(run)


def identity_restorer(faces):
    """Returns the faces unchanged: checks the geometry of the pipeline without a network."""
    return faces.copy()
