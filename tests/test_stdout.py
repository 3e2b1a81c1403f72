"""stdout holds dtrain's results only: what Ray prints from its threads, or at shutdown, goes to stderr."""

from __future__ import annotations

import io
import threading

from dtrain.cli import stdout


def test_other_threads_and_late_writes_go_to_stderr(monkeypatch):
    results, others = io.StringIO(), io.StringIO()
    routed = stdout.MainThreadStdout(results, others)
    monkeypatch.setattr("sys.stdout", routed)

    print('{"job_id": "1"}')
    # Ray's error listener prints raylet messages to sys.stdout from its own thread
    t = threading.Thread(target=lambda: print("(raylet) Task Worker.train_block failed"), name="ray_listen_error_messages")
    t.start()
    t.join(timeout=10)
    stdout.results_written()
    print("(raylet) held back until ray.shutdown() at exit")  # the main thread, after the results

    assert results.getvalue() == '{"job_id": "1"}\n'
    assert others.getvalue().splitlines() == [
        "(raylet) Task Worker.train_block failed",
        "(raylet) held back until ray.shutdown() at exit",
    ]
