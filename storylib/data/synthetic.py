"""An embedded synthetic stand-in for ``daniel3303/StoryReasoning`` (same schema, no network).

Version 2: a scene told in shots, as the real data is. Each story is a little world that
evolves in story time — a named setting (two panoramas: the near side and the far side seen
in reverse angle), one to three named characters (coloured shapes with persistent identity,
moving with persistent velocities, turning back at the edges of the scene, meeting, sometimes
leaving) and a light trend (dusk falls, dawn breaks) — filmed by two to four camera set-ups:
a wide view that pans over the setting, close views that follow one character (one of them
from the reverse angle), and sometimes a two-shot. Every frame advances the world one step,
whichever camera sees it; a set-up's camera moves (pans, zooms) only while it is on screen.

Which set-up films each frame follows a shot grammar drawn per story from the kinds films use
(:data:`SHOT_PATTERNS`): one continuous shot; shot / reverse shot (A B A B …); an establishing
wide view, then alternation (W A B A B …); a cut-away and return (A A B A A B …); and irregular
stories where the next set-up cannot be told from the past ones. So, as on StoryReasoning, the
shot cuts at frame 5 in most windows; frame 5 still follows from frames 1–4: the grammar says
which view returns, the world's motion since that view was last on screen says what it shows.

Every frame gets a short description with the StoryReasoning grounding tags that says which
view it is, who is in it and what they do, phrased in one of several wordings drawn per frame,
and a chain of thought with bounding boxes and a Camera table (set-up, view, subject, side,
shot pattern) from which the data layer reads whether a window's shot continues or cuts.

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
from PIL import Image

FRAME_WIDTH = 250
FRAME_HEIGHT = 120
MIN_FRAMES = 5
MAX_FRAMES = 12
# Short stories are more common (mean about 7.4 frames), as on the real data; keeps generation fast.
FRAME_COUNT_WEIGHTS = 0.8 ** np.arange(MAX_FRAMES - MIN_FRAMES + 1) / np.sum(0.8 ** np.arange(MAX_FRAMES - MIN_FRAMES + 1))
# Bump when the generator's output changes: it is part of every split's fingerprint, so caches
# keyed on it (the data layer's) are rebuilt.
GENERATOR_VERSION = "2"
MAX_WORDS = 25  # a description longer than this drops its optional sentences
MIN_WORDS = 12  # a shorter one gets a sentence about the setting

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
FAST_SPEED = 3.5  # world pixels per step from which a character is "fast"

# The world and its cameras (world pixels: the wide view at zoom 1 shows 250 × 120 of them).
WORLD_WIDTH_FRAMES = (1.6, 2.2)  # scene width, in frame widths
GROUND_TOP = 72.0  # characters move on the ground, below this row
CHARACTER_SPEED = (1.0, 5.0)  # world pixels per step
LIGHT_STEP = (0.02, 0.045)  # brightness change per step
WIDE_PAN = (0.5, 4.0)  # world pixels per step on screen
CLOSE_ZOOM = (1.9, 2.7)
TWO_SHOT_ZOOM = (1.3, 1.6)
SETUP_EXPOSURE = (0.7, 1.3)  # each set-up's own exposure: a cut changes the light too
SHOT_PATTERNS = ("continuous", "shot_reverse", "establishing", "cutaway", "irregular")
# Calibrated so that about 83 % of first windows cut at frame 5 (StoryReasoning: about 85 %).
SHOT_PATTERN_WEIGHTS = (0.06, 0.34, 0.26, 0.19, 0.15)

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
    """A coloured shape with a name, moving in world coordinates (pixels of the panorama)."""

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
    leaves_frame: bool  # instead of bouncing off a side of the world, walks out of the scene


@dataclass
class CharacterState:
    """Where a character is in one time step (world coordinates) and what happened to it there."""

    x: float
    y: float
    vx: float
    visible: bool
    event: str | None = None  # "bounce left" | "bounce right" | "leave" | None


@dataclass(frozen=True)
class Setup:
    """One camera set-up over the world: what it frames and how its camera moves on screen.

    A ``wide`` view pans over the setting at ``pan`` world pixels per step it is on screen; a
    ``close`` view follows its subject (one character) at ``zoom``, a ``two_shot`` frames two.
    ``side`` 1 is the reverse angle: the far side of the setting, seen mirrored. The camera
    zooms by ``zoom_step`` per step on screen; ``exposure`` is the set-up's own light gain.
    """

    label: str  # "A", "B", …: the set-up's name in the chain of thought
    kind: str  # "wide" | "close" | "two_shot"
    subjects: tuple[int, ...]  # character indices the camera follows (empty for "wide")
    side: int
    zoom: float
    zoom_step: float
    pan: float
    start_x: float  # where a wide view is centred when it first comes on screen
    offset_y: float  # framing: the subject sits this far below the view's centre (world px)
    exposure: float


@dataclass
class View:
    """Where the camera of a set-up is in one frame: centre (world px) and zoom."""

    setup: Setup
    centre_x: float
    centre_y: float
    zoom: float


@dataclass
class Story:
    """Everything about one story that the renderer and the text writers need."""

    story_id: str
    num_frames: int
    setting: Setting
    far_side: Setting  # what the reverse angle looks at
    time_of_day: TimeOfDay
    characters: list[Character]
    states: list[list[CharacterState]]  # [frame][character]
    meetings: list[list[tuple[int, int]]]  # [frame] -> pairs of character indices that meet there
    brightness: np.ndarray  # (num_frames,) scalar light level per frame
    light_colour: np.ndarray  # (num_frames, 3) colour multiplier per frame (includes brightness)
    world_width: int
    pattern: str  # the shot grammar: one of SHOT_PATTERNS
    setups: list[Setup]
    sequence: list[int]  # [frame] -> index into setups
    views: list[View] = field(default_factory=list)  # [frame], set by the renderer
    landmarks: list[list[tuple[int, int, int, int]]] = field(default_factory=list)  # [side] world boxes
    template: int = 0
    phrasings: list[int] = field(default_factory=list)  # [frame] -> wording variant of the view sentence


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


def simulate_story(story_id: str, story_seed: np.random.SeedSequence) -> tuple["Story", np.ndarray]:
    """One story and its rendered frames, uint8 (num_frames, 120, 250, 3) (for tests and figures)."""
    rng = np.random.default_rng(story_seed)
    story = _simulate_story(story_id, rng)
    return story, _render_frames(story, rng)


def _generate_split(split: str, num_stories: int, split_seed: np.random.SeedSequence, seed: int) -> datasets.Dataset:
    columns: dict[str, list] = {name: [] for name in STORY_FEATURES}
    for index, story_seed in enumerate(split_seed.spawn(num_stories)):
        story, frames = simulate_story(f"syn-{split}-{index:05d}", story_seed)
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
# Simulation: the world in story time, the camera set-ups and the shot grammar
# ----------------------------------------------------------------------------------------------


def _simulate_story(story_id: str, rng: np.random.Generator) -> Story:
    num_frames = MIN_FRAMES + int(rng.choice(len(FRAME_COUNT_WEIGHTS), p=FRAME_COUNT_WEIGHTS))
    setting_index = int(rng.integers(len(SETTINGS)))
    far_index = (setting_index + 1 + int(rng.integers(len(SETTINGS) - 1))) % len(SETTINGS)
    time_of_day = TIMES_OF_DAY[rng.integers(len(TIMES_OF_DAY))]
    world_width = int(rng.uniform(*WORLD_WIDTH_FRAMES) * FRAME_WIDTH)
    characters = _make_characters(rng, world_width)
    states, meetings = _move_characters(characters, num_frames, world_width)
    brightness, light_colour = _light_trend(time_of_day, num_frames, rng)
    pattern = SHOT_PATTERNS[int(rng.choice(len(SHOT_PATTERNS), p=SHOT_PATTERN_WEIGHTS))]
    setups, sequence = _shot_plan(pattern, len(characters), num_frames, world_width, rng)
    return Story(
        story_id=story_id,
        num_frames=num_frames,
        setting=SETTINGS[setting_index],
        far_side=SETTINGS[far_index],
        time_of_day=time_of_day,
        characters=characters,
        states=states,
        meetings=meetings,
        brightness=brightness,
        light_colour=light_colour,
        world_width=world_width,
        pattern=pattern,
        setups=setups,
        sequence=sequence,
        template=int(rng.integers(3)),
        phrasings=[int(p) for p in rng.integers(0, 4, size=num_frames)],
    )


def _make_characters(rng: np.random.Generator, world_width: int) -> list[Character]:
    count = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
    names = rng.choice(len(CHARACTER_NAMES), size=count, replace=False)
    colours = rng.choice(list(CHARACTER_COLOURS), size=count, replace=False)
    characters = []
    for index in range(count):
        radius = float(rng.uniform(9.0, 14.0))
        speed = float(rng.uniform(*CHARACTER_SPEED))
        characters.append(
            Character(
                char_id=f"char{index + 1}",
                name=CHARACTER_NAMES[names[index]],
                colour=str(colours[index]),
                shape=SHAPES[rng.integers(len(SHAPES))],
                radius=radius,
                verbs=MOTION_VERBS[rng.integers(len(MOTION_VERBS))],
                x=float(rng.uniform(radius + 40, world_width - radius - 40)),
                y=float(rng.uniform(GROUND_TOP + 4, FRAME_HEIGHT - radius - 2)),
                vx=speed if rng.integers(2) else -speed,
                vy=float(rng.uniform(-1.0, 1.0)),
                # The main character (char1) always stays, so every story has someone to follow.
                leaves_frame=index > 0 and rng.random() < 0.2,
            )
        )
    return characters


def _move_characters(
    characters: list[Character], num_frames: int, world_width: int
) -> tuple[list[list[CharacterState]], list[list[tuple[int, int]]]]:
    """Step every character once per frame (story time); bounces reflect at the world's edges."""
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
                low, high = character.radius, world_width - character.radius
                if character.leaves_frame and (x < -character.radius or x > world_width + character.radius):
                    visible, event = False, "leave"
                elif not character.leaves_frame and (x < low or x > high):
                    event = "bounce left" if x < low else "bounce right"
                    x = 2 * low - x if x < low else 2 * high - x
                    vx = -vx
                y_low, y_high = GROUND_TOP, FRAME_HEIGHT - character.radius - 1
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
    """Brightness linear in story time, and a colour cast growing towards the tint."""
    step = float(rng.uniform(*LIGHT_STEP))
    if time_of_day.brightening:
        brightness = float(rng.uniform(0.4, 0.85)) + step * np.arange(num_frames)
    else:
        brightness = float(rng.uniform(0.9, 1.35)) - step * np.arange(num_frames)
    brightness = np.clip(brightness, 0.3, 1.45)
    cast = np.linspace(0.0, 1.0, MAX_FRAMES)[:num_frames, None]
    colour = (1.0 - cast) + cast * np.asarray(time_of_day.tint)[None, :]
    return brightness, (brightness[:, None] * colour).astype(np.float32)


