"""Draws the bundled example's attachment: Theo's sketch of his kiln frame.

The show-and-tell export has Theo post "Finished the kiln frame this weekend. Bricks next!" with
a picture; the build log adds "frame welded, casters on" and "flat top with a steel lid", and
Jun asks about the door hinge. This draws that frame as a workshop sketch on grid paper, so
that `zos analyze` has a real picture to read in the demo (a model describes it; offline, the
description says "PNG image, 640×480, …").

Run it from the repository root to remake the file (same Pillow version, same bytes):

    .venv/bin/python examples/make_kiln_image.py

then put the new size in the export's `fileSizeBytes` (the script prints it).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = (Path(__file__).resolve().parent / "export"
       / "Tidepool Makers - Community - show-and-tell [1093880712475574312].json_Files"
       / "kiln-frame-5F3A9.png")
W, H = 640, 480
PAPER, GRID, INK, PENCIL = (246, 243, 235), (218, 226, 232), (38, 42, 48), (96, 104, 114)
STEEL, STEEL_EDGE = (92, 98, 108), (150, 156, 166)
BRICK, BRICK_LINE, SHELF, RED = (232, 196, 160), (196, 140, 100), (200, 200, 196), (178, 52, 40)

# The frame (outer edge of the angle iron) and the firing chamber inside the brick.
FX0, FY0, FX1, FY1 = 170, 110, 430, 380
CX0, CY0, CX1, CY1 = 206, 146, 394, 344


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: same on every machine


def grid(d: ImageDraw.ImageDraw) -> None:
    for x in range(0, W, 20):
        d.line([(x, 0), (x, H)], fill=GRID)
    for y in range(0, H, 20):
        d.line([(0, y), (W, y)], fill=GRID)


def bricks(d: ImageDraw.ImageDraw) -> None:
    """Soft brick lining, not laid yet: drawn light, in the wall between frame and chamber."""
    d.rectangle([FX0 + 8, FY0 + 8, FX1 - 8, FY1 - 8], fill=BRICK)
    d.rectangle([CX0, CY0, CX1, CY1], fill=PAPER)
    for row, y in enumerate(range(FY0 + 8, FY1 - 8, 18)):
        d.line([(FX0 + 8, y), (FX1 - 8, y)], fill=BRICK_LINE)
        offset = 0 if row % 2 else 23
        for x in range(FX0 + 8 + offset, FX1 - 8, 46):
            d.line([(x, y), (x, min(y + 18, FY1 - 8))], fill=BRICK_LINE)
    d.rectangle([CX0, CY0, CX1, CY1], fill=PAPER, outline=BRICK_LINE, width=2)


def shelves(d: ImageDraw.ImageDraw) -> None:
    for y in (200, 262, 324):
        d.rectangle([CX0 + 10, y, CX1 - 10, y + 8], fill=SHELF, outline=PENCIL)
        for x in (CX0 + 26, CX1 - 34):  # shelf posts
            d.rectangle([x, y + 8, x + 8, min(y + 62, CY1)], fill=SHELF, outline=PENCIL)
    for x, y in ((236, 184), (270, 180), (318, 186), (352, 182)):  # pots waiting to be fired
        d.rounded_rectangle([x, y, x + 22, 200], radius=5, fill=(214, 180, 150), outline=PENCIL)


def angle_iron(d: ImageDraw.ImageDraw) -> None:
    """The welded frame: L-profile bars (a dark face and a light edge), gussets, bolts."""
    bars = [
        (FX0, FY0, FX1, FY0 + 10), (FX0, FY1 - 10, FX1, FY1),  # top and bottom rails
        (FX0, FY0, FX0 + 10, FY1 + 34), (FX1 - 10, FY0, FX1, FY1 + 34),  # legs to the casters
    ]
    for x0, y0, x1, y1 in bars:
        d.rectangle([x0, y0, x1, y1], fill=STEEL)
        d.line([(x0 + 3, y0 + 3), (x1 - 3 if x1 - x0 > 20 else x0 + 3, y1 - 3 if y1 - y0 > 20
                                                         else y0 + 3)], fill=STEEL_EDGE, width=2)
    for cx, cy, sx, sy in ((FX0 + 10, FY0 + 10, 1, 1), (FX1 - 10, FY0 + 10, -1, 1),
                           (FX0 + 10, FY1 - 10, 1, -1), (FX1 - 10, FY1 - 10, -1, -1)):
        d.polygon([(cx, cy), (cx + 22 * sx, cy), (cx, cy + 22 * sy)], fill=STEEL)
        d.ellipse([cx + 5 * sx - 2, cy + 5 * sy - 2, cx + 5 * sx + 2, cy + 5 * sy + 2],
                  fill=STEEL_EDGE)
    d.rectangle([FX0 - 12, FY0 - 14, FX1 + 12, FY0 - 2], fill=STEEL, outline=INK)  # flat lid
    d.line([(FX0 - 12, FY0 - 14), (FX0 - 24, FY0 - 30)], fill=STEEL, width=4)  # lid handle
    for x in (FX0 + 5, FX1 - 5):  # casters
        d.rectangle([x - 9, FY1 + 34, x + 9, FY1 + 40], fill=INK)
        d.ellipse([x - 10, FY1 + 40, x + 10, FY1 + 60], fill=INK)
        d.ellipse([x - 3, FY1 + 47, x + 3, FY1 + 53], fill=STEEL_EDGE)
    for y in (170, 318):  # door hinges on the right post
        d.rectangle([FX1, y, FX1 + 14, y + 26], fill=STEEL_EDGE, outline=INK)
        d.line([(FX1 + 7, y - 3), (FX1 + 7, y + 29)], fill=INK, width=3)


def label(d: ImageDraw.ImageDraw, text: str, at: tuple[int, int], to: tuple[int, int],
          size: int = 15) -> None:
    """`text` with its top-left at `at`, and a leader line from its nearer end to `to`."""
    box = d.textbbox(at, text, font=font(size))
    start = (box[2] + 4, (box[1] + box[3]) // 2) if to[0] > box[2] else (box[0] - 4,
                                                                        (box[1] + box[3]) // 2)
    d.line([start, to], fill=PENCIL, width=1)
    d.ellipse([to[0] - 3, to[1] - 3, to[0] + 3, to[1] + 3], fill=PENCIL)
    d.text(at, text, fill=INK, font=font(size))


def dimension(d: ImageDraw.ImageDraw, a: tuple[int, int], b: tuple[int, int], text: str) -> None:
    d.line([a, b], fill=RED, width=1)
    for (x, y), (ox, oy) in ((a, b), (b, a)):
        dx, dy = (ox > x) - (ox < x), (oy > y) - (oy < y)
        d.polygon([(x, y), (x + 8 * dx - 4 * dy, y + 8 * dy - 4 * dx),
                   (x + 8 * dx + 4 * dy, y + 8 * dy + 4 * dx)], fill=RED)
    mx, my = (a[0] + b[0]) // 2, (a[1] + b[1]) // 2
    box = d.textbbox((0, 0), text, font=font(14))
    tw, th = box[2] - box[0], box[3] - box[1]
    d.rectangle([mx - tw // 2 - 3, my - th // 2 - 5, mx + tw // 2 + 3, my + th // 2 + 3],
                fill=PAPER)
    d.text((mx - tw // 2, my - th // 2 - 3), text, fill=RED, font=font(14))


def draw() -> Image.Image:
    image = Image.new("RGB", (W, H), PAPER)
    d = ImageDraw.Draw(image)
    grid(d)
    bricks(d)
    shelves(d)
    angle_iron(d)
    d.text((24, 18), "kiln frame v2", fill=INK, font=font(30))
    d.text((26, 56), "front view, door off  ·  1:10", fill=PENCIL, font=font(14))
    label(d, "angle iron", (24, 296), (FX0 + 5, 306))
    d.text((24, 314), "40x40x4, welded", fill=INK, font=font(15))
    label(d, "soft brick", (24, 222), (FX0 + 20, 240))
    d.text((24, 240), "(next!)", fill=INK, font=font(15))
    label(d, "3 shelves on posts", (490, 258), (CX1 - 12, 266))
    label(d, "door hinge", (490, 174), (FX1 + 14, 183))
    label(d, "flat steel lid", (480, 74), (FX1 + 6, FY0 - 8))
    label(d, "casters", (490, 428), (FX1 + 10, FY1 + 50))
    dimension(d, (FX0, FY1 + 78), (FX1, FY1 + 78), "60 cm")
    dimension(d, (FX1 + 44, FY0 - 14), (FX1 + 44, FY1), "75 cm")
    d.text((W - 112, H - 24), "T. · Mar 2024", fill=PENCIL, font=font(13))
    return image


def encode(image: Image.Image) -> bytes:
    """A 32-colour palette PNG: a line drawing needs no more, and it keeps the file small."""
    out = io.BytesIO()
    image.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, "PNG", optimize=True)
    return out.getvalue()


if __name__ == "__main__":
    data = encode(draw())
    OUT.write_bytes(data)
    print(f"{OUT.name}: {len(data)} bytes, {W}×{H}")
