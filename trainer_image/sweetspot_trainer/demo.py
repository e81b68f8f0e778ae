"""Built-in demo data: `builtin:product-pages`, synthetic product pages with attributes to extract.

Each page describes one product (name, brand, price, color, and a rating on about a quarter of the pages)
in one of several layouts, with distractors a model must learn to ignore: other products' brands and
prices ("customers also viewed"), a former price, ratings of related items, filler lines. Values appear in
the page exactly as they are labelled, so an extractive model can find them.

Row `i` of a stream depends only on `(stream seed, i)`: 100 rows are a prefix of 1,000 rows, and train and
validation come from different streams, so they never share a page.

Difficulty knobs (`Difficulty`): how often each attribute is present (`rating_rate` is the rare one), how
many other products and filler lines crowd the page, how often a former price or a related rating appears,
and how many layouts are in use. The defaults make a MiniLM tagger's accuracy climb over the first few
hundred rows and flatten after about a thousand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ATTRIBUTES = ("name", "brand", "price", "color", "rating")

TRAIN_STREAM = 0
VALIDATION_STREAM = 1
DEFAULT_TRAIN_ROWS = 2000
DEFAULT_VALIDATION_ROWS = 400


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator; the defaults are what `builtin:product-pages` uses."""

    brand_rate: float = 0.9
    price_rate: float = 0.95
    color_rate: float = 0.7
    rating_rate: float = 0.25
    """The rare attribute: late gains in fine-tuning came from attributes like this one."""
    other_products: tuple[int, int] = (1, 3)
    """How many other products (brand, name, price) a page lists, min and max."""
    former_price_rate: float = 0.4
    """Share of pages that also show a struck-through former price."""
    related_rating_rate: float = 0.3
    """Share of pages that mention another product's rating (a trap for the rating attribute)."""
    filler_lines: tuple[int, int] = (1, 4)
    layouts: int = 6
    """How many of the page layouts are in use (1 to 6)."""


_SYLLABLES_A = (
    "Ac",
    "Zen",
    "Vor",
    "Lum",
    "Kor",
    "Tri",
    "Bel",
    "Nov",
    "Sol",
    "Pra",
    "Quin",
    "Mar",
    "Tel",
    "Ox",
    "Vel",
    "Dra",
    "Fen",
    "Hal",
    "Ire",
    "Jun",
    "Kal",
    "Ryn",
    "Sta",
    "Ult",
)
_SYLLABLES_B = ("ex", "ora", "ix", "tek", "ona", "ium", "a", "o", "ara", "is", "on", "ent", "ar", "elle", "ico")
_ADJECTIVES = (
    "Ultra",
    "Compact",
    "Classic",
    "Pro",
    "Smart",
    "Eco",
    "Deluxe",
    "Mini",
    "Max",
    "Silent",
    "Rapid",
    "Urban",
    "Trail",
    "Studio",
    "Nomad",
    "Prime",
    "Aero",
    "Cozy",
)
_NOUNS = (
    "Blender",
    "Kettle",
    "Headphones",
    "Backpack",
    "Desk Lamp",
    "Office Chair",
    "Rain Jacket",
    "Watch",
    "Keyboard",
    "Travel Mug",
    "Sneakers",
    "Tent",
    "Toaster",
    "Speaker",
    "Water Bottle",
    "Yoga Mat",
    "Monitor Stand",
    "Drill",
    "Air Purifier",
    "Coffee Grinder",
)
_COLORS = (
    "red",
    "navy blue",
    "charcoal",
    "forest green",
    "white",
    "black",
    "silver",
    "sand",
    "coral",
    "slate gray",
    "burgundy",
    "sky blue",
    "olive",
    "matte black",
    "rose gold",
)
_CATEGORIES = ("Kitchen", "Audio", "Outdoor", "Office", "Home", "Fitness", "Tools", "Travel")
_FILLER = (
    "Free returns within 30 days.",
    "Ships in 2-3 business days.",
    "In stock. Order soon.",
    "Add to cart",
    "Questions? Call 555-0134.",
    "Sign up for our newsletter and save.",
    "Gift wrapping available at checkout.",
    "Secure payment with all major cards.",
    "Warranty: 2 years.",
    "See size and fit guide.",
)


