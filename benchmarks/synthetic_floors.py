"""How long the synthetic set takes to generate, and how hard it is: trivial floors at 60×125.

Run: ``/work/venv/bin/python benchmarks/synthetic_floors.py [--train N] [--test N] [--seed S]``

Self-contained on purpose (decodes with PIL, strips tags with a regex): it checks the generator
alone, independent of the data layer. Windows are the first five frames of each story: frames
1–4 are the context, frame 5 the target. Besides the floors it prints a "shift + gain"
extrapolation (the camera shift and light change measured between frames 3 and 4, applied to
frame 4), a crude stand-in for what a model that reads the trends can reach: it should beat
copy-last clearly, otherwise the data set cannot tell a good model from a trivial one.
"""

from __future__ import annotations

import argparse
import io
import re
import time
from collections import Counter

import datasets
import numpy as np
import sacrebleu
from PIL import Image

from storylib.data.synthetic import generate_synthetic_dataset

IMAGE_SIZE = (125, 60)  # PIL order: width, height
WINDOW = 5
GDI_BLOCK = re.compile(r"<gdi image(\d+)>(.*?)</gdi>", re.DOTALL)
TAG = re.compile(r"</?gd[ioal][^>]*>")


def frame_descriptions(story: str) -> dict[int, str]:
    """Plain text of every ``<gdi imageN>`` block, tags stripped, whitespace normalised."""
    return {int(number): " ".join(TAG.sub("", body).split()) for number, body in GDI_BLOCK.findall(story)}


def decode_resized(image_bytes: bytes) -> np.ndarray:
    """float32 (60, 125, 3) in [0, 1]; PIL bilinear resize (antialiased when shrinking)."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        resized = image.convert("RGB").resize(IMAGE_SIZE, Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def first_windows(split) -> tuple[np.ndarray, list[list[str]]]:
    """Frames (N, 5, 60, 125, 3) and descriptions N × 5 of the first five frames of each story."""
    frames, texts = [], []
    undecoded = split.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    for row in undecoded:
        descriptions = frame_descriptions(row["story"])
        frames.append(np.stack([decode_resized(image["bytes"]) for image in row["images"][:WINDOW]]))
        texts.append([descriptions[number] for number in range(1, WINDOW + 1)])
    return np.stack(frames), texts


def shift_gain_extrapolation(frames: np.ndarray, max_shift: int = 12) -> np.ndarray:
    """Predict frame 5 from frames 3–4: same horizontal shift and same per-channel gain again."""
    previous, last = frames[:, 2], frames[:, 3]
    predictions = np.empty_like(last)
    for index in range(len(frames)):
        gain = last[index].mean(axis=(0, 1)) / np.maximum(previous[index].mean(axis=(0, 1)), 1e-3)
        errors = [np.abs(_shift(previous[index], shift) * gain - last[index]).mean() for shift in range(-max_shift, max_shift + 1)]
        best = int(np.argmin(errors)) - max_shift
        predictions[index] = np.clip(_shift(last[index], best) * gain, 0, 1)
    return predictions


def _shift(image: np.ndarray, shift: int) -> np.ndarray:
    """Content moves ``shift`` pixels to the right; the revealed strip repeats the edge column."""
    if shift == 0:
        return image
    shifted = np.roll(image, shift, axis=1)
    if shift > 0:
        shifted[:, :shift] = image[:, :1]
    else:
        shifted[:, shift:] = image[:, -1:]
    return shifted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    stories = generate_synthetic_dataset(args.train, args.test, seed=args.seed)
    seconds = time.perf_counter() - start
    frame_total = sum(sum(split["frame_count"]) for split in stories.values())
    print(f"generated {args.train} + {args.test} stories ({frame_total} frames) in {seconds:.1f} s")

    test_frames, test_texts = first_windows(stories["test"])
    train_frames, _ = first_windows(stories["train"])
    targets = test_frames[:, 4]
    train_targets = train_frames[:, 4]

    def mae(predictions: np.ndarray) -> float:
        return float(np.abs(predictions - targets).mean())

    print(f"test windows: {len(targets)} (first {WINDOW} frames, {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]})")
    print(f"copy_last_frame  image_mae {mae(test_frames[:, 3]):.4f}")
    print(f"median_image     image_mae {mae(np.median(train_targets, axis=0)[None]):.4f}")
    print(f"mean_image       image_mae {mae(train_targets.mean(axis=0)[None]):.4f}")
    print(f"shift+gain (3→4) image_mae {mae(shift_gain_extrapolation(test_frames)):.4f}  (trend reference)")

    last_texts = [texts[3] for texts in test_texts]
    target_texts = [texts[4] for texts in test_texts]
    chrf = sacrebleu.corpus_chrf(last_texts, [target_texts])
    bleu = sacrebleu.corpus_bleu(last_texts, [target_texts])
    identical = sum(a == b for a, b in zip(last_texts, target_texts))
    print(f"copy_last_description chrF {chrf.score:.1f}  BLEU {bleu.score:.1f}  identical {identical}/{len(target_texts)}")

    all_texts = [text for split in stories.values() for story in split["story"] for text in frame_descriptions(story).values()]
    lengths = np.array([len(text.split()) for text in all_texts])
    vocabulary = Counter(word for text in all_texts for word in re.findall(r"[a-z]+", text.lower()))
    print(
        f"descriptions: {len(all_texts)}, words min {lengths.min()} median {int(np.median(lengths))} "
        f"max {lengths.max()} (share 12-25: {np.mean((lengths >= 12) & (lengths <= 25)):.3f}); vocabulary {len(vocabulary)} words"
    )


if __name__ == "__main__":
    main()
