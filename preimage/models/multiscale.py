r"""The multi-scale layout of Real NVP shared by the i-ResNet and Glow-style models.

``[squeeze] blocks [split | squeeze blocks ...] readout``: every scale-block but the first starts
with a squeeze (when height and width are even), runs its blocks and, with ``split``, hands
half of its channels to the next scale-block while the other half goes straight to the output
(factor-out). The models differ only in the blocks of a scale-block, which the caller builds.

References:
    Dinh, Sohl-Dickstein, Bengio (2017), *Density Estimation using Real NVP*, section 3.6.
    Behrmann (thesis), *Invertibility and Domain Knowledge*, appendix A.1-A.2.
"""

from __future__ import annotations

from collections.abc import Callable

from preimage.errors import ConfigError, ShapeError
from preimage.nn.base import InvertibleModule, InvertibleSequential, Shape
from preimage.nn.reshape import Split, Squeeze

__all__ = ["multiscale"]


def multiscale(
    in_shape: Shape,
    *,
    stages: int,
    blocks: Callable[[Shape], list[InvertibleModule]],
    squeeze_input: bool,
    split: bool,
    readout: Callable[[Shape], InvertibleModule] | None,
) -> InvertibleSequential:
    """Assemble ``stages`` scale-blocks whose blocks ``blocks((C, H, W))`` builds.

    Args:
        in_shape: ``(C, H, W)`` of one input.
        stages: number of scale-blocks.
        blocks: the blocks of one scale-block for its (squeezed) input shape.
        squeeze_input: squeeze before the first scale-block too.
        split: factor out half of the channels after every scale-block but the last.
        readout: module applied to the last feature map, built from its shape; ``None`` keeps
            the map (only without ``split``).

    Example:
        >>> from preimage.nn import ActNorm, Flatten
        >>> net = multiscale((1, 4, 4), stages=2, blocks=lambda s: [ActNorm(s[0])],
        ...                  squeeze_input=True, split=True, readout=Flatten)
        >>> net.output_shape((1, 4, 4))
        (16,)
    """
    if len(in_shape) != 3:
        raise ShapeError(f"multi-scale models take (C, H, W) inputs, got {tuple(in_shape)}")
    if split and readout is None:
        raise ConfigError("split=True needs a flattening read-out")

    def stage(shape: Shape, index: int) -> InvertibleSequential:
        c, h, w = shape
        layers: list[InvertibleModule] = []
        if (index > 0 or squeeze_input) and h % 2 == 0 and w % 2 == 0:
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
        layers += blocks((c, h, w))
        if index == stages - 1:
            if readout is not None:
                layers.append(readout((c, h, w)))
        elif split and c >= 2:
            layers.append(Split((c, h, w), stage((c - c // 2, h, w), index + 1)))
        else:
            layers.append(stage((c, h, w), index + 1))
        return InvertibleSequential(layers)

    return stage(tuple(int(s) for s in in_shape), 0)
