"""Real validation images come from the checkpoint's dataset, or a one-line reason why not."""

from __future__ import annotations

from mtlexport.data.samples import real_images


def test_synthetic_images_resized_to_export_size() -> None:
    images, note = real_images({"name": "synthetic", "height": 64, "width": 64, "num_val": 8}, 3, 32, 32)
    assert note is None and images is not None
    assert images.shape == (3, 3, 32, 32) and images.dtype.is_floating_point
    assert float(images.std()) > 0.1  # normalised real images, not zeros


def test_unavailable_data_degrades_to_a_reason() -> None:
    images, note = real_images({"name": "nyuv2", "root": "/nonexistent/nyu"}, 2, 32, 32)
    assert images is None and "/nonexistent/nyu" in note and "\n" not in note
    assert real_images(None, 2, 32, 32) == (None, "the checkpoint has no data config")
    images, note = real_images({"name": "bogus"}, 2, 32, 32)
    assert images is None and "unknown dataset" in note