def _make_setup(
    label: str, kind: str, subjects: tuple[int, ...], side: int, world_width: int, rng: np.random.Generator
) -> Setup:
    """A camera set-up of ``kind`` with its own framing, exposure and on-screen camera motion."""
    if kind == "wide":
        zoom, zoom_step = float(rng.uniform(0.95, 1.05)), 1.0
        pan = float(rng.uniform(*WIDE_PAN)) * (1 if rng.integers(2) else -1)
        offset_y = 0.0
    else:
        zoom = float(rng.uniform(*(CLOSE_ZOOM if kind == "close" else TWO_SHOT_ZOOM)))
        zoom_step = float(rng.choice([1.0, 1.0, rng.uniform(1.02, 1.05)]))  # some close views zoom in
        pan = 0.0
        offset_y = float(rng.uniform(-6.0, 10.0))
    return Setup(
        label=label,
        kind=kind,
        subjects=subjects,
        side=side,
        zoom=zoom,
        zoom_step=zoom_step,
        pan=pan,
        start_x=float(rng.uniform(0.35, 0.65) * world_width),
        offset_y=offset_y,
        exposure=float(rng.uniform(*SETUP_EXPOSURE)),
    )


def _shot_plan(
    pattern: str, character_count: int, num_frames: int, world_width: int, rng: np.random.Generator
) -> tuple[list[Setup], list[int]]:
    """The story's set-ups (two to four) and which one is on screen in each frame.

    The grammar, as in film editing: ``continuous`` one shot throughout; ``shot_reverse``
    A B A B … (a close view of one character, then the reverse angle on the other);
    ``establishing`` the wide view, then A B A B …; ``cutaway`` A A B A A B … (a cut-away and a
    return, entered at a random phase of the cycle); ``irregular`` any set-up in any frame, so
    the next one cannot be told from the past ones.
    """
    other = (1,) if character_count > 1 else (0,)
    pair = (0, 1) if character_count > 1 else (0,)
    setups = [
        _make_setup("A", "close", (0,), 0, world_width, rng),
        # The reverse angle: the other character (or the same one) seen from the far side.
        _make_setup("B", "close", other, 1, world_width, rng),
        _make_setup("C", "wide", (), 0, world_width, rng),
    ]
    if character_count > 1 and rng.random() < 0.5:
        setups.append(_make_setup("D", "two_shot", pair, int(rng.integers(2)), world_width, rng))
    if pattern == "continuous":
        sequence = [int(rng.choice([0, 2]))] * num_frames
        setups = [setups[0], setups[2]]  # a continuous story still has its two set-ups
        sequence = [0 if s == 0 else 1 for s in sequence]
    elif pattern == "shot_reverse":
        first = int(rng.integers(2))
        sequence = [(first + frame) % 2 for frame in range(num_frames)]
    elif pattern == "establishing":
        sequence = [2] + [(frame - 1) % 2 for frame in range(1, num_frames)]
    elif pattern == "cutaway":
        home, away = int(rng.choice([0, 2])), 1
        phase = int(rng.integers(3))
        sequence = [away if (frame + phase) % 3 == 2 else home for frame in range(num_frames)]
    else:  # irregular
        sequence = [int(s) for s in rng.integers(0, len(setups), size=num_frames)]
    return setups, sequence


