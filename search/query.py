"""What a search asks for: weighted terms, filters, paging and order, parsed in one place.

The CLI, the Python API and the web API build the same ``SearchRequest``, so they accept
and refuse the same things with the same messages.

Terms combine the way rclip's do: every term is a unit vector times its weight, the
positive ones are added, the negative ones subtracted, and the sum is normalised. A text
query may itself be such a sum: ``"2:golden retriever + puppy - leash"`` is golden
retriever at weight 2, plus puppy, minus leash. ``--image``, ``--similar`` and ``--not``
take the same ``WEIGHT:`` prefix, and every weight defaults to 1.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from search import understand
from search.errors import InputError
from search.limits import MAX_ID, MAX_K, check_k  # noqa: F401 - the bounds, one place
from search.places import normalise, parse_near
from search.store import Filter
from search.understand import Vocabulary

SORTS = ("relevance", "newest", "oldest")
Sort = Literal["relevance", "newest", "oldest"]
# " + " and " - " with spaces around them split a text into terms; a hyphen inside a word
# ("t-shirt", "black-and-white") does not.
_SPLIT = re.compile(r"\s+([+-])\s+")
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:\s*(.*)$", re.DOTALL)
MAX_WEIGHT = 100.0
# Dates outside these years are typos, and some cannot be a file time on every platform.
MIN_YEAR, MAX_YEAR = 1800, 2999
# Values one repeated field (folder, not, similar, image, place) may carry. Each is a term to
# encode or a clause in the store's filter: 991 folders overflowed SQLite's expression
# depth (a 500 and a traceback), and no person types a hundred.
MAX_REPEATED = 100


@dataclass
class Term:
    kind: Literal["text", "image", "similar"]
    value: str | bytes | int  # text; a path or an upload's bytes; a content id or a path
    weight: float = 1.0  # negative pushes matches away


@dataclass
class SearchRequest:
    terms: list[Term] = field(default_factory=list)
    where: Filter = field(default_factory=Filter)
    k: int | None = None
    offset: int = 0
    min_score: float | None = None
    sort: Sort = "relevance"
    exact: bool = False
    in_text: str | None = None  # words to find in the text read from photos (--text)
    collapse: bool = True  # one result per group of near-duplicates (search.duplicates)
    understood: dict | None = None  # what search.understand read from the text, if asked


def split_weight(raw: str, what: str) -> tuple[float, str]:
    """``"2:golden retriever"`` -> (2.0, "golden retriever"); no prefix -> weight 1."""
    match = _WEIGHT.match(raw)
    if not match:
        return 1.0, raw
    weight = float(match.group(1))
    if not 0 < weight <= MAX_WEIGHT:
        raise InputError(f"{what}: a weight must be above 0 and at most {MAX_WEIGHT:g}, "
                         f"not {match.group(1)}")
    return weight, match.group(2)


def text_terms(text: str, sign: float = 1.0) -> list[Term]:
    """A text query as terms: ``"2:a + b - c"`` is 2·a + b − c (each part may be weighted)."""
    parts = _SPLIT.split(text.strip())
    terms = []
    signs = ["+", *parts[1::2]]
    for op, part in zip(signs, parts[0::2], strict=True):
        weight, body = split_weight(part, "the query")
        body = body.strip()
        if not body:
            raise InputError(f"the query {text.strip()!r} has an empty term; "
                             "write it as 'a + b - c' with text on each side")
        terms.append(Term("text", body, weight * sign * (1 if op == "+" else -1)))
    return terms


def image_term(raw: str | bytes | tuple[float, bytes], sign: float = 1.0) -> Term:
    """``--image [WEIGHT:]PATH``; a path that exists wins over a weight-like prefix. An
    upload is its bytes, or (weight, bytes)."""
    if isinstance(raw, bytes):
        return Term("image", raw, sign)
    if isinstance(raw, tuple):
        return Term("image", raw[1], raw[0] * sign)
    weight, path = (1.0, raw) if _exists(raw) else split_weight(raw, "image")
    return Term("image", path, weight * sign)


def similar_term(raw: str | int) -> Term:
    """``--similar [WEIGHT:]ID_OR_PATH``: a photo already in the library."""
    if isinstance(raw, int):
        return Term("similar", raw)
    weight, target = (1.0, raw) if _exists(raw) else split_weight(raw, "similar")
    target = target.strip()
    if not target:
        raise InputError("similar: give a photo's id or its path")
    is_id = target.isascii() and target.isdigit()
    return Term("similar", int(target) if is_id else target, weight)


def parse_date(raw: str | dt.datetime | dt.date | None, what: str) -> dt.datetime | None:
    """YYYY-MM-DD or an ISO date-time, as local time (a zone, if given, is converted)."""
    if raw is None or isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, dt.date):
        return dt.datetime(raw.year, raw.month, raw.day)
    text = raw.strip()
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what} must be a date like 2024-06-30 (or 2024-06-30T18:00), "
                         f"not {raw!r}") from None
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise InputError(f"{what}: the year must be from {MIN_YEAR} to {MAX_YEAR}, not {raw!r}")
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    return when


def _exists(path: str) -> bool:
    """Whether a path names an existing file; text that cannot be a path is not one."""
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, too long, "~nosuchuser"
        return False


def _folder(raw: str) -> str:
    try:
        if "\x00" in raw:
            raise ValueError("a NUL byte")
        return str(Path(raw).expanduser().resolve())
    except (OSError, ValueError, RuntimeError):
        raise InputError(f"folder: {raw!r} is not a folder path") from None


def _check_counts(**fields: list | tuple) -> None:
    """Refuse a repeated field with more than MAX_REPEATED values, naming it. Every door
    calls build, so a new repeated field (tag, place) is limited by adding it here."""
    for name, values in fields.items():
        if len(values) > MAX_REPEATED:
            raise InputError(f"{name}: at most {MAX_REPEATED} values per search, "
                             f"not {len(values)}")


def build(
    text: str | None = None,
    *,
    images: list | tuple = (),  # paths ("[W:]PATH"), upload bytes, or (weight, bytes)
    similar: list[str | int] | tuple[str | int, ...] = (),
    negatives: list[str] | tuple[str, ...] = (),
    after: str | dt.date | None = None,
    before: str | dt.date | None = None,
    folders: list[str] | tuple[str, ...] = (),
    camera: str | None = None,
    k: int | None = None,
    offset: int = 0,
    min_score: float | None = None,
    sort: str = "relevance",
    exact: bool = False,
    in_text: str | None = None,
    places: list[str] | tuple[str, ...] = (),
    near: str | tuple[float, float, float] | None = None,
    collapse: bool = True,
    tags: list[str] | tuple[str, ...] = (),
    not_tags: list[str] | tuple[str, ...] = (),
    vocabulary: Vocabulary | None = None,
) -> SearchRequest:
    """A checked SearchRequest from the options every door offers. ``in_text`` searches
    the text read from photos (alone, or beside the other terms). With ``vocabulary``,
    dates, places and cameras in ``text`` are read as filters (search.understand);
    explicit ones win."""
    k = check_k(k)
    understood = None
    if vocabulary is not None and text is not None and text.strip():
        understood = understand.parse(text, vocabulary)
        text, after, before, places, camera = _apply(understood, text, after, before,
                                                     places, camera)
    _check_counts(image=images, similar=similar, **{"not": negatives}, folder=folders,
                  place=places, tag=tags, not_tag=not_tags)
    terms: list[Term] = []
    if text is not None and text.strip():
        terms += text_terms(text)
    terms += [image_term(i) for i in images]
    terms += [similar_term(s) for s in similar]
    for neg in negatives:
        if not neg.strip():
            raise InputError("not: give the text to push away, e.g. 'people'")
        terms += text_terms(neg, sign=-1.0)
    in_text = (in_text or "").strip() or None
    if not any(t.weight > 0 for t in terms) and in_text is None and not any(
            t.strip() for t in tags):
        raise InputError("the query is empty: type what the photos show (e.g. 'dog on a beach'), "
                         "or give an example image or a photo to find similar ones")
    if sort not in SORTS:
        raise InputError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if offset < 0:
        raise InputError(f"offset must be 0 or more, not {offset}")
    if min_score is not None and not -1.0 <= min_score <= 1.0:
        raise InputError(f"min_score is a cosine similarity from -1 to 1, not {min_score}")
    after_dt, before_dt = parse_date(after, "after"), parse_date(before, "before")
    if after_dt and before_dt and after_dt >= before_dt:
        raise InputError(f"after ({after_dt.date()}) must be earlier than before "
                         f"({before_dt.date()})")
    folder_paths = tuple(_folder(f) for f in folders if f.strip())
    place_names = tuple(dict.fromkeys(normalise(p) for p in places if p.strip()))
    if near is not None and not isinstance(near, tuple):
        near = parse_near(near) if str(near).strip() else None
    where = Filter(after_dt, before_dt, folder_paths, (camera or "").strip() or None,
                   place_names, near, *_tag_names(tags, not_tags))
    return SearchRequest(terms, where, k, offset, min_score, sort,  # type: ignore[arg-type]
                         exact, in_text, collapse=collapse, understood=understood)


def _tag_names(tags, not_tags) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tag names to have and not to have; one in both is a contradiction."""
    from search.tags import check_name

    have = tuple(dict.fromkeys(check_name(t) for t in tags))
    lack = tuple(dict.fromkeys(check_name(t) for t in not_tags))
    both = set(have) & set(lack)
    if both:
        raise InputError(f"tag {min(both)!r} is asked for and excluded at once")
    return have, lack


def _apply(understood: dict, text: str, after, before, places, camera) -> tuple:
    """The fields with what was understood filled in where none was given. A parsed date
    that contradicts an explicit one is dropped (and set to None in ``understood``)."""
    given_after, given_before = parse_date(after, "after"), parse_date(before, "before")
    parsed_after = None if given_after else understood["after"]
    parsed_before = None if given_before else understood["before"]
    low = given_after or (parse_date(parsed_after, "after") if parsed_after else None)
    high = given_before or (parse_date(parsed_before, "before") if parsed_before else None)
    if low and high and low >= high:  # a parsed date against an explicit one
        parsed_after = parsed_after if given_after is None and given_before is None else None
        parsed_before = parsed_before if given_after is None and given_before is None else None
    understood["after"], understood["before"] = parsed_after, parsed_before
    if places:
        understood["places"] = []
    # The filter takes one camera: the first named (or the explicit one).
    understood["cameras"] = [] if camera and camera.strip() else understood["cameras"][:1]
    # With nothing left of the text ("Lisbon 2019"), CLIP still ranks by the words as typed.
    return (understood["text"] or text.strip(), after or parsed_after, before or parsed_before,
            tuple(places) or tuple(understood["places"]),
            camera or next(iter(understood["cameras"]), None))
