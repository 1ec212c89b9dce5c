"""Reading dates, places and cameras out of a search's words.

"dogs on the beach in Lisbon last summer" is a text ("dogs on the beach") and three filters
(taken from 2023-06-01, before 2023-09-01, in Lisbon). ``parse`` makes that split:

- **Dates** are read by dateparser (a maintained parser of natural dates in many forms),
  relative to ``today``; this module only finds where a date phrase starts and ends and
  what its connective means ("in 2019", "from 2018 to 2020", "before 2015", "since June
  2022"). A date is a range of days ``[after, before)``: ``before`` is exclusive, as the
  ``--before`` flag is. A few forms dateparser does not read are read here: seasons,
  decades, "last weekend", "the past 3 days", "last May".
- **Places** are only those the library has photos in (``Vocabulary``), and **cameras**
  only the camera names its photos carry. Any other word stays in the text: "the hotel in
  Paris" in a library without a photo in Paris is searched as typed.
- **Nothing else is dropped.** Only the words of a recognised phrase go, with the
  connective that introduces it ("in", "from", "taken with"). A lone word that may be a
  month or a season ("may flowers", "fall leaves") stays: a month is read only after a
  connective ("in May") and a season only with a year or "last"/"this".
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import threading
import time
from dataclasses import dataclass, field

from search.places import normalise

# -- words ----------------------------------------------------------------------------------

MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): n for n, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
# Full names only: "sun", "wed" and "sat" are words.
WEEKDAYS = {name.lower() for name in calendar.day_name} | {"tues", "thurs", "weds"}
# First month of each season (northern hemisphere), three months long.
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
PARTS = {"early": 1, "mid": 5, "late": 9}  # thirds of a year, by their first month
UNITS = {"day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month",
         "months": "month", "year": "year", "years": "year"}
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
                "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
                "twelve": 12, "few": 3, "couple": 2}
RELATIVE = {"yesterday", "today", "tonight", "ago", "last", "this", "past", "previous",
            "weekend", "night", "morning", "afternoon", "evening"}
# Words a date phrase may hold besides those above, numbers and ordinals.
FILLER = {"the", "of", "a", "an", "few", "couple", ",", ".", "'", "’"}
# What a date phrase's words may say once dateparser cannot read them as they are.
ALIASES = {"last night": "yesterday", "tonight": "today", "this morning": "today",
           "this afternoon": "today", "this evening": "today"}

# Connectives before a date, and what they make of its range [start, end).
IN, SINCE, AFTER, BEFORE, UNTIL = "in", "since", "after", "before", "until"
DATE_CONNECTIVES = {
    ("in",): IN, ("on",): IN, ("during",): IN, ("from",): IN, ("of",): IN,
    ("since",): SINCE, ("after",): AFTER, ("later", "than"): AFTER,
    ("before",): BEFORE, ("prior", "to"): BEFORE, ("earlier", "than"): BEFORE,
    ("until",): UNTIL, ("till",): UNTIL, ("through",): UNTIL, ("up", "to"): UNTIL,
    ("between",): "between", ("over",): IN, ("within",): IN,
}
RANGE_TO = {"to", "until", "till", "through", "thru", "-", "–", "—", "and"}
ONWARDS = {"onwards", "onward", "on"}
# Verbs that may lead a connective ("taken in", "shot with"): they go with the phrase.
VERBS = {"taken", "shot", "snapped", "captured", "photographed"}
PLACE_CONNECTIVES = {"in", "at", "near", "around", "from", "of", "across", "to", "visiting"}
CAMERA_CONNECTIVES = {"with", "using", "on", "by", "from", "via"}
DETERMINERS = {"my", "a", "an", "the", "our", "his", "her", "their", "your"}
# Camera words that are nobody's content: read even without "with" or "on".
CAMERA_BRANDS = {
    "iphone", "ipad", "nikon", "fujifilm", "fuji", "olympus", "panasonic", "lumix", "sony",
    "samsung", "gopro", "dji", "leica", "pentax", "ricoh", "hasselblad", "huawei", "xiaomi",
    "oneplus", "kodak", "nokia", "motorola", "oppo", "vivo", "realme",
}
CAMERA_AFTER = {"camera", "phone", "cam"}
# Company words in EXIF makes ("NIKON CORPORATION"): never a camera's name on their own.
CORPORATE = {"corporation", "corp", "company", "co", "ltd", "inc", "imaging", "optical",
             "digital", "electronics", "mobile", "telecommunications"}
PLACE_ALIASES = {"united states": ("usa", "us", "america", "the us", "the usa", "the states"),
                 "united kingdom": ("uk", "the uk", "britain", "great britain")}
MAX_PHRASE = 7
# A bare year (no connective) is read as a date only in this range; "1080 pixels" is not.
BARE_YEARS = (1900, 1)  # from 1900 to next year

_TOKEN = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}"  # 2021-03-05, 05/03/2021
    r"|\w+(?:[-'’.]\w+)*"  # words, 2018-2020, t-shirt, o'clock, St.-Tropez
    r"|[^\w\s]"  # punctuation, one character each
)
_YEAR = re.compile(r"^\d{4}$")
_YEAR_RANGE = re.compile(r"^(\d{4})[-–](\d{4}|\d{2})$")
_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_ISO_DAY = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
_SLASH_DAY = re.compile(r"^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}$")
_ORDINAL = re.compile(r"^\d{1,2}(?:st|nd|rd|th)?$")
_DECADE = re.compile(r"^(\d{2}|\d{4})s$")
_MIN_YEAR, _MAX_YEAR = 1800, 2999


@dataclass(frozen=True)
class Vocabulary:
    """What the library can be filtered by: its places' names and its cameras' names."""

    places: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()


@dataclass
class _Token:
    text: str
    start: int
    end: int
    norm: str
    used: bool = False


@dataclass
class _Found:
    after: dt.date | None = None
    before: dt.date | None = None
    places: list[str] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)


def parse(
    query: str,
    vocabulary: Vocabulary | None = None,
    *,
    places: tuple[str, ...] | list[str] = (),
    cameras: tuple[str, ...] | list[str] = (),
    today: dt.date | None = None,
) -> dict:
    """``{"text", "after", "before", "places", "cameras"}`` read from ``query``.

    ``text`` is the query without the recognised phrases (possibly empty); ``after`` and
    ``before`` are "YYYY-MM-DD" or None (``before`` exclusive); ``places`` and ``cameras``
    are names as the library spells them. Known places and cameras are ``vocabulary``'s,
    else ``places`` and ``cameras``; ``today`` (default: the local date) anchors relative
    dates."""
    vocabulary = vocabulary or Vocabulary(tuple(places), tuple(cameras))
    today = today or dt.date.today()
    tokens = [_Token(m.group(), m.start(), m.end(), normalise(m.group()))
              for m in _TOKEN.finditer(query or "")]
    found = _Found()
    _find_cameras(tokens, vocabulary.cameras, found)
    _find_dates(tokens, today, found)
    _find_places(tokens, vocabulary.places, found)
    return {
        "text": _rest(query or "", tokens),
        "after": found.after.isoformat() if found.after else None,
        "before": found.before.isoformat() if found.before else None,
        "places": found.places,
        "cameras": found.cameras,
    }


def anything(understood: dict | None) -> bool:
    """Whether a parse found a date, a place or a camera."""
    return bool(understood and (understood["after"] or understood["before"]
                                or understood["places"] or understood["cameras"]))


def _rest(query: str, tokens: list[_Token]) -> str:
    """The query without the used tokens, its spacing and punctuation tidied."""
    pieces, at = [], 0
    for tok in tokens:
        if tok.used:
            pieces.append(query[at:tok.start])
            pieces.append(" ")
            at = tok.end
    pieces.append(query[at:])
    text = re.sub(r"\s+", " ", "".join(pieces))
    text = re.sub(r"\s+([,;:.!?])", r"\1", text)
    text = re.sub(r"([,;])(?:\s*[,;])+", r"\1", text)
    return text.strip(" ,;:-–—").strip()


def _connective(tokens: list[_Token], end: int, table: dict) -> tuple[int, str | None]:
    """The connective (from ``table``) ending just before token ``end``, free, and where it
    starts (with a leading "taken"/"shot"): (end, None) when there is none."""
    for words, meaning in table.items():
        start = end - len(words)
        if start >= 0 and all(not t.used and t.norm == w
                              for t, w in zip(tokens[start:end], words, strict=True)):
            if start > 0 and not tokens[start - 1].used and tokens[start - 1].norm in VERBS:
                start -= 1
            return start, meaning
    return end, None


# -- dates ----------------------------------------------------------------------------------

_parser_lock = threading.Lock()
_parsers: dict[dt.date, object] = {}


def _dateparser(today: dt.date):
    """dateparser's parser for English, reading relative dates from noon ``today``."""
    parser = _parsers.get(today)
    if parser is None:
        from dateparser.date import DateDataParser

        _parsers.clear()  # one day at a time: a server's "today" moves on
        parser = _parsers[today] = DateDataParser(languages=["en"], settings={
            "RELATIVE_BASE": dt.datetime.combine(today, dt.time(12)),
            "PREFER_DATES_FROM": "past", "RETURN_TIME_AS_PERIOD": True,
            "PREFER_DAY_OF_MONTH": "first"})
    return parser


