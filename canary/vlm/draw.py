"""Pillow drawings for the VLM canary: flat-coloured shapes on a white square, described by plain data.

A `Scene` is a tuple of `Shape`s with integer geometry, so the same description always renders the same
pixels; the held-out set is kept apart from training by these descriptions (see `tasks.example_key`).

Why 84 px: SGLang 0.5.17 first resizes every image to a multiple of 28 (its Qwen-VL `resize_image`, factor 28,
at least 56x56), and the HF processor then resizes to a multiple of patch 16 x merge 2 = 32. An 84 px image
passes SGLang's step unchanged and becomes 96 px (3x3 merged tokens) in the processor on both engines, so both
see one resize of the same picture. (A 96 px drawing would be resized twice on SGLang, 96 -> 84 -> 96.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass

IMAGE_SIZE = 84
BACKGROUND = (255, 255, 255)
BLANK_GREY = (128, 128, 128)

# Far apart in RGB so a bicubic resize never moves one towards another. The names (like the shape kinds) start
# with different letters, so the tokens that tell one option from another come first.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 70, 230),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (250, 135, 10),
}
SHAPE_KINDS = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPE_KINDS
    colour: str  # a key of COLOURS
    cx: int  # centre, pixels from the left
    cy: int  # centre, pixels from the top
    radius: int  # half the bounding box side

    def box(self) -> tuple[int, int, int, int]:
        return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)

    def overlaps(self, other: Shape, margin: int = 3) -> bool:
        gap = self.radius + other.radius + margin
        return abs(self.cx - other.cx) < gap and abs(self.cy - other.cy) < gap


Scene = tuple[Shape, ...]


def draw_shape(draw, shape: Shape) -> None:
    fill = COLOURS[shape.colour]
    x0, y0, x1, y1 = shape.box()
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape.kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(shape.cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape.kind == "diamond":
        draw.polygon([(shape.cx, y0), (x1, shape.cy), (shape.cx, y1), (x0, shape.cy)], fill=fill)
    else:
        from harness.errors import unknown_choice

        raise unknown_choice("shape kind", shape.kind, SHAPE_KINDS)


def render(scene: Scene, size: int = IMAGE_SIZE):
    """The scene as an RGB PIL image of `size` x `size` pixels."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene:
        draw_shape(draw, shape)
    return image


def blank_like(image):
    """A uniform grey image of the same size: the control that shows the answers come from the pixels."""
    from PIL import Image

    return Image.new("RGB", image.size, BLANK_GREY)


def png_bytes(image) -> bytes:
    """Deterministic PNG bytes (no metadata, fixed compression), as stored in the MMMU-schema parquet."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()
