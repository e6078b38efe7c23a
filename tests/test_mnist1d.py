"""MNIST-1D: the arrays are the package's, the cache is keyed by the generator arguments, the published models
have their published sizes, and a run trains end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.data import load_data
from experiments.data.mnist1d import cache_path, generator_args, load_arrays
from experiments.models import create_model


def test_the_arrays_are_exactly_what_the_package_generates_and_the_cache_returns_them(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    expected = make_dataset(get_dataset_args())
    first = load_arrays(tmp_path)
    path = cache_path(tmp_path, generator_args())
    assert path.is_file()
    state = np.random.get_state()[1].copy()
    cached = load_arrays(tmp_path)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left alone
    for key in ("x", "y", "x_test", "y_test"):
        assert np.array_equal(first[key], expected[key]) and np.array_equal(cached[key], expected[key])
    assert first["x"].shape == (4000, 40) and first["x_test"].shape == (1000, 40)


def test_other_arguments_are_another_cache_file_and_a_corrupt_file_is_regenerated(tmp_path):
    published = load_arrays(tmp_path)
    tuning = load_arrays(tmp_path, {"seed": 43, "num_samples": 500})
    assert tuning["x"].shape == (400, 40) and not np.array_equal(tuning["x"][:10], published["x"][:10])
    path = cache_path(tmp_path, generator_args({"seed": 43, "num_samples": 500}))
    path.write_bytes(b"truncated")
    assert np.array_equal(load_arrays(tmp_path, {"seed": 43, "num_samples": 500})["x"], tuning["x"])


def test_streams_serve_float_sequences_with_holdout_noise_and_aux(tmp_path):
    data = load_data("mnist1d", tmp_path, batch_size=100, holdout=0.1, label_noise=0.4, seed=0,
                     options={"num_samples": 1000})
    assert data.image_shape == (1, 40) and data.val.num_samples == 80 and data.train.num_samples == 720
    images, labels, _ = next(data.train.batches(1))
    assert images.shape == (100, 1, 40) and images.dtype == torch.float32
    changed = (data.train.labels != data.train.clean_labels).float().mean()
    assert 0.3 < float(changed) < 0.5
    assert data.aux_images("val", 10, seed=0).shape == (10, 1, 40)
    with pytest.raises(ValueError, match="has no option"):
        load_data("mnist1d", tmp_path, batch_size=10, options={"sed": 1})
    with pytest.raises(ValueError, match="takes none"):
        load_data("digits", tmp_path, batch_size=10, options={"seed": 1})


@pytest.mark.parametrize(("name", "count"), [("mnist1d_cnn", 5_210), ("mnist1d_mlp", 78_858)])
def test_the_published_models_have_the_published_parameter_counts(name, count):
    model = create_model(name, 10, in_chans=1, image_size=40)
    assert sum(p.numel() for p in model.parameters()) == count
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_the_resnet_has_batchnorm_neurons_that_neve_measures():
    import neve

    model = create_model("mnist1d_resnet", 10, in_chans=1, image_size=40)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    monitor = neve.VelocityMonitor(model, neve.gaussian_aux(8, (1, 40), seed=0))
    report = monitor.measure()
    assert any("bn" in name for name in report.layers)
