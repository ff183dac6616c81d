"""The model zoo: backbones, heads, ``MultiTaskNet``, specs and their registries.

``create_model(spec)`` is the single way in. Add a backbone by writing a module with a factory
``(spec: BackboneSpec, in_channels: int) -> nn.Module`` (the module must expose
``out_channels``), registering it with ``@BACKBONES.register("name")`` and importing the
module below. Heads register in ``HEADS`` the same way with ``(cin, num_outputs, spec)``.
"""

from mtlexport.models import heads as _heads  # noqa: F401  (registers heads)
from mtlexport.models import mobilenetv2 as _mobilenetv2  # noqa: F401  (registers backbones)
from mtlexport.models import resnet as _resnet  # noqa: F401
from mtlexport.models.multitask import MultiTaskNet, create_model, resolve_spec
from mtlexport.models.registry import BACKBONES, HEADS
from mtlexport.models.spec import BackboneSpec, HeadSpec, ModelSpec, TaskSpec
from mtlexport.models.widths import apply_widths, changed_widths, layer_widths

__all__ = [
    "BACKBONES",
    "HEADS",
    "BackboneSpec",
    "HeadSpec",
    "ModelSpec",
    "MultiTaskNet",
    "TaskSpec",
    "apply_widths",
    "changed_widths",
    "create_model",
    "layer_widths",
    "resolve_spec",
]
