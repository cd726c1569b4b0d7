import subprocess
import sys

import torchvision.transforms._functional_tensor as renamed

from common.data.torchvision_compat import OLD_NAME, install_functional_tensor_alias


def _imports(code: str) -> bool:
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_pytorchvideo_transforms_needs_the_alias_and_gets_it_from_common_data():
    assert not _imports("import pytorchvideo.transforms")  # the reason the alias exists
    assert _imports("import common.data; import pytorchvideo.transforms; pytorchvideo.transforms.RandAugment")


def test_alias_points_to_the_renamed_module_and_is_idempotent():
    assert install_functional_tensor_alias() is renamed
    assert install_functional_tensor_alias() is sys.modules[OLD_NAME] is renamed
