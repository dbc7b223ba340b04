"""A seeded generator of synthetic videos whose captions need temporal attention.

Each video is a short sequence of small RGB frames in which events happen in order: a coloured shape
appears, moves, changes colour or disappears, then another event follows. Its captions describe the
events in order ("a red square appears then the red square moves left then a blue circle appears"), so
a decoder that looks at the wrong frames says a wrong word, and one that keeps looking at the same frames
repeats itself. Each video has several reference captions (synonyms and connectives vary), as real
captioning sets do.

The ``slideshow`` layout is the diagnostic case for the attention regularizer: each event is a new object
that replaces the one before, the caption names the objects in order ("red square green circle ..."),
and a progress bar along the bottom row says how far into the clip a frame is. With segments of equal
length every frame then deserves the same attention summed over the caption, which is what the
regularizer's uniform target (τ = auto) asks.

Held-out combinations make the test split need the frames, not memory of captions: some (colour, shape)
pairs never occur in a training video and occur in every test video, so a model must compose a colour and
a shape it has only seen apart.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.2, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "purple": (0.7, 0.2, 0.9),
    "white": (1.0, 1.0, 1.0),
}
SHAPES = ("square", "circle", "triangle")
DISTRACTOR_GREY = 0.5  # no caption colour is grey
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
SYNONYMS = {
    "appears": ("appears", "shows up"),
    "moves": ("moves", "slides"),
    "turns": ("turns", "becomes"),
    "disappears": ("disappears", "vanishes"),
    "then": ("then", "and then", "after that"),
}
KINDS = ("appears", "moves", "turns", "disappears")


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    thing: int  # which object (0, 1, ...)
    colour: str  # the object's colour as the event begins
    shape: str
    detail: str | None  # a direction (moves) or the new colour (turns)
    first: int  # the first frame of the event's segment
    last: int  # its last frame (inclusive)

    def phrase(self, rng: random.Random) -> str:
        return self.worded(rng.choice(SYNONYMS[self.kind]))

    @property
    def name(self) -> str:
        """The object as the event begins, "red square": a slideshow's whole phrase."""
        return f"{self.colour} {self.shape}"

    def worded(self, verb: str) -> str:
        """The event's phrase with this synonym of its verb."""
        article = "a" if self.kind == "appears" else "the"
        words = f"{article} {self.name} {verb}"
        return f"{words} {self.detail}" if self.detail else words


@dataclass
class VideoSpec:
    """What a video shows, before rendering."""

    events: list[Event]
    pairs: set[tuple[str, str]] = field(default_factory=set)  # every (colour, shape) it shows
    slideshow: bool = False  # one object at a time, named in order (``plan_video``)

    def captions(self, count: int, rng: random.Random) -> list[str]:
        """``count`` reference captions: the same events, with synonyms and connectives drawn by ``rng``.
        A slideshow's caption has no synonyms or connectives: it is its one reference."""
        if self.slideshow:
            return [" ".join(event.name for event in self.events)]
        captions: list[str] = []
        for _ in range(count * 4):
            parts = [self.events[0].phrase(rng)]
            for event in self.events[1:]:
                parts.append(f"{rng.choice(SYNONYMS['then'])} {event.phrase(rng)}")
            caption = " ".join(parts)
            if caption not in captions:
                captions.append(caption)
            if len(captions) == count:
                break
        return captions


def _segments(frames: int, events: int, rng: random.Random, equal: bool = False) -> list[tuple[int, int]]:
    """Split frames 0..frames-1 into ``events`` contiguous segments of at least one frame each: at random
    cuts, or with ``equal`` as evenly as the frames allow (lengths differ by at most one)."""
    if equal:
        bounds = [round(i * frames / events) for i in range(events + 1)]
        return [(bounds[i], bounds[i + 1] - 1) for i in range(events)]
    cuts = sorted(rng.sample(range(1, frames), events - 1))
    bounds = [0, *cuts, frames]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(events)]