@dataclass
class _Range:
    start: dt.date
    end: dt.date  # exclusive
    strong: bool  # a year or a relative word in it: read even without a connective


def _is_year(word: str) -> bool:
    return bool(_YEAR.match(word)) and _MIN_YEAR <= int(word) <= _MAX_YEAR


def _date_word(tok: _Token) -> bool:
    w = tok.norm
    return (w in MONTHS or w in WEEKDAYS or w in SEASONS or w in UNITS or w in RELATIVE
            or w in PARTS
            or w in NUMBER_WORDS or w in FILLER or _is_year(w) or bool(_ORDINAL.match(w))
            or bool(_YEAR_RANGE.match(w) or _YEAR_MONTH.match(w) or _ISO_DAY.match(w)
                    or _SLASH_DAY.match(w) or _DECADE.match(w))
            or w.rstrip(".") in MONTHS or w == "before")


def _date_core(tokens: list[_Token], i: int,
               today: dt.date) -> tuple[int, _Range, list[str]] | None:
    """The longest date phrase starting at token ``i``: (its end, its range, its words)."""
    n = i
    while n < len(tokens) and n - i < MAX_PHRASE and not tokens[n].used and _date_word(tokens[n]):
        n += 1
    for j in range(n, i, -1):
        words = [t.norm for t in tokens[i:j]]
        if words[-1] in FILLER or words[0] in {",", ".", "of", "before"}:
            continue
        if "before" in words and "day before yesterday" not in " ".join(words):
            continue  # "before" is a connective, except in "the day before yesterday"
        if not _numbers_placed(words):
            continue
        found = _read_date(words, today)
        if found is not None:
            return j, found, words
    return None


