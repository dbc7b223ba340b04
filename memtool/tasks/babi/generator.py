"""A seeded generator of bAbI-style stories, written in the bAbI text format.

People move between places and take and drop objects; after every few events a question is asked whose
answer the story determines, with its supporting sentence IDs. Five task types follow the real bAbI
numbering, so generated files read like the real ones: 1 single supporting fact, 2 two supporting facts,
6 yes/no questions, 7 counting, 8 lists/sets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

PEOPLE = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
OBJECTS = ("football", "apple", "milk")
MOVE_VERBS = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
TAKE_VERBS = ("got", "picked up", "took", "grabbed")
DROP_VERBS = ("dropped", "discarded", "put down", "left")
COUNT_WORDS = ("none", "one", "two", "three")

TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
}
GENERATED_TASKS = tuple(TASK_NAMES)


@dataclass
class _World:
    """The state a story has described so far, with the line IDs that established each fact."""

    rng: random.Random
    lines: list[str] = field(default_factory=list)
    place: dict[str, str] = field(default_factory=dict)
    moved_at: dict[str, int] = field(default_factory=dict)
    carried: dict[str, list[str]] = field(default_factory=dict)  # person → objects, in the order taken
    carry_lines: dict[str, list[int]] = field(default_factory=dict)  # person → take/drop line IDs
    object_place: dict[str, str] = field(default_factory=dict)  # dropped objects
    object_support: dict[str, list[int]] = field(default_factory=dict)

    def say(self, text: str) -> int:
        self.lines.append(f"{len(self.lines) + 1} {text}")
        return len(self.lines)

    def ask(self, question: str, answer: str, support: list[int]) -> None:
        ids = " ".join(str(i) for i in sorted(set(support)))
        self.lines.append(f"{len(self.lines) + 1} {question} \t{answer}\t{ids}")

    def holder(self, thing: str) -> str | None:
        return next((person for person, things in self.carried.items() if thing in things), None)

    def move(self) -> None:
        person = self.rng.choice(PEOPLE)
        place = self.rng.choice([p for p in PLACES if p != self.place.get(person)])
        self.moved_at[person] = self.say(f"{person} {self.rng.choice(MOVE_VERBS)} the {place}.")
        self.place[person] = place
        for thing in self.carried.get(person, []):
            self.object_support[thing] = [self.object_support[thing][0], self.moved_at[person]]

    def take_or_drop(self) -> None:
        placed = [person for person in PEOPLE if person in self.place]
        if not placed:
            return self.move()
        person = self.rng.choice(placed)
        here = self.place[person]
        takeable = [t for t in OBJECTS if self.holder(t) is None and self.object_place.get(t, here) == here]
        held = self.carried.get(person, [])
        if held and (not takeable or self.rng.random() < 0.4):
            thing = self.rng.choice(held)
            line = self.say(f"{person} {self.rng.choice(DROP_VERBS)} the {thing}.")
            held.remove(thing)
            self.object_place[thing] = here
            self.object_support[thing] = [line, self.moved_at[person]]
        elif takeable:
            thing = self.rng.choice(takeable)
            line = self.say(f"{person} {self.rng.choice(TAKE_VERBS)} the {thing} there.")
            self.carried.setdefault(person, []).append(thing)
            self.object_place.pop(thing, None)
            self.object_support[thing] = [line, self.moved_at[person]]
        else:
            return self.move()
        self.carry_lines.setdefault(person, []).append(line)


def _question(world: _World, task: int) -> bool:
    """Ask one question of ``task`` that the story so far answers; False if none can be asked yet."""
    rng = world.rng
    placed = sorted(world.place)
    if task in (1, 6):
        if not placed:
            return False
        person = rng.choice(placed)
        if task == 1:
            world.ask(f"Where is {person}?", world.place[person], [world.moved_at[person]])
        else:
            asked = world.place[person] if rng.random() < 0.5 else rng.choice(PLACES)
            answer = "yes" if asked == world.place[person] else "no"
            world.ask(f"Is {person} in the {asked}?", answer, [world.moved_at[person]])
        return True
    if task == 2:
        known = [t for t in OBJECTS if t in world.object_support]
        if not known:
            return False
        thing = rng.choice(known)
        holder = world.holder(thing)
        place = world.place[holder] if holder else world.object_place[thing]
        world.ask(f"Where is the {thing}?", place, world.object_support[thing])
        return True
    people = sorted(world.carry_lines)
    if not people:
        return False
    person = rng.choice(people)
    held = world.carried.get(person, [])
    if task == 7:
        world.ask(
            f"How many objects is {person} carrying?", COUNT_WORDS[len(held)], world.carry_lines[person]
        )
    else:
        answer = ",".join(held) if held else "nothing"
        world.ask(f"What is {person} carrying?", answer, world.carry_lines[person])
    return True


def generate_story_lines(task: int, rng: random.Random, questions: int = 5) -> list[str]:
    """One story of ``task`` with ``questions`` questions, as bAbI text lines."""
    world = _World(rng)
    asked = 0
    while asked < questions:
        for _ in range(rng.randint(1, 3)):
            if task in (1, 6) or rng.random() < 0.4:
                world.move()
            else:
                world.take_or_drop()
        asked += _question(world, task)
    return world.lines


def generate_split(task: int, split: str, stories: int, seed: int, questions: int = 5) -> list[str]:
    """All lines of one task's split; the same arguments always give the same text."""
    rng = random.Random(f"memtool-babi-{seed}-{task}-{split}")
    lines: list[str] = []
    for _ in range(stories):
        lines.extend(generate_story_lines(task, rng, questions))
    return lines


def write_generated(
    directory: Path, tasks: tuple[int, ...], train_stories: int, test_stories: int, seed: int
) -> list[Path]:
    """Write ``qaN_<name>_{train,test}.txt`` files, as in the real bAbI directory layout."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tasks:
        for split, count in (("train", train_stories), ("test", test_stories)):
            path = directory / f"qa{task}_{TASK_NAMES[task]}_{split}.txt"
            path.write_text("\n".join(generate_split(task, split, count, seed)) + "\n", encoding="utf-8")
            written.append(path)
    return written
