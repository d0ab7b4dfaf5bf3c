"""A VLM's own processor, loaded so it also works on a CPU machine without torchvision.

transformers 5 builds Qwen2-VL/Qwen3-VL image and video processors on torchvision, and PyPI's torchvision
does not import beside the CPU torch build this project pins (feasibility.md, "A tiny VLM on this CPU"). The
image processor has a PIL twin (`Qwen2VLImageProcessorPil`) that reads the same preprocessor_config.json and
gives the same patches; the video processor runs through `hf_video_input.torch_only_video_processor` (its
three torchvision calls replaced by the torch operations they perform). So: `AutoProcessor` where it loads;
otherwise the model's processor class with the PIL image processor and that video processor. A checkpoint whose
video processor is not known here gets none (a video request then fails with `VideoUnsupported`, named, instead
of an ImportError deep in transformers).
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
# video_processor_type in video_preprocessor_config.json → the class whose resize `torch_only_video_processor` mirrors
TORCH_ONLY_VIDEO_PROCESSORS = {
    "Qwen3VLVideoProcessor": "transformers.models.qwen3_vl.video_processing_qwen3_vl:Qwen3VLVideoProcessor",
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
        raise ImportError(
            f"{model_dir}: {image_type or 'its image processor'} needs torchvision ({reason}) and has "
            f"no PIL twin known here (known: {', '.join(PIL_IMAGE_PROCESSORS)})"
        )
    image_processor = _import(PIL_IMAGE_PROCESSORS[image_type]).from_pretrained(model_dir)
    processor_class = _processor_class(model_dir, config)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
    video_processor = _torch_only_video_processor(model_dir)

    class Rebuilt(processor_class):
        def check_argument_for_proper_class(self, name, arg):
            if name == "video_processor":  # None, or a subclass transformers' lookup cannot see without torchvision
                return None
            return super().check_argument_for_proper_class(name, arg)

        def __call__(self, *args, videos=None, **kwargs):
            if videos is not None and self.video_processor is None:
                raise VideoUnsupported(f"{model_dir}: no video processor on this machine ({reason})")
            return super().__call__(*args, videos=videos, **kwargs)

    log.info(
        "%s: torchvision missing, using %s with %s and %s",
        model_dir,
        processor_class.__name__,
        type(image_processor).__name__,
        type(video_processor).__name__ if video_processor else "no video processor",
    )
    return Rebuilt(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=getattr(tokenizer, "chat_template", None),
    )


def _torch_only_video_processor(model_dir: Path):
    from hf_engine.video_input import torch_only_video_processor

    config_path = model_dir / "video_preprocessor_config.json"
    if not config_path.is_file():
        return None
    known = TORCH_ONLY_VIDEO_PROCESSORS.get(json.loads(config_path.read_text()).get("video_processor_type", ""))
    return torch_only_video_processor(_import(known)).from_pretrained(model_dir) if known else None


def _processor_class(model_dir: Path, config: dict):
    import transformers

    name = config.get("processor_class")
    processor_config = model_dir / "processor_config.json"
    if not name and processor_config.is_file():
        name = json.loads(processor_config.read_text()).get("processor_class")
    if not name:
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type", "")
        name = {
            "qwen3_vl": "Qwen3VLProcessor",
            "qwen2_vl": "Qwen2VLProcessor",
            "qwen2_5_vl": "Qwen2_5_VLProcessor",
            "qwen3_vl_moe": "Qwen3VLProcessor",
        }.get(model_type)
    if not name or not hasattr(transformers, name):
        raise ImportError(f"{model_dir}: cannot tell its processor class (processor_class {name!r})")
    return getattr(transformers, name)
