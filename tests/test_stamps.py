"""The one rule of the per-call caches (mlff.stamps): a stamp holds while its tensor is the
same object, with the same memory and no in-place edit since."""

import torch

from mlff.stamps import TensorStamps, is_current, tensor_stamp


def test_a_stamp_holds_until_an_in_place_edit():
    t = torch.arange(4.0)
    stamp = tensor_stamp(t)
    assert is_current(stamp, t)
    t.add_(1.0)
    assert not is_current(stamp, t)
    assert is_current(tensor_stamp(t), t)


def test_a_stamp_sees_another_tensor_with_equal_values():
    t = torch.arange(4.0)
    assert not is_current(tensor_stamp(t), t.clone())
    assert not is_current(None, t)


def test_a_stamp_sees_a_dtype_round_trip_of_a_parameter():
    """module.float() / .double() keep a parameter's object and version but swap its memory:
    the stamp must not hold, even when the round trip lands the values where they were."""
    layer = torch.nn.Linear(3, 2).double()
    weight = layer.weight
    stamp = tensor_stamp(weight)
    layer.float()
    layer.double()
    assert layer.weight is weight and weight._version == stamp[1]
    assert not is_current(stamp, weight)


def test_inference_tensors_are_never_current():
    with torch.inference_mode():
        t = torch.ones(3)
    assert not is_current(tensor_stamp(t), t)


def test_tensor_stamps_follow_every_place():
    """Several tensors checked together: an in-place edit of any, a place that gets another
    tensor, and a parameter's dtype round trip each end the stamps."""
    layer = torch.nn.Linear(3, 2).double()
    layer.register_buffer("extra", torch.ones(2, dtype=torch.float64))
    places = [(layer._parameters, "weight"), (layer._buffers, "extra")]
    stamps = TensorStamps(places)
    assert stamps.current()
    with torch.no_grad():
        layer.extra.add_(1.0)
    assert not stamps.current()
    stamps = TensorStamps(places)
    layer.extra = torch.ones(2, dtype=torch.float64)  # equal values, another tensor
    assert not stamps.current()
    stamps = TensorStamps(places)
    layer.float()
    layer.double()
    assert not stamps.current()
    assert TensorStamps(places).current()


def test_tensor_stamps_of_inference_tensors_are_never_current():
    with torch.inference_mode():
        t = torch.ones(3)
    assert not TensorStamps([({"t": t}, "t")]).current()
