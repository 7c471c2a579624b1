"""A battery of misbehaving devices (fakes in Python, see fakedevice.py: real firmware cannot be
made to misbehave on demand): every dead, lying or babbling one ends in one clear DeviceError line
within seconds - never a traceback, an internal error, a wait over 30 s or a wrong result - and the
slow-but-healthy ones give the right results."""

from __future__ import annotations

import time

import pytest

from tinydeploy.errors import DeviceError, TinydeployError

from misbehaviours import SCENARIOS, exercise

#: The requirement: nothing waits this long for a device that is not computing.
GIVE_UP_S = 30.0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fake_misbehaving_device(scenario):
    device = scenario.start()
    start = time.monotonic()
    try:
        if scenario.expect is None:
            exercise(device.url, scenario.samples, scenario.input_bytes)
        else:
            with pytest.raises(TinydeployError) as info:
                exercise(device.url)
            err = info.value
            assert isinstance(err, DeviceError), repr(err)
            assert "\n" not in str(err) and err.fix, str(err)
            assert err.problem and __import__("re").search(scenario.expect, str(err)), str(err)
    finally:
        device.close()
    took = time.monotonic() - start
    assert took < GIVE_UP_S, f"{scenario.name}: {took:.1f} s"
