"""A VLM's own processor, loaded so it also works on a CPU machine without torchvision.

transformers 5 builds Qwen2-VL/Qwen3-VL image and video processors on torchvision, and PyPI's torchvision
does not import beside the CPU torch build this project pins (feasibility.md, "A tiny VLM on this CPU"). The
image processor has a PIL twin (`Qwen2VLImageProcessorPil`) that reads the same preprocessor_config.json and
gives the same patches; only the video processor has none. So: `AutoProcessor` where it loads; otherwise the
model's processor class with the PIL image processor and no video processor (a video request then fails with
`VideoUnsupported`, named, instead of an ImportError deep in transformers).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("hf_server")

# processor_class in processor_config.json / preprocessor_config.json → its PIL image processor
PIL_IMAGE_PROCESSORS = {
    "Qwen2VLImageProcessor": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl:Qwen2VLImageProcessorPil",
}


class VideoUnsupported(RuntimeError):
    """This machine's processor has no video path (no torchvision)."""


def is_multimodal(model_dir: str | Path) -> bool:
    """True when the checkpoint ships an image processor config (preprocessor_config.json)."""
    return (Path(model_dir) / "preprocessor_config.json").is_file()


def _import(path: str):
    module, name = path.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def load_processor(model_dir: str | Path, tokenizer=None):
    """The model's processor (`__call__(text=, images=)`, `apply_chat_template`), or None for a text model."""
    model_dir = Path(model_dir)
    if not is_multimodal(model_dir):
        return None
    from transformers import AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(model_dir)
    except ImportError as exc:  # torchvision missing: rebuild it around the PIL image processor
        reason = str(exc).strip().splitlines()[0]
    config = json.loads((model_dir / "preprocessor_config.json").read_text())
    image_type = config.get("image_processor_type", "")
    if image_type not in PIL_IMAGE_PROCESSORS:
        raise ImportError(f"{model_dir}: {image_type or 'its image processor'} needs torchvision ({reason}) and has "
                          f"no PIL twin known here (known: {', '.join(PIL_IMAGE_PROCESSORS)})")  # fmt: skip
    image_processor = _import(PIL_IMAGE_PROCESSORS[image_type]).from_pretrained(model_dir)
    processor_class = _processor_class(model_dir, config)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)

    class WithoutVideo(processor_class):
        def check_argument_for_proper_class(self, name, arg):
            if arg is None:  # the video processor: absent on purpose
                return None
            return super().check_argument_for_proper_class(name, arg)

        def __call__(self, *args, videos=None, **kwargs):
            if videos is not None:
                raise VideoUnsupported(f"{model_dir}: no video processor on this machine ({reason})")
            return super().__call__(*args, **kwargs)

    log.info("%s: torchvision missing, using %s with %s", model_dir, processor_class.__name__, type(image_processor).__name__)
    return WithoutVideo(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                        chat_template=getattr(tokenizer, "chat_template", None))  # fmt: skip


def _processor_class(model_dir: Path, config: dict):
    import transformers

    name = config.get("processor_class")
    processor_config = model_dir / "processor_config.json"
    if not name and processor_config.is_file():
        name = json.loads(processor_config.read_text()).get("processor_class")
    if not name:
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type", "")
        name = {"qwen3_vl": "Qwen3VLProcessor", "qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                "qwen3_vl_moe": "Qwen3VLProcessor"}.get(model_type)  # fmt: skip
    if not name or not hasattr(transformers, name):
        raise ImportError(f"{model_dir}: cannot tell its processor class (processor_class {name!r})")
    return getattr(transformers, name)
