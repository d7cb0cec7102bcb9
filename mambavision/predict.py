"""``python -m mambavision predict IMAGE --model NAME --checkpoint FILE``: the top-k ImageNet-1k
classes of an image, preprocessed exactly as the variant's released weights expect.

imagenet_classes.txt holds the 1000 ImageNet-1k class descriptions in index order (WordNet
lemmas, as distributed with timm's ImageNetInfo)."""

from __future__ import annotations

from importlib import resources

import torch

from .configs import VARIANTS
from .factory import create_model
from .inference import optimize_for_inference


def imagenet_classes() -> list[str]:
    text = resources.files("mambavision").joinpath("imagenet_classes.txt").read_text()
    return text.splitlines()


def preprocess(image, cfg: dict) -> torch.Tensor:
    """A PIL image -> (1, 3, size, size) normalised tensor, following pretrained_cfg: bicubic
    resize to size / crop_pct (shorter side for 'center', both sides for 'squash'), then a
    center crop of size x size."""
    from PIL import Image

    size = cfg["input_size"][1]
    scaled = int(size / cfg["crop_pct"])
    image = image.convert("RGB")
    if cfg["crop_mode"] == "squash":
        image = image.resize((scaled, scaled), Image.BICUBIC)
    else:
        w, h = image.size
        ratio = scaled / min(w, h)
        image = image.resize((max(scaled, round(w * ratio)), max(scaled, round(h * ratio))),
                             Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    x = x.view(size, size, 3).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def predict(image_path: str, model_name: str, checkpoint: str, topk: int = 5,
            device: str = "cpu", optimize: bool = False) -> list[tuple[str, float]]:
    """[(class description, probability)] for the topk classes; optimize runs
    optimize_for_inference's model (fp32, the same function)."""
    from PIL import Image

    with Image.open(image_path) as image:  # read the image first: it fails faster
        x = preprocess(image, VARIANTS[model_name].pretrained_cfg()).to(device)
    model = create_model(model_name, checkpoint_path=checkpoint).eval().to(device)
    if optimize:
        model = optimize_for_inference(model)
    with torch.inference_mode():
        probs = model(x).float().softmax(-1)[0]
    top = probs.topk(topk)
    names = imagenet_classes()
    return [(names[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]
