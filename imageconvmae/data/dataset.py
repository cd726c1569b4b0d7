"""ImageFolder dataset giving dict samples; bad images are logged once, replaced and counted."""
from typing import Any, Dict, List, Sequence, Tuple

import torch

from PIL import Image
from torch.utils.data import Dataset, default_collate

from common.data.collate import collate_clips
from common.data.failures import BadFileLog, SampleError, load_with_substitutes

from .transforms import ImageTransform

Sample = Dict[str, Any]


def load_rgb(path: str) -> Image.Image:
    """The image at ``path`` as RGB; SampleError(path, reason) when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise SampleError(path, f"{type(error).__name__}: {error}") from None


class ImageFolderDataset(Dataset):
    """Training and validation images: ``samples`` of (path, label), e.g. the files of
    ``root/<class>/`` (torchvision's ImageFolder layout and class order) or of a plain folder
    (label ``NO_LABEL``, pretraining).

    Items are lists of ``num_views`` samples of one image: ``image`` float (C, H, W) from
    ``transform``, ``label``, ``index``, ``clip_index`` (0), ``aug_index``, ``path``,
    ``decode_failures`` (bad files skipped, on the first view). ``collate_fn`` flattens views.
    """

    collate_fn = staticmethod(collate_clips)

    def __init__(self, *, samples: Sequence[Tuple[str, int]], transform: ImageTransform, num_views: int = 1,
                 max_retries: int = 10) -> None:
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.transform, self.num_views, self.max_retries = transform, num_views, max_retries
        self.bad_files = BadFileLog()

    def __len__(self) -> int:
        return len(self.samples)

    def labelled_paths(self) -> List[Tuple[str, int]]:
        """(path, label) of every image, in dataset order."""
        return list(self.samples)

    def __getitem__(self, index: int) -> List[Sample]:
        (image, index), failures = load_with_substitutes(
            lambda i: (load_rgb(self.samples[i][0]), i),
            index,
            num_items=len(self),
            path_of=lambda i: self.samples[i][0],
            bad_files=self.bad_files,
            max_retries=self.max_retries,
        )
        path, label = self.samples[index]
        return [
            {
                "image": self.transform(image),
                "label": label,
                "index": index,
                "clip_index": 0,
                "aug_index": view,
                "path": path,
                "decode_failures": failures if view == 0 else 0,
            }
            for view in range(self.num_views)
        ]


class ImageFilesDataset(Dataset):
    """Items are the test-mode samples of a list of image files: ``image`` float (C, S, S) from
    the evaluation ``transform``, ``label`` -1, ``index``, ``path``, ``error`` ("" or
    "path: reason", then ``image`` is zeros). A bad file is reported in its item, never replaced."""

    collate_fn = staticmethod(default_collate)

    def __init__(self, *, paths: Sequence[str], transform: ImageTransform, crop_size: int) -> None:
        self.paths, self.transform, self.crop_size = [str(p) for p in paths], transform, crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        path = self.paths[index]
        try:
            image, error = self.transform(load_rgb(path)), ""
        except SampleError as failure:
            image, error = torch.zeros(3, self.crop_size, self.crop_size), str(failure)
        return {"image": image, "label": -1, "index": index, "path": path, "error": error}