def _numbers_placed(words: list[str]) -> bool:
    """Whether every small number is a day beside a month ("5 March", "March 5th") or a
    count before a unit ("3 days"): "2019 two dogs" must not lose "two"."""
    for k, w in enumerate(words):
        if not (w in NUMBER_WORDS and w not in FILLER or _ORDINAL.match(w)) or (
                k and words[k - 1] in {"'", "’"}):
            continue
        near = [x.rstrip(".") for x in words[max(0, k - 3):k + 4] if x not in {"the", "of"}]
        nxt = words[k + 1] if k + 1 < len(words) else ""
        if nxt == "few" or nxt in UNITS or any(x in MONTHS for x in near) and _ORDINAL.match(w):
            continue
        return False
    return True


def _read_date(words: list[str], today: dt.date) -> _Range | None:
    """A date phrase's range, or None when it is not one."""
    # "'98" is 1998; "a few days" is three, "a couple of weeks" two.
    kept: list[str] = []
    for w in words:
        if kept and kept[-1] in {"'", "’"}:
            kept[-1] = _short_year(w, today)
        else:
            kept.append(w)
    words = [w for w in kept if w not in {"'", "’"}]
    phrase = " ".join(words)
    for vague, count in (("a few", "3"), ("a couple of", "2"), ("few", "3"),
                         ("couple of", "2")):
        phrase = re.sub(rf"\b{vague}\b", count, phrase)
    words = phrase.split()
    if words and words[0] == "the":
        words = words[1:]
    if not words:
        return None
    phrase = " ".join(words)
    if len(words) == 1:
        w = words[0]
        if m := _YEAR_RANGE.match(w):
            first = int(m.group(1))
            last = int(m.group(2)) if len(m.group(2)) == 4 else first // 100 * 100 + int(
                m.group(2))
            if _MIN_YEAR <= first < last <= _MAX_YEAR:
                return _Range(dt.date(first, 1, 1), dt.date(last + 1, 1, 1), True)
            return None
        if m := _DECADE.match(w):
            year = int(m.group(1))
            if year < 100:
                year += 2000 if 2000 + year <= today.year else 1900
            if year % 10 or not _MIN_YEAR <= year <= _MAX_YEAR - 10:
                return None
            # Weak: without "in" or "from" a decade is a style ("80s fashion", "1960s car").
            return _Range(dt.date(year, 1, 1), dt.date(year + 10, 1, 1), False)
    for special in (_season, _weekend, _rolling, _last_month_name, _part_of_year):
        found = special(words, today)
        if found is not None:
            return found
    phrase = ALIASES.get(phrase, phrase)
    strong = any(_is_year(w) or _ISO_DAY.match(w) or _SLASH_DAY.match(w) or _YEAR_MONTH.match(w)
                 or w in RELATIVE for w in phrase.split())
    named = any(w.rstrip(".") in MONTHS or w in WEEKDAYS for w in phrase.split())
    if not (strong or named):
        return None  # numbers alone ("5", "2 days") are not a date
    if any(w in RELATIVE for w in phrase.split()) and not any(
            w in {"yesterday", "today", "ago"} or w in WEEKDAYS for w in phrase.split()
    ) and not any(w in UNITS for w in phrase.split()):
        return None  # "this", "last" alone
    with _parser_lock:
        try:
            data = _dateparser(today).get_date_data(phrase)
        except (ValueError, OverflowError):
            return None
    when, period = data.date_obj, data.period
    if when is None or period not in ("day", "week", "month", "year"):
        return None
    start = when.date()
    if not _MIN_YEAR <= start.year <= _MAX_YEAR:
        return None
    if period == "day":
        return _Range(start, start + dt.timedelta(days=1), strong)
    if period == "week":
        monday = start - dt.timedelta(days=start.weekday())
        return _Range(monday, monday + dt.timedelta(days=7), strong)
    if period == "month":
        return _Range(start.replace(day=1), _add_months(start.replace(day=1), 1), strong)
    return _Range(dt.date(start.year, 1, 1), dt.date(start.year + 1, 1, 1), strong)


