"""Status roll-up of spec §6.2: collect_status, backtrace_steps, JobStatistics, aggregate_job_status."""

from __future__ import annotations

import pytest

from nodeops.domain.status import (
    ACTIVE,
    TERMINAL,
    JobStatistics,
    Status,
    aggregate_job_status,
    backtrace_steps,
    collect_status,
)

P, R, S, F = Status.PENDING, Status.RUNNING, Status.SUCCESS, Status.FAILED
PF, T, RM, FI, IG = Status.PART_FAILED, Status.TERMINATED, Status.REMOVED, Status.FILTERED, Status.IGNORED


# ----------------------------------------------------------------------------------- collect_status


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([], P, id="empty_input_is_pending_not_success"),
        pytest.param([S], S, id="single_success_is_success"),
        pytest.param([S, S, S], S, id="all_success_is_success"),
        pytest.param([F], F, id="single_failed_is_failed"),
        pytest.param([S, F, S], F, id="any_failed_among_success_is_failed"),
        pytest.param([R, F], F, id="failed_wins_over_running"),
        pytest.param([P, F], F, id="failed_wins_over_pending"),
        pytest.param([S, R, P, F], F, id="failed_wins_over_every_other_status"),
        pytest.param([R], R, id="single_running_is_running"),
        pytest.param([S, R], R, id="mix_of_success_and_running_is_running"),
        pytest.param([P, R], R, id="mix_of_pending_and_running_is_running"),
        pytest.param([S, R, P], R, id="running_wins_over_success_and_pending"),
        pytest.param([P], P, id="single_pending_is_pending"),
        pytest.param([P, P], P, id="all_pending_is_pending"),
        pytest.param([S, P], P, id="mix_of_success_and_pending_collects_to_pending"),
        pytest.param([P, S, S], P, id="pending_before_success_collects_to_pending"),
        pytest.param([IG], P, id="uncounted_status_alone_falls_through_to_pending"),
        pytest.param([S, IG], P, id="success_with_uncounted_status_is_not_all_success"),
        pytest.param([PF, T, RM, FI], P, id="job_only_statuses_fall_through_to_pending"),
        pytest.param([PF, R], R, id="running_wins_over_uncounted_statuses"),
    ],
)
def test_collect_status_follows_spec_rules(statuses, expected):
    assert collect_status(statuses) is expected


def test_collect_status_accepts_any_iterable_including_a_generator():
    assert collect_status(s for s in (S, S)) is S
    assert collect_status(iter([S, F])) is F


def test_duplicates_do_not_change_the_collected_status():
    assert collect_status([S] * 100 + [P]) is P


# ---------------------------------------------------------------------------------- backtrace_steps


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([], [], id="empty_stays_empty"),
        pytest.param([P, P, P], [P, P, P], id="no_running_or_failed_leaves_all_pending"),
        pytest.param([S, P, S], [S, P, S], id="no_running_or_failed_leaves_pending_gaps"),
        pytest.param([S, S, S], [S, S, S], id="all_success_unchanged"),
        pytest.param([R], [R], id="first_step_running_unchanged"),
        pytest.param([F, P], [F, P], id="first_step_failed_unchanged"),
        pytest.param([P, P, R, P], [S, S, R, P], id="pending_before_running_becomes_success"),
        pytest.param([P, S, F, P], [S, S, F, P], id="pending_before_failed_becomes_success"),
        pytest.param([P, R, F], [S, R, F], id="only_steps_before_first_running_or_failed_are_rewritten"),
        pytest.param([P, F, R], [S, F, R], id="failed_first_stops_rewrite_there"),
        pytest.param([IG, P, R], [S, S, R], id="any_status_before_running_becomes_success"),
        pytest.param([R, P, F], [R, P, F], id="later_steps_after_first_running_are_untouched"),
    ],
)
def test_backtrace_steps_rewrites_steps_before_first_running_or_failed(statuses, expected):
    assert backtrace_steps(statuses) == expected


def test_backtrace_steps_returns_a_new_list_and_leaves_the_input_alone():
    original = (P, R)
    result = backtrace_steps(original)
    assert isinstance(result, list)
    assert original == (P, R)
    unchanged = [P, P]
    copy = backtrace_steps(unchanged)
    assert copy == unchanged
    assert copy is not unchanged


# ------------------------------------------------------------------------------------- JobStatistics


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([], JobStatistics(), id="empty_counts_nothing"),
        pytest.param([S, S, F], JobStatistics(success_count=2, failed_count=1), id="success_and_failed"),
        pytest.param(
            [P, R, R, IG],
            JobStatistics(pending_count=1, running_count=2, ignored_count=1),
            id="pending_running_ignored",
        ),
        pytest.param(
            [S, F, P, R, IG],
            JobStatistics(success_count=1, failed_count=1, pending_count=1, running_count=1, ignored_count=1),
            id="one_of_each_counted_status",
        ),
        pytest.param([PF, T, RM, FI], JobStatistics(), id="uncounted_statuses_are_not_counted_anywhere"),
        pytest.param([S, PF, T, F], JobStatistics(success_count=1, failed_count=1), id="uncounted_mixed_in"),
    ],
)
def test_job_statistics_count_counts_only_the_five_counted_statuses(statuses, expected):
    assert JobStatistics.count(statuses) == expected


