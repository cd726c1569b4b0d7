"""Writes the small synthetic datasets: motion videos (Kinetics-style mp4 + list files,
SSV2-style webm + json) and an ImageFolder of stripe images."""
import argparse
import logging

from imageconvmae.data.synthetic import make_synthetic_image_folder
from videoconvmae.data.synthetic import make_synthetic_video_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", help="folder to write kinetics/, ssv2/ and images/ into")
    parser.add_argument("--formats", nargs="+", default=["kinetics", "ssv2", "images"], choices=["kinetics", "ssv2", "images"])
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--clips-per-class", type=int, nargs=3, default=[6, 2, 2], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--frames", type=int, default=40, help="frames per clip")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--images-per-class", type=int, nargs=2, default=[8, 2], metavar=("TRAIN", "VAL"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    video_formats = [fmt for fmt in args.formats if fmt != "images"]
    if video_formats:
        written = make_synthetic_video_dataset(
            args.output,
            num_classes=args.num_classes,
            clips_per_class=args.clips_per_class,
            num_frames=args.frames,
            height=args.height,
            width=args.width,
            fps=args.fps,
            seed=args.seed,
            formats=video_formats,
            progress=True,
        )
        for fmt, folder in written.items():
            logging.info("%s: %s", fmt, folder)
    if "images" in args.formats:
        folder = make_synthetic_image_folder(
            f"{args.output}/images", num_classes=args.num_classes, images_per_class=args.images_per_class, seed=args.seed
        )
        logging.info("images: %s", folder)


if __name__ == "__main__":
    main()