def _short_year(word: str, today: dt.date) -> str:
    """"98" after an apostrophe: the latest such year not after this one."""
    if not (len(word) == 2 and word.isdigit()):
        return word
    year = today.year // 100 * 100 + int(word)
    return str(year if year <= today.year else year - 100)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _season(words: list[str], today: dt.date) -> _Range | None:
    """"summer 2019", "the summer of 2019", "last winter", "this spring"."""
    rest = [w for w in words if w not in {"the", "of", ","}]
    if len(rest) != 2:
        return None
    if rest[0] in SEASONS and _is_year(rest[1]):
        start = dt.date(int(rest[1]), SEASONS[rest[0]], 1)
    elif rest[0] in {"last", "this", "past", "previous"} and rest[1] in SEASONS:
        month = SEASONS[rest[1]]
        # The season of this year, or of the year before when it has not begun yet (in
        # January, "last winter" is the winter that began in December).
        start = dt.date(today.year, month, 1)
        if start > today:
            start = dt.date(today.year - 1, month, 1)
        if rest[0] != "this" and _add_months(start, 3) > today:
            start = dt.date(start.year - 1, month, 1)  # "last summer" in July: the one before
    else:
        return None
    return _Range(start, _add_months(start, 3), True)


def _weekend(words: list[str], today: dt.date) -> _Range | None:
    """"last weekend", "this weekend": a Saturday and Sunday."""
    if words not in (["last", "weekend"], ["this", "weekend"], ["past", "weekend"]):
        return None
    saturday = today - dt.timedelta(days=(today.weekday() - 5) % 7)
    if words[0] != "this" and saturday + dt.timedelta(days=2) > today:
        saturday -= dt.timedelta(days=7)  # still this weekend: the one before
    return _Range(saturday, saturday + dt.timedelta(days=2), True)