def _brand(rng: random.Random) -> str:
    return rng.choice(_SYLLABLES_A) + rng.choice(_SYLLABLES_B)


def _name(rng: random.Random) -> str:
    name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if rng.random() < 0.5:
        name += f" {rng.choice('XSMTV')}{rng.randrange(10, 999)}"
    return name


def _price(rng: random.Random) -> str:
    return f"${rng.randrange(5, 500)}.{rng.choice((99, 49, 95, 0, 50, 19)):02d}"


def _rating(rng: random.Random) -> str:
    return f"{rng.randrange(20, 51) / 10:.1f}"


def _page(rng: random.Random, knobs: Difficulty) -> dict[str, object]:
    values: dict[str, str | None] = {
        "name": _name(rng),
        "brand": _brand(rng) if rng.random() < knobs.brand_rate else None,
        "price": _price(rng) if rng.random() < knobs.price_rate else None,
        "color": rng.choice(_COLORS) if rng.random() < knobs.color_rate else None,
        "rating": _rating(rng) if rng.random() < knobs.rating_rate else None,
    }
    name, brand, price, color, rating = (values[a] for a in ATTRIBUTES)
    layout = rng.randrange(max(1, min(knobs.layouts, 6)))
    lines: list[str] = []
    if layout == 0:  # a spec sheet
        lines.append(str(name))
        lines += [f"Brand: {brand}"] if brand else []
        lines += [f"Price: {price}"] if price else []
        lines += [f"Color: {color}"] if color else []
        lines += [f"Rating: {rating} out of 5"] if rating else []
    elif layout == 1:  # prose
        lines.append(f"Meet the {name}" + (f" by {brand}." if brand else "."))
        lines += [f"Available in {color}."] if color else []
        lines += [f"Now only {price}."] if price else []
        lines += [f"Customers rate it {rating}/5."] if rating else []
    elif layout == 2:  # a two-column table
        lines.append(f"Product | {name}")
        lines += [f"Manufacturer | {brand}"] if brand else []
        lines += [f"Our price | {price}"] if price else []
        lines += [f"Finish | {color}"] if color else []
        lines += [f"Stars | {rating}"] if rating else []
    elif layout == 3:  # a shop page with breadcrumbs
        lines.append(f"Home > {rng.choice(_CATEGORIES)}" + (f" > {brand}" if brand else ""))
        lines.append(f"{brand} {name}" if brand else str(name))
        lines += [f"{price} - free shipping"] if price else []
        lines += [f"★ {rating} ({rng.randrange(3, 2000)} reviews)"] if rating else []
        lines += [f"Colour: {color}"] if color else []
    elif layout == 4:  # a sale banner
        lines.append(f"SALE {name}")
        lines += [f"from {brand}"] if brand else []
        lines += [f"Sale {price}"] if price else []
        lines += [f"Shown in {color}"] if color else []
        lines += [f"Average rating {rating}"] if rating else []
    else:  # page metadata
        lines.append(f"title: {name}" + (f" | {brand}" if brand else ""))
        lines += [f"offer: {price}"] if price else []
        lines += [f"variant: {color}"] if color else []
        lines += [f"score: {rating}/5"] if rating else []

    distractors: list[str] = []
    if price and rng.random() < knobs.former_price_rate:
        distractors.append(rng.choice(("Was {p}", "List price: {p}", "Originally {p}")).format(p=_price(rng)))
    if rng.random() < knobs.related_rating_rate:
        distractors.append(f"A similar item is rated {_rating(rng)} out of 5.")
    for _ in range(rng.randint(*knobs.other_products)):
        distractors.append(f"Customers also viewed: {_brand(rng)} {_name(rng)} {_price(rng)}")
    distractors += rng.sample(_FILLER, rng.randint(*knobs.filler_lines))
    # Distractors go after the title line, in random places, so position alone does not give values away.
    body = lines[1:] + distractors
    rng.shuffle(body)
    return {"input": "\n".join([lines[0], *body]), "output": values}


def product_pages(rows: int, stream: int = TRAIN_STREAM, knobs: Difficulty | None = None) -> list[dict[str, object]]:
    """`rows` synthetic pages of one stream, each `{"input": page, "output": {attribute: value or None}}`."""
    knobs = knobs or Difficulty()
    return [_page(random.Random(f"product-pages:{stream}:{i}"), knobs) for i in range(rows)]