@pytest.mark.parametrize(
    ("stats", "total"),
    [
        pytest.param(JobStatistics(), 0, id="zero"),
        pytest.param(JobStatistics(success_count=3), 3, id="success_only"),
        pytest.param(
            JobStatistics(success_count=1, failed_count=2, pending_count=3, running_count=4, ignored_count=5),
            15,
            id="sum_of_all_five",
        ),
    ],
)
def test_total_count_is_the_sum_of_the_five_counts(stats, total):
    assert stats.total_count == total


def test_total_count_of_counted_statuses_ignores_uncounted_ones():
    assert JobStatistics.count([S, F, PF, T, RM, FI, IG]).total_count == 3


def test_as_dict_has_the_five_counts_and_total_in_node_manager_keys():
    stats = JobStatistics(success_count=1, failed_count=2, pending_count=3, running_count=4, ignored_count=5)
    assert stats.as_dict() == {
        "success_count": 1,
        "failed_count": 2,
        "pending_count": 3,
        "running_count": 4,
        "ignored_count": 5,
        "total_count": 15,
    }


def test_as_dict_of_empty_statistics_is_all_zero():
    assert JobStatistics().as_dict() == dict.fromkeys(
        ("success_count", "failed_count", "pending_count", "running_count", "ignored_count", "total_count"), 0
    )


def test_job_statistics_is_immutable():
    stats = JobStatistics()
    with pytest.raises(AttributeError):
        stats.success_count = 1  # type: ignore[misc]


# -------------------------------------------------------------------------------- aggregate_job_status


def _stats(s=0, f=0, p=0, r=0, i=0):
    return JobStatistics(success_count=s, failed_count=f, pending_count=p, running_count=r, ignored_count=i)


@pytest.mark.parametrize(
    ("stats", "current", "expected"),
    [
        # total 0 -> PENDING, whatever the current status (except TERMINATED)
        pytest.param(_stats(), P, P, id="total_zero_is_pending"),
        pytest.param(_stats(), R, P, id="total_zero_is_pending_even_if_running"),
        pytest.param(_stats(), F, P, id="total_zero_is_pending_even_if_failed"),
        # ignored == total -> SUCCESS
        pytest.param(_stats(i=1), P, S, id="single_ignored_is_success"),
        pytest.param(_stats(i=4), R, S, id="all_ignored_is_success"),
        # running + pending == 0: finished
        pytest.param(_stats(s=3), R, S, id="finished_all_success_is_success"),
        pytest.param(_stats(s=3, i=2), R, S, id="finished_success_with_ignored_is_success"),
        pytest.param(_stats(f=2), R, F, id="finished_all_failed_is_failed"),
        pytest.param(_stats(f=2, i=1), R, F, id="finished_failed_and_ignored_no_success_is_failed"),
        pytest.param(_stats(s=1, f=1), R, PF, id="finished_with_some_failures_is_part_failed"),
        pytest.param(_stats(s=5, f=1, i=3), P, PF, id="finished_mixed_with_ignored_is_part_failed"),
        # running > 0 -> RUNNING
        pytest.param(_stats(r=1), P, R, id="any_running_is_running"),
        pytest.param(_stats(s=2, f=3, r=1), P, R, id="running_with_finished_hosts_is_running"),
        pytest.param(_stats(p=5, r=1), P, R, id="running_with_pending_is_running"),
        pytest.param(_stats(f=1, r=1), F, R, id="running_overrides_current_failed"),
        # pending > 0, running == 0 -> unchanged
        pytest.param(_stats(p=3), P, P, id="pending_with_no_running_keeps_current_pending"),
        pytest.param(_stats(p=3), R, R, id="pending_with_no_running_keeps_current_running"),
        pytest.param(_stats(s=1, p=1), R, R, id="success_and_pending_keeps_current_running"),
        pytest.param(_stats(f=1, p=1), F, F, id="failed_and_pending_keeps_current_failed"),
        pytest.param(_stats(p=1, i=1), S, S, id="pending_and_ignored_keeps_current_success"),
        # TERMINATED stays TERMINATED (spec §11.16)
        pytest.param(_stats(), T, T, id="terminated_stays_terminated_with_total_zero"),
        pytest.param(_stats(i=2), T, T, id="terminated_stays_terminated_when_all_ignored"),
        pytest.param(_stats(s=2), T, T, id="terminated_stays_terminated_when_all_success"),
        pytest.param(_stats(f=2), T, T, id="terminated_stays_terminated_when_all_failed"),
        pytest.param(_stats(s=1, f=1), T, T, id="terminated_stays_terminated_when_part_failed"),
        pytest.param(_stats(r=1), T, T, id="terminated_stays_terminated_while_running"),
        pytest.param(_stats(p=1), T, T, id="terminated_stays_terminated_while_pending"),
    ],
)
def test_aggregate_job_status_follows_update_job_statistics(stats, current, expected):
    assert aggregate_job_status(stats, current) is expected


# ---------------------------------------------------------------------------------- status sets


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_every_status_is_either_active_or_terminal(status):
    assert (status in ACTIVE) != (status in TERMINAL)


def test_there_are_exactly_nine_statuses_whose_values_are_their_names():
    assert len(Status) == 9
    assert all(status.value == status.name for status in Status)