def _rolling(words: list[str], today: dt.date) -> _Range | None:
    """"the past 3 days", "the last two weeks", "past week": up to and including today."""
    if not words or words[0] not in {"last", "past"} or len(words) < 2:
        return None
    rest = words[1:]
    if len(rest) == 1 and words[0] == "past" and rest[0] in UNITS:
        count, unit = 1, UNITS[rest[0]]
    elif len(rest) == 2 and rest[1] in UNITS and (rest[0].isdigit() or rest[0] in NUMBER_WORDS):
        count = int(rest[0]) if rest[0].isdigit() else NUMBER_WORDS[rest[0]]
        unit = UNITS[rest[1]]
        if not 0 < count <= 1000:
            return None
    else:
        return None
    end = today + dt.timedelta(days=1)
    if unit == "day":
        start = end - dt.timedelta(days=count)
    elif unit == "week":
        start = end - dt.timedelta(days=7 * count)
    elif unit == "month":
        start = _add_months(today.replace(day=1), -count).replace(
            day=min(today.day, 28)) if count else today
    else:
        if today.year - count < _MIN_YEAR:
            return None
        start = today.replace(year=today.year - count, day=min(today.day, 28))
    return _Range(start, end, True)


def _part_of_year(words: list[str], today: dt.date) -> _Range | None:
    """"early 2020" (January to April), "mid 2020" (May to August), "late 2020"."""
    if len(words) != 2 or words[0] not in PARTS or not _is_year(words[1]):
        return None
    start = dt.date(int(words[1]), PARTS[words[0]], 1)
    return _Range(start, _add_months(start, 4), True)


def _last_month_name(words: list[str], today: dt.date) -> _Range | None:
    """"last May" (the latest May before this month), "this March" (this year's)."""
    if len(words) != 2 or words[0] not in {"last", "this", "past", "previous"}:
        return None
    month = MONTHS.get(words[1].rstrip("."))
    if month is None:
        return None
    year = today.year
    if words[0] != "this" and month >= today.month:
        year -= 1
    start = dt.date(year, month, 1)
    return _Range(start, _add_months(start, 1), True)


def _find_dates(tokens: list[_Token], today: dt.date, found: _Found) -> None:
    i = 0
    while i < len(tokens):
        core = None if tokens[i].used else _date_core(tokens, i, today)
        if core is None:
            i += 1
            continue
        end, span, words = core
        start, meaning = _connective(tokens, i, DATE_CONNECTIVES)
        if meaning is None and not (span.strong and _bare_ok(tokens[i:end], today)):
            # "may flowers": a month needs a connective; "1080 pixels" is no year. Nor is
            # a part of it one ("the 4th of July fireworks" is not July).
            i = end if not span.strong else i + 1
            continue
        if meaning is None and i > 0 and not tokens[i - 1].used and tokens[
                i - 1].norm in VERBS:
            start = i - 1  # "selfie taken today"
        after, before = span.start, span.end
        # A range: "from 2018 to 2020", "between May and June 2021", "2018 - 2020"; or a
        # list: "in 2019 and 2020" (the range that holds both).
        joiner = tokens[end].norm if end < len(tokens) else ""
        ranged = joiner in RANGE_TO and (joiner != "and" or meaning == "between")
        listed = joiner in {"and", "or"} and meaning in (IN, None) and not ranged
        if (ranged and meaning in (IN, "between", None)) or listed:
            second = _date_core(tokens, end + 1, today)
            if second is not None and (meaning is not None or span.strong):
                first = span
                if not span.strong and second[1].strong:
                    first = _with_year(words, second[1], today) or span
                if second[1].end > first.start:
                    end, after, before = second[0], first.start, max(first.end, second[1].end)
                    meaning = IN
        if meaning == "between" and end == core[0]:
            i += 1
            continue  # "between" wants two dates
        onwards = any(t.norm == "from" for t in tokens[start:i]) and end < len(
            tokens) and tokens[end].norm in ONWARDS and end == core[0]
        if meaning == SINCE or onwards:
            end += 1 if onwards else 0
            before = None
        elif meaning == AFTER:
            after, before = span.end, None
        elif meaning == BEFORE:
            after, before = None, span.start
        elif meaning == UNTIL:
            after = None
        new_after = max(filter(None, (found.after, after)), default=None)
        new_before = min(filter(None, (found.before, before)), default=None)
        if new_after and new_before and new_after >= new_before:
            i = end  # contradicts a date already read: leave it in the text
            continue
        found.after, found.before = new_after, new_before
        _use(tokens, start, end)
        i = end


