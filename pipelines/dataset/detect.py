"""Person detection and the pose check: one rule function for every backend, three backends.

`Detection` is one person: a box (x0, y0, x1, y1 in pixels of the upright decoded image), a score
and 17 COCO keypoints with a visibility score each. `box_verdict` and `pose_verdict` hold the rules
of METHOD.md section 5 (score > 0.85, shorter side >= 90 px, width/height in [1/4, 1/2]; >= 8
visible keypoints, >= 1 hip, >= 2 head keypoints); every backend goes through them.

Backends (`detect.backend`):
- `torchvision`: Keypoint R-CNN (ResNet-50 FPN, BSD-3 code, weights under their own terms), one model
  for boxes and keypoints; weights from a local file or s3:// (`random_init: true` only to test the
  code path: a random network finds nobody).
- `yolo`: Ultralytics YOLO11 + YOLO11-pose, the paper's detector. Optional extra
  (`pip install gadms[yolo]`); Ultralytics is AGPL-3.0, which binds whoever distributes it.
- `precomputed`: detections already in the input table (`persons` column: box, keypoints and
  score per person), from an earlier detection pass or from annotations.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from gadms.errors import UserError
from pipelines.dataset.config import DetectConfig, PoseConfig

log = logging.getLogger(__name__)
NUM_KEYPOINTS = 17
HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # nose, eyes, ears (COCO order)
HIP_KEYPOINTS = (11, 12)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((NUM_KEYPOINTS, 3), np.float32))  # x, y, vis

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def box_verdict(det: Detection, cfg: DetectConfig) -> str | None:
    """None when the box may be a sample; else why not (low_score, too_small, bad_aspect)."""
    if not det.score > cfg.min_score:
        return "low_score"
    if min(det.width, det.height) < cfg.min_short_side:
        return "too_small"
    if det.height <= 0 or not cfg.aspect[0] <= det.width / det.height <= cfg.aspect[1]:
        return "bad_aspect"
    return None


def visible_keypoints(det: Detection, threshold: float) -> np.ndarray:
    return det.keypoints[:, 2] > threshold


def pose_verdict(det: Detection, cfg: PoseConfig, threshold: float) -> str | None:
    """None when the keypoints pass; else which rule failed (keypoints, hips, head)."""
    visible = visible_keypoints(det, threshold)
    if int(visible.sum()) < cfg.min_keypoints:
        return "keypoints"
    if int(visible[list(HIP_KEYPOINTS)].sum()) < cfg.min_hips:
        return "hips"
    if int(visible[list(HEAD_KEYPOINTS)].sum()) < cfg.min_head:
        return "head"
    return None


class Detector(Protocol):
    name: str
    keypoint_threshold: float

    def detect(self, images: Sequence[Image.Image], rows: Sequence[dict[str, Any]]) -> list[list[Detection]]:
        """Person detections (with keypoints) for each image; `rows` carry precomputed ones."""
        ...


class PrecomputedDetector:
    """Detections from the input row: [{box: [x0,y0,x1,y1], keypoints: [51 floats], score?}, ...].

    Keypoint visibility uses the COCO convention (2 visible, 1 labelled but hidden, 0 absent) unless
    `keypoint_threshold` says otherwise: a keypoint counts when its third value > threshold (1.5)."""

    name = "precomputed"

    def __init__(self, cfg: DetectConfig, column: str) -> None:
        self.column = column
        self.default_score = cfg.default_score
        self.keypoint_threshold = cfg.keypoint_threshold if cfg.keypoint_threshold > 0 else 1.5

    def detect(self, images: Sequence[Image.Image], rows: Sequence[dict[str, Any]]) -> list[list[Detection]]:
        return [self._row(row) for row in rows]

    def _row(self, row: dict[str, Any]) -> list[Detection]:
        persons = row.get(self.column)
        if persons is None:
            raise UserError(f"row {row.get('id')!r}: no {self.column!r} column for the precomputed detector")
        out = []
        for person in persons:
            score = person.get("score", self.default_score)
            if score is None:
                raise UserError(f"row {row.get('id')!r}: a person has no score and detect.default_score is unset")
            kp = np.asarray(person.get("keypoints") or np.zeros(NUM_KEYPOINTS * 3), dtype=np.float32)
            out.append(Detection(tuple(float(v) for v in person["box"]), float(score), kp.reshape(NUM_KEYPOINTS, 3)))
        return out


def resolve_device(device: str, num_gpus: float) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


def load_state_dict(uri: str) -> dict[str, Any]:
    """A torch state dict from a local file or s3:// (read through gadms.storage, no credentials in code)."""
    import torch

    from gadms import storage

    return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)


