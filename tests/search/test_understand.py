"""Reading dates, places and cameras out of natural queries (search.understand)."""

from __future__ import annotations

import datetime as dt

import pytest

from search import query
from search.errors import InputError
from search.understand import Vocabulary, anything, parse

TODAY = dt.date(2024, 6, 15)  # a Saturday
PLACES = ("Lisbon", "Porto", "Portugal", "New York", "United States", "Nice", "California")
CAMERAS = ("Apple iPhone 12 Pro", "Canon EOS 5D Mark III", "NIKON CORPORATION NIKON D750",
           "Google Pixel 7")
LIBRARY = Vocabulary(PLACES, CAMERAS)

# query -> (text, after, before, places, cameras); before is exclusive.
TABLE = {
    "dogs on the beach in 2019": ("dogs on the beach", "2019-01-01", "2020-01-01", [], []),
    "March 2021": ("", "2021-03-01", "2021-04-01", [], []),
    "cat from 2018 to 2020": ("cat", "2018-01-01", "2021-01-01", [], []),
    "snow before 2015": ("snow", None, "2015-01-01", [], []),
    "sunset since June 2022": ("sunset", "2022-06-01", None, [], []),
    "birthday cake yesterday": ("birthday cake", "2024-06-14", "2024-06-15", [], []),
    "my cat last week": ("my cat", "2024-06-03", "2024-06-10", [], []),
    "may flowers": ("may flowers", None, None, [], []),
    "fall leaves": ("fall leaves", None, None, [], []),
    "the hotel in Paris": ("the hotel in Paris", None, None, [], []),
    "the hotel in Lisbon": ("the hotel", None, None, ["Lisbon"], []),
    "beach in Lisbon last summer": ("beach", "2023-06-01", "2023-09-01", ["Lisbon"], []),
    "Dogs on the beach in Lisbon in July 2022": (
        "Dogs on the beach", "2022-07-01", "2022-08-01", ["Lisbon"], []),
    "trams in lisbon and porto": ("trams", None, None, ["Lisbon", "Porto"], []),
    "lisbon trams": ("lisbon trams", None, None, [], []),
    "nice sunset": ("nice sunset", None, None, [], []),
    "sunset in Nice": ("sunset", None, None, ["Nice"], []),
    "red car in the US": ("red car", None, None, ["United States"], []),
    "skyline of New York in the 1990s": ("skyline", "1990-01-01", "2000-01-01", ["New York"], []),
    "photos taken with my iPhone": ("photos", None, None, [], ["iPhone"]),
    "portraits shot on a Pixel 7": ("portraits", None, None, [], ["Pixel 7"]),
    "Nikon D750 portraits": ("portraits", None, None, [], ["NIKON D750"]),
    "apple on a table": ("apple on a table", None, None, [], []),
    "the canon of literature": ("the canon of literature", None, None, [], []),
    "birthday party on 5 March 2021": ("birthday party", "2021-03-05", "2021-03-06", [], []),
    "snow between 2010 and 2012": ("snow", "2010-01-01", "2013-01-01", [], []),
    "holidays 2018-2020": ("holidays", "2018-01-01", "2021-01-01", [], []),
    "from march to may 2021": ("", "2021-03-01", "2021-06-01", [], []),
    "flowers in May": ("flowers", "2024-05-01", "2024-06-01", [], []),
    "beach 2 years ago": ("beach", "2022-01-01", "2023-01-01", [], []),
    "snow in the last two weeks": ("snow", "2024-06-02", "2024-06-16", [], []),
    "kids at the beach, 2019": ("kids at the beach", "2019-01-01", "2020-01-01", [], []),
    "the last supper": ("the last supper", None, None, [], []),
    "a dog in the sun": ("a dog in the sun", None, None, [], []),
    "1080 pixels": ("1080 pixels", None, None, [], []),
    "in 2019 two dogs": ("two dogs", "2019-01-01", "2020-01-01", [], []),
    "photos from 2019 onwards": ("photos", "2019-01-01", None, [], []),
    "after June 2022": ("", "2022-07-01", None, [], []),
    "graduation June 12, 2023": ("graduation", "2023-06-12", "2023-06-13", [], []),
    "sunset in '98": ("sunset", "1998-01-01", "1999-01-01", [], []),
    "selfie taken today": ("selfie", "2024-06-15", "2024-06-16", [], []),
    "picnic last weekend": ("picnic", "2024-06-08", "2024-06-10", [], []),
    "2:golden retriever + puppy": ("2:golden retriever + puppy", None, None, [], []),
    "80s fashion": ("80s fashion", None, None, [], []),
    "cars from the 80s": ("cars", "1980-01-01", "1990-01-01", [], []),
    "early 2020 snow": ("snow", "2020-01-01", "2020-05-01", [], []),
    "the 4th of july fireworks": ("the 4th of july fireworks", None, None, [], []),
    "dog in the park on July 4th": ("dog in the park", "2023-07-04", "2023-07-05", [], []),
    "cat pictures from January to March 2020": (
        "cat pictures", "2020-01-01", "2020-04-01", [], []),
    "march of the penguins": ("march of the penguins", None, None, [], []),
    "party last night": ("party", "2024-06-14", "2024-06-15", [], []),
    "2019 lisbon trams": ("trams", "2019-01-01", "2020-01-01", ["Lisbon"], []),
    "beach, porto, summer 2019": ("beach", "2019-06-01", "2019-09-01", ["Porto"], []),
    "nice sunset 2019": ("nice sunset", "2019-01-01", "2020-01-01", [], []),
}


