"""Everyday questions far from any one corpus's subject, for measuring whether scores separate
relevant from irrelevant (``ragkit.evaluation.off_topic_queries``).

Built from templates over everyday domains (programming, travel, sport, money, cars, music,
home repair, games, geography, cooking times): deterministic for a seed, no download.
"""

from __future__ import annotations

import random

_TEMPLATES: list[tuple[str, list[list[str]]]] = [
    (
        "How do I {} in {}?",
        [
            [
                "reverse a string",
                "read a CSV file",
                "sort a dictionary by value",
                "parse a JSON response",
                "merge two lists without duplicates",
                "format a date as ISO 8601",
                "write unit tests for a class",
                "read environment variables",
                "make an HTTP request with a timeout",
                "split a string on commas",
            ],
            ["Python", "JavaScript", "Rust", "Go", "Java", "Kotlin", "C#", "Ruby"],
        ],
    ),
    (
        "What does the error {} mean when I run {}?",
        [
            [
                "EADDRINUSE",
                "permission denied (publickey)",
                "segmentation fault (core dumped)",
                "ModuleNotFoundError",
                "connection reset by peer",
                "404 not found",
                "out of disk space",
            ],
            ["npm start", "git push", "docker compose up", "my web server", "the installer"],
        ],
    ),
    (
        "What is the best time of year to visit {}?",
        [
            [
                "Lisbon",
                "Kyoto",
                "Patagonia",
                "Iceland",
                "the Scottish Highlands",
                "Marrakech",
                "Vancouver Island",
                "the Amalfi Coast",
                "Queenstown",
                "Cappadocia",
                "Oaxaca",
                "the Faroe Islands",
            ]
        ],
    ),
    (
        "How do I get from {} to {} by train?",
        [
            ["Paris", "Vienna", "Madrid", "Zurich", "Edinburgh"],
            ["Amsterdam", "Prague", "Barcelona", "Milan", "London"],
        ],
    ),
    (
        "Who won the {} {}?",
        [
            ["1998", "2006", "2014", "2022", "2010"],
            [
                "football World Cup",
                "Tour de France",
                "Wimbledon men's final",
                "Super Bowl",
                "Eurovision Song Contest",
            ],
        ],
    ),
    (
        "What are the rules for {} in {}?",
        [
            ["offside", "a tie break", "substitutions", "a foul throw", "overtime"],
            ["football", "tennis", "basketball", "ice hockey", "volleyball"],
        ],
    ),
    (
        "How do I file my taxes in {} as a {}?",
        [
            ["Norway", "Canada", "Germany", "Australia", "Japan"],
            ["freelancer", "student", "retiree", "new resident"],
        ],
    ),
    (
        "How often should I change the {} on a {}?",
        [
            ["oil", "brake pads", "timing belt", "air filter", "tires"],
            ["2012 Honda Civic", "diesel van", "motorcycle", "hybrid hatchback"],
        ],
    ),
    (
        "How do I tune a {} to {}?",
        [
            ["guitar", "ukulele", "violin", "bass guitar", "mandolin"],
            ["drop D", "standard pitch", "open G", "a lower key"],
        ],
    ),
    (
        "How do I fix a {} that {}?",
        [
            ["leaking faucet", "squeaky door", "running toilet", "sticking drawer", "loose tile"],
            ["keeps coming back", "started last week", "is in an old house"],
        ],
    ),
    (
        "What is the best opening in {} for {}?",
        [
            ["chess", "Go", "checkers", "Othello"],
            ["beginners", "an aggressive player", "blitz games", "the second player"],
        ],
    ),
    (
        "What is the capital of {}?",
        [
            [
                "France",
                "Mongolia",
                "Peru",
                "Kenya",
                "Canada",
                "Uruguay",
                "Laos",
                "Slovenia",
                "Bhutan",
                "Ghana",
                "Latvia",
                "Paraguay",
            ]
        ],
    ),
    (
        "How long should I bake {} at {}?",
        [
            ["sourdough bread", "a pizza", "shortbread", "a lasagna", "banana bread"],
            ["180 degrees", "a high temperature", "gas mark 4"],
        ],
    ),
    (
        "Which {} should I buy for {}?",
        [
            ["laptop", "camera", "bicycle", "tent", "phone"],
            ["under 500 euros", "travelling light", "a teenager", "working from home"],
        ],
    ),
    (
        "How do I {} in {}?",
        [
            [
                "open a bank account",
                "rent an apartment",
                "get a driving licence",
                "register a small business",
            ],
            ["Spain", "Sweden", "Singapore", "Mexico"],
        ],
    ),
]


def off_topic_questions(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` distinct everyday questions, drawn evenly over the templates above."""
    pools = []
    for template, slots in _TEMPLATES:
        combos = [()]  # type: list[tuple[str, ...]]
        for options in slots:
            combos = [(*c, o) for c in combos for o in options]
        rng = random.Random(f"{seed}:{template}")
        rng.shuffle(combos)
        pools.append([template.format(*c) for c in combos])
    available = sum(len(p) for p in pools)
    if not 0 < n <= available:
        raise ValueError(f"n must be between 1 and {available}, got {n}")
    out: list[str] = []
    index = 0
    while len(out) < n:  # round-robin over the templates, so every domain is represented
        for pool in pools:
            if index < len(pool) and len(out) < n:
                out.append(pool[index])
        index += 1
    return out
