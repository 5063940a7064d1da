"""What an ArcFace-style ONNX model expects as input, read from its graph where it can be
and overridable in facelint.toml.

Two layouts are common: InsightFace's (112 px, 5-point template fit, (x − 127.5)/127.5,
RGB) and FACE01's (224 px dlib face chip with padding 0.1, ImageNet mean/std, RGB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "insightface": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    # The graph normalises its input itself: feed 0..255 pixels.
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
# Ops that, among a graph's first nodes, mean it normalises its own input (InsightFace's
# model zoo uses the same test).
_NORMALISING_OPS = {"Sub", "Mul", "Div"}
_FIRST_NODES = 8


@dataclass(frozen=True)
class ModelSpec:
    size: int
    alignment: str  # template | chip
    normalise: str  # a key of NORMALISATIONS
    channels: str  # rgb | bgr

    @property
    def mean(self) -> tuple[float, float, float]:
        return NORMALISATIONS[self.normalise][0]

    @property
    def std(self) -> tuple[float, float, float]:
        return NORMALISATIONS[self.normalise][1]


@dataclass(frozen=True)
class SpecOverrides:
    """Settings that replace what the graph says; empty/0 means "as detected"."""

    size: int = 0
    alignment: str = ""
    normalise: str = ""
    channels: str = ""


def detect_spec(
    input_shape: list, first_ops: list[str], overrides: SpecOverrides | None = None
) -> ModelSpec:
    """The spec of a model from its input shape ([N, 3, H, W]) and its first op types."""
    o = overrides or SpecOverrides()
    side = input_shape[-1] if input_shape else None
    size = o.size or (side if isinstance(side, int) and side > 0 else 112)
    # 112 px models are InsightFace's; FACE01's 224 px model takes a dlib chip.
    insightface = size <= 160
    alignment = o.alignment or ("template" if insightface else "chip")
    if o.normalise:
        normalise = o.normalise
    elif _NORMALISING_OPS & set(first_ops[:_FIRST_NODES]):
        normalise = "none"
    else:
        normalise = "insightface" if insightface else "imagenet"
    return ModelSpec(int(size), alignment, normalise, o.channels or "rgb")


def first_op_types(path: str | Path, limit: int = _FIRST_NODES) -> list[str]:
    """op_type of the graph's first nodes, read from the ONNX protobuf by hand (the `onnx`
    package is not a dependency; onnxruntime does not expose the graph)."""
    data = memoryview(Path(path).read_bytes())
    graph = _field(data, 7)  # ModelProto.graph
    if graph is None:
        return []
    ops: list[str] = []
    for tag, value in _fields(graph):
        if tag == 1 and isinstance(value, memoryview):  # GraphProto.node
            op = _field(value, 4)  # NodeProto.op_type
            ops.append(bytes(op).decode("utf-8", "replace") if op is not None else "")
            if len(ops) >= limit:
                break
    return ops


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview | int | None]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: memoryview | int | None
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"not an ONNX protobuf (wire type {wire})")
        yield number, value


def _field(data: memoryview, number: int) -> memoryview | None:
    for tag, value in _fields(data):
        if tag == number and isinstance(value, memoryview):
            return value
    return None
