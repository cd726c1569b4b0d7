"""Data pieces both modalities use: config keys, the dataset registry and builder, collate
functions, mixup, bad-file handling. Importing this package installs the torchvision alias
that ``pytorchvideo.transforms`` needs (see ``torchvision_compat``)."""
from .torchvision_compat import install_functional_tensor_alias

install_functional_tensor_alias()

from .build import MODES, build_dataset  # noqa: E402
from .collate import batch_inputs, collate_clips, collate_views  # noqa: E402
from .config import add_data_config  # noqa: E402
from .failures import BadFileLog, SampleError, load_with_substitutes  # noqa: E402
from .mixup import SpatialMixup, build_mixup  # noqa: E402
from .registry import get_dataset_builder, register_dataset, registered_datasets  # noqa: E402
from .timeout import BoundedCall, call_with_timeout  # noqa: E402

__all__ = [
    "MODES",
    "BadFileLog",
    "BoundedCall",
    "SampleError",
    "SpatialMixup",
    "add_data_config",
    "batch_inputs",
    "build_dataset",
    "build_mixup",
    "call_with_timeout",
    "collate_clips",
    "collate_views",
    "get_dataset_builder",
    "install_functional_tensor_alias",
    "load_with_substitutes",
    "register_dataset",
    "registered_datasets",
]