class TorchvisionDetector:
    """torchvision Keypoint R-CNN: boxes, scores and 17 keypoints from one model."""

    name = "torchvision-keypointrcnn"

    def __init__(self, cfg: DetectConfig) -> None:
        import torch
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        if not (cfg.weights or cfg.random_init):
            raise UserError("detect.weights: the torchvision detector needs a state dict (file or s3://)")
        torch.manual_seed(0)
        self.model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=cfg.min_size,
                                               box_detections_per_img=cfg.max_people)  # fmt: skip
        if cfg.weights:
            self.model.load_state_dict(load_state_dict(cfg.weights))
        else:
            log.warning("detect.random_init: Keypoint R-CNN has RANDOM weights (code-path test only)")
        self.device = resolve_device(cfg.device, cfg.num_gpus)
        self.model.to(self.device).eval()
        # torchvision keypoint scores are logits; > 0 is the usual 'visible' cut
        self.keypoint_threshold = cfg.keypoint_threshold

    def detect(self, images: Sequence[Image.Image], rows: Sequence[dict[str, Any]]) -> list[list[Detection]]:
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        tensors = [pil_to_tensor(im).float().div(255).to(self.device) for im in images]
        with torch.inference_mode():
            outputs = self.model(tensors) if tensors else []
        result = []
        for out in outputs:
            labels = out["labels"].cpu().numpy()
            boxes, scores = out["boxes"].cpu().numpy(), out["scores"].cpu().numpy()
            kps, kp_scores = out["keypoints"].cpu().numpy(), out["keypoints_scores"].cpu().numpy()
            people = []
            for i in np.flatnonzero(labels == 1):  # COCO category 1: person
                kp = np.concatenate([kps[i, :, :2], kp_scores[i, :, None]], axis=1).astype(np.float32)
                people.append(Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), kp))
            result.append(people)
        return result


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def attach_keypoints(boxes: Sequence[tuple[tuple[float, float, float, float], float]],
                     poses: Sequence[tuple[tuple[float, float, float, float], np.ndarray]],
                     min_iou: float = 0.5) -> list[Detection]:  # fmt: skip
    """Give each detector box the keypoints of the pose instance that overlaps it most (IoU >= min_iou).

    Greedy by descending IoU, one pose per box; boxes without a match get no visible keypoints."""
    pairs = sorted(((box_iou(b, p), i, j) for i, (b, _) in enumerate(boxes) for j, (p, _) in enumerate(poses)),
                   reverse=True)  # fmt: skip
    taken_boxes: dict[int, int] = {}
    taken_poses: set[int] = set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i not in taken_boxes and j not in taken_poses:
            taken_boxes[i] = j
            taken_poses.add(j)
    out = []
    for i, (box, score) in enumerate(boxes):
        kp = poses[taken_boxes[i]][1] if i in taken_boxes else np.zeros((NUM_KEYPOINTS, 3), np.float32)
        out.append(Detection(tuple(float(v) for v in box), float(score), np.asarray(kp, np.float32)))
    return out


class YoloDetector:
    """Ultralytics YOLO11 (boxes) + YOLO11-pose (keypoints), as in the paper. AGPL-3.0, optional."""

    name = "ultralytics-yolo11"

    def __init__(self, cfg: DetectConfig) -> None:
        try:
            from ultralytics import YOLO
        except ImportError:
            raise UserError(
                "detect.backend: yolo needs Ultralytics (AGPL-3.0), not installed: pip install 'gadms[yolo]'"
            ) from None
        if not cfg.weights or not cfg.pose_weights:
            raise UserError("detect.weights and detect.pose_weights: the yolo backend needs both model files")
        self.detector = YOLO(_local_copy(cfg.weights))
        self.pose = YOLO(_local_copy(cfg.pose_weights))
        self.device = resolve_device(cfg.device, cfg.num_gpus)
        self.keypoint_threshold = cfg.keypoint_threshold if cfg.keypoint_threshold > 0 else 0.5
        self.max_people = cfg.max_people

    def detect(self, images: Sequence[Image.Image], rows: Sequence[dict[str, Any]]) -> list[list[Detection]]:
        if not images:
            return []
        kwargs = {"device": self.device, "verbose": False, "max_det": self.max_people}
        boxes_out = self.detector.predict(list(images), classes=[0], **kwargs)
        poses_out = self.pose.predict(list(images), **kwargs)
        result = []
        for det, pose in zip(boxes_out, poses_out):
            boxes = [(tuple(b), float(s)) for b, s in zip(det.boxes.xyxy.cpu().numpy(), det.boxes.conf.cpu().numpy())]
            poses = []
            if pose.keypoints is not None and len(pose.boxes):
                xy = pose.keypoints.xy.cpu().numpy()
                conf = pose.keypoints.conf.cpu().numpy() if pose.keypoints.conf is not None else np.ones(xy.shape[:2])
                for b, k, c in zip(pose.boxes.xyxy.cpu().numpy(), xy, conf):
                    poses.append((tuple(b), np.concatenate([k, c[:, None]], axis=1).astype(np.float32)))
            result.append(attach_keypoints(boxes, poses))
        return result


def _local_copy(uri: str) -> str:
    """Ultralytics loads from a path: copy s3:// weights to a temporary file first."""
    from gadms import storage

    if not storage.is_s3(uri):
        return uri
    import os
    import tempfile

    handle, path = tempfile.mkstemp(suffix="-" + uri.rsplit("/", 1)[-1])
    with os.fdopen(handle, "wb") as out:
        out.write(storage.read_bytes(uri))
    return path


def build_detector(cfg: DetectConfig, persons_column: str) -> Detector:
    if cfg.backend == "precomputed":
        return PrecomputedDetector(cfg, persons_column)
    if cfg.backend == "torchvision":
        return TorchvisionDetector(cfg)
    return YoloDetector(cfg)


def crop_box(det: Detection, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Integer crop rectangle: the box grown by `margin` of its size per side, clipped to the image."""
    w, h = size
    dx, dy = det.width * margin, det.height * margin
    x0, y0 = max(0, int(np.floor(det.box[0] - dx))), max(0, int(np.floor(det.box[1] - dy)))
    x1, y1 = min(w, int(np.ceil(det.box[2] + dx))), min(h, int(np.ceil(det.box[3] + dy)))
    return x0, y0, x1, y1