def _with_year(words: list[str], second: _Range, today: dt.date) -> _Range | None:
    """The first date of "from March to May 2021" in the second's year (or the year
    before, for "from December to March 2021")."""
    year = (second.end - dt.timedelta(days=1)).year
    for y in (year, year - 1):
        found = _read_date([*words, str(y)], today)
        if found is not None and found.start < second.end:
            return found
    return None


def _bare_ok(span: list[_Token], today: dt.date) -> bool:
    """A date without a connective: a bare year only within BARE_YEARS ("1080 pixels" is
    not one)."""
    words = [t.norm for t in span]
    if len(words) == 1 and _is_year(words[0]):
        return BARE_YEARS[0] <= int(words[0]) <= today.year + BARE_YEARS[1]
    return True


# -- places ---------------------------------------------------------------------------------


def _names(names: tuple[str, ...], aliases: dict | None = None) -> dict[tuple[str, ...], str]:
    """Each name's words (normalised) -> the name; longest first when matching."""
    out: dict[tuple[str, ...], str] = {}
    for name in names:
        words = tuple(normalise(t) for t in _TOKEN.findall(name))
        if words:
            out.setdefault(words, name)
        for alias in (aliases or {}).get(normalise(name), ()):
            out.setdefault(tuple(alias.split()), name)
        if len(words) > 2 and words[-1] == "city":  # "New York City" is "New York" too
            out.setdefault(words[:-1], name)
    return out


def _match(tokens: list[_Token], i: int, names: dict[tuple[str, ...], str],
           longest: int) -> tuple[int, str] | None:
    for j in range(min(len(tokens), i + longest), i, -1):
        if any(t.used for t in tokens[i:j]):
            continue
        key = tuple(t.norm for t in tokens[i:j])
        if key in names:
            return j, names[key]
    return None


def _find_places(tokens: list[_Token], known: tuple[str, ...], found: _Found) -> None:
    names = _names(known, PLACE_ALIASES)
    if not names:
        return
    longest = max(len(k) for k in names)
    i = 0
    while i < len(tokens):
        hit = None if tokens[i].used else _match(tokens, i, names, longest)
        if hit is None:
            i += 1
            continue
        end, name = hit
        start = i
        if i > 0 and not tokens[i - 1].used and tokens[i - 1].norm in PLACE_CONNECTIVES:
            start = i - 1
        elif i > 1 and tokens[i - 1].norm == "the" and tokens[i - 2].norm in PLACE_CONNECTIVES:
            start = i - 2
        capitalised = tokens[i].text[:1].isupper()
        alias = " ".join(t.norm for t in tokens[i:end]) != normalise(name)
        if start == i and not capitalised and (end - i == 1 or alias) and not _beside_used(
                tokens, i, end):
            i += 1  # "nice sunset": a lower-case word without "in" is a word ("lisbon 2019"
            continue  # beside a date is a place)
        if start < i and alias and not capitalised:
            i += 1  # "in us": the alias of a country only when written as one ("US")
            continue
        if start > 0 and not tokens[start - 1].used and tokens[start - 1].norm in VERBS:
            start -= 1
        _use(tokens, start, end)
        if name not in found.places:
            found.places.append(name)
        # A list of places: "in Lisbon and Porto", "in Lisbon, Porto or Faro".
        while end + 1 < len(tokens) and tokens[end].norm in {",", "and", "or", "&"}:
            more = _match(tokens, end + 1, names, longest)
            if more is None:
                break
            _use(tokens, end, more[0])
            end = more[0]
            if more[1] not in found.places:
                found.places.append(more[1])
        i = end


def _beside_used(tokens: list[_Token], start: int, end: int) -> bool:
    """Whether the words just before or after tokens start..end (past commas) were read as
    a date or a camera."""
    before = start - 1
    while before >= 0 and tokens[before].norm == ",":
        before -= 1
    after = end
    while after < len(tokens) and tokens[after].norm == ",":
        after += 1
    return (before >= 0 and tokens[before].used) or (after < len(tokens) and tokens[after].used)


