"""The queue's policy in memory, without a DB: caps and the heap as the best prefix."""

from helpers.queue_policy import FREE, PREMIUM, JobHeap, QueueFull, UserLimit, fit


def test_fit_takes_what_both_caps_allow_and_names_the_tighter_one():
    n, refusal = fit(5, waiting=18, user_active=0, max_queue=20, max_per_user=5)
    assert n == 2 and isinstance(refusal, QueueFull)
    assert str(refusal) == "The queue is full (20 jobs waiting). Please try again in a few minutes."
    n, refusal = fit(5, waiting=0, user_active=4, max_queue=20, max_per_user=5)
    assert n == 1 and isinstance(refusal, UserLimit)
    assert "at most 5 jobs at a time (4 in progress)" in str(refusal)
    assert fit(3, waiting=0, user_active=0, max_queue=20, max_per_user=5)[0] == 3


def test_heap_stays_the_best_prefix_and_counts_what_spilled():
    heap = JobHeap(cap=3)
    for job_id in (1, 2, 3, 4):
        heap.push((FREE, job_id, 7))
    assert len(heap) == 3 and heap.spilled == 1 and heap.waiting == 4
    assert heap.position(4) is None  # the worst spilled to the DB
    heap.push((FREE, 5, 7))  # worse than all in memory while rows spilled: DB only
    assert heap.position(5) is None and heap.spilled == 2
    heap.push((PREMIUM, 6, 8))  # premium first: it enters, the worst free one spills
    assert heap.position(6) == 1 and heap.position(3) is None and heap.spilled == 3
    assert heap.positions([6, 1, 3]) == [(6, 1), (1, 2), (3, 4)]
    assert [item[1] for item in heap.best(10)] == [6, 1, 2]
    assert sorted(heap.of_user(7)) == [(FREE, 1, 7), (FREE, 2, 7)]
    assert heap.of_user(7, job_id=2) == [(FREE, 2, 7)]
    assert heap.pop() == (PREMIUM, 6, 8) and heap.position(6) is None
    heap.load([(FREE, 9, 1), (PREMIUM, 8, 1)], spilled=0)
    assert heap.position(8) == 1 and heap.waiting == 2


def test_a_worse_job_waits_behind_spilled_rows_even_with_room():
    heap = JobHeap(cap=3)
    for job_id in (1, 2, 3, 4):
        heap.push((FREE, job_id, 7))
    heap.pop()  # room in memory, but job 4 (better than 5) still waits in the DB
    heap.push((FREE, 5, 7))
    assert heap.position(5) is None and heap.spilled == 2 and len(heap) == 2
