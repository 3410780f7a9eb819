"""The adaptive retry backoff on a fake clock: depth samples one interval apart, and the
backoff published after each (backoff.step is pure; `now` is a plain float)."""

from __future__ import annotations

from missioncontrol import backoff

INITIAL, MAX, INTERVAL = 1.0, 60.0, 5.0


def run(depths: list[float | None], *, state: backoff.Backoff | None = None) -> list[float]:
    state = state or backoff.start(INITIAL)
    values = []
    for n, depth in enumerate(depths):
        state = backoff.step(state, depth=depth, now=n * INTERVAL, initial=INITIAL,
                             maximum=MAX)
        values.append(state.value)
    return values


def test_grows_toward_max_while_the_depth_rises_one_step_at_a_time():
    assert run([0, 100, 200, 400, 800, 1600, 3200, 6400, 12800]) == [
        1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_decays_toward_initial_once_the_depth_falls():
    values = run([0, 100, 200, 400, 800, 700, 500, 300, 100, 0, 0])
    assert values[:5] == [1, 2, 4, 8, 16]
    assert values[5:] == [8, 4, 2, 1, 1, 1]


def test_a_flat_queue_never_moves_it_whatever_its_noise_within_the_band():
    start = backoff.Backoff(value=8.0, depth=1000.0, at=0.0)
    wobble = [1000, 1030, 990, 1020, 1000, 980, 1010, 1000, 1040, 1000]
    assert run(wobble, state=start) == [8.0] * len(wobble)


def test_small_queues_have_a_floor_of_one_event():
    start = backoff.Backoff(value=4.0, depth=3.0, at=0.0)
    assert run([3, 4, 3, 4, 3], state=start) == [4.0] * 5


def test_an_empty_queue_decays_it():
    start = backoff.Backoff(value=16.0, depth=0.0, at=0.0)
    assert run([0, 0, 0, 0, 0, 0], state=start) == [8, 4, 2, 1, 1, 1]


def test_no_reading_changes_nothing_and_the_trend_is_taken_from_the_last_real_one():
    values = run([0, 100, None, None, 300, None, 100])
    assert values == [1, 2, 2, 2, 4, 4, 2]
    state = backoff.step(backoff.Backoff(4.0, 10.0, 0.0), depth=float("nan"), now=5.0,
                         initial=INITIAL, maximum=MAX)
    assert (state.value, state.depth, state.trend) == (4.0, 10.0, "unknown")


def test_bounds_changed_since_bring_the_value_back_inside():
    state = backoff.step(backoff.Backoff(120.0, 10.0, 0.0), depth=10.0, now=5.0,
                         initial=INITIAL, maximum=MAX)
    assert state.value == MAX
    state = backoff.step(backoff.Backoff(0.5, 10.0, 0.0), depth=10.0, now=5.0,
                         initial=INITIAL, maximum=MAX)
    assert state.value == INITIAL


def test_shown_as_the_contract_spells_it():
    assert [backoff.shown(v) for v in (1.0, 2.5, 0.125, 300.0)] == ["1s", "2.5s", "0.125s",
                                                                    "300s"]
