"""An embedded synthetic stand-in for ``daniel3303/StoryReasoning`` (same schema, no network).

Each story is a little animated scene: a camera pans at a constant speed over a wide procedural
panorama (a named setting: beach, forest, city street, …), the light changes linearly with the
frame number (dusk falls, dawn breaks, a lamp brightens), and one to three named characters,
each a coloured shape, move with persistent velocities (bouncing off the frame edges, meeting
each other, sometimes leaving the frame). Every frame gets a short templated description with
the StoryReasoning grounding tags and a chain-of-thought with bounding boxes.

Why it looks like this: the data must keep the study honest. With a static background,
copying frame 4 is an unbeatable predictor of frame 5; with the pan and the light trend it is
a weak one (as on the real data), yet a model that reads the motion and the trend from
frames 1–4 can do much better. The same holds for the text: every frame changes a few words
in a way frames 1–4 predict (position words follow the motion, light words follow the trend,
events are announced by the geometry), so copying the last description is a floor, not a
ceiling. Which name belongs to which shape is mostly stated only at first mention, so tying a name to
what moves where needs image and text together.

Everything is a function of ``seed``: train and test use different child seeds of one
``numpy.random.SeedSequence`` and every story has its own child seed, so a story does not
depend on how many stories precede it.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow as pa

FRAME_WIDTH = 250
FRAME_HEIGHT = 120
MIN_FRAMES = 5
MAX_FRAMES = 12
# Short stories are more common (mean about 7.4 frames), as on the real data; keeps generation fast.
FRAME_COUNT_WEIGHTS = 0.8 ** np.arange(MAX_FRAMES - MIN_FRAMES + 1) / np.sum(0.8 ** np.arange(MAX_FRAMES - MIN_FRAMES + 1))
# Bump when the generator's output changes: it is part of every split's fingerprint, so caches
# keyed on it (the data layer's) are rebuilt.
GENERATOR_VERSION = "1"
MAX_WORDS = 25  # a description longer than this drops its optional camera sentence

STORY_FEATURES = datasets.Features(
    {
        "story_id": datasets.Value("string"),
        "images": datasets.Sequence(datasets.Image()),
        "frame_count": datasets.Value("int32"),
        "chain_of_thought": datasets.Value("string"),
        "story": datasets.Value("string"),
    }
)

CHARACTER_NAMES = (
    "Mara", "Theo", "Ivy", "Leo", "Nina", "Omar", "Ada", "Finn", "Lena", "Hugo",
    "Rosa", "Eli", "Zara", "Otto", "Mila", "Jonas", "Kira", "Sam", "Tess", "Ravi",
)  # fmt: skip

CHARACTER_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "blue": (0.12, 0.25, 0.92),
    "yellow": (0.98, 0.88, 0.08),
    "purple": (0.58, 0.18, 0.75),
    "orange": (1.00, 0.52, 0.05),
    "white": (0.98, 0.98, 0.98),
    "black": (0.06, 0.06, 0.06),
    "pink": (1.00, 0.48, 0.72),
}
SHAPES = ("circle", "square", "triangle")
# How a character moves, in words: (slow verb, fast verb); one pair per character.
MOTION_VERBS = (
    ("walks", "runs"), ("strolls", "dashes"), ("rolls", "spins"), ("slides", "glides"), ("hops", "leaps"),
    ("drifts", "darts"), ("wanders", "hurries"), ("creeps", "races"), ("paces", "jogs"), ("floats", "zooms"),
)  # fmt: skip
FAST_SPEED = 11.0  # pixels per frame (at 250 px width) from which a character is "fast"

ZONES = ("far left", "left", "center left", "center", "center right", "right", "far right")
# Brightness bands about one frame's light step wide, so the light word moves most frames.
LIGHT_WORDS = (
    "black", "dark", "murky", "gloomy", "dim", "low", "pale", "soft", "mild", "fair", "clear", "bright",
    "vivid", "glaring", "blazing",
)  # fmt: skip
LIGHT_BAND = 0.06  # brightness per light word; LIGHT_WORDS[0] is everything below 0.4 + LIGHT_BAND
STEP_PIXELS = 12.0  # one "step" of the main character's distance to the frame edge
NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)  # fmt: skip
ORDER_MARKERS = (
    "At first", "Then", "Next", "Soon", "Later", "After that", "Moments later", "Still",
    "By now", "Meanwhile", "Again", "Finally",
)  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """A named background: palette and the kind of landmark that dots its panorama."""

    name: str
    sky_top: tuple[float, float, float]
    sky_bottom: tuple[float, float, float]
    ground: tuple[float, float, float]
    landmark: str
    landmark_colour: tuple[float, float, float]
    landmark_height: tuple[int, int]  # above the horizon, in pixels
    landmark_width: tuple[int, int]


SETTINGS = (
    Setting("beach", (0.35, 0.62, 0.95), (0.80, 0.90, 1.00), (0.92, 0.80, 0.52), "palm tree", (0.40, 0.28, 0.14), (25, 55), (5, 9)),
    Setting("forest", (0.45, 0.65, 0.78), (0.75, 0.85, 0.78), (0.20, 0.42, 0.18), "pine tree", (0.10, 0.30, 0.12), (30, 60), (10, 22)),
    Setting("city street", (0.50, 0.55, 0.68), (0.82, 0.80, 0.84), (0.34, 0.34, 0.37), "building", (0.62, 0.44, 0.38), (30, 70), (22, 50)),
    Setting("desert", (0.55, 0.72, 0.92), (0.98, 0.86, 0.68), (0.86, 0.60, 0.32), "cactus", (0.22, 0.50, 0.24), (15, 35), (5, 10)),
    Setting("snowfield", (0.55, 0.66, 0.86), (0.90, 0.92, 0.96), (0.93, 0.95, 0.98), "rock", (0.30, 0.30, 0.34), (10, 25), (14, 30)),
    Setting("meadow", (0.30, 0.58, 0.95), (0.74, 0.88, 1.00), (0.46, 0.72, 0.28), "fence post", (0.52, 0.36, 0.20), (10, 22), (3, 6)),
    Setting("harbor", (0.45, 0.55, 0.72), (0.78, 0.82, 0.88), (0.16, 0.32, 0.52), "mast", (0.90, 0.88, 0.80), (35, 65), (3, 5)),
    Setting("mountain pass", (0.50, 0.62, 0.80), (0.85, 0.86, 0.90), (0.46, 0.42, 0.38), "boulder", (0.28, 0.26, 0.25), (12, 28), (16, 34)),
    Setting("village square", (0.40, 0.60, 0.90), (0.85, 0.88, 0.95), (0.62, 0.52, 0.42), "cottage", (0.85, 0.80, 0.65), (25, 45), (26, 44)),
    Setting("river bank", (0.42, 0.64, 0.88), (0.80, 0.88, 0.92), (0.30, 0.50, 0.62), "willow", (0.30, 0.45, 0.20), (25, 50), (12, 24)),
    Setting("old garden", (0.38, 0.60, 0.85), (0.82, 0.90, 0.88), (0.34, 0.56, 0.26), "hedge", (0.14, 0.36, 0.16), (10, 24), (20, 45)),
    Setting("rooftop", (0.30, 0.40, 0.65), (0.75, 0.70, 0.80), (0.55, 0.30, 0.25), "chimney", (0.45, 0.22, 0.18), (15, 35), (8, 14)),
)  # fmt: skip


@dataclass(frozen=True)
class TimeOfDay:
    """When the story happens; it fixes the direction of the light trend and how it is told."""

    phrase: str  # "at dusk"
    brightening: bool
    light_subject: str  # "the light", "the lamp"
    light_verb: str  # how the light word changes: "fades to", "brightens to"
    tint: tuple[float, float, float]  # colour the light drifts towards over the story


TIMES_OF_DAY = (
    TimeOfDay("at dusk", False, "the light", "fades to", (1.00, 0.72, 0.55)),
    TimeOfDay("at sunset", False, "the sunlight", "sinks to", (1.00, 0.62, 0.40)),
    TimeOfDay("in the evening", False, "the sky", "darkens to", (0.70, 0.75, 1.00)),
    TimeOfDay("at dawn", True, "the light", "grows to", (1.00, 0.85, 0.70)),
    TimeOfDay("in the morning", True, "the sunlight", "rises to", (1.00, 1.00, 0.90)),
    TimeOfDay("at night", True, "the lamp", "brightens to", (1.00, 0.80, 0.45)),
)


@dataclass
class Character:
    """A coloured shape with a name, moving in frame coordinates (pixels of the 250×120 frame)."""

    char_id: str
    name: str
    colour: str
    shape: str
    radius: float
    verbs: tuple[str, str]  # (slow, fast), e.g. ("walks", "runs")
    x: float
    y: float
    vx: float
    vy: float
    leaves_frame: bool  # instead of bouncing off a side edge, walks out of the frame


@dataclass
class CharacterState:
    """Where a character is in one frame and what happened to it there."""

    x: float
    y: float
    vx: float
    visible: bool
    event: str | None = None  # "bounce left" | "bounce right" | "leave" | None


@dataclass
class Story:
    """Everything about one story that the renderer and the text writers need."""

    story_id: str
    num_frames: int
    setting: Setting
    time_of_day: TimeOfDay
    characters: list[Character]
    states: list[list[CharacterState]]  # [frame][character]
    meetings: list[list[tuple[int, int]]]  # [frame] -> pairs of character indices that meet there
    brightness: np.ndarray  # (num_frames,) scalar light level per frame
    light_colour: np.ndarray  # (num_frames, 3) colour multiplier per frame (includes brightness)
    camera_speed: int  # pixels per frame, always > 0
    camera_east: bool  # the view drifts east (background moves left) or west
    camera_offsets: np.ndarray  # (num_frames,) left edge of the crop in the panorama
    landmarks: list[tuple[int, int, int, int]] = field(default_factory=list)  # panorama boxes
    template: int = 0


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def generate_synthetic_dataset(num_train: int = 1500, num_test: int = 300, seed: int = 0) -> datasets.DatasetDict:
    """Generate the synthetic StoryReasoning look-alike: splits "train" and "test".

    Deterministic in ``seed``; train and test come from different child seeds. Images are PNG
    bytes of 250×120 RGB frames, 5–12 per story.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError(f"num_train and num_test must be >= 0, got {num_train} and {num_test}")
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    return datasets.DatasetDict(
        {
            "train": _generate_split("train", num_train, train_seed, seed),
            "test": _generate_split("test", num_test, test_seed, seed),
        }
    )