def plan_video(
    frames: int,
    events: int,
    max_objects: int,
    rng: random.Random,
    colours: tuple[str, ...] = tuple(COLOURS),
    equal_events: bool = False,
    shapes: tuple[str, ...] = SHAPES,
    slideshow: bool = False,
) -> VideoSpec:
    """Draw a consistent sequence of events: an object appears before anything happens to it, a hidden
    object cannot move, and at least one object is on screen after every event. A ``slideshow`` shows one
    object per segment, each unlike the one before, and nothing else happens."""
    segments = _segments(frames, events, rng, equal_events)
    if slideshow:
        spec = VideoSpec([], slideshow=True)
        previous: tuple[str, str] | None = None
        for thing, (first, last) in enumerate(segments):
            colour, shape = rng.choice([(c, s) for c in colours for s in shapes if (c, s) != previous])
            spec.events.append(Event("appears", thing, colour, shape, None, first, last))
            spec.pairs.add((colour, shape))
            previous = (colour, shape)
        return spec
    state: dict[int, tuple[str, str]] = {}  # visible objects → (colour, shape)
    spec = VideoSpec([])
    for first, last in segments:
        choices = []
        if len(state) < max_objects:
            choices.append("appears")
        # an object may turn only into a colour no other object on screen has in its shape: two
        # identical objects at once would make "the red square" ambiguous
        on_screen = set(state.values())
        turnable = {
            thing: [c for c in colours if c != colour and (c, shape) not in on_screen]
            for thing, (colour, shape) in state.items()
        }
        if state:
            choices += ["moves", "turns"] if any(turnable.values()) else ["moves"]
        if len(state) > 1:
            choices.append("disappears")
        kind = "appears" if not state else rng.choice(choices)
        if kind == "appears":
            thing = max(state, default=-1) + 1
            colour, shape = rng.choice([(c, s) for c in colours for s in shapes if (c, s) not in on_screen])
            state[thing] = (colour, shape)
            event = Event(kind, thing, colour, shape, None, first, last)
        else:
            thing = rng.choice(sorted(t for t in state if kind != "turns" or turnable[t]))
            colour, shape = state[thing]
            detail: str | None = None
            if kind == "moves":
                detail = rng.choice(tuple(DIRECTIONS))
            elif kind == "turns":
                detail = rng.choice(turnable[thing])
                state[thing] = (detail, shape)
            else:
                del state[thing]
            event = Event(kind, thing, colour, shape, detail, first, last)
        spec.events.append(event)
        spec.pairs.add((event.colour, event.shape))
        if event.kind == "turns":
            spec.pairs.add((event.detail, event.shape))  # type: ignore[arg-type]
    return spec


def _mask(shape: str, size: int, radius: int, centre: tuple[float, float]) -> Tensor:
    rows = torch.arange(size, dtype=torch.float32).view(-1, 1) - centre[0]
    cols = torch.arange(size, dtype=torch.float32).view(1, -1) - centre[1]
    if shape == "square":
        return (rows.abs() <= radius) & (cols.abs() <= radius)
    if shape == "circle":
        return rows**2 + cols**2 <= radius**2
    # a triangle pointing up: below its apex, inside two slopes
    return (rows >= -radius) & (rows <= radius) & (cols.abs() <= (rows + radius) / 2)


def _free_position(
    taken: Iterable[tuple[float, float]],
    bounds: list[tuple[float, float]],
    apart: float,
    rng: random.Random,
) -> tuple[float, float]:
    """A random centre within (row, column) ``bounds`` at least ``apart`` from every taken one (the
    farthest of 50 tries otherwise)."""
    taken = list(taken)
    (top, bottom), (left, right) = bounds
    best, best_gap = (top, left), -1.0
    for _ in range(50):
        centre = (rng.uniform(top, bottom), rng.uniform(left, right))
        gap = min((max(abs(centre[0] - r), abs(centre[1] - c)) for r, c in taken), default=float("inf"))
        if gap >= apart:
            return centre
        if gap > best_gap:
            best, best_gap = centre, gap
    return best


