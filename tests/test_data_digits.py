import numpy as np
import pytest

from gatscale.data.digits import load_digits_images


def test_digits_images_have_the_promised_format():
    images, labels = load_digits_images(16)
    assert images.shape == (1797, 3, 16, 16) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    assert (images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all()


def test_digits_at_native_resolution_are_the_sklearn_values_scaled():
    from sklearn.datasets import load_digits
    images, labels = load_digits_images(8)
    d = load_digits()
    np.testing.assert_array_equal(images[:, 0], np.round(d.images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(labels, d.target)


def test_digits_rejects_a_bad_resolution():
    with pytest.raises(ValueError, match="resolution"):
        load_digits_images(0)
