import numpy as np
import pytest

from edge_deeplab.runtime.metrics import ConfusionMatrix


def test_counts_rows_ground_truth_columns_prediction():
    label = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    cm = ConfusionMatrix(2).update(pred, label)
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
    # class 0: tp 1, union 2; class 1: tp 2, union 3
    np.testing.assert_allclose(cm.iou(), [1 / 2, 2 / 3])
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert cm.pixel_accuracy() == pytest.approx(3 / 4)


def test_ignore_pixels_are_not_counted():
    label = np.array([[0, 255, 1, 255]])
    pred = np.array([[0, 1, 1, 0]])
    cm = ConfusionMatrix(2).update(pred, label)
    assert cm.matrix.sum() == 2
    assert cm.miou() == 1.0


def test_streaming_equals_one_big_update():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (5, 7, 9))
    labels[rng.random(labels.shape) < 0.1] = 255
    preds = rng.integers(0, 4, (5, 7, 9))
    streamed = ConfusionMatrix(4)
    for p, l in zip(preds, labels):
        streamed.update(p, l)
    whole = ConfusionMatrix(4).update(preds, labels)
    np.testing.assert_array_equal(streamed.matrix, whole.matrix)
    halves = ConfusionMatrix(4).update(preds[:2], labels[:2]).merge(ConfusionMatrix(4).update(preds[2:], labels[2:]))
    np.testing.assert_array_equal(halves.matrix, whole.matrix)


def test_matches_a_direct_iou_computation():
    rng = np.random.default_rng(2)
    label = rng.integers(0, 3, (40, 40))
    pred = np.where(rng.random((40, 40)) < 0.7, label, rng.integers(0, 3, (40, 40)))
    cm = ConfusionMatrix(3).update(pred, label)
    for c in range(3):
        inter = np.sum((pred == c) & (label == c))
        union = np.sum((pred == c) | (label == c))
        assert cm.iou()[c] == pytest.approx(inter / union)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(3).update(np.array([0, 1]), np.array([0, 1]))
    assert np.isnan(cm.iou()[2])
    assert cm.miou() == 1.0
    d = cm.to_dict(["a", "b", "c"])
    assert d["iou"] == {"a": 1.0, "b": 1.0, "c": None}
    assert d["pixels"] == 2


def test_out_of_range_values_and_shape_mismatch_raise():
    with pytest.raises(ValueError, match="label value 3"):
        ConfusionMatrix(3).update(np.array([0]), np.array([3]))
    with pytest.raises(ValueError, match="predicted class 5"):
        ConfusionMatrix(3).update(np.array([5]), np.array([0]))
    with pytest.raises(ValueError, match="differ in shape"):
        ConfusionMatrix(3).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_empty_matrix_has_nan_scores():
    cm = ConfusionMatrix(2)
    assert np.isnan(cm.miou()) and np.isnan(cm.pixel_accuracy())