# ----------------------------------------------------------------------------------------------
# Rendering: panoramas of both sides, one view per frame, light, shapes
# ----------------------------------------------------------------------------------------------


def _camera_views(story: Story) -> list[View]:
    """The camera of each frame's set-up. A set-up's camera moves only while it is on screen
    (pan or zoom), a following camera keeps its subject framed, and the world moves on
    in every frame whichever camera sees it."""
    on_screen_steps = [0] * len(story.setups)
    views = []
    for frame, setup_index in enumerate(story.sequence):
        setup = story.setups[setup_index]
        steps = on_screen_steps[setup_index]
        on_screen_steps[setup_index] += 1
        zoom = setup.zoom * setup.zoom_step**steps
        if setup.kind == "wide":
            centre_x = setup.start_x + setup.pan * steps
            centre_y = FRAME_HEIGHT / 2
        else:
            states = [story.states[frame][i] for i in setup.subjects]
            centre_x = float(np.mean([s.x for s in states]))
            centre_y = float(np.mean([s.y for s in states])) - setup.offset_y
            if setup.side == 1:
                centre_x = story.world_width - centre_x  # the reverse angle mirrors the world
        half_width, half_height = FRAME_WIDTH / (2 * zoom), FRAME_HEIGHT / (2 * zoom)
        centre_x = float(np.clip(centre_x, half_width, story.world_width - half_width))
        centre_y = float(np.clip(centre_y, half_height, FRAME_HEIGHT - half_height))
        views.append(View(setup, centre_x, centre_y, zoom))
    return views