def _generate_split(split: str, num_stories: int, split_seed: np.random.SeedSequence, seed: int) -> datasets.Dataset:
    columns: dict[str, list] = {name: [] for name in STORY_FEATURES}
    for index, story_seed in enumerate(split_seed.spawn(num_stories)):
        rng = np.random.default_rng(story_seed)
        story = _simulate_story(f"syn-{split}-{index:05d}", rng)
        frames = _render_frames(story, rng)
        columns["story_id"].append(story.story_id)
        columns["images"].append([{"bytes": _encode_png(frame), "path": None} for frame in frames])
        columns["frame_count"].append(story.num_frames)
        columns["chain_of_thought"].append(_write_chain_of_thought(story))
        columns["story"].append(_write_story_text(story))
    # Straight to Arrow (twice as fast as Dataset.from_dict), with a fingerprint that is a
    # function of the arguments, so downstream ``map`` caches are reproducible.
    table = pa.Table.from_pydict(columns, schema=STORY_FEATURES.arrow_schema)
    return datasets.Dataset(
        table,
        info=datasets.DatasetInfo(features=STORY_FEATURES, description="storylib synthetic stories"),
        split=datasets.Split(split),
        fingerprint=f"storylib-synthetic-v{GENERATOR_VERSION}-{split}-{num_stories}-{seed}",
    )