@pytest.mark.parametrize("text", TABLE)
def test_natural_queries_parse(text):
    kept, after, before, places, cameras = TABLE[text]
    assert parse(text, LIBRARY, today=TODAY) == {
        "text": kept, "after": after, "before": before, "places": places, "cameras": cameras}


def test_places_and_cameras_are_only_the_librarys():
    assert parse("the hotel in Lisbon", today=TODAY)["text"] == "the hotel in Lisbon"
    assert parse("shot on a Pixel 7", today=TODAY)["cameras"] == []
    assert parse("the hotel in Paris", places=["Paris"], today=TODAY)["places"] == ["Paris"]
    assert not anything(parse("a red bicycle", LIBRARY, today=TODAY))
    assert anything(parse("a red bicycle in 2020", LIBRARY, today=TODAY))


def test_relative_dates_follow_today():
    assert parse("yesterday", today=dt.date(2020, 3, 1))["after"] == "2020-02-29"
    assert parse("last summer", today=dt.date(2024, 10, 1))["after"] == "2024-06-01"


def test_odd_text_never_fails():
    for text in ("", "   ", "\x00", "9999999999999999", "in 0000", "from to", "between and",
                 "'", "2019-13-45", "31/02/2021", "-", "last", "in the", "ago ago"):
        assert parse(text, LIBRARY, today=TODAY)["text"] is not None


def test_build_reads_the_text_and_explicit_fields_win():
    request = query.build("dogs in Lisbon in 2019", vocabulary=LIBRARY)
    assert [t.value for t in request.terms] == ["dogs"]
    assert request.where.after == dt.datetime(2019, 1, 1)
    assert request.where.before == dt.datetime(2020, 1, 1)
    assert request.where.places == ("lisbon",)
    # Explicit fields win; a parsed date against an explicit one is dropped.
    request = query.build("dogs in Lisbon in 2019", vocabulary=LIBRARY, after="2021-01-01",
                          places=["Porto"])
    assert request.where.after == dt.datetime(2021, 1, 1) and request.where.before is None
    assert request.where.places == ("porto",)
    assert request.understood["after"] is None and request.understood["places"] == []
    # Nothing left of the text: CLIP still ranks by the words as typed.
    request = query.build("Lisbon 2019", vocabulary=LIBRARY)
    assert [t.value for t in request.terms] == ["Lisbon 2019"] and request.understood["text"] == ""
    assert request.where.places == ("lisbon",)
    # Without a vocabulary (parse=0, --literal) the text is searched as typed.
    request = query.build("dogs in 2019")
    assert [t.value for t in request.terms] == ["dogs in 2019"]
    assert request.understood is None and request.where.after is None
    with pytest.raises(InputError, match="after"):
        query.build("dogs", vocabulary=LIBRARY, after="2021-01-01", before="2020-01-01")