def _render_frames(story: Story, rng: np.random.Generator) -> np.ndarray:
    """uint8 (num_frames, 120, 250, 3). Also fills ``story.views`` and ``story.landmarks``.

    Of each side's panorama only the columns some view sees are computed (it halves the work).
    """
    story.views = _camera_views(story)
    panoramas: dict[int, tuple[int, Image.Image]] = {}
    story.landmarks = [[], []]
    for side in sorted({view.setup.side for view in story.views}):
        seen = [view for view in story.views if view.setup.side == side]
        start = max(0, int(min(v.centre_x - FRAME_WIDTH / (2 * v.zoom) for v in seen)) - 2)
        end = min(story.world_width, int(max(v.centre_x + FRAME_WIDTH / (2 * v.zoom) for v in seen)) + 3)
        strip, landmarks = _make_panorama(story.setting if side == 0 else story.far_side, start, end - start, rng)
        panoramas[side] = (start, Image.fromarray((np.clip(strip, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)))
        story.landmarks[side] = [(x1 + start, y1, x2 + start, y2) for x1, y1, x2, y2 in landmarks]
    frames = np.empty((story.num_frames, FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.float32)
    for frame_index, view in enumerate(story.views):
        frames[frame_index] = _sample_view(panoramas[view.setup.side][1], panoramas[view.setup.side][0], view)
        for character, state in zip(story.characters, story.states[frame_index]):
            if state.visible:
                x, y = _to_view(story, view, state.x, state.y)
                _draw_shape(frames[frame_index], character.shape, character.colour, x, y, character.radius * view.zoom)
        frames[frame_index] *= story.light_colour[frame_index] * np.float32(view.setup.exposure * 255.0)
    frames += 0.5
    np.clip(frames, 0.0, 255.0, out=frames)
    return frames.astype(np.uint8)


def _to_view(story: Story, view: View, world_x: float, world_y: float) -> tuple[float, float]:
    """World coordinates → pixel coordinates of the frame ``view`` renders."""
    if view.setup.side == 1:
        world_x = story.world_width - world_x
    return (
        (world_x - view.centre_x) * view.zoom + FRAME_WIDTH / 2,
        (world_y - view.centre_y) * view.zoom + FRAME_HEIGHT / 2,
    )


def _sample_view(panorama: Image.Image, start: int, view: View) -> np.ndarray:
    """The float32 (120, 250, 3) crop, in [0, 1], that a camera at ``view`` sees (bilinear).

    ``panorama`` holds the world columns ``start …`` of its side as an 8-bit image: Pillow's
    separable resampling of a box runs in C, many times faster than numpy's gathers.
    """
    half_width, half_height = FRAME_WIDTH / (2 * view.zoom), FRAME_HEIGHT / (2 * view.zoom)
    left, top = max(0.0, view.centre_x - start - half_width), max(0.0, view.centre_y - half_height)
    box = (left, top, min(panorama.width, left + 2 * half_width), min(panorama.height, top + 2 * half_height))
    crop = panorama.resize((FRAME_WIDTH, FRAME_HEIGHT), Image.Resampling.BILINEAR, box=box)
    return np.asarray(crop, dtype=np.float32) * np.float32(1 / 255)


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


def _draw_shape(frame: np.ndarray, shape: str, colour: str, x: float, y: float, radius: float) -> None:
    """Paint one character in place at frame pixel (x, y), with a dark outline so it stays
    visible on any ground; a shape outside the frame paints nothing."""
    outline = 1.5 * radius / 12.0 + 1.0
    height, width = frame.shape[:2]
    x1, x2 = max(0, int(x - radius - outline - 1)), min(width, int(x + radius + outline + 2))
    y1, y2 = max(0, int(y - radius - outline - 1)), min(height, int(y + radius + outline + 2))
    if x1 >= x2 or y1 >= y2:
        return
    dy = np.arange(y1, y2, dtype=np.float32)[:, None] - y
    dx = np.arange(x1, x2, dtype=np.float32)[None, :] - x
    outer = _shape_mask(shape, dx, dy, radius + outline)
    inner = _shape_mask(shape, dx, dy, radius)
    patch = frame[y1:y2, x1:x2]
    patch[outer] = 0.05
    patch[inner] = CHARACTER_COLOURS[colour]


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        half = 0.85 * radius
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    # triangle pointing up: apex at -radius, base at +0.8 radius
    return (dy >= -radius) & (dy <= 0.8 * radius) & (np.abs(dx) <= 0.62 * (dy + radius))


def _box(x: float, y: float, radius: float) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1, x2, y2) of a shape at frame pixel (x, y), clipped to the frame."""
    return (
        max(0, int(round(x - radius))),
        max(0, int(round(y - radius))),
        min(FRAME_WIDTH, int(round(x + radius))),
        min(FRAME_HEIGHT, int(round(y + radius))),
    )


# ----------------------------------------------------------------------------------------------
# Text: the story (tagged descriptions) and the chain of thought (markdown tables)
# ----------------------------------------------------------------------------------------------


_TAG_PATTERN = re.compile(r"</?gd[ioal][^>]*>")

# How each view is announced: four phrasings per kind, drawn per frame, so what the fifth
# description says follows from frames 1–4 but its exact words do not.
VIEW_PHRASES = {
    "wide": ("The wide view of {setting}.", "A wide shot takes in {setting}.", "Wide on {setting}.", "We see all of {setting}."),
    "close": ("A close view of {name}.", "Close on {name}.", "The camera moves in on {name}.", "A close-up of {name}."),
    "two_shot": (
        "{name} and {other} share the frame.", "A two-shot of {name} and {other}.",
        "Both {name} and {other} in view.", "The camera holds {name} and {other} together.",
    ),
}  # fmt: skip
FAR_SIDE_PHRASES = ("from the far side", "from the reverse angle", "seen from across", "from the other side")


def _zone(x: float, width: float) -> str:
    return ZONES[int(np.clip(x / width * len(ZONES), 0, len(ZONES) - 1))]


def _light_word(brightness: float) -> str:
    return LIGHT_WORDS[int(np.clip((brightness - 0.4) // LIGHT_BAND, 0, len(LIGHT_WORDS) - 1))]


def _descriptor(character: Character) -> str:
    return f"the {character.colour} {character.shape}"


def _action(character: Character, state: CharacterState) -> str:
    """What the character does in this frame, e.g. "rolls right" or "bounces off the left edge"."""
    if state.event == "leave":
        return "leaves the scene"
    if state.event is not None:
        return f"turns back at the {state.event.split()[1]} edge"
    slow, fast = character.verbs
    verb = fast if abs(state.vx) >= FAST_SPEED else slow
    return f"{verb} {'right' if state.vx > 0 else 'left'}"


def _tag(kind: str, ids: list[str], text: str) -> str:
    return f"<{kind} {' '.join(ids)}>{text}</{kind}>"


def _write_story_text(story: Story) -> str:
    introduced: set[str] = set()  # characters whose shape the text has already named
    blocks = [_describe_frame(story, frame, introduced) for frame in range(story.num_frames)]
    return "\n".join(f"<gdi image{frame + 1}>\n{block}\n</gdi>" for frame, block in enumerate(blocks))


def _name(story: Story, index: int) -> str:
    character = story.characters[index]
    return _tag("gdo", [character.char_id], character.name)


def _mention(story: Story, index: int, introduced: set[str]) -> str:
    """The tagged name, with ", the red circle," at first mention (every time in template 0)."""
    character = story.characters[index]
    if (story.template == 0 and index == 0) or character.char_id not in introduced:
        introduced.add(character.char_id)
        return f"{_name(story, index)}, {_descriptor(character)},"
    return _name(story, index)


def _view_sentence(story: Story, frame: int) -> str:
    """Which view this frame is and whom it frames: "Close on Mara, from the far side."."""
    setup = story.setups[story.sequence[frame]]
    phrasing = story.phrasings[frame]
    setting = _tag("gdl", ["bg1"], f"the {story.setting.name}")
    names = [_name(story, index) for index in setup.subjects] + ["", ""]
    sentence = VIEW_PHRASES[setup.kind][phrasing].format(setting=setting, name=names[0], other=names[1])
    if setup.side == 1:
        sentence = f"{sentence[:-1]}, {FAR_SIDE_PHRASES[(phrasing + story.template) % len(FAR_SIDE_PHRASES)]}."
    return sentence


def _describe_frame(story: Story, frame: int, introduced: set[str]) -> str:
    """One frame's description: the view, what its subject does, what else happens, the light.

    Three template variants, chosen per story (not per frame, so they can be learned):
    0 names the main character's shape in every frame and counts steps to the edge it heads
    for; 1 starts the action with an order word ("Then", "Next", …) and counts steps; 2 starts
    with an order word and gives zones. The first frame also sets the time of day.
    """
    setup = story.setups[story.sequence[frame]]
    subject = setup.subjects[0] if setup.subjects else 0
    character, state = story.characters[subject], story.states[frame][subject]
    setting = _tag("gdl", ["bg1"], f"the {story.setting.name}")
    action = _tag("gda", [character.char_id], _action(character, state))
    if state.event:
        where = ""
    elif story.template == 2 or setup.kind == "wide":
        where = f" near the {_zone(state.x, story.world_width)} of {setting}"
    else:
        where = f", {_steps_to_edge(state, story.world_width)}"
    opening = f"{ORDER_MARKERS[frame]}, " if frame > 0 and story.template != 0 else ""
    mention = _mention(story, subject, introduced)
    sentences = [_view_sentence(story, frame), f"{opening}{mention} {action}{where}."]
    if setup.kind == "two_shot" and len(setup.subjects) > 1:
        partner = setup.subjects[1]
        partner_action = _tag("gda", [story.characters[partner].char_id], _action(story.characters[partner], story.states[frame][partner]))
        sentences.append(f"{_mention(story, partner, introduced)} {partner_action}.")
    elif setup.kind == "wide":
        sentences.append(_describe_other(story, frame, introduced))
    sentences.append(_describe_light(story, frame))
    if _word_count(sentences) > MAX_WORDS and len(sentences) > 3:
        sentences.pop(2)  # the other character: the view, the subject and the light stay
    if _word_count(sentences) > MAX_WORDS:
        sentences[1] = f"{opening}{mention} {action}."
    if _word_count(sentences) < MIN_WORDS:
        sentences.insert(-1, f"Behind, {setting} stretches {'east' if state.vx > 0 else 'west'}.")
    return " ".join(sentence for sentence in sentences if sentence)


def _in_steps(distance: float) -> str:
    steps = int(np.clip(round(distance / STEP_PIXELS), 1, len(NUMBER_WORDS)))
    return f"{NUMBER_WORDS[steps - 1]} {'step' if steps == 1 else 'steps'}"


def _steps_to_edge(state: CharacterState, world_width: float) -> str:
    """Distance to the edge of the scene the character heads for: "nine steps from the right edge"."""
    heading_right = state.vx > 0
    distance = (world_width - state.x) if heading_right else state.x
    return f"{_in_steps(distance)} from the {'right' if heading_right else 'left'} edge"


def _word_count(sentences: list[str]) -> int:
    return sum(len(_TAG_PATTERN.sub("", sentence).split()) for sentence in sentences)


def _describe_other(story: Story, frame: int, introduced: set[str]) -> str:
    """A meeting, else a secondary character's event, else one secondary character (taking turns)."""
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
    where = "" if state.event or name.endswith(",") else f", {_in_steps(abs(state.x - states[0].x))} from {_name(story, 0)}"
    return f"{name} {action}{where}."


def _describe_light(story: Story, frame: int) -> str:
    level = _light_word(float(story.brightness[frame]))
    subject = story.time_of_day.light_subject
    if frame == 0:
        return f"{story.time_of_day.phrase.capitalize()}, {subject} is {level}."
    changed = level != _light_word(float(story.brightness[frame - 1]))
    if story.template == 2:
        trend = "brighter" if story.time_of_day.brightening else "darker"
        return f"It grows {trend}, now {level}." if changed else f"It is still {level}."
    subject = subject.capitalize()
    return f"{subject} {story.time_of_day.light_verb} {level}." if changed else f"{subject} stays {level}."


def _write_chain_of_thought(story: Story) -> str:
    """Markdown in the StoryReasoning layout: per image, Characters / Objects / Setting tables,
    and a Camera table (set-up, view, subject, side, shot pattern) — the per-frame truth the data
    layer reads to tell whether a window's shot continues or cuts at frame 5."""
    sections = []
    for frame in range(story.num_frames):
        view = story.views[frame]
        lines = [f"## Image {frame + 1}", "", "### Characters"]
        lines += [
            "| Character ID | Name | Description | Emotions | Actions | Narrative Function | Bounding Box |",
            "|---|---|---|---|---|---|---|",
        ]
        for character, state in zip(story.characters, story.states[frame]):
            x, y = _to_view(story, view, state.x, state.y)
            x1, y1, x2, y2 = _box(x, y, character.radius * view.zoom)
            if state.visible and x2 > x1 and y2 > y1:  # a character half out of view keeps a clipped box
                lines.append(
                    f"| {character.char_id} | {character.name} | {character.colour} {character.shape} | calm "
                    f"| {_action(character, state)} | {'protagonist' if character.char_id == 'char1' else 'companion'} "
                    f"| {x1},{y1},{x2},{y2} |"
                )
        lines += ["", "### Objects"]
        lines += [
            "| Object ID | Description | Function | Interaction | Narrative Function | Bounding Box |",
            "|---|---|---|---|---|---|",
        ]
        landmark = story.setting.landmark if view.setup.side == 0 else story.far_side.landmark
        for object_number, box in enumerate(_visible_landmarks(story, frame)[:3], start=1):
            lines.append(f"| obj{object_number} | {landmark} | landmark | none | scenery | {','.join(map(str, box))} |")
        lines += ["", "### Setting"]
        lines += ["| Setting Element | Description | Mood | Time | Narrative Function |", "|---|---|---|---|---|"]
        lines.append(
            f"| bg1 | {story.setting.name} | {_light_word(float(story.brightness[frame]))} light "
            f"| {story.time_of_day.phrase} | backdrop |"
        )
        lines += ["", "### Camera", "| Set-up | View | Subject | Side | Pattern |", "|---|---|---|---|---|"]
        subject = " ".join(story.characters[i].char_id for i in view.setup.subjects) or "bg1"
        lines.append(
            f"| {view.setup.label} | {view.setup.kind} | {subject} | {'reverse' if view.setup.side else 'front'} "
            f"| {story.pattern} |"
        )
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _visible_landmarks(story: Story, frame: int) -> list[tuple[int, int, int, int]]:
    """Landmark boxes in frame pixels, clipped; those at least 3 px wide and tall in view."""
    view = story.views[frame]
    boxes = []
    for x1, y1, x2, y2 in story.landmarks[view.setup.side]:
        left = max(0, int(round((x1 - view.centre_x) * view.zoom + FRAME_WIDTH / 2)))
        right = min(FRAME_WIDTH, int(round((x2 - view.centre_x) * view.zoom + FRAME_WIDTH / 2)))
        top = max(0, int(round((y1 - view.centre_y) * view.zoom + FRAME_HEIGHT / 2)))
        bottom = min(FRAME_HEIGHT, int(round((y2 - view.centre_y) * view.zoom + FRAME_HEIGHT / 2)))
        if right - left >= 3 and bottom - top >= 3:
            boxes.append((left, top, right, bottom))
    return boxes