def render(
    spec: VideoSpec, frames: int, size: int, rng: random.Random, noise: float = 0.0, distractors: int = 0
) -> Tensor:
    """The video as (frames, 3, size, size) floats in [0, 1]: black background, each visible object drawn
    in its colour; a moving object travels a quarter of the frame over its event's segment. Distractors
    are grey shapes that stand still in every frame, under the objects, and no caption mentions. A
    slideshow's object shows for its segment alone, above a white progress bar along the bottom row."""
    radius, step = max(1, size // 10), max(1, size // 4)
    video = torch.zeros(frames, 3, size, size)
    colour: dict[int, str] = {}
    shape: dict[int, str] = {}
    visible_from: dict[int, int] = {}
    hidden_from: dict[int, int] = {}
    moves: dict[int, list[tuple[int, int, tuple[int, int]]]] = {}
    for event in spec.events:
        if event.kind == "appears":
            colour[event.thing], shape[event.thing] = event.colour, event.shape
            visible_from[event.thing] = event.first
        elif event.kind == "moves":
            moves.setdefault(event.thing, []).append((event.first, event.last, DIRECTIONS[event.detail]))
        elif event.kind == "disappears":
            hidden_from[event.thing] = event.first
        if spec.slideshow:
            hidden_from[event.thing] = event.last + 1
    # a slideshow keeps its bottom rows for the progress bar, and its objects never share a frame
    floor = 2 if spec.slideshow else 0
    positions: dict[int, tuple[float, float]] = {}
    for thing in colour:  # a start from which every planned move stays inside the frame
        path = [(0, 0)]
        for _, _, (dr, dc) in moves.get(thing, []):
            path.append((path[-1][0] + dr * step, path[-1][1] + dc * step))
        bounds = [
            (
                radius - min(p[axis] for p in path),
                size - 1 - radius - max(p[axis] for p in path) - floor * (1 - axis),
            )
            for axis in (0, 1)
        ]
        taken = () if spec.slideshow else positions.values()
        positions[thing] = _free_position(taken, bounds, 2 * radius + 2 + step, rng)
    still: list[tuple[str, tuple[float, float]]] = []  # drawn only when asked: the default draws no more
    for _ in range(distractors):
        where = [*positions.values(), *(centre for _, centre in still)]
        bounds = [(radius, size - 1 - radius - floor), (radius, size - 1 - radius)]
        still.append((rng.choice(SHAPES), _free_position(where, bounds, 2 * radius + 2, rng)))
    for distractor, centre in still:
        video[:, :, _mask(distractor, size, radius, centre)] = DISTRACTOR_GREY
    turns = [e for e in spec.events if e.kind == "turns"]
    for t in range(frames):
        for thing, (row, col) in positions.items():
            if t < visible_from[thing] or t >= hidden_from.get(thing, frames):
                continue
            for first, last, (dr, dc) in moves.get(thing, []):
                done = 1.0 if t > last else (0.0 if t < first else (t - first + 1) / (last - first + 1))
                row, col = row + dr * step * done, col + dc * step * done
            now = colour[thing]
            for event in turns:
                if event.thing == thing and t >= event.first:
                    now = event.detail  # type: ignore[assignment]
            mask = _mask(shape[thing], size, radius, (row, col))
            for channel, value in enumerate(COLOURS[now]):
                video[t, channel][mask] = value
        if spec.slideshow:
            video[t, :, size - 1, : round((t + 1) * size / frames)] = 1.0
    if noise > 0:
        generator = torch.Generator().manual_seed(rng.randrange(2**31))
        video = (video + noise * torch.rand(video.shape, generator=generator)).clamp(0, 1)
    return video


def plan_split(
    count: int,
    frames: int,
    events: tuple[int, int],
    max_objects: int,
    held_out: set[tuple[str, str]],
    with_held_out: bool,
    rng: random.Random,
    equal_events: bool = False,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
    slideshow: bool = False,
) -> list[VideoSpec]:
    """``count`` videos of ``events[0]``..``events[1]`` events of ``colours`` and ``shapes`` (the
    vocabulary's size): with ``with_held_out`` every one shows at least one held-out (colour, shape) pair,
    without it none does."""
    specs: list[VideoSpec] = []
    tries = 0
    while len(specs) < count:
        tries += 1
        if tries > 1000 * count:
            raise ValueError(
                f"could not draw {count} videos {'with' if with_held_out else 'without'} the held-out pairs "
                f"{sorted(held_out)}; hold out fewer pairs or allow more events"
            )
        spec = plan_video(
            frames, rng.randint(*events), max_objects, rng, colours, equal_events, shapes, slideshow
        )
        if bool(spec.pairs & held_out) == with_held_out:
            specs.append(spec)
    return specs
