"""The one place that knows every encoder and picks a store's from the settings.

`model = "dlib"` (default) or `"arcface"` (the packaged InsightFace model); a non-empty
`onnx_model` is the user's own ArcFace-style file and implies arcface. Everything else in
facelint asks this module rather than looking at the settings' model fields.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config import ConfigError, Settings
from daemon.encoders import package
from daemon.encoders.base import Encoder, arcface_model_id, dlib_model_id
from daemon.encoders.spec import SpecOverrides

DLIB = "dlib"
ARCFACE = "arcface"


def kind(settings: Settings) -> str:
    """Which encoder the settings pick."""
    return ARCFACE if settings.onnx_model or settings.model == ARCFACE else DLIB


def detector(settings: Settings) -> str:
    """The detector the encoder will use: hog, cnn, scrfd, or auto (dlib decides at load:
    CNN where it has CUDA)."""
    if kind(settings) == DLIB:
        if settings.detector == "scrfd":
            raise ConfigError("detector 'scrfd' is for model = 'arcface'; dlib uses hog or cnn")
        return settings.detector
    if settings.detector != "auto":
        return settings.detector
    # SCRFD comes with the packaged model; with only a user's file and no package, dlib.
    return "scrfd" if package.available() else "auto"


def model_id(settings: Settings) -> str:
    """The id stored with every embedding the settings' encoder writes; loads no model."""
    if kind(settings) == DLIB:
        return dlib_model_id(settings.num_jitters)
    det = detector(settings)
    weights = (
        f"onnx:{Path(settings.onnx_model).name}"
        if settings.onnx_model
        else Path(package.EMBEDDER).stem
    )
    return arcface_model_id(weights, "dlib" if det in ("auto", "hog", "cnn") else det)


def model_is_calibrated(model: str) -> bool:
    """ArcFace's raw cosine already means "same person" near 0.4 (centred on 0 for
    different people); dlib's needs the data set's own calibration. By the model id found
    in a store (during a switch the store serves a
    model the settings no longer name)."""
    return model.startswith(arcface_model_id("", "").split(":")[0] + ":")


def check(settings: Settings) -> None:
    """Raise ConfigError (or package.ModelUnavailable) now, in the caller's process, for
    settings no worker could build an encoder from; loads no model."""
    detector(settings)
    if kind(settings) == DLIB:
        return
    if settings.onnx_model:
        if not Path(settings.onnx_model).expanduser().is_file():
            raise ConfigError(f"setting 'onnx_model': {settings.onnx_model} is not a file")
    else:
        package.model_file(package.EMBEDDER)
    if detector(settings) == "scrfd":
        package.model_file(package.DETECTOR)


def build(settings: Settings, threads: int = 1) -> Encoder:
    """The encoder, its models loaded: call it in the process that will encode."""
    if kind(settings) == DLIB:
        from daemon.encoders.dlib import DlibEncoder

        return DlibEncoder(
            settings.num_jitters,
            detector(settings),
            settings.detect_max_side,
            settings.max_faces,
            settings.min_face_px,
        )
    from daemon.encoders.arcface import ArcFaceEncoder

    det = detector(settings)
    if settings.onnx_model:
        path = Path(settings.onnx_model).expanduser()
        if not path.is_file():
            raise ConfigError(f"setting 'onnx_model': {path} is not a file")
        model_path = str(path)
    else:
        model_path = str(package.model_file(package.EMBEDDER))
    scrfd = str(package.model_file(package.DETECTOR)) if det == "scrfd" else ""
    overrides = SpecOverrides(
        settings.onnx_input_size,
        settings.onnx_alignment,
        settings.onnx_normalise,
        settings.onnx_channels,
    )
    return ArcFaceEncoder(
        model_path,
        model_id(settings),
        det,
        scrfd,
        settings.detect_max_side,
        settings.max_faces,
        settings.min_face_px,
        overrides,
        threads,
    )
