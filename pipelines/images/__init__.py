"""Competitions from a spec file, images kind: image classification (binary or multiclass) from a
labels file and folders of `<id>.<ext>` images.

spec.py reads the YAML (`kind: images`); data.py checks the labels, image folders and Kaggle's
template and caches decoded images (cache.py: the decoder and cache Dogs vs. Cats shares); models.py
sizes networks for the classes. networks.py (the network registry: LeNets, the compact ResNet,
EfficientNet backbones), weights.py (timm backbones with ImageNet or local weights, their
normalisation), backbones.py (a recipe's frozen backbones, `also`, and where a backbone is cut for
features), onnx_export.py (a backbone's ONNX export, its INT8 copy, ONNX Runtime sessions),
extraction.py (frozen features and block activations, fast on a CPU), features.py (the cached
frozen-feature stage, flip TTA and `train_flip`), heads.py (the heads on frozen features and their fitting, binary and
multiclass), recipes.py (the config keys each recipe reads), augment.py (augmentation and
prefetching), fitting.py (a fold's network trained and predicting, data-parallel under torchrun) and
device_cache.py (images held on the GPU) serve every image competition, Dogs vs. Cats included; task.py trains k folds (a CNN from scratch, or heads on frozen EfficientNet-Lite
features; configs in configs/images/), predicts from the fold checkpoints and writes validated
submissions; cli.ImageSpecVerbs(spec) holds the verbs, and competition.from_file(path) the Competition
that pipelines/specs.py registers for `kind: images`; digits.py lays scikit-learn's
handwritten digits out as a competition and measures the configs on them.
"""
