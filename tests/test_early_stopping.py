"""EarlyStopping on its own: patience, the min_steps and stop_above guards, min_delta, and its state."""

import math

from stilts_mlflow.early_stopping import EarlyStopping


def _feed(stopper: EarlyStopping, scores, every: int = 100) -> int | None:
    """The step at which `stopper` stops on these dev scores (one evaluation per `every` steps), or None."""
    for i, score in enumerate(scores, 1):
        stopper.update(score, i * every)
        if stopper.should_stop(i * every):
            return i * every
    return None


def test_stops_after_patience_evaluations_without_a_new_best():
    assert _feed(EarlyStopping(patience=2), [0.5, 0.6, 0.55, 0.58, 0.7]) == 400


def test_patience_zero_never_stops():
    assert _feed(EarlyStopping(patience=0), [0.5] * 50) is None


def test_no_stop_before_min_steps():
    assert _feed(EarlyStopping(patience=1, min_steps=500), [0.6, 0.5, 0.5, 0.5, 0.5, 0.5]) == 500


def test_no_stop_while_the_best_is_below_stop_above():
    """A run still on its plateau (at chance) is not finished, however long it sits there."""
    stopper = EarlyStopping(patience=1, stop_above=0.5)
    assert _feed(stopper, [0.34, 0.33, 0.34, 0.33]) is None
    assert _feed(stopper, [0.6, 0.59]) == 200  # (steps counted again from 100)


def test_a_new_best_within_min_delta_counts_against_patience():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    assert stopper.update(0.60, 100) and stopper.bad_evals == 0
    assert stopper.update(0.605, 200)  # kept as the best weights ...
    assert stopper.bad_evals == 1 and stopper.best_step == 200  # ... but no real progress
    assert stopper.update(0.62, 300) and stopper.bad_evals == 0


def test_state_round_trips_through_a_checkpoint_dict():
    a = EarlyStopping(patience=3)
    _feed(a, [0.4, 0.5, 0.45])
    b = EarlyStopping(patience=3)
    b.load_state_dict(dict(a.state_dict()))
    assert (b.best_score, b.best_step, b.bad_evals) == (0.5, 200, 1)
    assert _feed(a, [0.44, 0.43]) == _feed(b, [0.44, 0.43]) == 200  # the same decision after a resume


def test_from_config_reads_the_train_config():
    from stilts_mlflow.presets import get_preset

    tc = get_preset("tiny").target
    stopper = EarlyStopping.from_config(tc)
    assert (stopper.patience, stopper.min_steps, stopper.min_delta, stopper.stop_above, stopper.give_up_at) == (
        tc.patience,
        tc.min_steps,
        tc.min_delta,
        tc.stop_above,
        tc.restart_at,
    )
    assert EarlyStopping().stop_above == -math.inf


def test_gives_up_only_while_the_best_is_below_stop_above_at_give_up_at():
    stopper = EarlyStopping(patience=1, stop_above=0.7, give_up_at=300)
    _feed(stopper, [0.33, 0.66])
    assert not stopper.gives_up(200)  # not yet: the run may still leave its plateau
    stopper.update(0.67, 300)
    assert stopper.gives_up(300) and stopper.gives_up(400)
    late = EarlyStopping(patience=1, stop_above=0.7, give_up_at=300)
    _feed(late, [0.33, 0.75, 0.5])  # past stop_above once: it trains on, whatever it scores after
    assert not late.gives_up(300)
    assert not EarlyStopping(stop_above=0.7).gives_up(10**6)  # give_up_at 0: never
    assert EarlyStopping(stop_above=0.7, give_up_at=100).gives_up(100)  # no evaluation yet counts as below


def test_restart_forgets_the_best_and_never_gives_up_and_a_resume_keeps_that():
    stopper = EarlyStopping(patience=1, stop_above=0.7, give_up_at=300)
    _feed(stopper, [0.5, 0.8])
    stopper.restart()
    assert stopper.update(0.6, 300) and stopper.best_score == 0.6  # below the old best, still the new stage's best
    assert not stopper.gives_up(300) and not stopper.should_stop(300)
    resumed = EarlyStopping(patience=1, stop_above=0.7, give_up_at=300)
    resumed.load_state_dict(stopper.state_dict())
    assert not resumed.gives_up(400) and resumed.best_score == 0.6
