"""English plurals for kind names: `Lamp` -> `lamps`, `Campus` -> `campuses`.

Kubernetes addresses a kind by its lower-case plural (the resource name and the
`group/version/plural` mount path), so the rule has to match what users of the
original project already type. The rules cover the regular English endings
plus a short table of irregular nouns a kind is plausibly named after.
"""

from __future__ import annotations

_IRREGULAR = {
    "person": "people",
    "child": "children",
    "man": "men",
    "woman": "women",
    "mouse": "mice",
    "goose": "geese",
    "foot": "feet",
    "tooth": "teeth",
}

# Nouns whose plural is the singular.
_UNCOUNTABLE = frozenset({"equipment", "information", "series", "species", "sheep", "fish", "news"})

_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")
_VOWELS = frozenset("aeiou")


def singular(kind: str) -> str:
    """The singular resource name: the kind, lower-cased."""
    return kind.lower()


def plural(kind: str) -> str:
    """The plural resource name of `kind` (case-insensitive input, lower-case output)."""
    word = kind.lower()
    if word in _UNCOUNTABLE:
        return word
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(_SIBILANT_ENDINGS):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"
