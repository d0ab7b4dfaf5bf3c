"""sitecustomize for a CPU-only SGLang parser env: lets the CUDA torchvision wheel import under CPU torch.

SGLang 0.5.17 imports `torchvision.io` at module level (sglang/srt/utils/common.py), so its argument parser
cannot be built without torchvision. PyPI and the local mirrors only carry CUDA builds of torchvision, whose
import fails under torch+cpu with "operator torchvision::nms does not exist" because the compiled ops are
missing. Declaring the two op schemas that torchvision registers unconditionally lets its pure-Python parts
import; nothing that needs the compiled ops is called by the parser.

Installed as `sitecustomize.py` in the 0.5.17 `--target` dir (see tox.ini [testenv:sglang]); it does nothing until
something imports torchvision, so it costs nothing at interpreter start.
"""

import importlib.abc
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return
        sys.meta_path.remove(self)  # once only; the real finders then load torchvision itself
        import torch

        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(library)  # a Library deregisters its ops when garbage-collected
        return  # None: the regular finders now load the real torchvision


_KEEP: list = []
sys.meta_path.insert(0, _DeclareTorchvisionOps())
