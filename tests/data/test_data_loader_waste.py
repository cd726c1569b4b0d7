"""Work the pretraining loader no longer does per clip: no copy of a clip that is all decoded
frames in order, no antialiasing pass on an upscale (same pixels)."""
import torch
import torchvision.transforms.v2.functional as F

from videoconvmae.data.decoders import DecodedVideo
from videoconvmae.data.transforms import crop_resize


def _decoded(clips):
    frames = torch.randint(0, 255, (5, 6, 8, 3), dtype=torch.uint8)
    return DecodedVideo(frames, [torch.as_tensor(c) for c in clips], [torch.as_tensor(c) for c in clips], 5)


def test_a_clip_of_all_frames_in_order_is_the_frames_themselves():
    decoded = _decoded([[0, 1, 2, 3, 4], [0, 0, 2, 4, 4], [4, 3, 2, 1, 0]])
    assert decoded.clip(0).data_ptr() == decoded.frames.data_ptr()
    assert torch.equal(decoded.clip(1), decoded.frames[torch.tensor([0, 0, 2, 4, 4])])
    assert torch.equal(decoded.clip(2), decoded.frames.flip(0))


def test_crop_resize_equals_the_antialiased_resize_up_and_down():
    frames = torch.randint(0, 255, (2, 40, 50, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    for box in [(3, 5, 20, 30), (0, 0, 40, 40), (1, 2, 36, 20)]:  # up, down, down in H only
        top, left, height, width = box
        expected = F.resize(frames[..., top : top + height, left : left + width], [32, 32], antialias=True)
        assert torch.equal(crop_resize(frames, box, 32), expected)
