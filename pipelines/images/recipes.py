"""The config keys each recipe of an image engine reads (a config, and --set, may name only these;
config.load's family check), combined from what each part declares beside its code: the training
loop's (LOOP_KEYS, below), augmentation's (augment.KEYS), the feature stage's
(backbones.STAGE_KEYS) and each head's (heads.KEYS; heads.TRAINED read the loop's too).

A config record stays one flat dataclass (run.json, config hashes and resumed runs read it so);
an engine names its own common keys and its networks' own (cnn-small's width) and gets its
family_keys here.
"""

from __future__ import annotations

from typing import Callable

from . import augment, backbones, heads

# training.fit's settings as config keys (a network, or a head it trains)
LOOP_KEYS = {"epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
             "patience", "keep", "ema", "label_smoothing", "grad_clip", "drop_rate"}


def train_keys(network_keys: set[str]) -> set[str]:
    """recipe: train: the training loop's, augmentation's and the networks' own keys."""
    return LOOP_KEYS | augment.KEYS | network_keys


def head_keys() -> dict[str, set[str]]:
    """recipe: features, by head: the feature stage's, the head's, and the loop's for a trained head."""
    return {head: backbones.STAGE_KEYS | own | (LOOP_KEYS if head in heads.TRAINED else set())
            for head, own in heads.KEYS.items()}


def family_keys(common: set[str], network_keys: set[str]) -> Callable[[dict], tuple[str, set[str]]]:
    """config.load's family_keys: (the recipe as an error names it, the keys its config may hold)."""
    trained, by_head = common | train_keys(network_keys), {h: common | k for h, k in head_keys().items()}

    def family(values: dict) -> tuple[str, set[str]]:
        if values["recipe"] == "train":
            return "recipe: train", trained
        return f"recipe: features with head: {values['head']}", by_head[values["head"]]
    return family
