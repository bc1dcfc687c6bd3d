r"""The four-layer fully convolutional CNN of the paper's SVHN experiments (table 3).

======  =====  ========  =========  ======  =======
block   h x w  c_in      c_out      stride  padding
======  =====  ========  =========  ======  =======
conv1   8 x 8  1         32         2       3 ("same")
conv2   6 x 6  32        64         2       0
conv3   5 x 5  64        64         1       0
fc      --     256       10         --      --
======  =====  ========  =========  ======  =======

On 32 x 32 inputs this gives 16 x 16, 6 x 6 and 2 x 2 maps, so the dense layer sees
:math:`2 \cdot 2 \cdot 64 = 256` features, and 180 906 parameters (table 3: 180.9k). ReLU
throughout. ``batch_norm=True`` is model C: batch norm "without momentum" on the two middle
hidden layers, read as TensorFlow's ``momentum=0`` (the paper's models come from the
CleverHans tutorials): the statistics used in evaluation are those of the last training
batch, PyTorch's ``momentum=1.0``. An earlier reading, the cumulative average of all batches'
statistics (``momentum=None``), broke evaluation: under weight decay the scale of the
pre-normalisation activations shrinks all along training, the average stays dominated by the
early, larger batches, and the evaluated network collapsed to one class (chance accuracy in
evaluation while the same weights in training mode fitted the data).

Deviation: "a Gaussian parameter initialization scheme" is not specified further; the
convolution and dense weights are drawn from He's normal initialisation, biases start at 0.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, appendix B,
    table 3, and section 4.3 (models A, B, C). Papernot et al. (2018), CleverHans tutorials
    (the architecture's origin).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from preimage.errors import ShapeError

__all__ = ["SVHNCNN"]


class SVHNCNN(nn.Module):
    """Table 3's CNN for ``(C, 32, 32)`` inputs.

    Args:
        in_shape: ``(channels, 32, 32)`` (grayscale SVHN: one channel).
        num_classes: outputs (10 digits).
        batch_norm: batch norm after conv2 and conv3 (model C).

    Example:
        >>> import torch
        >>> net = SVHNCNN((1, 32, 32), 10)
        >>> net(torch.zeros(2, 1, 32, 32)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([2, 10]), 180906)
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 32, 32),
        num_classes: int = 10,
        *,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3 or tuple(in_shape[1:]) != (32, 32):
            raise ShapeError(f"SVHNCNN takes (C, 32, 32) inputs, got {tuple(in_shape)}")

        def norm(c: int) -> list[nn.Module]:
            # momentum=1.0: evaluation uses the last training batch's statistics (see above).
            return [nn.BatchNorm2d(c, momentum=1.0)] if batch_norm else []

        self.conv1 = nn.Sequential(nn.Conv2d(in_shape[0], 32, 8, stride=2, padding=3), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 6, stride=2), *norm(64), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 5, stride=1), *norm(64), nn.ReLU())
        self.head = nn.Linear(256, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def layers(self) -> dict[str, nn.Module]:
        """``{"conv1", "conv2", "conv3", "output"}``: the layers :math:`T_j`, in order."""
        return {"conv1": self.conv1, "conv2": self.conv2, "conv3": self.conv3, "output": self.head}

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv3(self.conv2(self.conv1(x)))
        return self.head(h.flatten(1))