def _encode_png(frame: np.ndarray) -> bytes:
    """A valid RGB PNG of a uint8 (H, W, 3) frame, written directly for speed.

    Pillow's encoder tries five row filters per row and takes 2.5x longer; here every row uses
    the "Up" filter (difference to the row above, vectorised) and deflate runs Huffman-only,
    which compresses these filtered residuals almost as well. Pillow decodes it like any PNG.
    """
    height, width, _ = frame.shape
    rows = frame.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "Up"; the first row's "above" is zero
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG specifies
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    pixels = compressor.compress(filtered.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# ----------------------------------------------------------------------------------------------
# Simulation: who is where in every frame
# ----------------------------------------------------------------------------------------------


def _simulate_story(story_id: str, rng: np.random.Generator) -> Story:
    num_frames = MIN_FRAMES + int(rng.choice(len(FRAME_COUNT_WEIGHTS), p=FRAME_COUNT_WEIGHTS))
    setting = SETTINGS[rng.integers(len(SETTINGS))]
    time_of_day = TIMES_OF_DAY[rng.integers(len(TIMES_OF_DAY))]
    characters = _make_characters(rng)
    states, meetings = _move_characters(characters, num_frames)
    brightness, light_colour = _light_trend(time_of_day, num_frames, rng)
    camera_speed = int(rng.integers(8, 17))
    camera_east = bool(rng.integers(2))
    return Story(
        story_id=story_id,
        num_frames=num_frames,
        setting=setting,
        time_of_day=time_of_day,
        characters=characters,
        states=states,
        meetings=meetings,
        brightness=brightness,
        light_colour=light_colour,
        camera_speed=camera_speed,
        camera_east=camera_east,
        camera_offsets=np.zeros(num_frames, dtype=np.int64),  # set by the renderer
        template=int(rng.integers(3)),
    )


def _make_characters(rng: np.random.Generator) -> list[Character]:
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    names = rng.choice(len(CHARACTER_NAMES), size=count, replace=False)
    colours = rng.choice(list(CHARACTER_COLOURS), size=count, replace=False)
    characters = []
    for index in range(count):
        radius = float(rng.uniform(9.0, 14.0))
        speed = float(rng.uniform(5.0, 16.0))
        characters.append(
            Character(
                char_id=f"char{index + 1}",
                name=CHARACTER_NAMES[names[index]],
                colour=str(colours[index]),
                shape=SHAPES[rng.integers(len(SHAPES))],
                radius=radius,
                verbs=MOTION_VERBS[rng.integers(len(MOTION_VERBS))],
                x=float(rng.uniform(radius, FRAME_WIDTH - radius)),
                y=float(rng.uniform(72.0, FRAME_HEIGHT - radius - 2)),
                vx=speed if rng.integers(2) else -speed,
                vy=float(rng.uniform(-1.5, 1.5)),
                # The main character (char1) always stays, so every frame has someone to describe.
                leaves_frame=index > 0 and rng.random() < 0.35,
            )
        )
    return characters


def _move_characters(
    characters: list[Character], num_frames: int
) -> tuple[list[list[CharacterState]], list[list[tuple[int, int]]]]:
    """Step every character frame by frame; bounces reflect at the frame edges."""
    positions = [[c.x, c.y, c.vx, c.vy, True] for c in characters]
    states: list[list[CharacterState]] = []
    meetings: list[list[tuple[int, int]]] = []
    was_close: set[tuple[int, int]] = set()
    for frame in range(num_frames):
        frame_states = []
        for character, position in zip(characters, positions):
            x, y, vx, vy, visible = position
            event = None
            if frame > 0 and visible:
                x, y = x + vx, y + vy
                low, high = character.radius, FRAME_WIDTH - character.radius
                if character.leaves_frame and (x < -character.radius or x > FRAME_WIDTH + character.radius):
                    visible, event = False, "leave"
                elif not character.leaves_frame and (x < low or x > high):
                    event = "bounce left" if x < low else "bounce right"
                    x = 2 * low - x if x < low else 2 * high - x
                    vx = -vx
                y_low, y_high = 70.0, FRAME_HEIGHT - character.radius - 1
                if y < y_low or y > y_high:
                    y = 2 * y_low - y if y < y_low else 2 * y_high - y
                    vy = -vy
            position[:] = [x, y, vx, vy, visible]
            frame_states.append(CharacterState(x=x, y=y, vx=vx, visible=visible, event=event))
        states.append(frame_states)
        close = {
            (i, j)
            for i in range(len(characters))
            for j in range(i + 1, len(characters))
            if frame_states[i].visible
            and frame_states[j].visible
            and abs(frame_states[i].x - frame_states[j].x) < characters[i].radius + characters[j].radius + 8
        }
        # Characters that start close together have not "met"; only new closeness counts.
        meetings.append(sorted(close - was_close) if frame > 0 else [])
        was_close = close
    return states, meetings


def _light_trend(time_of_day: TimeOfDay, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Brightness linear in the frame number, and a colour cast growing towards the tint."""
    step = float(rng.uniform(0.035, 0.06))
    if time_of_day.brightening:
        brightness = float(rng.uniform(0.3, 0.8)) + step * np.arange(num_frames)
    else:
        brightness = float(rng.uniform(0.9, 1.45)) - step * np.arange(num_frames)
    brightness = np.clip(brightness, 0.25, 1.5)
    cast = np.linspace(0.0, 1.0, MAX_FRAMES)[:num_frames, None]
    colour = (1.0 - cast) + cast * np.asarray(time_of_day.tint)[None, :]
    return brightness, (brightness[:, None] * colour).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Rendering: panorama, camera crop, light, shapes
# ----------------------------------------------------------------------------------------------


def _render_frames(story: Story, rng: np.random.Generator) -> np.ndarray:
    """uint8 (num_frames, 120, 250, 3). Also fills ``story.camera_offsets`` and ``story.landmarks``.

    The panorama is conceptually 2–3 frames wide; only the strip the camera sweeps over
    (frame width + travel) is ever seen, so only that strip is computed (half the work).
    """
    travel = story.camera_speed * (story.num_frames - 1)
    panorama_width = int(rng.integers(2 * FRAME_WIDTH, 3 * FRAME_WIDTH + 1))
    start = int(rng.integers(0, panorama_width - FRAME_WIDTH - travel + 1))
    strip, landmarks = _make_panorama(story.setting, start, FRAME_WIDTH + travel, rng)
    story.landmarks = [(x1 + start, y1, x2 + start, y2) for x1, y1, x2, y2 in landmarks]
    steps = np.arange(story.num_frames) * story.camera_speed
    story.camera_offsets = start + steps if story.camera_east else start + travel - steps
    frames = np.stack([strip[:, offset - start : offset - start + FRAME_WIDTH] for offset in story.camera_offsets])
    for frame_index in range(story.num_frames):
        for character, state in zip(story.characters, story.states[frame_index]):
            if state.visible:
                _draw_shape(frames[frame_index], character, state)
    frames *= story.light_colour[:, None, None, :] * 255.0
    frames += 0.5
    np.clip(frames, 0.0, 255.0, out=frames)
    return frames.astype(np.uint8)


def _make_panorama(
    setting: Setting, start: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """float32 (120, width, 3), columns ``start …`` of the panorama: sky gradient with clouds,
    rolling horizon, textured ground darker towards the horizon, landmarks on the horizon.

    Returns the strip and the landmark boxes (x1, y1, x2, y2) in strip coordinates.
    """
    xs = np.arange(start, start + width, dtype=np.float32)  # float32 throughout: half the memory traffic
    ys = np.arange(FRAME_HEIGHT, dtype=np.float32)
    palette = np.clip(1.0 + rng.uniform(-0.25, 0.25, size=(3, 3)), 0.6, 1.4).astype(np.float32)  # per-story hue jitter
    horizon = rng.uniform(30, 75) + _sinusoids(xs, rng, count=2, wavelengths=(60, 260), amplitude=6.0)

    sky_blend = (ys / FRAME_HEIGHT)[:, None]
    sky_gradient = (1 - sky_blend) * (palette[0] * setting.sky_top) + sky_blend * (palette[0] * setting.sky_bottom)
    clouds = 0.08 * _grating(xs, ys, rng, count=2, wavelengths=(25, 90))
    texture = _grating(xs, ys, rng, count=4, wavelengths=(7, 28))
    # Ground shade: the texture, darker towards the horizon (a gradient the pan cannot hide).
    ground_shade = (1.0 + 0.18 * texture) * (0.8 + 0.2 * (ys / FRAME_HEIGHT))[:, None]

    is_sky = (ys[:, None] < horizon[None, :])[..., None]
    panorama = np.where(
        is_sky,
        sky_gradient[:, None, :] + clouds[..., None],
        ground_shade[..., None] * (palette[1] * setting.ground),
    ).astype(np.float32, copy=False)
    landmarks = _draw_landmarks(panorama, horizon, setting, palette[2], rng)
    return panorama, landmarks


def _sinusoids(
    xs: np.ndarray, rng: np.random.Generator, count: int, wavelengths: tuple[float, float], amplitude: float
) -> np.ndarray:
    periods = rng.uniform(*wavelengths, size=count)
    phases = rng.uniform(0, 2 * np.pi, size=count)
    return amplitude * np.sin(2 * np.pi * xs[:, None] / periods + phases).sum(axis=1) / count


def _grating(
    xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator, count: int, wavelengths: tuple[float, float]
) -> np.ndarray:
    """Sum of ``count`` oriented sine gratings, (len(ys), len(xs)) in about [-1, 1].

    sin(a·x + b·y + φ) = sin(a·x)·cos(b·y + φ) + cos(a·x)·sin(b·y + φ): outer products only.
    """
    total = np.zeros((len(ys), len(xs)), dtype=np.float32)
    for _ in range(count):
        frequency = 2 * np.pi / rng.uniform(*wavelengths)
        angle = rng.uniform(0, np.pi)
        a, b, phase = frequency * np.cos(angle), frequency * np.sin(angle), rng.uniform(0, 2 * np.pi)
        total += np.outer(np.cos(b * ys + phase), np.sin(a * xs)) + np.outer(np.sin(b * ys + phase), np.cos(a * xs))
    return total / np.sqrt(count)


def _draw_landmarks(
    panorama: np.ndarray, horizon: np.ndarray, setting: Setting, tint: np.ndarray, rng: np.random.Generator
) -> list[tuple[int, int, int, int]]:
    """Upright landmarks standing on the horizon; returns their boxes (x1, y1, x2, y2)."""
    width = panorama.shape[1]
    boxes = []
    x = float(rng.uniform(0, 40))
    while x < width:
        landmark_width = int(rng.integers(setting.landmark_width[0], setting.landmark_width[1] + 1))
        height = int(rng.integers(setting.landmark_height[0], setting.landmark_height[1] + 1))
        x1, x2 = int(x), min(width, int(x) + landmark_width)
        base = int(horizon[min(x1 + landmark_width // 2, width - 1)]) + 4
        y1 = max(0, base - height)
        shade = float(rng.uniform(0.8, 1.15))
        colour = np.clip(tint * setting.landmark_colour * shade, 0, 1)
        panorama[y1:base, x1:x2] = colour
        panorama[y1:base, x1 : min(x2, x1 + 2)] *= 0.7  # a shaded edge
        boxes.append((x1, y1, x2, base))
        x += landmark_width + float(rng.uniform(15, 70))
    return boxes


def _draw_shape(frame: np.ndarray, character: Character, state: CharacterState) -> None:
    """Paint one character in place, with a dark outline so it stays visible on any ground."""
    radius = character.radius
    x1, x2 = max(0, int(state.x - radius - 2)), min(FRAME_WIDTH, int(state.x + radius + 3))
    y1, y2 = max(0, int(state.y - radius - 2)), min(FRAME_HEIGHT, int(state.y + radius + 3))
    if x1 >= x2 or y1 >= y2:
        return
    dy = np.arange(y1, y2, dtype=np.float32)[:, None] - state.y
    dx = np.arange(x1, x2, dtype=np.float32)[None, :] - state.x
    outer = _shape_mask(character.shape, dx, dy, radius + 1.5)
    inner = _shape_mask(character.shape, dx, dy, radius)
    patch = frame[y1:y2, x1:x2]
    patch[outer] = 0.05
    patch[inner] = CHARACTER_COLOURS[character.colour]


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        half = 0.85 * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # triangle pointing up: apex at -radius, base at +0.8 radius
    return (dy >= -radius) & (dy <= 0.8 * radius) & (np.abs(dx) <= 0.62 * (dy + radius))


def _box(character: Character, state: CharacterState) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, x2, y2) clipped to the frame."""
    r = character.radius
    return (
        max(0, int(round(state.x - r))),
        max(0, int(round(state.y - r))),
        min(FRAME_WIDTH, int(round(state.x + r))),
        min(FRAME_HEIGHT, int(round(state.y + r))),
    )


# ----------------------------------------------------------------------------------------------
# Text: the story (tagged descriptions) and the chain of thought (markdown tables)
# ----------------------------------------------------------------------------------------------


_TAG_PATTERN = re.compile(r"</?gd[ioal][^>]*>")


def _zone(x: float) -> str:
    return ZONES[int(np.clip(x / FRAME_WIDTH * len(ZONES), 0, len(ZONES) - 1))]


def _light_word(brightness: float) -> str:
    return LIGHT_WORDS[int(np.clip((brightness - 0.4) // LIGHT_BAND, 0, len(LIGHT_WORDS) - 1))]


def _descriptor(character: Character) -> str:
    return f"the {character.colour} {character.shape}"


def _action(character: Character, state: CharacterState) -> str:
    """What the character does in this frame, e.g. "rolls right" or "bounces off the left edge"."""
    if state.event == "leave":
        return "leaves the frame"
    if state.event is not None:
        return f"bounces off the {state.event.split()[1]} edge"
    slow, fast = character.verbs
    verb = fast if abs(state.vx) >= FAST_SPEED else slow
    return f"{verb} {'right' if state.vx > 0 else 'left'}"


def _tag(kind: str, ids: list[str], text: str) -> str:
    return f"<{kind} {' '.join(ids)}>{text}</{kind}>"


def _write_story_text(story: Story) -> str:
    introduced: set[str] = set()  # characters whose shape the text has already named
    blocks = [_describe_frame(story, frame, introduced) for frame in range(story.num_frames)]
    return "\n".join(f"<gdi image{frame + 1}>\n{block}\n</gdi>" for frame, block in enumerate(blocks))


def _mention(story: Story, index: int, introduced: set[str]) -> str:
    """The tagged name; followed by "the red circle" at first mention (every time in template 0)."""
    character = story.characters[index]
    name = _tag("gdo", [character.char_id], character.name)
    if (story.template == 0 and index == 0) or character.char_id not in introduced:
        introduced.add(character.char_id)
        return f"{name}, {_descriptor(character)},"
    return name


def _describe_frame(story: Story, frame: int, introduced: set[str]) -> str:
    """One frame's description: the main character, one other character or event, the light.

    Three template variants, chosen per story (not per frame, so they can be learned):
    0 names the main character's shape in every frame and counts its steps to the edge it
    heads for; 1 starts with an order word ("Then", "Next", …), counts steps, and adds the
    camera when the description stays within ``MAX_WORDS``; 2 starts with an order word, gives
    the main character's zone and phrases the light differently. The first frame sets the
    scene (time of day, setting, every shape named at first mention) in all three.
    """
    main, main_state = story.characters[0], story.states[frame][0]
    setting = _tag("gdl", ["bg1"], f"the {story.setting.name}")
    action = _tag("gda", [main.char_id], _action(main, main_state))
    if frame == 0 or story.template == 2:
        where = f" of {setting}" if main_state.event else f" near the {_zone(main_state.x)} of {setting}"
    else:
        where = "" if main_state.event else f", {_steps_to_edge(main_state)}"
    opening = story.time_of_day.phrase.capitalize() + ", " if frame == 0 else ""
    opening = f"{ORDER_MARKERS[frame]}, " if frame > 0 and story.template != 0 else opening
    name = _mention(story, 0, introduced)
    other = _describe_other(story, frame, introduced)
    sentences = [f"{opening}{name} {action}{where}.", other, _describe_light(story, frame)]
    if frame > 0 and _word_count(sentences) > MAX_WORDS:
        sentences[0] = f"{opening}{name} {action}."  # rare: a long introduction of another character
    camera = f"The view drifts {'east' if story.camera_east else 'west'} over {setting}."
    if story.template == 1 and frame > 0 and _word_count(sentences + [camera]) <= MAX_WORDS:
        sentences.append(camera)
    if frame == 0 and _word_count(sentences) > MAX_WORDS:
        sentences.pop()  # the first frame's light word; the time of day already sets the light
    return " ".join(sentence for sentence in sentences if sentence)


def _steps_between(state: CharacterState, other: CharacterState) -> str:
    return _in_steps(abs(state.x - other.x))


def _in_steps(distance: float) -> str:
    steps = int(np.clip(round(distance / STEP_PIXELS), 1, len(NUMBER_WORDS)))
    return f"{NUMBER_WORDS[steps - 1]} {'step' if steps == 1 else 'steps'}"


def _steps_to_edge(state: CharacterState) -> str:
    """Distance to the edge the character heads for, in words: "nine steps from the right edge"."""
    heading_right = state.vx > 0
    distance = (FRAME_WIDTH - state.x) if heading_right else state.x
    return f"{_in_steps(distance)} from the {'right' if heading_right else 'left'} edge"


def _word_count(sentences: list[str]) -> int:
    return sum(len(_TAG_PATTERN.sub("", sentence).split()) for sentence in sentences)


def _describe_other(story: Story, frame: int, introduced: set[str]) -> str:
    """A meeting, else a secondary character's event, else one secondary character (taking turns).

    A character named with its shape ("Ivy, the green triangle,") gets no position, to keep
    the description short.
    """
    characters, states = story.characters, story.states[frame]
    for i, j in story.meetings[frame]:
        ids = [characters[i].char_id, characters[j].char_id]
        names = _tag("gdo", ids, f"{characters[i].name} and {characters[j].name}")
        return f"{names} {_tag('gda', ids, 'meet')}."
    others = [index for index in range(1, len(characters)) if states[index].visible or states[index].event]
    if not others:
        return ""
    with_event = [index for index in others if states[index].event]
    index = with_event[0] if with_event else others[frame % len(others)]
    character, state = characters[index], states[index]
    name = _mention(story, index, introduced)
    action = _tag("gda", [character.char_id], _action(character, state))
    if state.event or name.endswith(","):
        where = ""
    elif story.template == 2:
        where = f" near the {_zone(state.x)}"
    else:
        where = f", {_steps_between(state, states[0])} from {_tag('gdo', ['char1'], characters[0].name)}"
    return f"{name} {action}{where}."


def _describe_light(story: Story, frame: int) -> str:
    level = _light_word(float(story.brightness[frame]))
    subject = story.time_of_day.light_subject.capitalize()
    if frame == 0:
        return f"{subject} is {level}."
    changed = level != _light_word(float(story.brightness[frame - 1]))
    if story.template == 2:
        trend = "brighter" if story.time_of_day.brightening else "darker"
        return f"It grows {trend}, now {level}." if changed else f"It is still {level}."
    return f"{subject} {story.time_of_day.light_verb} {level}." if changed else f"{subject} stays {level}."


def _write_chain_of_thought(story: Story) -> str:
    """Markdown in the StoryReasoning layout: per image, Characters / Objects / Setting tables."""
    sections = []
    for frame in range(story.num_frames):
        lines = [f"## Image {frame + 1}", "", "### Characters"]
        lines += [
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |",
            "|---|---|---|---|---|---|---|",
        ]
        for character, state in zip(story.characters, story.states[frame]):
            x1, y1, x2, y2 = _box(character, state)
            if state.visible and x2 > x1:  # a character half out of the frame keeps a clipped box
                box = f"{x1},{y1},{x2},{y2}"
                lines.append(
                    f"| {character.char_id} | {character.name} | {character.colour} {character.shape} | calm "
                    f"| {_action(character, state)} | {'protagonist' if character.char_id == 'char1' else 'companion'} "
                    f"| {box} |"
                )
        lines += ["", "### Objects"]
        lines += [
            "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |",
            "|---|---|---|---|---|---|",
        ]
        for object_number, box in enumerate(_visible_landmarks(story, frame)[:3], start=1):
            lines.append(
                f"| obj{object_number} | {story.setting.landmark} | landmark | none | scenery "
                f"| {','.join(map(str, box))} |"
            )
        lines += ["", "### Setting"]
        lines += ["| Setting Element | Description | Mood | Time | Narrative Function |", "|---|---|---|---|---|"]
        direction = "east" if story.camera_east else "west"
        lines.append(
            f"| bg1 | {story.setting.name}, the view drifts {direction} "
            f"| {_light_word(float(story.brightness[frame]))} light | {story.time_of_day.phrase} | backdrop |"
        )
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _visible_landmarks(story: Story, frame: int) -> list[tuple[int, int, int, int]]:
    """Landmark boxes in frame coordinates, clipped; those at least 3 px wide in view."""
    offset = int(story.camera_offsets[frame])
    boxes = []
    for x1, y1, x2, y2 in story.landmarks:
        left, right = max(0, x1 - offset), min(FRAME_WIDTH, x2 - offset)
        if right - left >= 3:
            boxes.append((left, max(0, y1), right, min(FRAME_HEIGHT, y2)))
    return boxes
