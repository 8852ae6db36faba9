"""A contact sheet: a PNG grid of sample people with their captions, to see what the data looks like.

One row per identity, one cell per photo: the crop and its captions, injected noise in red.
"""

from __future__ import annotations

import io
import re

from PIL import Image, ImageDraw, ImageFont

from gadms.synth.noise import NoisyCaption
from gadms.synth.world import PersonImage

CELL_IMAGE_HEIGHT = 240
TEXT_WIDTH = 330
PAD = 10
FONT_SIZE = 13
INK, NOISE_INK, BACKGROUND = (20, 20, 20), (200, 0, 0), (250, 250, 248)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)  # Pillow's bundled font: identical output on every machine


def _words(caption: NoisyCaption) -> list[tuple[str, bool]]:
    """(word, is_noise) in order; a word is noise when it overlaps an injected span."""
    spans = [(s.char_start, s.char_end) for s in caption.spans]
    words = re.finditer(r"\S+", caption.text)
    return [(m.group(), any(m.start() < e and m.end() > s for s, e in spans)) for m in words]


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _draw_caption(
    draw: ImageDraw.ImageDraw, caption: NoisyCaption, x: int, y: int, width: int, font: Font
) -> int:
    """Word-wrapped caption at (x, y); returns the y below it."""
    space = draw.textlength(" ", font=font)
    line_height = FONT_SIZE + 4
    cx = x
    for word, noise in _words(caption):
        length = draw.textlength(word, font=font)
        if cx > x and cx + length > x + width:
            cx, y = x, y + line_height
        draw.text((cx, y), word, fill=NOISE_INK if noise else INK, font=font)
        cx += length + space
    return y + line_height


def contact_sheet(rows: list[list[PersonImage]], title: str) -> Image.Image:
    """`rows[i]` are photos of identity i (any number each); returns the sheet as an RGB image."""
    font, title_font = _font(FONT_SIZE), _font(FONT_SIZE + 5)
    per_row = max((len(r) for r in rows), default=1)
    thumbs = [[Image.open(io.BytesIO(p.data)).convert("RGB") for p in row] for row in rows]
    scaled_widths = [round(t.width * CELL_IMAGE_HEIGHT / t.height) for row in thumbs for t in row]
    thumb_width = max(scaled_widths, default=90)
    cell_width = thumb_width + PAD + TEXT_WIDTH + 2 * PAD
    row_height = CELL_IMAGE_HEIGHT + 2 * PAD
    header = 3 * PAD + FONT_SIZE + 5
    sheet = Image.new("RGB", (PAD + per_row * cell_width, header + len(rows) * row_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), title, fill=INK, font=title_font)
    for r, (row, row_thumbs) in enumerate(zip(rows, thumbs)):
        top = header + r * row_height
        for c, (photo, thumb) in enumerate(zip(row, row_thumbs)):
            left = PAD + c * cell_width
            size = (round(thumb.width * CELL_IMAGE_HEIGHT / thumb.height), CELL_IMAGE_HEIGHT)
            sheet.paste(thumb.resize(size, Image.Resampling.BILINEAR), (left, top))
            text_x = left + thumb_width + PAD
            label = f"id {photo.person.pid}, view {photo.view} ({photo.width}x{photo.height})"
            draw.text((text_x, top), label, fill=(90, 90, 90), font=font)
            y = top + FONT_SIZE + 8
            for k, caption in enumerate(photo.captions, 1):
                draw.text((text_x, y), f"{k}.", fill=(90, 90, 90), font=font)
                y = _draw_caption(draw, caption, text_x + 18, y, TEXT_WIDTH - 18, font) + 4
        rule_y = top + row_height - PAD // 2
        draw.line((PAD, rule_y, sheet.width - PAD, rule_y), fill=(215, 215, 215))
    return sheet


def contact_sheet_png(rows: list[list[PersonImage]], title: str) -> bytes:
    buffer = io.BytesIO()
    contact_sheet(rows, title).save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()