def _use(tokens: list[_Token], start: int, end: int) -> None:
    for tok in tokens[start:end]:
        tok.used = True


# -- cameras --------------------------------------------------------------------------------


def _camera_phrases(cameras: tuple[str, ...]) -> dict[tuple[str, ...], str]:
    """What a person calls a camera: the name's leading words, with or without its make
    ("Apple iPhone 12 Pro": "iphone", "iphone 12", "apple iphone 12 pro", ...). Each maps
    to those words as the camera name spells them, a part of it (what ``camera`` matches)."""
    out: dict[tuple[str, ...], str] = {}
    for camera in cameras:
        words = _TOKEN.findall(camera)
        norms = [normalise(w) for w in words]
        starts = [0]
        k = 1
        while k < len(words) and norms[k].rstrip(".,") in CORPORATE:
            k += 1
        if k < len(words):
            starts.append(k)
        for s in starts:
            for e in range(s + 1, len(words) + 1):
                key = tuple(n.rstrip(".,") for n in norms[s:e])
                if key[-1] in CORPORATE or not key[-1]:
                    continue
                out.setdefault(key, camera[_span(camera, words, s, e)])
    return out


def _span(text: str, words: list[str], s: int, e: int) -> slice:
    """Where words s..e (found in order by _TOKEN) lie in text."""
    spans = [m.span() for m in _TOKEN.finditer(text)]
    return slice(spans[s][0], spans[e - 1][1])


def _find_cameras(tokens: list[_Token], known: tuple[str, ...], found: _Found) -> None:
    phrases = _camera_phrases(known)
    if not phrases:
        return
    longest = max(len(k) for k in phrases)
    i = 0
    while i < len(tokens):
        hit = None if tokens[i].used else _match(tokens, i, phrases, longest)
        if hit is None:
            i += 1
            continue
        end, name = hit
        start = i
        while start > 0 and tokens[start - 1].norm in DETERMINERS and start > i - 1:
            start -= 1
        led = start > 0 and tokens[start - 1].norm in CAMERA_CONNECTIVES
        words = [t.norm for t in tokens[i:end]]
        distinct = (any(w in CAMERA_BRANDS for w in words)
                    or any(c.isdigit() for w in words for c in w)
                    or any(c.isupper() for c in tokens[i].text[1:]))
        if not led and not distinct:
            i += 1  # "apple on a table", "pixel art": words, unless "shot on a Pixel"
            continue
        if led:
            start -= 1
            if start > 0 and tokens[start - 1].norm in VERBS:
                start -= 1
        elif start < i:
            start = i  # "the iPhone": keep "the" unless a connective goes too
        if end < len(tokens) and tokens[end].norm in CAMERA_AFTER:
            end += 1
        _use(tokens, start, end)
        if name not in found.cameras:
            found.cameras.append(name)
        i = end


# -- the library's vocabulary -----------------------------------------------------------------

_cache: dict[tuple[str, str], tuple[tuple, float, Vocabulary]] = {}
_cache_lock = threading.Lock()
# While photos keep coming (watch), the names are read again at most this often: reading
# them costs a pass over the photos' cameras and places.
REREAD_S = 30.0


def vocabulary(store, model_id: str) -> Vocabulary:
    """The places and cameras the library has photos of, read again when photos or places
    changed (two index seeks and a key look-up tell), at most every REREAD_S seconds."""
    key = (store.engine.url.render_as_string(hide_password=True), model_id)
    with _cache_lock:
        hit = _cache.get(key)
    # The clock first: within REREAD_S the cached words stand, so most searches read nothing.
    if hit is not None and time.monotonic() - hit[1] < REREAD_S:
        return hit[2]
    stamp = (store.change_marks(model_id), store.newest_place())
    if hit is not None and hit[0] == stamp:
        with _cache_lock:
            _cache[key] = (stamp, time.monotonic(), hit[2])
        return hit[2]
    place_rows, cameras = store.places_and_cameras()
    places = sorted({name for row in place_rows for name in row if name})
    found = Vocabulary(tuple(places), tuple(sorted(cameras)))
    with _cache_lock:
        _cache[key] = (stamp, time.monotonic(), found)
    return found
